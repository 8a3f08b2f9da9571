"""The one WeChat API client factory, and the calls the service makes through it.

wechatpy 1.8.18 builds URLs from three places: the client's ``API_BASE_URL`` (``…/cgi-bin/``),
some API families' own ``API_BASE_URL`` (``WeChatWxa`` for ``code_to_session`` uses the bare
host), full URLs written into a few methods, and ``fetch_access_token()``, which hard-codes
``https://api.weixin.qq.com/cgi-bin/token``. Every call, ``code_to_session`` included, fetches a
token first. :class:`HuinongWeChatClient` rewrites all of them onto ``HUINONG_WECHAT_API_BASE``
in one place (``_request`` and the token fetch), so tests and offline runs never reach the real
WeChat, and it gives every request a timeout (wechatpy's token fetch has none).

The access token is shared between processes: wechatpy's ``RedisStorage`` when
``HUINONG_REDIS_URL`` is set, else :class:`KVTokenStorage` over the service's key-value store
(a database table), so two workers do not keep invalidating each other's token.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import requests
from wechatpy import WeChatClient
from wechatpy.exceptions import WeChatClientException
from wechatpy.session import SessionStorage

log = logging.getLogger(__name__)

#: What wechatpy has written into its code; rewritten onto the configured base.
WECHAT_BASE = "https://api.weixin.qq.com/"
#: (connect, read) seconds. WeChat answers in well under a second; a hung call must not hold a
#: worker for long, and the outbox retries anyway.
DEFAULT_TIMEOUT = (3.05, 5.0)
#: Renew the shared token this many seconds before WeChat says it expires.
TOKEN_MARGIN = 300


class WeChatNotConfigured(RuntimeError):
    """The AppID / AppSecret for the requested client is not set."""


class KVTokenStorage(SessionStorage):
    """wechatpy token storage over a ``storage.kv`` store (``DatabaseKV``, ``RedisKV``, ``MemoryKV``)."""

    def __init__(self, kv, prefix: str = "wechatpy"):
        self.kv = kv
        self.prefix = prefix

    def _key(self, key: str) -> str:
        return f"{self.prefix}:{key}"

    def get(self, key, default=None):
        raw = self.kv.get(self._key(key))
        if raw is None:
            return default
        try:
            return json.loads(raw)
        except ValueError:
            return default

    def set(self, key, value, ttl=None):
        if value is None:
            return
        self.kv.set(self._key(key), json.dumps(value), ttl=int(ttl) if ttl else None)

    def delete(self, key):
        self.kv.delete(self._key(key))


class HuinongWeChatClient(WeChatClient):
    """A ``WeChatClient`` whose every URL, token fetch included, starts with ``api_base``."""

    def __init__(self, appid: str, secret: str, *, api_base: str, session: SessionStorage,
                 timeout: Any = DEFAULT_TIMEOUT):
        if not api_base.endswith("/"):
            raise ValueError("the WeChat API base URL must end with '/'")
        super().__init__(appid, secret, session=session, timeout=timeout)
        self.api_base = api_base
        self.API_BASE_URL = api_base + "cgi-bin/"

    def _rebase(self, url: str) -> str:
        if url.startswith(WECHAT_BASE):
            return self.api_base + url[len(WECHAT_BASE):]
        return url

    def _request(self, method, url_or_endpoint, **kwargs):
        if "api_base_url" in kwargs:  # an API family with its own base (wxa, datacube …)
            kwargs["api_base_url"] = self._rebase(kwargs["api_base_url"])
        return super()._request(method, self._rebase(url_or_endpoint), **kwargs)

    def fetch_access_token(self):
        """Fetch a token from the configured base and put it in the shared store.

        The TTL in the store is WeChat's ``expires_in`` less a margin, so every process renews
        it before WeChat expires it.
        """
        log.info("fetching a WeChat access token for %s", self.appid)
        res = self._http.get(
            self.api_base + "cgi-bin/token",
            params={"grant_type": "client_credential", "appid": self.appid, "secret": self.secret},
            timeout=self.timeout,
        )
        try:
            res.raise_for_status()
        except requests.RequestException as exc:
            raise WeChatClientException(errcode=None, errmsg=f"HTTP {res.status_code}", client=self,
                                        request=exc.request, response=exc.response) from exc
        try:
            result = res.json()
        except ValueError as exc:
            raise WeChatClientException(errcode=None, errmsg="token reply is not JSON", client=self,
                                        request=res.request, response=res) from exc
        if result.get("errcode", 0) != 0 or "access_token" not in result:
            raise WeChatClientException(result.get("errcode"), result.get("errmsg", "no access_token"),
                                        client=self, request=res.request, response=res)
        expires_in = int(result.get("expires_in") or 7200)
        ttl = max(expires_in - TOKEN_MARGIN, min(60, expires_in))
        self.session.set(self.access_token_key, result["access_token"], ttl)
        self.expires_at = int(time.time()) + ttl
        return result


def token_storage(settings, kv) -> SessionStorage:
    """Redis (wechatpy's ``RedisStorage``) when configured, else the service's key-value store."""
    if settings.redis_url:
        import redis
        from wechatpy.session.redisstorage import RedisStorage

        return RedisStorage(redis.Redis.from_url(settings.redis_url, socket_timeout=2), prefix="huinong:wechatpy")
    return KVTokenStorage(kv)


def _make(appid: str, secret: str, what: str, settings, kv, timeout) -> HuinongWeChatClient:
    if not appid or not secret:
        raise WeChatNotConfigured(f"{what} AppID and AppSecret are not set")
    return HuinongWeChatClient(
        appid, secret, api_base=settings.wechat_api_base, session=token_storage(settings, kv), timeout=timeout
    )


def make_client(settings, kv, *, timeout: Any = DEFAULT_TIMEOUT) -> HuinongWeChatClient:
    """The official-account client (``HUINONG_WECHAT_APPID`` / ``HUINONG_WECHAT_SECRET``)."""
    return _make(settings.wechat_appid, settings.wechat_secret, "HUINONG_WECHAT_", settings, kv, timeout)


def make_mini_client(settings, kv, *, timeout: Any = DEFAULT_TIMEOUT) -> HuinongWeChatClient:
    """The mini-program client (``HUINONG_MINI_APPID`` / ``HUINONG_MINI_SECRET``); use
    ``client.wxa.code_to_session(js_code)`` for login."""
    return _make(settings.mini_appid, settings.mini_secret, "HUINONG_MINI_", settings, kv, timeout)


# --- calls ----------------------------------------------------------------------------------

#: Prefix of the scene string of a household's QR code (一户一码); the rest is its bind token.
HOUSEHOLD_SCENE_PREFIX = "hh:"


def create_household_qr(client: WeChatClient, bind_token: str) -> dict:
    """A permanent parametric QR code for one household (``QR_LIMIT_STR_SCENE``, scene ``hh:<token>``).

    Returns WeChat's answer (``ticket`` and ``url``, the text the QR image encodes) plus
    ``scene_str``. Raises ``WeChatClientException`` (with WeChat's errcode) or a ``requests``
    error when WeChat refuses or cannot be reached.
    """
    if not bind_token:
        raise ValueError("the household has no bind token")
    scene = HOUSEHOLD_SCENE_PREFIX + bind_token
    result = client.qrcode.create(
        {"action_name": "QR_LIMIT_STR_SCENE", "action_info": {"scene": {"scene_str": scene}}}
    )
    return {"ticket": result["ticket"], "url": result["url"], "scene_str": scene}


def send_text(client: WeChatClient, openid: str, content: str) -> dict:
    """A customer-service text message (only within 48 hours of the user's last message: 45015)."""
    return client.message.send_text(openid, content)


def send_template(client: WeChatClient, openid: str, template_id: str, data: dict, url: str | None = None) -> dict:
    """A template message; ``data`` values may be plain strings (wrapped as ``{"value": …}``)."""
    wrapped = {k: v if isinstance(v, dict) else {"value": str(v)} for k, v in data.items()}
    return client.message.send_template(openid, template_id, wrapped, url=url)

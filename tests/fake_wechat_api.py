"""A fake WeChat API server on loopback that speaks WeChat's real JSON, including its error codes.

It is a real HTTP server (``http.server.ThreadingHTTPServer`` in a thread on 127.0.0.1, a random
port), so the code under test makes real HTTP requests through ``requests`` exactly as it would
against WeChat; nothing is monkeypatched. Use it as a context manager::

    with FakeWeChatAPI() as api:
        settings = make_settings(tmp_path, wechat_api_base=api.base_url,
                                 wechat_appid=api.appid, wechat_secret=api.secret)
        ...
        assert api.sent("cgi-bin/message/custom/send")[0]["touser"] == "o-user"

Endpoints (paths relative to ``base_url``):

- ``GET cgi-bin/token``: ``{"access_token", "expires_in"}``; 40013 for an unknown appid,
  40125 for a wrong secret, 40002 for a wrong grant_type;
- ``POST cgi-bin/message/custom/send`` (customer-service message), ``POST
  cgi-bin/message/template/send``, ``POST cgi-bin/qrcode/create``, ``POST cgi-bin/menu/create``:
  a missing ``access_token`` gives 41001, a wrong or expired one 40001 / 42001;
- ``GET sns/jscode2session``: ``{"openid", "session_key", "unionid"}`` for a code issued by
  :meth:`FakeWeChatAPI.issue_code` (single use like WeChat's: 40163 the second time), 40029 for
  any other code.

Scripted failures: :meth:`fail_next` (the next ``count`` calls of a path answer an errcode, e.g.
45015 for a customer-service message outside the 48-hour window) and :meth:`down` (for a while
every request answers HTTP 500, or hangs past the client's timeout).
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

ERRMSG = {
    0: "ok",
    40001: "invalid credential, access_token is invalid or not latest",
    40002: "invalid grant_type",
    40003: "invalid openid",
    40013: "invalid appid",
    40016: "invalid button size",
    40018: "invalid button name size",
    40019: "invalid button key size",
    40029: "invalid code",
    40037: "invalid template_id",
    40125: "invalid appsecret",
    40163: "code been used",
    41001: "access_token missing",
    42001: "access_token expired",
    44002: "empty post data",
    45002: "content size out of limit",
    45015: "response out of time limit or subscription is canceled",
    45047: "out of response count limit",
    47001: "data format error",
    -1: "system error",
}

#: Paths that need an access token (jscode2session authenticates with appid + secret instead).
TOKEN_PATHS = {
    "cgi-bin/message/custom/send",
    "cgi-bin/message/template/send",
    "cgi-bin/qrcode/create",
    "cgi-bin/menu/create",
}


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, str]
    json: Any
    at: float = field(default_factory=time.time)
    #: Answered with HTTP 200 and errcode 0.
    ok: bool = False


@dataclass
class _Failure:
    errcode: int
    errmsg: str
    count: int


class FakeWeChatAPI:
    """A loopback WeChat API. ``apps`` maps appid → secret (official account and mini-program)."""

    def __init__(
        self,
        *,
        appid: str = "wx-oa-test",
        secret: str = "oa-secret-test",
        mini_appid: str = "wx-mp-test",
        mini_secret: str = "mp-secret-test",
        expires_in: int = 7200,
    ):
        self.appid, self.secret = appid, secret
        self.mini_appid, self.mini_secret = mini_appid, mini_secret
        self.apps = {appid: secret, mini_appid: mini_secret}
        self.expires_in = expires_in
        self.requests: list[Recorded] = []
        self.tokens: dict[str, str] = {}  # token → appid
        self.expired: set[str] = set()
        self.codes: dict[str, dict[str, str]] = {}
        self.used_codes: set[str] = set()
        self._failures: dict[str, list[_Failure]] = {}
        self._down_until = 0.0
        self._down_mode = "500"
        self._hang_seconds = 0.0
        self._lock = threading.Lock()
        self._msgid = 1000
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --- lifecycle --------------------------------------------------------------------------

    def start(self) -> FakeWeChatAPI:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):  # noqa: N802 (http.server's naming)
                fake._handle(self, "GET")

            def do_POST(self):  # noqa: N802
                fake._handle(self, "POST")

            def log_message(self, *args):  # keep test output clean
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="fake-wechat-api", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> FakeWeChatAPI:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        assert self._server is not None, "start() the fake first"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/"

    # --- scripting ----------------------------------------------------------------------------

    def fail_next(self, path: str, *, errcode: int, count: int = 1, errmsg: str | None = None) -> None:
        """The next ``count`` calls of ``path`` (e.g. ``cgi-bin/message/custom/send``) answer ``errcode``."""
        with self._lock:
            self._failures.setdefault(path.lstrip("/"), []).append(
                _Failure(errcode, errmsg or ERRMSG.get(errcode, "error"), count)
            )

    def down(self, seconds: float, *, mode: str = "500", hang: float = 10.0) -> None:
        """For ``seconds`` from now every request fails: ``mode="500"`` answers HTTP 500,
        ``mode="timeout"`` holds the connection ``hang`` seconds before answering (a client with a
        shorter timeout gives up)."""
        if mode not in {"500", "timeout"}:
            raise ValueError("mode must be '500' or 'timeout'")
        with self._lock:
            self._down_until = time.monotonic() + seconds
            self._down_mode = mode
            self._hang_seconds = hang

    def up(self) -> None:
        with self._lock:
            self._down_until = 0.0

    def expire_tokens(self) -> None:
        """Every access token issued so far is now expired (42001), as after two hours."""
        with self._lock:
            self.expired |= set(self.tokens)

    def issue_code(self, *, openid: str | None = None, unionid: str | None = None) -> str:
        """A one-time mini-program login code (what ``wx.login()`` gives the client)."""
        code = "code-" + secrets.token_hex(8)
        with self._lock:
            self.codes[code] = {
                "openid": openid or "o-mp-" + secrets.token_hex(6),
                "unionid": unionid or "u-" + secrets.token_hex(6),
                "session_key": secrets.token_urlsafe(16),
            }
        return code

    # --- inspection ---------------------------------------------------------------------------

    def calls(self, path: str) -> list[Recorded]:
        path = path.lstrip("/")
        with self._lock:
            return [r for r in self.requests if r.path == path]

    def sent(self, path: str) -> list[Any]:
        """The JSON bodies of the successful calls of ``path``."""
        with self._lock:
            return [r.json for r in self.requests if r.path == path.lstrip("/") and r.ok]

    def clear(self) -> None:
        with self._lock:
            self.requests.clear()

    # --- the protocol -------------------------------------------------------------------------

    def _handle(self, h: BaseHTTPRequestHandler, method: str) -> None:
        parts = urlsplit(h.path)
        path = parts.path.lstrip("/")
        query = dict(parse_qsl(parts.query, keep_blank_values=True))
        length = int(h.headers.get("Content-Length") or 0)
        raw = h.rfile.read(length) if length else b""
        body: Any = None
        if raw:
            try:
                body = json.loads(raw.decode("utf-8"))
            except (UnicodeDecodeError, ValueError):
                body = raw.decode("utf-8", "replace")
        rec = Recorded(method, path, query, body)
        with self._lock:
            self.requests.append(rec)
            down = time.monotonic() < self._down_until
            mode, hang = self._down_mode, self._hang_seconds
        if down:
            if mode == "timeout":
                time.sleep(hang)
            self._send(h, 500, b"<html><body>500 Internal Server Error</body></html>", "text/html")
            return
        status, result = self._route(method, path, query, body)
        rec.ok = status == 200 and result.get("errcode", 0) == 0
        self._send(h, status, json.dumps(result, ensure_ascii=False).encode("utf-8"), "application/json")

    @staticmethod
    def _send(h: BaseHTTPRequestHandler, status: int, payload: bytes, ctype: str) -> None:
        try:
            h.send_response(status)
            h.send_header("Content-Type", f"{ctype}; charset=utf-8")
            h.send_header("Content-Length", str(len(payload)))
            h.end_headers()
            h.wfile.write(payload)
        except OSError:  # the client gave up (its timeout) and closed the connection
            h.close_connection = True

    def _err(self, code: int) -> tuple[int, dict]:
        return 200, {"errcode": code, "errmsg": ERRMSG.get(code, "error")}

    def _route(self, method: str, path: str, query: dict, body: Any) -> tuple[int, dict]:
        routes = {
            ("GET", "cgi-bin/token"): self._token,
            ("GET", "sns/jscode2session"): self._jscode2session,
            ("POST", "cgi-bin/message/custom/send"): self._custom_send,
            ("POST", "cgi-bin/message/template/send"): self._template_send,
            ("POST", "cgi-bin/qrcode/create"): self._qrcode_create,
            ("POST", "cgi-bin/menu/create"): self._menu_create,
        }
        handler = routes.get((method, path))
        if handler is None:
            return 404, {"errcode": 404, "errmsg": "not found"}
        if path in TOKEN_PATHS:
            token = query.get("access_token")
            with self._lock:
                known = token in self.tokens
                expired = token in self.expired
            if not token:
                return self._err(41001)
            if expired:
                return self._err(42001)
            if not known:
                return self._err(40001)
        with self._lock:
            queue = self._failures.get(path)
            failure = queue[0] if queue else None
            if failure is not None:
                failure.count -= 1
                if failure.count <= 0:
                    queue.pop(0)
        if failure is not None:
            return 200, {"errcode": failure.errcode, "errmsg": failure.errmsg}
        if method == "POST" and path in TOKEN_PATHS and not isinstance(body, dict):
            return self._err(44002 if body is None else 47001)
        return handler(query, body)

    def _token(self, query: dict, body: Any) -> tuple[int, dict]:
        if query.get("grant_type") != "client_credential":
            return self._err(40002)
        appid = query.get("appid", "")
        if appid not in self.apps:
            return self._err(40013)
        if query.get("secret") != self.apps[appid]:
            return self._err(40125)
        token = "at-" + secrets.token_urlsafe(24)
        with self._lock:
            self.tokens[token] = appid
        return 200, {"access_token": token, "expires_in": self.expires_in}

    def _jscode2session(self, query: dict, body: Any) -> tuple[int, dict]:
        appid = query.get("appid", "")
        if appid not in self.apps:
            return self._err(40013)
        if query.get("secret") != self.apps[appid]:
            return self._err(40125)
        code = query.get("js_code", "")
        with self._lock:
            if code in self.used_codes:
                return self._err(40163)
            info = self.codes.pop(code, None)
            if info is not None:
                self.used_codes.add(code)
        if info is None:
            return self._err(40029)
        return 200, dict(info)

    def _custom_send(self, query: dict, body: dict) -> tuple[int, dict]:
        if not body.get("touser"):
            return self._err(40003)
        msgtype = body.get("msgtype")
        if msgtype not in {"text", "image", "voice", "news", "mpnews", "miniprogrampage"}:
            return self._err(47001)
        if msgtype == "text":
            content = (body.get("text") or {}).get("content")
            if not isinstance(content, str):
                return self._err(47001)
            if len(content.encode("utf-8")) > 2048:
                return self._err(45002)
        return 200, {"errcode": 0, "errmsg": "ok"}

    def _template_send(self, query: dict, body: dict) -> tuple[int, dict]:
        if not body.get("touser"):
            return self._err(40003)
        if not body.get("template_id"):
            return self._err(40037)
        if not isinstance(body.get("data"), dict):
            return self._err(47001)
        with self._lock:
            self._msgid += 1
            msgid = self._msgid
        return 200, {"errcode": 0, "errmsg": "ok", "msgid": msgid}

    def _qrcode_create(self, query: dict, body: dict) -> tuple[int, dict]:
        action = body.get("action_name")
        scene = (body.get("action_info") or {}).get("scene") or {}
        if action not in {"QR_SCENE", "QR_STR_SCENE", "QR_LIMIT_SCENE", "QR_LIMIT_STR_SCENE"}:
            return self._err(47001)
        if action.endswith("STR_SCENE"):
            s = scene.get("scene_str")
            if not isinstance(s, str) or not 1 <= len(s) <= 64:
                return self._err(47001)
        elif not isinstance(scene.get("scene_id"), int):
            return self._err(47001)
        ticket = "gQ" + secrets.token_urlsafe(30)
        result = {"ticket": ticket, "url": "http://weixin.qq.com/q/" + secrets.token_urlsafe(16)}
        if not action.startswith("QR_LIMIT"):
            result["expire_seconds"] = int(body.get("expire_seconds") or 60)
        return 200, result

    def _menu_create(self, query: dict, body: dict) -> tuple[int, dict]:
        buttons = body.get("button")
        if not isinstance(buttons, list) or not 1 <= len(buttons) <= 3:
            return self._err(40016)
        for top in buttons:
            if len(str(top.get("name", "")).encode("utf-8")) > 16 or not top.get("name"):
                return self._err(40018)
            subs = top.get("sub_button") or []
            if len(subs) > 5:
                return self._err(40016)
            for b in [top] if not subs else subs:
                if subs and len(str(b.get("name", "")).encode("utf-8")) > 60:
                    return self._err(40018)
                if b.get("type") == "click" and not 1 <= len(str(b.get("key", "")).encode("utf-8")) <= 128:
                    return self._err(40019)
        return 200, {"errcode": 0, "errmsg": "ok"}

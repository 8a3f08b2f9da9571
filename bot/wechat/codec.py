"""WeChat's wire format: verify → decrypt → parse on the way in, render → encrypt on the way out.

The only module that touches wechatpy's crypto and reply classes. It never raises anything but
:class:`Refused` (with the HTTP status to answer) to the endpoint:

- **403** forged or replayed: a bad signature (compared in constant time), a timestamp outside
  ``HUINONG_TIMESTAMP_WINDOW``, a plaintext body in safe or compatible mode (its signature covers
  no part of the body), ciphertext for another AppID;
- **400** unreadable: not XML, a DTD or entity declaration (XXE, billion laughs), no ``MsgType``
  or ``FromUserName``, ciphertext that does not decrypt;
- **413** larger than ``HUINONG_MAX_BODY_BYTES``.

XML is parsed with defusedxml (no DTDs, no entities, nothing fetched), never with wechatpy's
``parse_message``, which hands the text to xmltodict/expat. WeChat's messages are flat, so the
fields are read straight into a :class:`handlers.routing.Inbound`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from xml.etree.ElementTree import Element, ParseError

import defusedxml.ElementTree as SafeET
from defusedxml import DefusedXmlException
from wechatpy.crypto import PrpCrypto, WeChatCrypto
from wechatpy.replies import TextReply

from handlers.routing import Inbound, fit

log = logging.getLogger(__name__)

#: What WeChat accepts as "no reply" (it then neither shows anything nor retries).
SUCCESS = "success"


class Refused(Exception):
    """The request is answered with ``status`` and a short body; ``reason`` is for the log only."""

    def __init__(self, status: int, reason: str):
        super().__init__(reason)
        self.status = status
        self.reason = reason


def _sign(*parts: str) -> str:
    return hashlib.sha1("".join(sorted(parts)).encode("utf-8")).hexdigest()


def _same(expected: str, given: str) -> bool:
    return hmac.compare_digest(expected.encode("ascii"), (given or "").encode("ascii", "replace"))


class _SecurePrpCrypto(PrpCrypto):
    """wechatpy's cipher with the 16-byte random prefix taken from ``secrets`` (it uses ``random``)."""

    def get_random_string(self):
        return secrets.token_hex(8)


@dataclass
class Opened:
    inbound: Inbound
    #: The request came encrypted, so the reply must be encrypted too.
    encrypted: bool


class Codec:
    """One per process, built from the settings by :func:`bot.wechat.init_app`."""

    def __init__(self, *, token: str, mode: str, appid: str = "", aes_key: str = "",
                 window: int = 300, max_body: int = 64 * 1024):
        if mode not in {"plain", "compatible", "safe"}:
            raise ValueError(f"unknown WeChat mode {mode!r}")
        self.token = token
        self.mode = mode
        self.appid = appid
        self.window = window
        self.max_body = max_body
        self.crypto: WeChatCrypto | None = None
        if mode != "plain":
            try:
                key = base64.b64decode(aes_key + "=", validate=True)
            except (binascii.Error, ValueError):
                key = b""
            if len(aes_key) != 43 or len(key) != 32:
                raise ValueError("HUINONG_WECHAT_AES_KEY is not a valid 43-character EncodingAESKey")
            if not appid:
                raise ValueError("HUINONG_WECHAT_APPID is required in compatible and safe modes")
            self.crypto = WeChatCrypto(token, aes_key, appid)

    @classmethod
    def from_settings(cls, settings) -> Codec:
        return cls(
            token=settings.wechat_token, mode=settings.effective_wechat_mode, appid=settings.wechat_appid,
            aes_key=settings.wechat_aes_key, window=settings.timestamp_window, max_body=settings.max_body_bytes,
        )

    # --- checks -----------------------------------------------------------------------------

    def _check_time(self, args: Mapping[str, str], now: float | None) -> str:
        timestamp = args.get("timestamp", "")
        if not (timestamp.isascii() and timestamp.isdigit()) or not args.get("nonce"):  # "²³".isdigit() too
            raise Refused(403, "missing timestamp or nonce")
        now = time.time() if now is None else now
        if abs(now - int(timestamp)) > self.window:
            raise Refused(403, f"timestamp {timestamp} outside the {self.window}s window (replay?)")
        return timestamp

    def _check_plain_signature(self, args: Mapping[str, str]) -> None:
        expected = _sign(self.token, args.get("timestamp", ""), args.get("nonce", ""))
        if not _same(expected, args.get("signature", "")):
            raise Refused(403, "bad signature")

    def verify_url(self, args: Mapping[str, str], *, now: float | None = None) -> str:
        """The GET of the server configuration (服务器配置): a valid signature → the echostr."""
        if not self.token:
            raise Refused(403, "HUINONG_WECHAT_TOKEN is not set")
        self._check_time(args, now)
        self._check_plain_signature(args)
        return args.get("echostr", "")

    # --- in ---------------------------------------------------------------------------------

    def open(self, args: Mapping[str, str], body: bytes, *, now: float | None = None) -> Opened:
        """Verify, decrypt and parse one POST."""
        if not self.token:
            raise Refused(403, "HUINONG_WECHAT_TOKEN is not set")
        if len(body) > self.max_body:
            raise Refused(413, f"body of {len(body)} bytes")
        timestamp = self._check_time(args, now)
        if self.mode == "plain":
            self._check_plain_signature(args)  # before parsing anything
        outer = _parse(body)
        encrypt = outer.get("Encrypt")
        if self.mode == "plain":
            if encrypt is not None and "MsgType" not in outer:
                log.warning("an encrypted message arrived but HUINONG_WECHAT_MODE is plain")
                raise Refused(400, "encrypted body in plain mode")
            return Opened(_inbound(outer), encrypted=False)
        # Compatible and safe modes: only the Encrypt element is signed, so only it is read.
        if not encrypt:
            raise Refused(403, "plaintext body in an encrypted mode (its signature covers nothing)")
        expected = _sign(self.token, timestamp, args.get("nonce", ""), encrypt)
        if not _same(expected, args.get("msg_signature", "")):
            raise Refused(403, "bad msg_signature")
        try:
            xml = self.crypto.decrypt_message({"Encrypt": encrypt}, expected, timestamp, args["nonce"])
        except Exception as exc:  # wechatpy raises anything from binascii to IndexError here
            name = type(exc).__name__
            raise Refused(403 if name == "InvalidAppIdException" else 400, f"cannot decrypt: {name}") from None
        return Opened(_inbound(_parse(xml.encode("utf-8"))), encrypted=True)

    # --- out --------------------------------------------------------------------------------

    def seal(self, inbound: Inbound, text: str | None, *, encrypted: bool,
             now: float | None = None) -> tuple[str, str]:
        """The response body and its content type: ``success`` for no reply, else a text reply."""
        if not text:
            return SUCCESS, "text/plain; charset=utf-8"
        ts = int(time.time() if now is None else now)
        xml = TextReply(source=_cdata(inbound.account), target=_cdata(inbound.openid), content=_cdata(fit(text)),
                        time=ts).render()
        if encrypted and self.crypto is not None:
            xml = self.crypto._encrypt_message(xml, secrets.token_hex(5), str(ts), _SecurePrpCrypto)
        return xml, "application/xml; charset=utf-8"


def _cdata(value: str) -> str:
    """``value`` for the inside of wechatpy's ``<![CDATA[…]]>``: a ``]]>`` in it (an account or
    openid in a forged message, a villager's words quoted back) would end the section early and
    make the reply unreadable XML, so it is split across two sections, as XML has it."""
    return value.replace("]]>", "]]]]><![CDATA[>")


def _parse(raw: bytes) -> dict:
    try:
        root = SafeET.fromstring(raw, forbid_dtd=True)
    except (ParseError, DefusedXmlException, ValueError, LookupError) as exc:  # LookupError: unknown encoding
        raise Refused(400, f"unreadable XML: {type(exc).__name__}") from None
    if root.tag != "xml":
        raise Refused(400, f"root element <{root.tag}>, not <xml>")
    return _fields(root)


#: WeChat's XML is flat (an event's ScanCodeInfo or SendPicsInfo nests two levels): anything much
#: deeper is refused as unreadable instead of recursing (a deeply nested body was a 500).
MAX_DEPTH = 8


def _fields(elem: Element, depth: int = 0) -> dict:
    if depth >= MAX_DEPTH:
        raise Refused(400, f"XML nested deeper than {MAX_DEPTH} levels")
    out: dict = {}
    for child in elem:
        out.setdefault(child.tag, _fields(child, depth + 1) if len(child) else (child.text or "").strip())
    return out


def _int(value, default: int | None = None) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def _float(value) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _inbound(f: dict) -> Inbound:
    msg_type = f.get("MsgType")
    source = f.get("FromUserName")
    if not isinstance(msg_type, str) or not msg_type:
        raise Refused(400, "no MsgType")
    if not isinstance(source, str) or not source or len(source) > 64:
        raise Refused(400, "no FromUserName")
    create_time = _int(f.get("CreateTime"))
    if create_time is None:
        raise Refused(400, "no CreateTime")
    msg_type = msg_type.strip().lower()
    text = lambda name: f.get(name) if isinstance(f.get(name), str) else ""  # noqa: E731
    event = text("Event").lower() if msg_type == "event" else ""
    key = text("EventKey")
    scene = ""
    if event == "subscribe" and key.startswith("qrscene_"):
        scene = key[len("qrscene_"):]
    elif event == "scan":
        scene = key
    return Inbound(
        openid=source,
        account=text("ToUserName"),
        msg_type=msg_type,
        create_time=create_time,
        msg_id=_int(f.get("MsgId") or f.get("MsgID")) if msg_type != "event" else None,
        event=event,
        event_key=key,
        scene=scene,
        content=text("Content"),
        media_id=text("MediaId"),
        recognition=text("Recognition"),
        pic_url=text("PicUrl"),
        latitude=_float(f.get("Location_X") or f.get("Latitude")),
        longitude=_float(f.get("Location_Y") or f.get("Longitude")),
        label=text("Label"),
    )

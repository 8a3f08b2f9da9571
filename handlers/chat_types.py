"""What the official account's handlers share: the message in, the sender, the reply out.

:class:`Inbound` is built by ``bot/wechat/codec.py``; :class:`Chatter` is the sender as the
handlers see them; a handler returns a :class:`Reply`, a string or None. The dispatch table
(:mod:`handlers.routing`) imports the handler modules (ask, binding, dialogue …); they import
these types from here, never the table, so the handlers form no import cycle.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass

from storage.models import WeChatUser

from .context import Context


@dataclass(frozen=True)
class Inbound:
    """One message or event pushed by WeChat, already verified and decrypted."""

    openid: str
    account: str
    msg_type: str
    create_time: int
    msg_id: int | None = None
    event: str = ""
    event_key: str = ""
    #: The QR scene: ``EventKey`` of a SCAN, or a subscribe's ``EventKey`` without ``qrscene_``.
    scene: str = ""
    content: str = ""
    media_id: str = ""
    recognition: str = ""
    pic_url: str = ""
    latitude: float | None = None
    longitude: float | None = None
    label: str = ""

    @property
    def kind(self) -> str:
        return f"event:{self.event}" if self.msg_type == "event" else self.msg_type

    @property
    def dedupe_key(self) -> str:
        """Unique per sender (the ``source`` column holds FromUserName)."""
        if self.msg_type != "event" and self.msg_id:
            return _bounded(f"msg:{self.msg_id}")
        if self.msg_type != "event":  # no MsgId: fall back to time, type and content
            digest = hashlib.sha1(f"{self.content}|{self.media_id}".encode()).hexdigest()[:16]
            return _bounded(f"msg:{self.create_time}:{self.msg_type}:{digest}")
        key = f"evt:{self.create_time}:{self.event}:{self.event_key}"
        if len(key) > 200:
            key = f"evt:{self.create_time}:{self.event}:#" + hashlib.sha1(self.event_key.encode()).hexdigest()
        return _bounded(key)

    @property
    def inbound_key(self) -> str:
        """The idempotency key of a case created from this message (``wechat:<openid>:<msgid>``)."""
        if self.msg_type != "event" and self.msg_id:
            return f"wechat:{self.openid}:{self.msg_id}"
        key = f"wechat:{self.openid}:{self.dedupe_key}"
        return key if len(key) <= 160 else f"wechat:{self.openid}:#" + hashlib.sha1(key.encode()).hexdigest()


def _bounded(key: str, limit: int = 200) -> str:
    """The key within its column: a MsgId, MsgType or Event too long for it (only a sender with the
    token can sign one) is hashed rather than overflowing the column (PostgreSQL refuses it)."""
    if len(key) <= limit:
        return key
    return key[:4] + "#" + hashlib.sha1(key.encode()).hexdigest()


@dataclass
class Reply:
    """``text`` None means no answer ("success"). ``case_id`` links the message to a case."""

    text: str | None = None
    case_id: int | None = None


@dataclass(frozen=True)
class Chatter:
    """The sender as the handlers see them (a snapshot of the WeChatUser row)."""

    id: int
    openid: str
    household_id: int | None = None
    village_id: int | None = None
    name: str = ""
    consented: bool = False
    has_phone: bool = False

    @classmethod
    def of(cls, user: WeChatUser) -> Chatter:
        return cls(id=user.id, openid=user.openid, household_id=user.household_id, village_id=user.village_id,
                   name=user.name or "", consented=user.consented_at is not None, has_phone=bool(user.phone_enc))


Handler = Callable[[Context, Inbound, Chatter], "Reply | str | None"]


_STRIP_RE = re.compile(r"[\s，。！？!?,.、~～…]+")


def normalize_word(text: str) -> str:
    """``" 进度！"`` → ``"进度"``: how typed keywords are compared."""
    return _STRIP_RE.sub("", text).lower()

"""The single dispatch registry of the official account, and the inbound-message bookkeeping.

Every message or event WeChat pushes arrives here as an :class:`Inbound` (built by
``bot/wechat/codec.py``) and is routed by one table lookup:

- message type → handler (text, voice, image, location; anything else → a short help reply);
- event → handler (subscribe, SCAN, CLICK; LOCATION, VIEW, TEMPLATESENDJOBFINISH, unsubscribe and
  unknown events get no answer, only the record);
- menu key (CLICK ``EventKey``) → handler (``REPORT`` / ``ASK`` / ``PROGRESS`` / ``CONTACT``);
- typed keyword → the same handlers (申报 / 我要申报 → ``REPORT``, 进度 → ``PROGRESS`` …);
- free text → ``handlers.understanding.classify`` → intent → handler.

Bookkeeping (:func:`receive`, :func:`complete`, :func:`defer`, :func:`poll`, :func:`take_over`):
each message is recorded once per (FromUserName, MsgId) and each event once per
(FromUserName, CreateTime, Event, EventKey), a unique constraint; its reply is stored with it, so
a WeChat retry gets the same reply and creates nothing new. A reply that is not ready within the
edge's time budget is *deferred*: the edge answers "success" and, when the work finishes, the
reply goes to the outbox as a customer-service message. Every state change is a
compare-and-set in the database, so passive reply, outbox and a takeover after a crash never
deliver the same reply twice.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import json
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field

from storage import session_scope
from storage.cases import claim_inbound
from storage.inbound import inbound_state, replace_reply, reply_once
from storage.inbound import take_over as _take_over_row
from storage.models import WeChatUser, utcnow
from storage.outbox import enqueue
from storage.people import get_or_create_wechat_user

from . import chat_texts as T
from .context import Context
from .errors import HandlerError

log = logging.getLogger(__name__)

#: The menu's EventKeys; keep them stable (bot/wechat/menu.py builds the menu from them).
MENU_KEYS: tuple[str, ...] = ("REPORT", "ASK", "PROGRESS", "CONTACT")
#: Typed words that do what a menu key does; keep them stable.
KEYWORD_MENU: dict[str, str] = {"申报": "REPORT", "我要申报": "REPORT", "一键申报": "REPORT", "进度": "PROGRESS",
                                "查进度": "PROGRESS", "我的申报": "PROGRESS", "联系村干部": "CONTACT"}
#: Words that work even in the middle of a dialogue (the others, like 取消, belong to it there).
GLOBAL_WORDS = frozenset({"回电", "帮助", "help"})
#: Seconds a first copy may take before a retry may assume it died and process the message again.
LEASE_SECONDS = 10


# --- what arrives and what goes back ---------------------------------------------------------


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


@dataclass
class Registry:
    messages: dict[str, Handler] = field(default_factory=dict)
    events: dict[str, Handler] = field(default_factory=dict)
    menu: dict[str, Handler] = field(default_factory=dict)
    intents: dict[str, Handler] = field(default_factory=dict)
    #: Words that work outside a dialogue as well as inside (after KEYWORD_MENU).
    words: dict[str, Handler] = field(default_factory=dict)


def no_reply(ctx: Context, msg: Inbound, who: Chatter) -> None:
    """Events that expect no answer: the InboundMessage row is the record."""
    return None


def short_help(ctx: Context, msg: Inbound, who: Chatter) -> str:
    return T.UNSUPPORTED


def _greeting(ctx: Context, msg: Inbound, who: Chatter) -> str:
    return T.GREETING


def _help(ctx: Context, msg: Inbound, who: Chatter) -> str:
    return T.HELP


def _other(ctx: Context, msg: Inbound, who: Chatter):
    """Neither a report nor clearly a question: a few characters ("好的", "嗯") get the help,
    anything longer is tried as a question (the answer says plainly when nothing matches)."""
    from . import ask

    if len(normalize_word(msg.content)) < 4:
        return T.HELP
    return ask.on_question(ctx, msg, who)


@functools.cache
def registry() -> Registry:
    """The tables, built once (the handler modules import this one, hence the late import)."""
    from . import ask, binding, dialogue

    return Registry(
        messages={
            "text": on_text,
            "voice": dialogue.on_voice,
            "image": dialogue.on_image,
            "location": dialogue.on_location,
        },
        events={
            "subscribe": binding.on_subscribe,
            "scan": binding.on_scan,
            "unsubscribe": binding.on_unsubscribe,
            "click": on_click,
            "view": no_reply,
            "location": no_reply,
            "templatesendjobfinish": no_reply,
        },
        menu={
            "REPORT": dialogue.start_report,
            "ASK": ask.prompt,
            "PROGRESS": dialogue.show_progress,
            "CONTACT": dialogue.contact,
        },
        intents={
            "report": dialogue.report_from_text,
            "question": ask.on_question,
            "progress": dialogue.show_progress,
            "greeting": _greeting,
            "other": _other,
        },
        words={
            "更多": ask.more,
            "回电": dialogue.callback,
            "取消": dialogue.cancel_outside,
            "帮助": _help,
            "help": _help,
        },
    )


_STRIP_RE = re.compile(r"[\s，。！？!?,.、~～…]+")


def normalize_word(text: str) -> str:
    """``" 进度！"`` → ``"进度"``: how typed keywords are compared."""
    return _STRIP_RE.sub("", text).lower()


def on_click(ctx: Context, msg: Inbound, who: Chatter):
    handler = registry().menu.get(msg.event_key)
    if handler is None:
        log.warning("unknown menu key %r", msg.event_key[:40])
        return T.HELP
    return handler(ctx, msg, who)


def on_text(ctx: Context, msg: Inbound, who: Chatter):
    """Typed text: menu words, then an open dialogue, then other words, then the classifier."""
    from . import dialogue

    text = msg.content.strip()
    if not text:
        return T.HELP
    reg = registry()
    word = normalize_word(text)
    if word in KEYWORD_MENU:
        return reg.menu[KEYWORD_MENU[word]](ctx, msg, who)
    if word in GLOBAL_WORDS:
        return reg.words[word](ctx, msg, who)
    state = dialogue.current(ctx, who)
    if state is not None:
        return dialogue.continue_text(ctx, msg, who, state, text)
    if word in reg.words:
        return reg.words[word](ctx, msg, who)
    understanding = classify(text)
    intent = str(getattr(understanding.intent, "value", understanding.intent)) if understanding else "question"
    handler = reg.intents.get(intent, reg.intents["question"])
    if intent == "report":
        return dialogue.report_from_text(ctx, msg, who, understanding=understanding)
    return handler(ctx, msg, who)


def classify(text: str):
    """The understanding module's reading of ``text``, or None while it is not installed."""
    try:
        from .understanding import classify as _classify
    except ImportError:  # pragma: no cover - the module ships with the service
        return None
    return _classify(text)


def chatter(ctx: Context, openid: str) -> Chatter:
    with session_scope(ctx.engine) as session:
        return Chatter.of(get_or_create_wechat_user(session, openid=openid, app="oa"))


def dispatch(ctx: Context, msg: Inbound, who: Chatter | None = None) -> Reply:
    """Route one message to its handler. Never raises: a use-case error becomes its Chinese
    message, anything unexpected is logged and answered with :data:`chat_texts.SYSTEM_BUSY`."""
    reg = registry()
    try:
        who = who or chatter(ctx, msg.openid)
        if msg.msg_type == "event":
            handler = reg.events.get(msg.event, no_reply)
        else:
            handler = reg.messages.get(msg.msg_type, short_help)
        result = handler(ctx, msg, who)
    except HandlerError as exc:
        return Reply(exc.message)
    except Exception:
        log.exception("handling %s from a WeChat user failed", msg.kind)
        return Reply(T.SYSTEM_BUSY)
    if isinstance(result, Reply):
        return result
    return Reply(result or None)


# --- inbound bookkeeping -----------------------------------------------------------------------

DEFERRED = json.dumps({"state": "deferred"})


@dataclass
class Receipt:
    inbound_id: int
    created: bool
    #: The sender, read in the same transaction (one round trip less per message).
    who: Chatter | None = None


@dataclass
class Stored:
    """What is stored for a message: ``pending`` (being processed), ``deferred`` (the edge
    answered "success"; the outbox will deliver), or ``done`` with ``text`` and ``via``."""

    state: str
    text: str | None = None
    via: str = "passive"
    received_at: dt.datetime | None = None

    @property
    def passive_text(self) -> str | None:
        """What a retry may answer directly: the reply, unless the outbox delivers it."""
        return self.text if self.state == "done" and self.via == "passive" else None


def _decode(raw: str | None, received_at=None) -> Stored:
    if raw is None:
        return Stored("pending", received_at=received_at)
    try:
        data = json.loads(raw)
    except ValueError:
        return Stored("done", text=raw, received_at=received_at)
    if data.get("state") == "deferred":
        return Stored("deferred", received_at=received_at)
    return Stored("done", text=data.get("text"), via=data.get("via", "passive"), received_at=received_at)


def _encode(text: str | None, via: str) -> str:
    return json.dumps({"state": "done", "text": text, "via": via}, ensure_ascii=False)


def answered_record(text: str | None) -> str:
    """What is stored with a message answered passively (what a retry of it gets)."""
    return _encode(text, "passive")


def asks_to_report(msg: Inbound) -> bool:
    """The 一键申报 menu key, or a typed word that does the same (申报, 我要申报 …)."""
    if msg.msg_type == "event":
        return msg.event == "click" and msg.event_key == "REPORT"
    return msg.msg_type == "text" and KEYWORD_MENU.get(normalize_word(msg.content)) == "REPORT"


def receive(ctx: Context, msg: Inbound) -> Receipt:
    """Record the message; ``created`` is False for a retry (or a replay) of one already seen."""
    with session_scope(ctx.engine) as session:
        row, created = claim_inbound(session, source=msg.openid, dedupe_key=msg.dedupe_key, msg_type=msg.kind)
        who = Chatter.of(get_or_create_wechat_user(session, openid=msg.openid, app="oa")) if created else None
        return Receipt(row.id, created, who)


def poll(ctx: Context, inbound_id: int) -> Stored:
    with session_scope(ctx.engine) as session:
        state = inbound_state(session, inbound_id)
    if state is None:
        return Stored("pending")
    return _decode(state[0], state[1])


def complete(ctx: Context, inbound_id: int, msg: Inbound, reply: Reply) -> bool:
    """Store the reply. True: the edge may answer it passively. False: the edge had already
    deferred, so the reply went to the outbox instead (or another copy finished first)."""
    with session_scope(ctx.engine) as session:
        if reply_once(session, inbound_id, _encode(reply.text, "passive"), case_id=reply.case_id):
            return True
        if replace_reply(session, inbound_id, expected=DEFERRED, reply=_encode(reply.text, "outbox"),
                         case_id=reply.case_id):
            if reply.text:
                enqueue(session, kind="text", recipient=msg.openid, payload={"content": fit(reply.text)},
                        dedupe_key=f"reply:{inbound_id}", case_id=reply.case_id)
        return False


def defer(ctx: Context, inbound_id: int) -> Stored:
    """Mark the message as answered with "success". Returns ``deferred``, or, when the work
    finished in the meantime, what was stored (answer it)."""
    with session_scope(ctx.engine) as session:
        if reply_once(session, inbound_id, DEFERRED):
            return Stored("deferred")
        state = inbound_state(session, inbound_id)
    return _decode(state[0] if state else None)


def stale(stored: Stored, now: dt.datetime | None = None) -> bool:
    """The first copy should have finished long ago (it died): a retry may take over."""
    if stored.state == "done" or stored.received_at is None:
        return False
    return (now or utcnow()) - stored.received_at > dt.timedelta(seconds=LEASE_SECONDS)


def take_over(ctx: Context, inbound_id: int, stored: Stored) -> bool:
    """Claim the processing of a message whose first copy died; True for exactly one caller."""
    with session_scope(ctx.engine) as session:
        return _take_over_row(session, inbound_id, seen_received_at=stored.received_at, unfinished=(DEFERRED,))


def fit(text: str, limit: int = 2000) -> str:
    """``text`` cut (at a line end when possible) to the size WeChat accepts for one text."""
    data = text.encode("utf-8")
    if len(data) <= limit:
        return text
    cut = data[: limit - 3].decode("utf-8", "ignore")
    if "\n" in cut[len(cut) // 2:]:
        cut = cut[: cut.rindex("\n")]
    return cut + "…"

"""The single dispatch registry of the official account, and the edge's entry to the bookkeeping.

Every message or event WeChat pushes arrives here as an :class:`Inbound` (built by
``bot/wechat/codec.py``) and is routed by one table lookup:

- message type → handler (text, voice, image, location; anything else → a short help reply);
- event → handler (subscribe, SCAN, CLICK; LOCATION, VIEW, TEMPLATESENDJOBFINISH, unsubscribe and
  unknown events get no answer, only the record);
- menu key (CLICK ``EventKey``) → handler (``REPORT`` / ``ASK`` / ``PROGRESS`` / ``CONTACT``);
- typed keyword → the same handlers (申报 / 我要申报 → ``REPORT``, 进度 → ``PROGRESS`` …);
- free text → ``handlers.understanding.classify`` → intent → handler.

The table imports the handler modules (ask, binding, dialogue); they import the shared types from
:mod:`handlers.chat_types`, never this module. The inbound bookkeeping (:func:`receive`,
:func:`complete`, :func:`defer`, :func:`poll`, :func:`take_over`: each message recorded and
answered once) lives in :mod:`handlers.receipts` and is re-exported here for the edge.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
from dataclasses import dataclass, field

from storage import session_scope
from storage.people import get_or_create_wechat_user

from . import ask, binding, dialogue
from . import chat_texts as T
from .chat_types import Chatter, Handler, Inbound, Reply, normalize_word
from .context import Context
from .errors import HandlerError
from .receipts import (
    DEFERRED,
    LEASE_SECONDS,
    Receipt,
    Stored,
    answered_record,
    complete,
    defer,
    fit,
    poll,
    receive,
    stale,
    take_over,
)
from .understanding import classify

__all__ = [
    "DEFERRED", "GLOBAL_WORDS", "KEYWORD_MENU", "LEASE_SECONDS", "MENU_KEYS", "Chatter", "Handler", "Inbound",
    "Receipt", "Registry", "Reply", "Stored", "answered_record", "asks_to_report", "chatter", "classify",
    "complete", "defer", "dispatch", "fit", "no_reply", "normalize_word", "on_click", "on_text", "on_voice",
    "poll", "receive", "registry", "short_help", "stale", "take_over",
]

log = logging.getLogger(__name__)

#: The menu's EventKeys; keep them stable (bot/wechat/menu.py builds the menu from them).
MENU_KEYS: tuple[str, ...] = ("REPORT", "ASK", "PROGRESS", "CONTACT")
#: Typed words that do what a menu key does; keep them stable.
KEYWORD_MENU: dict[str, str] = {"申报": "REPORT", "我要申报": "REPORT", "一键申报": "REPORT", "进度": "PROGRESS",
                                "查进度": "PROGRESS", "我的申报": "PROGRESS", "联系村干部": "CONTACT"}
#: Words that work even in the middle of a dialogue (the others, like 取消, belong to it there).
GLOBAL_WORDS = frozenset({"回电", "帮助", "help"})


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
    if len(normalize_word(msg.content)) < 4:
        return T.HELP
    return ask.on_question(ctx, msg, who)


@functools.cache
def registry() -> Registry:
    """The tables, built once."""
    return Registry(
        messages={
            "text": on_text,
            "voice": on_voice,
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


def on_click(ctx: Context, msg: Inbound, who: Chatter):
    handler = registry().menu.get(msg.event_key)
    if handler is None:
        log.warning("unknown menu key %r", msg.event_key[:40])
        return T.HELP
    return handler(ctx, msg, who)


def on_text(ctx: Context, msg: Inbound, who: Chatter):
    """Typed text: menu words, then an open dialogue, then other words, then the classifier."""
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


def on_voice(ctx: Context, msg: Inbound, who: Chatter):
    """A voice message: WeChat's ``Recognition`` is handled as typed text; without it the voice
    is kept as evidence (:func:`handlers.dialogue.on_voice`)."""
    if msg.recognition.strip():
        return on_text(ctx, dataclasses.replace(msg, content=msg.recognition), who)
    return dialogue.on_voice(ctx, msg, who)


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


def asks_to_report(msg: Inbound) -> bool:
    """The 一键申报 menu key, or a typed word that does the same (申报, 我要申报 …)."""
    if msg.msg_type == "event":
        return msg.event == "click" and msg.event_key == "REPORT"
    return msg.msg_type == "text" and KEYWORD_MENU.get(normalize_word(msg.content)) == "REPORT"

"""Policy questions in chat: the quoted clause with its citation, and "更多" for the next one.

The answer text comes from ``ctx.kb().answer(question, region, offset)`` (WeChat-ready, quoted
clause, document, issuer, date, section). The asker's county (from the bound household or the
village they gave) is passed as the region, so their own county's and province's documents come
first. The last question of each user is kept in ``ctx.kv`` for a day so "更多" can continue it
on any worker. When the index is missing or stale the villager is told so in plain Chinese.
"""

from __future__ import annotations

import json
import logging

from storage import session_scope
from storage.regions import get_region, regions_by_ids

from . import chat_texts as T
from .chat_types import Chatter, Inbound
from .context import Context

log = logging.getLogger(__name__)

MAX_QUESTION_CHARS = 200
LAST_TTL = 24 * 3600


def _key(openid: str) -> str:
    return f"wechat:ask:{openid}"


def _knowledge(ctx: Context):
    """The knowledge base, or None when it cannot be loaded (missing or stale index …)."""
    try:
        kb = ctx.kb()
    except Exception as exc:  # the index is optional at run time: say so, don't fail
        log.warning("knowledge base unavailable: %s", str(exc)[:200])
        return None
    return kb if kb is not None and hasattr(kb, "answer") else None


def county_of(ctx: Context, who: Chatter) -> str | None:
    """The name of the asker's county (e.g. 白河县), for region preference."""
    if who.village_id is None:
        return None
    with session_scope(ctx.engine) as session:
        village = get_region(session, who.village_id)
        if village is None:
            return None
        ids = [int(x) for x in village.path.strip("/").split("/") if x]
        for region in regions_by_ids(session, ids):
            if region.level == "county":
                return region.name
    return None


def _text(answer) -> str:
    text = answer.text or ""
    if not answer.answerable and "申报" not in text and "村干部" not in text:
        text += T.NOT_ANSWERED
    return text


def answer_question(ctx: Context, who: Chatter, question: str) -> str:
    """Answer ``question`` and remember it for "更多"."""
    question = question.strip()[:MAX_QUESTION_CHARS]
    kb = _knowledge(ctx)
    if kb is None:
        return T.KB_UNAVAILABLE
    region = county_of(ctx, who)
    try:
        answer = kb.answer(question, region=region, offset=0)
    except Exception:
        log.exception("answering a question failed")
        return T.KB_UNAVAILABLE
    state = {"q": question, "region": region, "next": getattr(answer, "next_offset", None)}
    ctx.kv.set(_key(who.openid), json.dumps(state, ensure_ascii=False), ttl=LAST_TTL)
    return _text(answer)


def on_question(ctx: Context, msg: Inbound, who: Chatter, *, question: str | None = None) -> str:
    return answer_question(ctx, who, question or msg.content)


def more(ctx: Context, msg: Inbound, who: Chatter) -> str:
    """The next passage for the user's last question."""
    raw = ctx.kv.get(_key(who.openid))
    if not raw:
        return T.NO_LAST_QUESTION
    state = json.loads(raw)
    if state.get("next") is None:
        return T.NO_MORE.format(question=state["q"][:30])
    kb = _knowledge(ctx)
    if kb is None:
        return T.KB_UNAVAILABLE
    try:
        answer = kb.answer(state["q"], region=state.get("region"), offset=int(state["next"]))
    except Exception:
        log.exception("answering 更多 failed")
        return T.KB_UNAVAILABLE
    state["next"] = getattr(answer, "next_offset", None)
    ctx.kv.set(_key(who.openid), json.dumps(state, ensure_ascii=False), ttl=LAST_TTL)
    if not answer.passages and not answer.answerable:
        return T.NO_MORE.format(question=state["q"][:30])
    return _text(answer)


def prompt(ctx: Context, msg: Inbound, who: Chatter) -> str:
    """The 政策问答 menu button."""
    return T.ASK_PROMPT

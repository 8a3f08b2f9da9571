"""Policy questions and topics of the mini-program: answers quoted from the documents."""

from __future__ import annotations

import logging

from storage import session_scope
from storage.people import wechat_user
from storage.regions import ancestors, get_region

from . import miniprogram_models as M
from . import miniprogram_texts as T
from .context import Context
from .errors import ServiceUnavailable, ValidationError

log = logging.getLogger(__name__)


def _passage(hit) -> M.Passage:
    def s(name):
        value = getattr(hit, name, "")
        return "" if value is None else str(value)

    region = getattr(hit, "region", None)
    region = {str(k): (None if v is None else str(v)) for k, v in region.items()} if isinstance(region, dict) else {}
    doc_no = getattr(hit, "doc_no", None)
    return M.Passage(doc=s("doc"), title=s("title"), issuer=s("issuer"), date=s("date"),
                     doc_no=None if doc_no is None else str(doc_no), section=s("section"), text=s("text"),
                     start=int(getattr(hit, "start", 0) or 0), end=int(getattr(hit, "end", 0) or 0),
                     score=float(getattr(hit, "score", 0.0) or 0.0), region=region,
                     display=s("display") or s("text"))


def user_region(ctx: Context, user_id: int | None) -> str | None:
    """The county of the user's household (the asker's own documents rank first), if bound."""
    if user_id is None:
        return None
    with session_scope(ctx.engine) as session:
        user = wechat_user(session, user_id)
        village = get_region(session, user.village_id) if user and user.village_id else None
        if village is None:
            return None
        chain = ancestors(session, village)
        county = next((r for r in chain if r.level == "county"), None)
        return county.name if county else None


def ask(ctx: Context, *, question: str, region: str | None = None, offset: int = 0,
        user_id: int | None = None) -> M.Answer:
    """A policy question answered from the documents, with the quoted passages and their offsets."""
    question = question.strip()
    if not question:
        raise ValidationError(T.QUESTION_EMPTY, field="question", code="required")
    region = (region or "").strip() or user_region(ctx, user_id)
    try:
        kb = ctx.kb()
    except Exception as exc:  # a missing or stale index: say so, don't crash
        log.warning("knowledge base unavailable: %s: %s", type(exc).__name__, str(exc)[:300])
        kb = None
    if kb is None:
        raise ServiceUnavailable(T.INDEX_UNAVAILABLE, code="index_unavailable")
    answer = kb.answer(question, region=region, offset=offset)
    return M.Answer(text=answer.text, answerable=bool(answer.answerable), region=region,
                    passages=[_passage(h) for h in answer.passages], next_offset=answer.next_offset)


def policy_topics() -> list[M.Topic]:
    return [M.Topic(code=code, title=title, description=desc, examples=list(examples))
            for code, title, desc, examples in T.POLICY_TOPICS]

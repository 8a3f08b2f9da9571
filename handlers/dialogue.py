"""The one-click report dialogue (一键申报) and the other turns that belong to a villager's case.

Two flows, their state kept in ``ctx.kv`` (a database table, or Redis when configured) so any
worker process continues them:

- **details** — a bound household (or a reporter we already know) taps 一键申报: the case is
  created at once and the reply gives its reference. Then, optionally, a numbered choice of risk
  types and a free-text / voice / photo description, each turn stored on the case at once. "好了"
  ends it; a description that shows sudden hardship moves the case to the green channel.
- **register** — an unknown sender: name, village, phone and consent to 承诺授权, in as few turns as
  possible (one message may carry several answers), "取消" and "返回" at every step. Consent files
  the case and the details flow follows.

This module holds the entry points the dispatch table (:mod:`handlers.routing`) calls; the flows
are :mod:`handlers.dialogue_register` and :mod:`handlers.dialogue_details`, their shared state
and the filing of the case :mod:`handlers.dialogue_state`.

Voice: ``Recognition`` is handled as typed text when WeChat filled it in (``routing.on_voice``);
otherwise the voice is attached to the open case as evidence (:func:`on_voice` here) and the
villager is asked for a few words of text or offered a call-back.
"""

from __future__ import annotations

import time

from storage import session_scope
from storage.cases import add_attachment, add_event, get_case, open_case_for
from storage.people import staff_in_region
from storage.regions import get_region

from . import chat_texts as T
from .ask import answer_question
from .chat_types import Chatter, Inbound, Reply
from .context import Context
from .dialogue_details import details_turn
from .dialogue_register import advance, prompt, register_turn
from .dialogue_state import RECENT_SECONDS, STATE_TTL, current, file_case, known_reporter, save
from .report import progress, progress_text

__all__ = [
    "RECENT_SECONDS", "STATE_TTL", "callback", "cancel_outside", "contact", "continue_text", "current",
    "on_image", "on_location", "on_voice", "report_from_text", "show_progress", "start_report",
]


# --- starting a report ----------------------------------------------------------------------------


def start_report(ctx: Context, msg: Inbound, who: Chatter) -> Reply | str:
    """一键申报 (the REPORT menu key, or the words 申报 / 我要申报)."""
    state = current(ctx, who)
    if state and state["flow"] == "register":
        return prompt(state)
    if state and state["flow"] == "details" and time.time() - state.get("at", 0) < RECENT_SECONDS:
        return T.RECENT_CASE.format(ref=state["ref"])
    if known_reporter(who):
        return file_case(ctx, msg, who)
    state = {"flow": "register", "stage": "", "media": []}
    return advance(ctx, msg, who, state)


def report_from_text(ctx: Context, msg: Inbound, who: Chatter, *, understanding=None) -> Reply | str:
    """Free text that reads like a report ("老伴住院了没钱交押金"): file it with that description
    (bound or known reporter) or start the short registration with it."""
    risks = [str(getattr(r, "value", r)) for r in getattr(understanding, "risk_types", ())]
    if known_reporter(who):
        reply = file_case(ctx, msg, who, description=msg.content, risk_types=risks)
    else:
        state = {"flow": "register", "stage": "", "media": [], "description": msg.content, "risk_types": risks}
        reply = Reply(advance(ctx, msg, who, state))
    question = getattr(understanding, "question_text", None) if getattr(understanding, "also_question", False) else None
    if question:
        reply.text = f"{reply.text}\n\n{answer_question(ctx, who, question)}"
    return reply


def continue_text(ctx: Context, msg: Inbound, who: Chatter, state: dict, text: str) -> Reply | str:
    if state["flow"] == "register":
        return register_turn(ctx, msg, who, state, text)
    return details_turn(ctx, msg, who, state, text)


# --- evidence: voice, photos, location -----------------------------------------------------------


def _evidence_case(ctx: Context, who: Chatter, state: dict | None):
    """The case that evidence belongs to: the one being completed, else the newest open one."""
    with session_scope(ctx.engine) as session:
        if state and state["flow"] == "details":
            case = get_case(session, state["case_id"])
            if case is not None and case.closed_at is None:
                return case
        return open_case_for(session, household_id=who.household_id, reporter_id=who.id)


def _attach(ctx: Context, who: Chatter, case, **fields) -> None:
    with session_scope(ctx.engine) as session:
        add_attachment(session, case, **fields)
        add_event(session, case, action="evidence", actor_kind="villager", actor_id=who.id,
                  actor_name=who.name, data={"kind": fields["kind"]})


def on_voice(ctx: Context, msg: Inbound, who: Chatter):
    """A voice without ``Recognition`` (the dispatch table routes a recognised one as text)."""
    state = current(ctx, who)
    if state and state["flow"] == "register":
        return T.VOICE_NO_TEXT + "\n" + prompt(state)
    case = _evidence_case(ctx, who, state)
    if case is None:
        return T.VOICE_NO_TEXT
    _attach(ctx, who, case, kind="voice", media_id=msg.media_id[:255] or None)
    return Reply(T.VOICE_SAVED.format(ref=case.ref), case_id=case.id)


def on_image(ctx: Context, msg: Inbound, who: Chatter):
    state = current(ctx, who)
    media = {"kind": "image", "media_id": msg.media_id[:255] or None, "url": msg.pic_url[:1024] or None}
    if state and state["flow"] == "register":
        state.setdefault("media", []).append(media)
        save(ctx, who, state)
        return T.IMAGE_KEPT + "\n" + prompt(state)
    case = _evidence_case(ctx, who, state)
    if case is None:
        return T.REPORT_FIRST
    _attach(ctx, who, case, **media)
    return Reply(T.IMAGE_SAVED.format(ref=case.ref), case_id=case.id)


def on_location(ctx: Context, msg: Inbound, who: Chatter):
    case = _evidence_case(ctx, who, current(ctx, who))
    if case is None or msg.latitude is None or msg.longitude is None:
        return T.LOCATION_NO_CASE
    _attach(ctx, who, case, kind="location", url=f"geo:{msg.latitude},{msg.longitude}")
    return Reply(T.LOCATION_SAVED.format(ref=case.ref), case_id=case.id)


# --- progress, contact, call-back ------------------------------------------------------------------


def show_progress(ctx: Context, msg: Inbound, who: Chatter) -> str:
    """我的申报 / 进度: the sender's cases with step and deadline."""
    return progress_text(progress(ctx, reporter_id=who.id, household_id=who.household_id))


def contact(ctx: Context, msg: Inbound, who: Chatter) -> str:
    """联系村干部: the village and its staff, and the offer of a call-back."""
    with session_scope(ctx.engine) as session:
        village = get_region(session, who.village_id)
        if village is None:
            return T.CONTACT_UNKNOWN
        staff = staff_in_region(session, region_path_prefix=village.path, roles=("village",))
        names = "、".join(s.display_name for s in staff if s.display_name)
    return T.CONTACT.format(village=village.name, staff=T.CONTACT_STAFF.format(names=names) if names else "")


def callback(ctx: Context, msg: Inbound, who: Chatter) -> Reply | str:
    """回电: ask the village cadre to phone back (recorded on the open case's timeline)."""
    case = _evidence_case(ctx, who, current(ctx, who))
    if case is None:
        return T.CALLBACK_NO_CASE
    with session_scope(ctx.engine) as session:
        add_event(session, case, action="callback_requested", actor_kind="villager", actor_id=who.id,
                  actor_name=who.name, note="villager asked for a phone call back")
    return Reply(T.CALLBACK_OK.format(ref=case.ref), case_id=case.id)


def cancel_outside(ctx: Context, msg: Inbound, who: Chatter) -> str:
    return T.NOTHING_TO_CANCEL

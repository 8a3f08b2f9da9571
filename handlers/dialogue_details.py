"""Completing a filed case in chat: a numbered choice of risk types, then free-text descriptions.

Each turn is stored on the case at once; "好了" ends the flow; a description that shows sudden
hardship moves the case to the green channel.
"""

from __future__ import annotations

import re

from storage import session_scope
from storage.cases import (
    add_event,
    append_description,
    get_case,
    mark_urgent,
    set_reporter_phone,
    set_risk_types,
)
from storage.enums import RiskType
from storage.regions import get_region

from . import chat_texts as T
from . import texts
from .chat_types import Chatter, Inbound, Reply, normalize_word
from .context import Context
from .dialogue_state import BACK_WORDS, CANCEL_WORDS, DONE_WORDS, clear, save
from .pii import find_pii, mask_pii
from .report import notify_urgent
from .understanding import classify

_CHOICES_RE = re.compile(r"^[\d\s,，、和及.。]+$")


def _parse_risks(text: str) -> list[str] | None:
    """Numbers from the risk menu ("1 4") or risk labels ("因病"); None when it is neither."""
    if _CHOICES_RE.match(text):
        numbers = [int(n) for n in re.findall(r"\d+", text)]
        if not numbers or any(not 1 <= n <= len(texts.RISK_CHOICES) for n in numbers):
            return []
        return list(dict.fromkeys(texts.RISK_CHOICES[n - 1].value for n in numbers))
    parts = [p for p in re.split(r"[\s,，、和及]+", text.strip()) if p]
    codes = []
    for part in parts:
        try:
            codes.append(RiskType.parse(part).value)
        except ValueError:
            return None
    return list(dict.fromkeys(codes)) or None


def details_turn(ctx: Context, msg: Inbound, who: Chatter, state: dict, text: str) -> Reply | str:
    word = normalize_word(text)
    ref = state["ref"]
    if word in CANCEL_WORDS:
        clear(ctx, who)
        return T.DETAILS_CLOSED.format(ref=ref)
    if word in DONE_WORDS:
        clear(ctx, who)
        return T.DESCRIBE_DONE.format(ref=ref)
    if word in BACK_WORDS:
        state["stage"] = "risk"
        save(ctx, who, state)
        return texts.ASK_RISK.format(menu=texts.risk_menu())
    if state["stage"] == "risk":
        codes = _parse_risks(text)
        if codes == []:
            return T.RISK_UNKNOWN
        if codes:
            with session_scope(ctx.engine) as session:
                case = get_case(session, state["case_id"])
                set_risk_types(session, case, codes)
                add_event(session, case, action="risk_types", actor_kind="villager", actor_id=who.id,
                          actor_name=who.name, data={"risk_types": codes})
            state["stage"] = "describe"
            save(ctx, who, state)
            labels = "、".join(RiskType.parse(c).label for c in codes)
            return Reply(T.RISK_SAVED.format(labels=labels) + texts.ASK_DESCRIPTION, case_id=state["case_id"])
    return _describe(ctx, who, state, text)


def _describe(ctx: Context, who: Chatter, state: dict, text: str) -> Reply:
    """One turn of description: masked, stored on the case, and checked for sudden hardship."""
    found = find_pii(text)
    masked = mask_pii(text)
    understanding = classify(text)
    urgent_now = False
    with session_scope(ctx.engine) as session:
        case = get_case(session, state["case_id"])
        append_description(session, case, masked, max_chars=ctx.max_description_chars)
        add_event(session, case, action="described", actor_kind="villager", actor_id=who.id,
                  actor_name=who.name, note=masked[:1000])
        if found.phones and not case.reporter_phone_enc:
            set_reporter_phone(session, case, phone_enc=ctx.cipher.encrypt(found.phones[0]),
                               phone_idx=ctx.cipher.blind_index(found.phones[0]))
        if understanding is not None:
            if not case.risk_types and understanding.risk_types:
                set_risk_types(session, case, [str(getattr(r, "value", r)) for r in understanding.risk_types])
            if understanding.urgent and not case.urgent:
                reasons = "；".join(understanding.reasons)
                mark_urgent(session, case, reasons)
                add_event(session, case, action="urgent", actor_kind="system", note=reasons[:500])
                village = get_region(session, case.village_id)
                if village is not None:
                    notify_urgent(session, case_id=case.id, ref=case.ref, reasons=case.urgent_reasons,
                                  village=village)
                urgent_now = True
    state["stage"] = "describe"
    save(ctx, who, state)
    template = T.DESCRIBE_URGENT if urgent_now else T.DESCRIBE_SAVED
    return Reply(template.format(ref=state["ref"]), case_id=state["case_id"])

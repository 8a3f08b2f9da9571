"""The registration of an unknown reporter: name, village, phone and consent to 承诺授权.

As few turns as possible (one message may carry several answers), "取消" and "返回" at every
step. Consent files the case (:func:`handlers.dialogue_state.file_case`) and the details flow
follows.
"""

from __future__ import annotations

import re

from storage import session_scope
from storage.cases import add_attachment, get_case
from storage.models import utcnow
from storage.people import get_or_create_wechat_user, save_reporter_details
from storage.regions import find_villages, get_region

from . import chat_texts as T
from .chat_types import Chatter, Inbound, Reply, normalize_word
from .context import Context
from .dialogue_state import BACK_WORDS, CANCEL_WORDS, NO_WORDS, SKIP_WORDS, YES_WORDS, clear, file_case, save
from .report import PHONE_RE

REGISTER_ORDER = ("name", "village", "phone", "consent")

_PHONE_IN_TEXT = re.compile(r"(?<!\d)1[3-9]\d{9}(?!\d)")
_NAME_NOISE = re.compile(r"^(我叫|我是|姓名|名字|叫)[:：\s]*")


def missing(state: dict, who: Chatter) -> str:
    if not (state.get("name") or who.name):
        return "name"
    if not (state.get("village_id") or who.village_id):
        return "village"
    if "phone" not in state and not who.has_phone:
        return "phone"
    return "consent"


def prompt(state: dict) -> str:
    stage = state["stage"]
    if stage == "village_pick":
        choices = "\n".join(f"{i}. {name}" for i, (_, name) in enumerate(state["choices"], 1))
        return T.PICK_VILLAGE.format(choices=choices)
    return {"name": T.ASK_NAME, "village": T.ASK_VILLAGE, "phone": T.ASK_PHONE, "consent": T.ASK_CONSENT}[stage]


def advance(ctx: Context, msg: Inbound, who: Chatter, state: dict, note: str | None = None) -> str:
    if state["stage"] != "village_pick":
        state["stage"] = missing(state, who)
    save(ctx, who, state)
    return (note + "\n" if note else "") + prompt(state)


def _extract(ctx: Context, state: dict, text: str) -> None:
    """Take a phone number and a village name from any turn (one message may answer several)."""
    phone = _PHONE_IN_TEXT.search(text)
    if phone and "phone" not in state:
        state["phone"] = phone.group(0)
    if not state.get("village_id"):
        with session_scope(ctx.engine) as session:
            villages = find_villages(session, _PHONE_IN_TEXT.sub("", text))
        exact = [v for v in villages if v.name in text]
        if len(exact) == 1:
            state["village_id"], state["village_name"] = exact[0].id, exact[0].name


def _name_from(text: str, state: dict) -> str | None:
    text = _PHONE_IN_TEXT.sub("", text)
    if state.get("village_name"):
        text = text.replace(state["village_name"], "")
    text = _NAME_NOISE.sub("", text.strip())
    text = re.sub(r"[\s,，。.、:：的人]+$", "", re.sub(r"^[\s,，。.、:：]+", "", text))
    if 2 <= len(text) <= 10 and re.fullmatch(r"[\u4e00-\u9fa5·a-zA-Z ]+", text):
        return text
    return None


def register_turn(ctx: Context, msg: Inbound, who: Chatter, state: dict, text: str) -> Reply | str:
    word = normalize_word(text)
    stage = state["stage"]
    if word in CANCEL_WORDS:
        clear(ctx, who)
        return T.CANCELLED
    if word in BACK_WORDS:
        current_stage = "village" if stage == "village_pick" else stage
        index = REGISTER_ORDER.index(current_stage)
        if index > 0:
            previous = REGISTER_ORDER[index - 1]
            state.pop({"name": "name", "village": "village_id", "phone": "phone"}[previous], None)
            state.pop("choices", None)
            state["stage"] = previous
            save(ctx, who, state)
        return prompt(state)
    if stage == "consent":
        if word in YES_WORDS:
            return _consented(ctx, msg, who, state)
        if word in NO_WORDS:
            clear(ctx, who)
            return T.NO_CONSENT
        return T.CONSENT_AGAIN
    if stage == "village_pick":
        choice = int(word) if word.isdigit() else 0
        if not 1 <= choice <= len(state["choices"]):
            return prompt(state)
        state["village_id"], state["village_name"] = state.pop("choices")[choice - 1]
        state["stage"] = ""
        return advance(ctx, msg, who, state)
    if stage == "phone" and word in SKIP_WORDS:
        state["phone"] = None
        return advance(ctx, msg, who, state)
    _extract(ctx, state, text)
    if stage == "name" and not state.get("name"):
        name = _name_from(text, state)
        if name is None:
            return T.BAD_NAME
        state["name"] = name
    elif stage == "village" and not state.get("village_id"):
        with session_scope(ctx.engine) as session:
            villages = find_villages(session, text.strip())
        if not villages:
            return T.ASK_VILLAGE_AGAIN.format(text=text.strip()[:20])
        if len(villages) > 1:
            with session_scope(ctx.engine) as session:
                labels = [_village_label(session, v) for v in villages]
            state["choices"] = [(v.id, label) for v, label in zip(villages, labels, strict=True)]
            state["stage"] = "village_pick"
            save(ctx, who, state)
            return prompt(state)
        state["village_id"], state["village_name"] = villages[0].id, villages[0].name
    elif stage == "phone" and "phone" not in state:
        return T.BAD_PHONE
    return advance(ctx, msg, who, state)


def _village_label(session, village) -> str:
    parent = get_region(session, village.parent_id)
    return f"{parent.name}{village.name}" if parent else village.name


def _consented(ctx: Context, msg: Inbound, who: Chatter, state: dict) -> Reply:
    phone = state.get("phone")
    if phone and not PHONE_RE.match(phone):
        phone = None
    reply = file_case(ctx, msg, who, name=state.get("name", ""), village_id=state.get("village_id"), phone=phone,
                  description=state.get("description", ""), risk_types=state.get("risk_types") or [])
    with session_scope(ctx.engine) as session:
        user = get_or_create_wechat_user(session, openid=who.openid)
        save_reporter_details(
            session, user, name=state.get("name"), village_id=state.get("village_id"),
            phone_enc=ctx.cipher.encrypt(phone) if phone else None, consented_at=utcnow(),
        )
        case = get_case(session, reply.case_id)
        for media in state.get("media", []):
            add_attachment(session, case, **media)
    return reply

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

Voice: ``Recognition`` is used when WeChat filled it in; otherwise the voice is attached to the
open case as evidence and the villager is asked for a few words of text or offered a call-back.
"""

from __future__ import annotations

import dataclasses
import json
import re
import time

from storage import session_scope
from storage.cases import add_attachment, add_event, open_case_for, set_risk_types
from storage.enums import RiskType
from storage.inbound import (
    append_description,
    get_case,
    get_region,
    mark_urgent,
    save_reporter_details,
    set_reporter_phone,
)
from storage.models import utcnow
from storage.people import get_or_create_wechat_user, staff_in_region
from storage.regions import find_villages

from . import chat_texts as T
from . import texts
from .context import Context
from .report import PHONE_RE, ReportInput, progress, progress_text, submit
from .routing import Chatter, Inbound, Reply, classify, normalize_word

STATE_TTL = 30 * 60
#: A second 一键申报 within this many seconds continues the case just filed instead of a new one.
RECENT_SECONDS = 10 * 60

DONE_WORDS = {"好了", "好", "完了", "没了", "没有了", "就这些", "结束", "完成", "提交"}
BACK_WORDS = {"返回", "上一步"}
CANCEL_WORDS = {"取消", "退出", "不报了"}
YES_WORDS = {"同意", "同意授权", "我同意", "可以", "好的", "是", "行", "愿意"}
NO_WORDS = {"不同意", "不愿意", "不", "否", "拒绝"}
SKIP_WORDS = {"跳过", "没有", "无", "没"}
REGISTER_ORDER = ("name", "village", "phone", "consent")

_PHONE_IN_TEXT = re.compile(r"(?<!\d)1[3-9]\d{9}(?!\d)")
_CHOICES_RE = re.compile(r"^[\d\s,，、和及.。]+$")
_NAME_NOISE = re.compile(r"^(我叫|我是|姓名|名字|叫)[:：\s]*")


# --- state ----------------------------------------------------------------------------------


def _key(openid: str) -> str:
    return f"wechat:dlg:{openid}"


def current(ctx: Context, who: Chatter) -> dict | None:
    raw = ctx.kv.get(_key(who.openid))
    return json.loads(raw) if raw else None


def _save(ctx: Context, who: Chatter, state: dict) -> None:
    ctx.kv.set(_key(who.openid), json.dumps(state, ensure_ascii=False), ttl=STATE_TTL)


def _clear(ctx: Context, who: Chatter) -> None:
    ctx.kv.delete(_key(who.openid))


# --- filing the case --------------------------------------------------------------------------


def _known_reporter(who: Chatter) -> bool:
    return who.household_id is not None or (bool(who.name) and who.village_id is not None and who.consented)


def _file(ctx: Context, msg: Inbound, who: Chatter, *, name: str = "", village_id: int | None = None,
          phone: str | None = None, description: str = "", risk_types: list[str] | None = None) -> Reply:
    """Create the case (idempotent on the message), start the details flow, and acknowledge."""
    if phone is None and who.household_id is None and who.has_phone:
        with session_scope(ctx.engine) as session:
            user = get_or_create_wechat_user(session, openid=who.openid)
            phone = ctx.cipher.decrypt(user.phone_enc)
    ack = submit(ctx, ReportInput(
        channel="wechat", inbound_key=msg.inbound_key, household_id=who.household_id, reporter_id=who.id,
        reporter_name=name or who.name, reporter_phone=phone, village_id=village_id or who.village_id,
        risk_types=list(risk_types or []), description=description, actor_name=name or who.name,
    ))
    stage = "risk" if not ack.risk_types else "describe"
    _save(ctx, who, {"flow": "details", "stage": stage, "case_id": ack.case_id, "ref": ack.ref, "at": time.time()})
    if stage == "risk":
        follow = texts.ASK_RISK.format(menu=texts.risk_menu())
    elif not description:
        follow = texts.ASK_DESCRIPTION
    else:
        follow = T.DESCRIBE_SAVED.format(ref=ack.ref)
    return Reply(ack.message + "\n\n" + follow, case_id=ack.case_id)


def start_report(ctx: Context, msg: Inbound, who: Chatter) -> Reply | str:
    """一键申报 (the REPORT menu key, or the words 申报 / 我要申报)."""
    state = current(ctx, who)
    if state and state["flow"] == "register":
        return _prompt(state)
    if state and state["flow"] == "details" and time.time() - state.get("at", 0) < RECENT_SECONDS:
        return T.RECENT_CASE.format(ref=state["ref"])
    if _known_reporter(who):
        return _file(ctx, msg, who)
    state = {"flow": "register", "stage": "", "media": []}
    return _advance(ctx, msg, who, state)


def report_from_text(ctx: Context, msg: Inbound, who: Chatter, *, understanding=None) -> Reply | str:
    """Free text that reads like a report ("老伴住院了没钱交押金"): file it with that description
    (bound or known reporter) or start the short registration with it."""
    from .ask import answer_question

    risks = [str(getattr(r, "value", r)) for r in getattr(understanding, "risk_types", ())]
    if _known_reporter(who):
        reply = _file(ctx, msg, who, description=msg.content, risk_types=risks)
    else:
        state = {"flow": "register", "stage": "", "media": [], "description": msg.content, "risk_types": risks}
        reply = Reply(_advance(ctx, msg, who, state))
    question = getattr(understanding, "question_text", None) if getattr(understanding, "also_question", False) else None
    if question:
        reply.text = f"{reply.text}\n\n{answer_question(ctx, who, question)}"
    return reply


# --- the registration of an unknown reporter -----------------------------------------------------


def _missing(state: dict, who: Chatter) -> str:
    if not (state.get("name") or who.name):
        return "name"
    if not (state.get("village_id") or who.village_id):
        return "village"
    if "phone" not in state and not who.has_phone:
        return "phone"
    return "consent"


def _prompt(state: dict) -> str:
    stage = state["stage"]
    if stage == "village_pick":
        choices = "\n".join(f"{i}. {name}" for i, (_, name) in enumerate(state["choices"], 1))
        return T.PICK_VILLAGE.format(choices=choices)
    return {"name": T.ASK_NAME, "village": T.ASK_VILLAGE, "phone": T.ASK_PHONE, "consent": T.ASK_CONSENT}[stage]


def _advance(ctx: Context, msg: Inbound, who: Chatter, state: dict, note: str | None = None) -> str:
    if state["stage"] != "village_pick":
        state["stage"] = _missing(state, who)
    _save(ctx, who, state)
    return (note + "\n" if note else "") + _prompt(state)


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


def _register_turn(ctx: Context, msg: Inbound, who: Chatter, state: dict, text: str) -> Reply | str:
    word = normalize_word(text)
    stage = state["stage"]
    if word in CANCEL_WORDS:
        _clear(ctx, who)
        return T.CANCELLED
    if word in BACK_WORDS:
        current_stage = "village" if stage == "village_pick" else stage
        index = REGISTER_ORDER.index(current_stage)
        if index > 0:
            previous = REGISTER_ORDER[index - 1]
            state.pop({"name": "name", "village": "village_id", "phone": "phone"}[previous], None)
            state.pop("choices", None)
            state["stage"] = previous
            _save(ctx, who, state)
        return _prompt(state)
    if stage == "consent":
        if word in YES_WORDS:
            return _consented(ctx, msg, who, state)
        if word in NO_WORDS:
            _clear(ctx, who)
            return T.NO_CONSENT
        return T.CONSENT_AGAIN
    if stage == "village_pick":
        choice = int(word) if word.isdigit() else 0
        if not 1 <= choice <= len(state["choices"]):
            return _prompt(state)
        state["village_id"], state["village_name"] = state.pop("choices")[choice - 1]
        state["stage"] = ""
        return _advance(ctx, msg, who, state)
    if stage == "phone" and word in SKIP_WORDS:
        state["phone"] = None
        return _advance(ctx, msg, who, state)
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
            _save(ctx, who, state)
            return _prompt(state)
        state["village_id"], state["village_name"] = villages[0].id, villages[0].name
    elif stage == "phone" and "phone" not in state:
        return T.BAD_PHONE
    return _advance(ctx, msg, who, state)


def _village_label(session, village) -> str:
    parent = get_region(session, village.parent_id)
    return f"{parent.name}{village.name}" if parent else village.name


def _consented(ctx: Context, msg: Inbound, who: Chatter, state: dict) -> Reply:
    phone = state.get("phone")
    if phone and not PHONE_RE.match(phone):
        phone = None
    reply = _file(ctx, msg, who, name=state.get("name", ""), village_id=state.get("village_id"), phone=phone,
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


# --- completing a filed case ------------------------------------------------------------------------


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


def _details_turn(ctx: Context, msg: Inbound, who: Chatter, state: dict, text: str) -> Reply | str:
    word = normalize_word(text)
    ref = state["ref"]
    if word in CANCEL_WORDS:
        _clear(ctx, who)
        return T.DETAILS_CLOSED.format(ref=ref)
    if word in DONE_WORDS:
        _clear(ctx, who)
        return T.DESCRIBE_DONE.format(ref=ref)
    if word in BACK_WORDS:
        state["stage"] = "risk"
        _save(ctx, who, state)
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
            _save(ctx, who, state)
            labels = "、".join(RiskType.parse(c).label for c in codes)
            return Reply(T.RISK_SAVED.format(labels=labels) + texts.ASK_DESCRIPTION, case_id=state["case_id"])
    return _describe(ctx, who, state, text)


def _describe(ctx: Context, who: Chatter, state: dict, text: str) -> Reply:
    """One turn of description: masked, stored on the case, and checked for sudden hardship."""
    from .pii import find_pii, mask_pii
    from .report import notify_urgent

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
    _save(ctx, who, state)
    template = T.DESCRIBE_URGENT if urgent_now else T.DESCRIBE_SAVED
    return Reply(template.format(ref=state["ref"]), case_id=state["case_id"])


def continue_text(ctx: Context, msg: Inbound, who: Chatter, state: dict, text: str) -> Reply | str:
    if state["flow"] == "register":
        return _register_turn(ctx, msg, who, state, text)
    return _details_turn(ctx, msg, who, state, text)


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
    from .routing import on_text

    if msg.recognition.strip():
        return on_text(ctx, dataclasses.replace(msg, content=msg.recognition), who)
    state = current(ctx, who)
    if state and state["flow"] == "register":
        return T.VOICE_NO_TEXT + "\n" + _prompt(state)
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
        _save(ctx, who, state)
        return T.IMAGE_KEPT + "\n" + _prompt(state)
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

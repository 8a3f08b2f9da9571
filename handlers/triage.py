"""The official procedure as a state machine, and everything staff do to a case.

A case's ``step`` is the step that is being worked on now. Completing it (``advance``) records
who, when, a note and optional evidence, and moves the case to the next step with a fresh
working-day deadline. The order is fixed (``storage.enums.DECISION_STEPS``)::

    风险预警 → 入户核查 → 承诺授权 → 信息比对 → 民主评议 → 村级公示 → 乡镇审核 → 县级审定

At 县级审定 the county decides (``decide``): 纳入监测 with a monitoring type (the case moves to
帮扶, still open), 不予纳入 with a reason the villager is told (closed), or 合并 into another
case (closed). Under 帮扶, measures are recorded (``record_assistance``) and 风险消除
(``clear_risk``) closes the case once its conditions are confirmed, never for a household
without labour capacity. A green-channel (urgent) case may get 先行救助 (``first_aid``) at any
step; it does not skip any step afterwards.

``STEP_ROLES`` says who may complete each step; ``ACTION_ROLES`` who may do everything else.
Every change is checked against the version of the case the form was built from, so a replayed
or stale form changes nothing; it writes a timeline event and an audit row, and outcome
notifications go into the outbox in the same transaction.
"""

from __future__ import annotations

import datetime as dt
import re
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from storage import session_scope
from storage.audit import audit
from storage.cases import add_attachment, add_event, attachments_of, events_of, set_risk_types
from storage.crypto import mask_id_number, mask_phone
from storage.enums import DECISION_STEPS, AssistanceKind, MonitoringType, ProcedureStep, RiskType
from storage.models import Case, Household, Region, utcnow
from storage.outbox import enqueue
from storage.people import staff_in_region
from storage.refs import CST
from storage.regions import ancestors, deadline_days, region_label
from storage.triage import (
    case_by_ref_in_scope,
    case_in_scope,
    cases_merged_into,
    events_with_action,
    household_in_scope,
    households_in_village,
    update_case,
    villager_openids,
)

from . import triage_texts as T
from .context import Context
from .deadlines import DEFAULT_STEP_DAYS, is_overdue
from .errors import Conflict, Forbidden, NotFound, ValidationError
from .staff import Actor

#: Who may complete each step of the procedure (village cadres visit and post the notice, the
#: township checks data and reviews, the county decides).
STEP_ROLES: dict[str, frozenset[str]] = {
    "warning": frozenset({"village", "township"}),
    "visit": frozenset({"village"}),
    "consent": frozenset({"village"}),
    "data_check": frozenset({"township"}),
    "review": frozenset({"village"}),
    "notice": frozenset({"village"}),
    "township": frozenset({"township"}),
    "county": frozenset({"county"}),
}

#: Who may do the other actions.
ACTION_ROLES: dict[str, frozenset[str]] = {
    "decide": frozenset({"county"}),
    "merge": frozenset({"township", "county"}),
    "dismiss_duplicate": frozenset({"township", "county"}),
    "first_aid": frozenset({"township", "county"}),
    "assistance": frozenset({"village", "township", "county"}),
    "clear_risk": frozenset({"county"}),
    "mark_urgent": frozenset({"village", "township", "county"}),
    "link_household": frozenset({"village", "township"}),
    "assign": frozenset({"village", "township", "county"}),
    "note": frozenset({"village", "township", "county"}),
    "reveal": frozenset({"village", "township", "county"}),
    "export_unmasked": frozenset({"county"}),
}

MAX_NOTE = 1000
MAX_EVIDENCE = 300
MAX_REASON = 200
MAX_AMOUNT = 1_000_000
UPLOAD_TYPES = {"image/jpeg": ".jpg", "image/png": ".png", "application/pdf": ".pdf"}

#: Words handed to the knowledge module for the clauses shown beside a case of each risk type.
RISK_TERMS: dict[str, list[str]] = {
    "illness": ["因病", "医疗救助", "大病保险", "先诊疗后付费", "医疗保障"],
    "disability": ["因残", "残疾人", "两项补贴", "康复"],
    "education": ["因学", "教育资助", "雨露计划", "控辍保学"],
    "disaster": ["因灾", "自然灾害", "临时救助", "灾后恢复"],
    "accident": ["意外事故", "临时救助", "救助"],
    "industry_failure": ["产业帮扶", "小额信贷", "产业发展"],
    "unemployment": ["就业帮扶", "公益岗位", "稳岗就业"],
    "labor_shortage": ["缺劳动力", "低保", "兜底保障", "特困供养"],
    "housing": ["住房安全", "危房改造"],
    "water": ["饮水安全", "农村供水"],
    "other": ["防止返贫", "监测帮扶"],
}


# --- reading a case ---------------------------------------------------------------------------


@dataclass
class TimelineItem:
    at: dt.datetime
    actor: str
    label: str
    step_label: str
    note: str
    details: list[str]


@dataclass
class ActionSpec:
    """An action offered on the case page (``name`` is what the form posts as ``action``)."""

    name: str
    label: str
    step: str | None = None


@dataclass
class Clause:
    title: str
    section: str
    text: str
    source: str


@dataclass
class PersonView:
    """Personal data, masked unless the viewer pressed 显示 (``revealed``)."""

    name: str
    id_number: str
    phone: str
    revealed: bool


@dataclass
class CaseView:
    id: int
    ref: str
    version: str
    step: str
    step_label: str
    steps: list[tuple[str, str, str]]  # (code, label, state: done/current/todo)
    outcome: str | None
    outcome_label: str
    outcome_reason: str
    monitoring_type_label: str
    channel_label: str
    urgent: bool
    urgent_reasons: str
    first_aid_at: dt.datetime | None
    risk_labels: list[str]
    description: str
    region_label: str
    village_id: int | None
    created_at: dt.datetime
    due_at: dt.datetime | None
    overdue: bool
    working_days_left: int | None
    notice_ends_at: dt.datetime | None
    closed: bool
    reporter: PersonView
    household: dict[str, Any] | None
    household_person: PersonView | None
    attachments: list[dict[str, Any]]
    timeline: list[TimelineItem]
    actions: dict[str, ActionSpec]
    duplicate_of: dict[str, Any] | None
    merged_into: dict[str, Any] | None
    merged_from: list[dict[str, Any]]
    assistance: list[dict[str, Any]]
    assigned_to: str
    assignable: list[tuple[int, str]]
    village_households: list[tuple[int, str]]
    clauses: list[Clause]
    clauses_error: str
    can_reveal: bool
    step_owner_hint: str = ""


def version_of(case: Case) -> str:
    """What a form carries to prove it was built from the case as it is now."""
    return case.updated_at.astimezone(dt.UTC).strftime("%Y%m%d%H%M%S%f")


def _load(session, ctx: Context, actor: Actor, case_id: int, *, for_update: bool = False) -> Case:
    case = case_in_scope(session, case_id, actor.region_path, for_update=for_update)
    if case is None:
        raise NotFound(T.CASE_NOT_FOUND)
    return case


def _label(enum, value: str | None) -> str:
    if not value:
        return ""
    try:
        return enum.parse(value).label
    except ValueError:
        return value


def _notice_end(ctx: Context, case: Case) -> dt.datetime | None:
    if case.step != "notice":
        return None
    return case.step_started_at + dt.timedelta(days=ctx.notice_days)


def _person(ctx: Context, name: str, id_enc: str | None, phone_enc: str | None, reveal: bool) -> PersonView:
    from .queue import _decrypt, _masked

    idn, phone = _decrypt(ctx, id_enc), _decrypt(ctx, phone_enc)
    if reveal:
        return PersonView(name, idn or "", phone or "", True)
    return PersonView(name, _masked(mask_id_number, idn), _masked(mask_phone, phone), False)


def allowed_actions(ctx: Context, actor: Actor, case: Case, household: Household | None, now: dt.datetime) -> dict[str, ActionSpec]:
    """The actions this actor may take on this case at its current step (what the page shows)."""
    out: dict[str, ActionSpec] = {}
    role = actor.role

    def can(name: str) -> bool:
        return role in ACTION_ROLES[name]

    if case.closed_at is None:
        step = case.step
        if step in STEP_ROLES and step != "county" and role in STEP_ROLES[step]:
            label = T.ADVANCE_LABELS.get(step, T.ADVANCE_DEFAULT.format(step=_label(ProcedureStep, step)))
            out["advance"] = ActionSpec("advance", label, step)
        if step == "county" and can("decide"):
            out["decide"] = ActionSpec("decide", T.ACTION_LABELS["decide"], step)
        if step == "assistance":
            if can("assistance"):
                out["assistance"] = ActionSpec("assistance", T.ACTION_LABELS["assistance"], step)
            if can("clear_risk"):
                out["clear_risk"] = ActionSpec("clear_risk", T.ACTION_LABELS["clear_risk"], step)
        if step in STEP_ROLES and can("merge"):
            out["merge"] = ActionSpec("merge", T.ACTION_LABELS["merge"])
        if case.possible_duplicate_of_id and can("dismiss_duplicate"):
            out["dismiss_duplicate"] = ActionSpec("dismiss_duplicate", T.ACTION_LABELS["dismiss_duplicate"])
        if case.urgent and can("first_aid"):
            out["first_aid"] = ActionSpec("first_aid", T.ACTION_LABELS["first_aid"])
        if not case.urgent and can("mark_urgent"):
            out["mark_urgent"] = ActionSpec("mark_urgent", T.ACTION_LABELS["mark_urgent"])
        if household is None and case.village_id is not None and can("link_household"):
            out["link_household"] = ActionSpec("link_household", T.ACTION_LABELS["link_household"])
        if can("assign"):
            out["assign"] = ActionSpec("assign", T.ACTION_LABELS["assign"])
    if can("note"):
        out["note"] = ActionSpec("note", T.ACTION_LABELS["note"])
    return out


def _timeline(events) -> list[TimelineItem]:
    items = []
    for e in events:
        data = e.data or {}
        label = T.EVENT_LABELS.get(e.action, e.action)
        details: list[str] = []
        if e.action == "step_done" and e.step:
            label = T.EVENT_STEP_DONE.format(step=_label(ProcedureStep, e.step))
        if e.action == "decided":
            label = T.EVENT_DECIDED.format(outcome=_label(_OutcomeLabels, data.get("outcome")))
            if data.get("monitoring_type"):
                details.append(T.DETAIL_MONITORING.format(type=_label(MonitoringType, data["monitoring_type"])))
            if data.get("reason"):
                details.append(T.DETAIL_REASON.format(reason=data["reason"]))
        if data.get("kind"):
            details.append(T.DETAIL_KIND.format(kind=_label(AssistanceKind, data["kind"])))
        if data.get("amount"):
            details.append(T.DETAIL_AMOUNT.format(amount=data["amount"]))
        if data.get("evidence"):
            details.append(T.DETAIL_EVIDENCE.format(evidence=data["evidence"]))
        if data.get("other_ref"):
            details.append(T.DETAIL_OTHER.format(ref=data["other_ref"]))
        if data.get("conditions"):
            details.append(T.DETAIL_CONDITIONS.format(items="、".join(T.CLEAR_CONDITIONS.get(c, c) for c in data["conditions"])))
        if data.get("reason") and e.action != "decided":
            details.append(T.DETAIL_REASON.format(reason=data["reason"]))
        if data.get("assignee"):
            details.append(T.DETAIL_ASSIGNEE.format(name=data["assignee"]))
        if data.get("file"):
            details.append(T.DETAIL_FILE.format(name=data["file"]))
        items.append(TimelineItem(e.at, e.actor_name or T.ACTOR_KINDS.get(e.actor_kind, e.actor_kind), label,
                                  _label(ProcedureStep, e.step), e.note, details))
    return items


class _OutcomeLabels:
    @staticmethod
    def parse(value: str):
        from storage.enums import Outcome

        return Outcome.parse(value)


def _hits(kb, terms: list[str], county: str | None, k: int):
    """Passages for ``terms``, preferring the case's own county and province when the index can."""
    if county:
        try:
            return kb.search(" ".join(terms), region=county, k=k).passages
        except Exception:  # an index without region preference: fall back to the plain look-up
            pass
    return kb.clauses_for(terms, k=k)


def _clauses(ctx: Context, risk_types: list[str], county: str | None = None) -> tuple[list[Clause], str]:
    codes = risk_types or ["other"]
    try:
        kb = ctx.kb()
        if kb is None:
            return [], T.CLAUSES_UNAVAILABLE
        seen: set[tuple[str, int]] = set()
        out: list[Clause] = []
        for code in codes:
            for hit in _hits(kb, RISK_TERMS.get(code, [code]), county, 2) or []:
                key = (getattr(hit, "doc", ""), getattr(hit, "start", 0))
                if key in seen:
                    continue
                seen.add(key)
                source = "　".join(
                    x for x in (getattr(hit, "issuer", ""), getattr(hit, "doc_no", ""), getattr(hit, "date", "")) if x
                )
                out.append(Clause(getattr(hit, "title", ""), getattr(hit, "section", ""), getattr(hit, "text", ""), source))
        return out[:6], ("" if out else T.CLAUSES_NONE)
    except Exception:  # a missing, stale or broken index must not break the case page
        return [], T.CLAUSES_UNAVAILABLE


def case_view(
    ctx: Context, actor: Actor, case_id: int, *, reveal: bool = False, ip: str = "", now: dt.datetime | None = None,
    with_clauses: bool = True,
) -> CaseView:
    """Everything the case page shows. ``reveal`` shows ID numbers and phones in full and is audited."""
    now = now or utcnow()
    if reveal and actor.role not in ACTION_ROLES["reveal"]:
        raise Forbidden(T.NOT_ALLOWED_REVEAL)
    with session_scope(ctx.engine) as session:
        case = _load(session, ctx, actor, case_id)
        household = session.get(Household, case.household_id) if case.household_id else None
        village = session.get(Region, case.village_id) if case.village_id else None
        if reveal:
            audit(session, action="reveal", actor_id=actor.id, actor_name=actor.username, target=case.ref,
                  detail=T.AUDIT_REVEAL, ip=ip)
        reporter = _person(ctx, case.reporter_name, case.reporter_id_number_enc, case.reporter_phone_enc, reveal)
        hh_person = None
        hh = None
        if household is not None:
            hh_person = _person(ctx, household.head_name, household.id_number_enc, household.phone_enc, reveal)
            hh = {
                "id": household.id, "head_name": household.head_name,
                "category": _label(_Category, household.category), "members": household.members,
                "address": household.address, "group": household.group_name,
                "labor": household.has_labor_capacity,
            }
        dup = None
        if case.possible_duplicate_of_id:
            other = case_in_scope(session, case.possible_duplicate_of_id, actor.region_path)
            if other is not None:
                dup = {"id": other.id, "ref": other.ref, "open": other.closed_at is None,
                       "step_label": _label(ProcedureStep, other.step)}
        merged_into = None
        if case.merged_into_id:
            other = case_in_scope(session, case.merged_into_id, actor.region_path)
            if other is not None:
                merged_into = {"id": other.id, "ref": other.ref}
        merged_from = [{"id": c.id, "ref": c.ref} for c in cases_merged_into(session, case.id)]
        assistance = [
            {"at": e.at, "kind": _label(AssistanceKind, (e.data or {}).get("kind")), "amount": (e.data or {}).get("amount"),
             "note": e.note, "actor": e.actor_name, "first_aid": e.action == "first_aid"}
            for e in events_of(session, case.id) if e.action in ("assistance", "first_aid")
        ]
        attachments = [
            {"id": a.id, "kind": a.kind, "kind_label": T.ATTACHMENT_KINDS.get(a.kind, a.kind), "media_id": a.media_id,
             "url": a.url if (a.url or "").startswith("https://") else None, "stored": bool(a.path),
             "content_type": a.content_type, "size": a.size, "at": a.created_at}
            for a in attachments_of(session, case.id)
        ]
        actions = allowed_actions(ctx, actor, case, household, now)
        assignable: list[tuple[int, str]] = []
        if "assign" in actions and village is not None:
            from storage.queue import staff_under

            chain_paths = {r.path for r in ancestors(session, village)}
            for s in staff_under(session, actor.region_path if actor.role != "village" else village.path):
                region = session.get(Region, s.region_id)
                if region is not None and region.path in chain_paths and s.role != "admin":
                    assignable.append((s.id, f"{s.display_name}（{T.ROLE_LABELS.get(s.role, s.role)}）"))
            if actor.role == "village":
                assignable = [(i, n) for i, n in assignable if i == actor.id]
        assigned = ""
        if case.assigned_to_id:
            from storage.triage import staff_by_id

            s = staff_by_id(session, case.assigned_to_id)
            assigned = s.display_name if s else ""
        village_households = []
        if "link_household" in actions and case.village_id:
            village_households = [(h.id, f"{h.head_name}（{h.address or h.group_name}）")
                                  for h in households_in_village(session, case.village_id)]
        order = [s.value for s in DECISION_STEPS] + ["assistance", "closed"]
        cur = order.index(case.step) if case.step in order else 0
        steps = [(code, _label(ProcedureStep, code), "done" if i < cur else "current" if i == cur else "todo")
                 for i, code in enumerate(order)]
        if case.closed_at is not None:
            steps = [(c, lbl, "done" if st != "todo" else "skipped") for c, lbl, st in steps]
        view = CaseView(
            id=case.id, ref=case.ref, version=version_of(case), step=case.step,
            step_label=_label(ProcedureStep, case.step), steps=steps, outcome=case.outcome,
            outcome_label=_label(_OutcomeLabels, case.outcome), outcome_reason=case.outcome_reason,
            monitoring_type_label=_label(MonitoringType, case.monitoring_type),
            channel_label=_label(_Channel, case.channel), urgent=case.urgent, urgent_reasons=case.urgent_reasons,
            first_aid_at=case.first_aid_at, risk_labels=[_label(RiskType, r) for r in case.risk_types],
            description=case.description, region_label=region_label(session, village), village_id=case.village_id,
            created_at=case.created_at, due_at=case.due_at if case.closed_at is None else None,
            overdue=case.closed_at is None and is_overdue(case.due_at, now),
            working_days_left=(ctx.calendar.working_days_left(case.due_at, now)
                               if case.due_at and case.closed_at is None else None),
            notice_ends_at=_notice_end(ctx, case), closed=case.closed_at is not None,
            reporter=reporter, household=hh, household_person=hh_person, attachments=attachments,
            timeline=_timeline(events_of(session, case.id)), actions=actions, duplicate_of=dup,
            merged_into=merged_into, merged_from=merged_from, assistance=assistance, assigned_to=assigned,
            assignable=assignable, village_households=village_households, clauses=[], clauses_error="",
            can_reveal=actor.role in ACTION_ROLES["reveal"],
            step_owner_hint=_owner_hint(actor, case),
        )
        risk_types = list(case.risk_types)
        county = next((r.name for r in ancestors(session, village) if r.level == "county"), None) if village else None
    if with_clauses:
        view.clauses, view.clauses_error = _clauses(ctx, risk_types, county)
    return view


def _owner_hint(actor: Actor, case: Case) -> str:
    """Why the actor sees no step button: the current step belongs to another role."""
    if case.closed_at is not None or case.step not in STEP_ROLES or actor.role in STEP_ROLES[case.step]:
        return ""
    roles = "、".join(T.ROLE_LABELS[r] for r in sorted(STEP_ROLES[case.step]))
    return T.STEP_OWNER_HINT.format(step=_label(ProcedureStep, case.step), roles=roles)


class _Category:
    @staticmethod
    def parse(value: str):
        from storage.enums import HouseholdCategory

        return HouseholdCategory.parse(value)


class _Channel:
    @staticmethod
    def parse(value: str):
        from storage.enums import Channel

        return Channel.parse(value)


# --- changing a case ----------------------------------------------------------------------------


@dataclass
class Upload:
    """A file posted as evidence; the edge reads at most ``max_bytes`` + 1 bytes of it."""

    filename: str
    content_type: str
    data: bytes


@dataclass
class Result:
    case_id: int
    ref: str
    message: str
    notified: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


def _text(form: dict[str, Any], key: str, *, limit: int, label: str, required: bool = False) -> str:
    value = str(form.get(key) or "").strip()
    value = value.replace("\r\n", "\n")
    if required and not value:
        raise ValidationError(T.FIELD_REQUIRED.format(label=label), field=key)
    if len(value) > limit:
        raise ValidationError(T.FIELD_TOO_LONG.format(label=label, limit=limit), field=key)
    if any(ord(ch) < 32 and ch not in "\n\t" for ch in value):
        raise ValidationError(T.FIELD_BAD_CHARS.format(label=label), field=key)
    return value


def _amount(form: dict[str, Any]) -> int | None:
    raw = str(form.get("amount") or "").strip()
    if not raw:
        return None
    if not re.fullmatch(r"\d{1,7}", raw) or int(raw) > MAX_AMOUNT:
        raise ValidationError(T.BAD_AMOUNT, field="amount")
    return int(raw)


def _kind(form: dict[str, Any]) -> str:
    try:
        return AssistanceKind.parse(str(form.get("kind") or "")).value
    except ValueError as exc:
        raise ValidationError(T.BAD_KIND, field="kind") from exc


def _require(actor: Actor, name: str) -> None:
    if actor.role not in ACTION_ROLES[name]:
        raise Forbidden(T.NOT_ALLOWED.format(role=actor.role_label, action=T.ACTION_LABELS.get(name, name)))


def _check_version(case: Case, version: str) -> None:
    if not version or version != version_of(case):
        raise Conflict(T.STALE_FORM)


def _open(case: Case) -> None:
    if case.closed_at is not None:
        raise Conflict(T.CASE_CLOSED.format(outcome=_label(_OutcomeLabels, case.outcome) or T.CLOSED))


def _due(session, ctx: Context, step: str, case: Case, now: dt.datetime) -> dt.datetime | None:
    if step not in DEFAULT_STEP_DAYS:
        return None
    village = session.get(Region, case.village_id) if case.village_id else None
    days = deadline_days(session, step=step, region=village)
    due = ctx.calendar.add_working_days(now, days if days is not None else DEFAULT_STEP_DAYS[step])
    if step == "notice":  # the township cannot act before the notice period is over
        due = max(due, now + dt.timedelta(days=ctx.notice_days))
    return due


def _save_upload(ctx: Context, case: Case, upload: Upload | None, upload_dir: Path | None, max_bytes: int):
    if upload is None or not upload.filename:
        return None
    if upload_dir is None:
        raise ValidationError(T.UPLOAD_DISABLED, field="evidence_file")
    ext = UPLOAD_TYPES.get((upload.content_type or "").split(";")[0].strip().lower())
    if ext is None or not _sniff(upload.data, ext):
        raise ValidationError(T.UPLOAD_TYPE, field="evidence_file")
    if len(upload.data) > max_bytes:
        raise ValidationError(T.UPLOAD_TOO_BIG.format(mb=max(1, max_bytes // (1024 * 1024))), field="evidence_file")
    folder = upload_dir / str(case.id)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{secrets.token_hex(12)}{ext}"
    path.write_bytes(upload.data)
    return path, ext


def _sniff(data: bytes, ext: str) -> bool:
    magic = {".jpg": b"\xff\xd8\xff", ".png": b"\x89PNG\r\n\x1a\n", ".pdf": b"%PDF-"}
    return data.startswith(magic[ext])


def _measure(kind: str, amount: int | None) -> str:
    return T.AUDIT_MEASURE.format(kind=_label(AssistanceKind, kind),
                                  amount=T.AUDIT_AMOUNT.format(amount=amount) if amount else "")


def _finish(session, actor: Actor, case: Case, action: str, detail: str, ip: str) -> None:
    audit(session, action=action, actor_id=actor.id, actor_name=actor.username, target=case.ref, detail=detail, ip=ip)


def advance(
    ctx: Context, actor: Actor, case_id: int, *, step: str, version: str, note: str = "", evidence: str = "",
    upload: Upload | None = None, upload_dir: Path | None = None, max_upload_bytes: int = 5 * 1024 * 1024,
    ip: str = "", now: dt.datetime | None = None,
) -> Result:
    """Complete the current step ``step`` and move the case to the next one."""
    now = now or utcnow()
    note = _text({"note": note}, "note", limit=MAX_NOTE, label=T.LABEL_NOTE)
    evidence = _text({"evidence": evidence}, "evidence", limit=MAX_EVIDENCE, label=T.LABEL_EVIDENCE)
    try:
        wanted = ProcedureStep.parse(step).value
    except ValueError as exc:
        raise ValidationError(T.BAD_STEP, field="step") from exc
    with session_scope(ctx.engine) as session:
        case = _load(session, ctx, actor, case_id, for_update=True)
        _open(case)
        if case.step != wanted:
            raise Conflict(T.OUT_OF_ORDER.format(current=_label(ProcedureStep, case.step), wanted=_label(ProcedureStep, wanted)))
        if wanted not in STEP_ROLES or wanted == "county":
            raise Conflict(T.STEP_NEEDS_DECISION if wanted == "county" else T.BAD_STEP)
        if actor.role not in STEP_ROLES[wanted]:
            allowed = "、".join(T.ROLE_LABELS[r] for r in sorted(STEP_ROLES[wanted]))
            raise Forbidden(T.STEP_NOT_ALLOWED.format(step=_label(ProcedureStep, wanted), roles=allowed, role=actor.role_label))
        _check_version(case, version)
        if wanted == "notice":
            ends = _notice_end(ctx, case)
            if ends is not None and now < ends:
                raise Conflict(T.NOTICE_RUNNING.format(days=ctx.notice_days, end=_fmt(ends)))
        saved = _save_upload(ctx, case, upload, upload_dir, max_upload_bytes)
        data: dict[str, Any] = {}
        if evidence:
            data["evidence"] = evidence
        if saved:
            path, _ext = saved
            add_attachment(session, case, kind="file", path=str(path), content_type=upload.content_type,
                           size=len(upload.data))
            data["file"] = upload.filename[:100]
        add_event(session, case, action="step_done", actor_kind="staff", actor_id=actor.id, actor_name=actor.name,
                  step=wanted, note=note, data=data, now=now)
        nxt = ProcedureStep.parse(wanted).next().value
        update_case(session, case, step=nxt, step_started_at=now, due_at=_due(session, ctx, nxt, case, now), now=now)
        _finish(session, actor, case, "step",
                T.AUDIT_STEP.format(done=_label(ProcedureStep, wanted), next=_label(ProcedureStep, nxt)), ip)
        return Result(case.id, case.ref, T.DONE_STEP.format(step=_label(ProcedureStep, wanted), next=_label(ProcedureStep, nxt)))


def _fmt(when: dt.datetime) -> str:
    local = when.astimezone(CST)
    return f"{local.month}月{local.day}日 {local:%H:%M}"


def decide(
    ctx: Context, actor: Actor, case_id: int, *, outcome: str, version: str, monitoring_type: str = "",
    reason: str = "", merge_into: str = "", note: str = "", ip: str = "", now: dt.datetime | None = None,
) -> Result:
    """县级审定: 纳入监测 (monitored), 不予纳入 (rejected) or 合并 (merged)."""
    now = now or utcnow()
    _require(actor, "decide")
    note = _text({"note": note}, "note", limit=MAX_NOTE, label=T.LABEL_NOTE)
    if outcome == "merged":
        return merge(ctx, actor, case_id, into_ref=merge_into, version=version, note=note, ip=ip, now=now,
                     at_decision=True)
    if outcome not in ("monitored", "rejected"):
        raise ValidationError(T.BAD_OUTCOME, field="outcome")
    mtype = None
    if outcome == "monitored":
        try:
            mtype = MonitoringType.parse(monitoring_type or "").value
        except ValueError as exc:
            raise ValidationError(T.NEED_MONITORING_TYPE, field="monitoring_type") from exc
        reason = ""
    else:
        reason = _text({"reason": reason}, "reason", limit=MAX_REASON, label=T.LABEL_REASON, required=True)
    with session_scope(ctx.engine) as session:
        case = _load(session, ctx, actor, case_id, for_update=True)
        _open(case)
        if case.step != "county":
            raise Conflict(T.OUT_OF_ORDER.format(current=_label(ProcedureStep, case.step), wanted=_label(ProcedureStep, "county")))
        _check_version(case, version)
        add_event(session, case, action="decided", actor_kind="staff", actor_id=actor.id, actor_name=actor.name,
                  step="county", note=note,
                  data={"outcome": outcome, "monitoring_type": mtype, "reason": reason}, now=now)
        if outcome == "monitored":
            update_case(session, case, outcome="monitored", monitoring_type=mtype, step="assistance",
                        step_started_at=now, due_at=None, now=now)
        else:
            update_case(session, case, outcome="rejected", outcome_reason=reason, step="closed",
                        step_started_at=now, due_at=None, closed_at=now, now=now)
        sent = _notify_villager(session, case, outcome, reason=reason, monitoring_type=mtype, now=now)
        _finish(session, actor, case, "decide",
                T.AUDIT_DECIDE_MONITORED.format(type=_label(MonitoringType, mtype)) if mtype
                else T.AUDIT_DECIDE_REJECTED.format(reason=reason), ip)
        return Result(case.id, case.ref, T.DONE_DECIDE.format(outcome=_label(_OutcomeLabels, outcome)), notified=sent)


def merge(
    ctx: Context, actor: Actor, case_id: int, *, into_ref: str = "", into_id: int | None = None, version: str,
    note: str = "", ip: str = "", now: dt.datetime | None = None, at_decision: bool = False,
) -> Result:
    """合并: close this case as a duplicate of another open case in the actor's scope."""
    now = now or utcnow()
    _require(actor, "decide" if at_decision else "merge")
    note = _text({"note": note}, "note", limit=MAX_NOTE, label=T.LABEL_NOTE)
    with session_scope(ctx.engine) as session:
        case = _load(session, ctx, actor, case_id, for_update=True)
        _open(case)
        _check_version(case, version)
        if into_id is not None:
            target = case_in_scope(session, into_id, actor.region_path)
        else:
            ref = (into_ref or "").strip().upper()
            if not ref:
                raise ValidationError(T.NEED_MERGE_TARGET, field="merge_into")
            target = case_by_ref_in_scope(session, ref, actor.region_path)
        if target is None:
            raise ValidationError(T.MERGE_TARGET_MISSING, field="merge_into")
        if target.id == case.id:
            raise ValidationError(T.MERGE_SELF, field="merge_into")
        if target.closed_at is not None:
            raise Conflict(T.MERGE_TARGET_CLOSED.format(ref=target.ref))
        add_event(session, case, action="merged", actor_kind="staff", actor_id=actor.id, actor_name=actor.name,
                  step=case.step, note=note, data={"other_ref": target.ref}, now=now)
        update_case(session, case, outcome="merged", merged_into_id=target.id, step="closed", step_started_at=now,
                    due_at=None, closed_at=now, possible_duplicate_of_id=None, now=now)
        add_event(session, target, action="merged_from", actor_kind="staff", actor_id=actor.id, actor_name=actor.name,
                  step=target.step, note=note, data={"other_ref": case.ref}, now=now)
        union = list(dict.fromkeys(list(target.risk_types) + list(case.risk_types)))
        if union != list(target.risk_types):
            set_risk_types(session, target, union)
        if case.urgent and not target.urgent:
            update_case(session, target, urgent=True, urgent_reasons=case.urgent_reasons, now=now)
        if case.first_aid_at and not target.first_aid_at:
            update_case(session, target, first_aid_at=case.first_aid_at, now=now)
        sent = _notify_villager(session, case, "merged", other_ref=target.ref, now=now)
        _finish(session, actor, case, "merge", T.AUDIT_MERGE.format(ref=target.ref), ip)
        return Result(case.id, case.ref, T.DONE_MERGE.format(ref=target.ref), notified=sent,
                      extra={"into_id": target.id})


def dismiss_duplicate(ctx: Context, actor: Actor, case_id: int, *, version: str, note: str = "", ip: str = "",
                      now: dt.datetime | None = None) -> Result:
    """Not a duplicate after all: clear the flag (recorded)."""
    now = now or utcnow()
    _require(actor, "dismiss_duplicate")
    note = _text({"note": note}, "note", limit=MAX_NOTE, label=T.LABEL_NOTE)
    with session_scope(ctx.engine) as session:
        case = _load(session, ctx, actor, case_id, for_update=True)
        _check_version(case, version)
        if not case.possible_duplicate_of_id:
            raise Conflict(T.NOT_FLAGGED)
        other = session.get(Case, case.possible_duplicate_of_id)
        add_event(session, case, action="duplicate_dismissed", actor_kind="staff", actor_id=actor.id,
                  actor_name=actor.name, step=case.step, note=note, data={"other_ref": other.ref if other else ""}, now=now)
        update_case(session, case, possible_duplicate_of_id=None, now=now)
        _finish(session, actor, case, "dismiss_duplicate", T.AUDIT_DISMISS.format(ref=other.ref if other else "?"), ip)
        return Result(case.id, case.ref, T.DONE_DISMISS)


def first_aid(ctx: Context, actor: Actor, case_id: int, *, kind: str, version: str, amount: str = "", note: str = "",
              ip: str = "", now: dt.datetime | None = None) -> Result:
    """先行救助 for a green-channel case, at any step; the procedure carries on afterwards."""
    now = now or utcnow()
    _require(actor, "first_aid")
    form = {"kind": kind, "amount": amount}
    kind_code, value = _kind(form), _amount(form)
    note = _text({"note": note}, "note", limit=MAX_NOTE, label=T.LABEL_NOTE, required=True)
    with session_scope(ctx.engine) as session:
        case = _load(session, ctx, actor, case_id, for_update=True)
        _open(case)
        if not case.urgent:
            raise Conflict(T.FIRST_AID_NOT_URGENT)
        _check_version(case, version)
        add_event(session, case, action="first_aid", actor_kind="staff", actor_id=actor.id, actor_name=actor.name,
                  step=case.step, note=note, data={"kind": kind_code, "amount": value}, now=now)
        if case.first_aid_at is None:
            update_case(session, case, first_aid_at=now, now=now)
        _finish(session, actor, case, "first_aid", _measure(kind_code, value), ip)
        return Result(case.id, case.ref, T.DONE_FIRST_AID)


def record_assistance(ctx: Context, actor: Actor, case_id: int, *, kind: str, version: str, amount: str = "",
                      note: str = "", ip: str = "", now: dt.datetime | None = None) -> Result:
    """帮扶: record a measure for a monitored case."""
    now = now or utcnow()
    _require(actor, "assistance")
    form = {"kind": kind, "amount": amount}
    kind_code, value = _kind(form), _amount(form)
    note = _text({"note": note}, "note", limit=MAX_NOTE, label=T.LABEL_NOTE)
    with session_scope(ctx.engine) as session:
        case = _load(session, ctx, actor, case_id, for_update=True)
        _open(case)
        if case.step != "assistance":
            raise Conflict(T.ASSISTANCE_NOT_YET)
        _check_version(case, version)
        add_event(session, case, action="assistance", actor_kind="staff", actor_id=actor.id, actor_name=actor.name,
                  step="assistance", note=note, data={"kind": kind_code, "amount": value}, now=now)
        _finish(session, actor, case, "assistance", _measure(kind_code, value), ip)
        return Result(case.id, case.ref, T.DONE_ASSISTANCE)


CLEAR_CONDITION_KEYS = ("income_stable", "basic_needs", "water_safe")


def clear_risk(ctx: Context, actor: Actor, case_id: int, *, conditions: list[str], version: str, note: str = "",
               ip: str = "", now: dt.datetime | None = None) -> Result:
    """风险消除: every condition confirmed, at least one measure recorded, and labour capacity."""
    now = now or utcnow()
    _require(actor, "clear_risk")
    note = _text({"note": note}, "note", limit=MAX_NOTE, label=T.LABEL_NOTE)
    missing = [c for c in CLEAR_CONDITION_KEYS if c not in set(conditions or [])]
    if missing:
        raise ValidationError(T.CLEAR_MISSING.format(items="、".join(T.CLEAR_CONDITIONS[c] for c in missing)),
                              field="conditions")
    with session_scope(ctx.engine) as session:
        case = _load(session, ctx, actor, case_id, for_update=True)
        _open(case)
        if case.step != "assistance":
            raise Conflict(T.CLEAR_NOT_YET)
        _check_version(case, version)
        household = session.get(Household, case.household_id) if case.household_id else None
        if household is None:
            raise Conflict(T.CLEAR_NO_HOUSEHOLD)
        if not household.has_labor_capacity:
            raise Conflict(T.CLEAR_NO_LABOUR)
        if not events_with_action(session, case.id, "assistance"):
            raise Conflict(T.CLEAR_NO_MEASURES)
        add_event(session, case, action="risk_cleared", actor_kind="staff", actor_id=actor.id, actor_name=actor.name,
                  step="assistance", note=note, data={"conditions": list(CLEAR_CONDITION_KEYS)}, now=now)
        update_case(session, case, outcome="risk_cleared", step="closed", step_started_at=now, due_at=None,
                    closed_at=now, now=now)
        sent = _notify_villager(session, case, "risk_cleared", now=now)
        _finish(session, actor, case, "clear_risk",
                T.AUDIT_CLEAR.format(items="、".join(T.CLEAR_CONDITIONS[c] for c in CLEAR_CONDITION_KEYS)), ip)
        return Result(case.id, case.ref, T.DONE_CLEAR, notified=sent)


def mark_urgent(ctx: Context, actor: Actor, case_id: int, *, reason: str, version: str, ip: str = "",
                now: dt.datetime | None = None) -> Result:
    """Move a case into the green channel (绿色通道) and notify the township staff at once."""
    now = now or utcnow()
    _require(actor, "mark_urgent")
    reason = _text({"reason": reason}, "reason", limit=MAX_REASON, label=T.LABEL_URGENT_REASON, required=True)
    with session_scope(ctx.engine) as session:
        case = _load(session, ctx, actor, case_id, for_update=True)
        _open(case)
        _check_version(case, version)
        if case.urgent:
            raise Conflict(T.ALREADY_URGENT)
        add_event(session, case, action="urgent", actor_kind="staff", actor_id=actor.id, actor_name=actor.name,
                  step=case.step, note="", data={"reason": reason}, now=now)
        update_case(session, case, urgent=True, urgent_reasons=reason, now=now)
        sent = notify_township(session, case)
        _finish(session, actor, case, "mark_urgent", reason, ip)
        return Result(case.id, case.ref, T.DONE_URGENT, notified=sent)


def link_household(ctx: Context, actor: Actor, case_id: int, *, household_id: str, version: str, ip: str = "",
                   now: dt.datetime | None = None) -> Result:
    """Attach an unbound reporter's case to the household record found at the visit."""
    now = now or utcnow()
    _require(actor, "link_household")
    if not str(household_id or "").isdigit():
        raise ValidationError(T.BAD_HOUSEHOLD, field="household_id")
    with session_scope(ctx.engine) as session:
        case = _load(session, ctx, actor, case_id, for_update=True)
        _open(case)
        _check_version(case, version)
        if case.household_id is not None:
            raise Conflict(T.ALREADY_LINKED)
        hh = household_in_scope(session, int(household_id), actor.region_path)
        if hh is None or hh.village_id != case.village_id:
            raise ValidationError(T.BAD_HOUSEHOLD, field="household_id")
        from storage.triage import open_cases_of_household

        others = open_cases_of_household(session, hh.id, exclude_id=case.id)
        fields: dict[str, Any] = {"household_id": hh.id}
        if others and not case.possible_duplicate_of_id:
            fields["possible_duplicate_of_id"] = others[-1].id
        add_event(session, case, action="household_linked", actor_kind="staff", actor_id=actor.id,
                  actor_name=actor.name, step=case.step, note=hh.head_name, now=now)
        update_case(session, case, now=now, **fields)
        _finish(session, actor, case, "link_household", T.AUDIT_LINK.format(name=hh.head_name), ip)
        return Result(case.id, case.ref, T.DONE_LINK)


def assign(ctx: Context, actor: Actor, case_id: int, *, staff_id: str, version: str, ip: str = "",
           now: dt.datetime | None = None) -> Result:
    """Assign the case to a staff member who can see it (village cadres may only take it themselves)."""
    now = now or utcnow()
    _require(actor, "assign")
    if not str(staff_id or "").isdigit():
        raise ValidationError(T.BAD_ASSIGNEE, field="staff_id")
    sid = int(staff_id)
    if actor.role == "village" and sid != actor.id:
        raise Forbidden(T.VILLAGE_ASSIGN_SELF)
    from storage.triage import staff_by_id

    with session_scope(ctx.engine) as session:
        case = _load(session, ctx, actor, case_id, for_update=True)
        _open(case)
        _check_version(case, version)
        staff = staff_by_id(session, sid)
        region = session.get(Region, staff.region_id) if staff else None
        sees_case = region is not None and case.region_path.startswith(region.path)
        if staff is None or not staff.active or staff.role == "admin" or not sees_case:
            raise ValidationError(T.BAD_ASSIGNEE, field="staff_id")
        add_event(session, case, action="assigned", actor_kind="staff", actor_id=actor.id, actor_name=actor.name,
                  step=case.step, data={"assignee": staff.display_name}, now=now)
        update_case(session, case, assigned_to_id=staff.id, now=now)
        _finish(session, actor, case, "assign", T.AUDIT_ASSIGN.format(name=staff.username), ip)
        return Result(case.id, case.ref, T.DONE_ASSIGN.format(name=staff.display_name))


def add_note(ctx: Context, actor: Actor, case_id: int, *, note: str, version: str, ip: str = "",
             now: dt.datetime | None = None) -> Result:
    now = now or utcnow()
    _require(actor, "note")
    note = _text({"note": note}, "note", limit=MAX_NOTE, label=T.LABEL_NOTE, required=True)
    with session_scope(ctx.engine) as session:
        case = _load(session, ctx, actor, case_id, for_update=True)
        _check_version(case, version)
        add_event(session, case, action="note", actor_kind="staff", actor_id=actor.id, actor_name=actor.name,
                  step=case.step, note=note, now=now)
        _finish(session, actor, case, "note", "", ip)
        return Result(case.id, case.ref, T.DONE_NOTE)


def act(
    ctx: Context, actor: Actor, case_id: int, action: str, form: dict[str, Any], *, upload: Upload | None = None,
    upload_dir: Path | None = None, max_upload_bytes: int = 5 * 1024 * 1024, ip: str = "",
    now: dt.datetime | None = None,
) -> Result:
    """Dispatch a posted case-page form (plain strings) to its use case."""
    version = str(form.get("version") or "")
    common = {"version": version, "ip": ip, "now": now}
    if action == "advance":
        return advance(ctx, actor, case_id, step=str(form.get("step") or ""), note=str(form.get("note") or ""),
                       evidence=str(form.get("evidence") or ""), upload=upload, upload_dir=upload_dir,
                       max_upload_bytes=max_upload_bytes, **common)
    if action == "decide":
        return decide(ctx, actor, case_id, outcome=str(form.get("outcome") or ""),
                      monitoring_type=str(form.get("monitoring_type") or ""), reason=str(form.get("reason") or ""),
                      merge_into=str(form.get("merge_into") or ""), note=str(form.get("note") or ""), **common)
    if action == "merge":
        into = str(form.get("into_id") or "")
        return merge(ctx, actor, case_id, into_ref=str(form.get("merge_into") or ""),
                     into_id=int(into) if into.isdigit() else None, note=str(form.get("note") or ""), **common)
    if action == "dismiss_duplicate":
        return dismiss_duplicate(ctx, actor, case_id, note=str(form.get("note") or ""), **common)
    if action == "first_aid":
        return first_aid(ctx, actor, case_id, kind=str(form.get("kind") or ""), amount=str(form.get("amount") or ""),
                         note=str(form.get("note") or ""), **common)
    if action == "assistance":
        return record_assistance(ctx, actor, case_id, kind=str(form.get("kind") or ""),
                                 amount=str(form.get("amount") or ""), note=str(form.get("note") or ""), **common)
    if action == "clear_risk":
        conds = form.get("conditions") or []
        conds = [conds] if isinstance(conds, str) else list(conds)
        return clear_risk(ctx, actor, case_id, conditions=conds, note=str(form.get("note") or ""), **common)
    if action == "mark_urgent":
        return mark_urgent(ctx, actor, case_id, reason=str(form.get("reason") or ""), **common)
    if action == "link_household":
        return link_household(ctx, actor, case_id, household_id=str(form.get("household_id") or ""), **common)
    if action == "assign":
        return assign(ctx, actor, case_id, staff_id=str(form.get("staff_id") or ""), **common)
    if action == "note":
        return add_note(ctx, actor, case_id, note=str(form.get("note") or ""), **common)
    raise ValidationError(T.BAD_ACTION, field="action")


# --- notifications ----------------------------------------------------------------------------


def _notify_villager(session, case: Case, outcome: str, *, reason: str = "", monitoring_type: str | None = None,
                     other_ref: str = "", now: dt.datetime) -> int:
    """Tell the villager the outcome in plain words: a customer-service text, with a template fallback."""
    words = T.VILLAGER_OUTCOME[outcome].format(
        ref=case.ref, reason=reason, other=other_ref,
        type=T.PLAIN_MONITORING.get(monitoring_type or "", ""),
    )
    result = T.TEMPLATE_RESULT[outcome]
    data = {"ref": case.ref, "status": result, "reason": reason or T.TEMPLATE_NO_REASON,
            "date": now.astimezone(CST).strftime("%Y-%m-%d")}
    sent = 0
    for openid in villager_openids(session, case):
        row = enqueue(
            session, kind="text", recipient=openid,
            # Outside WeChat's 48-hour window the worker sends the template instead.
            payload={"content": words, "fallback_template": {"template": "outcome", "data": data}},
            dedupe_key=f"outcome:{case.id}:{outcome}:{openid}", case_id=case.id,
        )
        sent += row is not None
    return sent


def notify_township(session, case: Case) -> int:
    """Queue the urgent-case template to the township staff responsible for the case's village."""
    village = session.get(Region, case.village_id) if case.village_id else None
    if village is None:
        return 0
    township = next((r for r in reversed(ancestors(session, village)) if r.level == "township"), None)
    if township is None:
        return 0
    sent = 0
    for staff in staff_in_region(session, region_path_prefix=township.path, roles=("township",)):
        if not staff.wechat_openid:
            continue
        row = enqueue(
            session, kind="template", recipient=staff.wechat_openid,
            payload={"template": "urgent_case",
                     "data": {"ref": case.ref, "village": village.name, "reasons": case.urgent_reasons},
                     "fallback_text": T.STAFF_URGENT_TEXT.format(ref=case.ref, village=village.name,
                                                                 reasons=case.urgent_reasons)},
            dedupe_key=f"urgent:{case.id}:{staff.id}", case_id=case.id,
        )
        sent += row is not None
    return sent


# --- evidence files ---------------------------------------------------------------------------


def attachment_file(ctx: Context, actor: Actor, attachment_id: int, *, ip: str = "",
                    root: Path | None = None) -> tuple[Path, str, str]:
    """(path, content type, download name) of a stored evidence file the actor may see; audited.

    A relative path (the mini-program stores ``uploads/<case>/<sha256>.<ext>``) is relative to ``root``,
    the instance folder."""
    from storage.models import Attachment

    with session_scope(ctx.engine) as session:
        att = session.get(Attachment, attachment_id)
        case = case_in_scope(session, att.case_id, actor.region_path) if att else None
        if att is None or case is None or not att.path:
            raise NotFound(T.FILE_NOT_FOUND)
        path = Path(att.path)
        if not path.is_absolute() and root is not None:
            path = root / path
        if not path.is_file():
            raise NotFound(T.FILE_NOT_FOUND)
        audit(session, action="view_file", actor_id=actor.id, actor_name=actor.username, target=case.ref,
              detail=T.AUDIT_FILE.format(id=att.id), ip=ip)
        return path, att.content_type or "application/octet-stream", f"{case.ref}-{att.id}{path.suffix}"

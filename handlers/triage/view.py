"""The case page's read model: everything one case shows to one staff member, and what they may do.

Personal data is masked unless the viewer pressed 显示 (``reveal``), which is audited. The policy
clauses beside the case come from ``clauses``; the actions offered follow the procedure's roles.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from storage import session_scope
from storage.audit import audit
from storage.cases import attachments_of, case_in_scope, cases_merged_into, events_of
from storage.crypto import mask_id_number, mask_phone
from storage.enums import (
    DECISION_STEPS,
    AssistanceKind,
    Channel,
    HouseholdCategory,
    MonitoringType,
    Outcome,
    ProcedureStep,
    RiskType,
)
from storage.households import households_in_villages
from storage.models import Case, Household, Region, utcnow
from storage.people import staff_by_id, staff_under
from storage.regions import ancestors, region_label

from .. import triage_texts as T
from ..context import Context
from ..deadlines import is_overdue
from ..errors import Forbidden
from ..staff import Actor
from .clauses import Clause, clauses_for
from .common import ACTION_ROLES, STEP_ROLES, decrypt_shown, label, masked, version_of
from .guards import load_case, notice_end


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


def _person(ctx: Context, name: str, id_enc: str | None, phone_enc: str | None, reveal: bool) -> PersonView:
    idn, phone = decrypt_shown(ctx, id_enc), decrypt_shown(ctx, phone_enc)
    if reveal:
        return PersonView(name, idn or "", phone or "", True)
    return PersonView(name, masked(mask_id_number, idn), masked(mask_phone, phone), False)


def allowed_actions(ctx: Context, actor: Actor, case: Case, household: Household | None, now: dt.datetime) -> dict[str, ActionSpec]:
    """The actions this actor may take on this case at its current step (what the page shows)."""
    out: dict[str, ActionSpec] = {}
    role = actor.role

    def can(name: str) -> bool:
        return role in ACTION_ROLES[name]

    if case.closed_at is None:
        step = case.step
        if step in STEP_ROLES and step != "county" and role in STEP_ROLES[step]:
            text = T.ADVANCE_LABELS.get(step, T.ADVANCE_DEFAULT.format(step=label(ProcedureStep, step)))
            out["advance"] = ActionSpec("advance", text, step)
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


def _details(action: str, data: dict[str, Any]) -> list[str]:
    details: list[str] = []
    if action == "decided":
        if data.get("monitoring_type"):
            details.append(T.DETAIL_MONITORING.format(type=label(MonitoringType, data["monitoring_type"])))
        if data.get("reason"):
            details.append(T.DETAIL_REASON.format(reason=data["reason"]))
    if data.get("kind"):
        details.append(T.DETAIL_KIND.format(kind=label(AssistanceKind, data["kind"])))
    if data.get("amount"):
        details.append(T.DETAIL_AMOUNT.format(amount=data["amount"]))
    if data.get("evidence"):
        details.append(T.DETAIL_EVIDENCE.format(evidence=data["evidence"]))
    if data.get("other_ref"):
        details.append(T.DETAIL_OTHER.format(ref=data["other_ref"]))
    if data.get("conditions"):
        details.append(T.DETAIL_CONDITIONS.format(items="、".join(T.CLEAR_CONDITIONS.get(c, c) for c in data["conditions"])))
    if data.get("reason") and action != "decided":
        details.append(T.DETAIL_REASON.format(reason=data["reason"]))
    if data.get("assignee"):
        details.append(T.DETAIL_ASSIGNEE.format(name=data["assignee"]))
    if data.get("file"):
        details.append(T.DETAIL_FILE.format(name=data["file"]))
    return details


def _timeline(events) -> list[TimelineItem]:
    items = []
    for e in events:
        data = e.data or {}
        text = T.EVENT_LABELS.get(e.action, e.action)
        if e.action == "step_done" and e.step:
            text = T.EVENT_STEP_DONE.format(step=label(ProcedureStep, e.step))
        if e.action == "decided":
            text = T.EVENT_DECIDED.format(outcome=label(Outcome, data.get("outcome")))
        items.append(TimelineItem(e.at, e.actor_name or T.ACTOR_KINDS.get(e.actor_kind, e.actor_kind), text,
                                  label(ProcedureStep, e.step), e.note, _details(e.action, data)))
    return items


def _steps(case: Case) -> list[tuple[str, str, str]]:
    order = [s.value for s in DECISION_STEPS] + ["assistance", "closed"]
    cur = order.index(case.step) if case.step in order else 0
    steps = [(code, label(ProcedureStep, code), "done" if i < cur else "current" if i == cur else "todo")
             for i, code in enumerate(order)]
    if case.closed_at is not None:
        steps = [(c, lbl, "done" if st != "todo" else "skipped") for c, lbl, st in steps]
    return steps


def _assignable(session, actor: Actor, village: Region) -> list[tuple[int, str]]:
    """Staff the case may be assigned to: active staff of the village's chain the actor can see."""
    out: list[tuple[int, str]] = []
    chain_paths = {r.path for r in ancestors(session, village)}
    for s in staff_under(session, actor.region_path if actor.role != "village" else village.path):
        region = session.get(Region, s.region_id)
        if region is not None and region.path in chain_paths and s.role != "admin":
            out.append((s.id, f"{s.display_name}（{T.ROLE_LABELS.get(s.role, s.role)}）"))
    if actor.role == "village":
        out = [(i, n) for i, n in out if i == actor.id]
    return out


def case_view(
    ctx: Context, actor: Actor, case_id: int, *, reveal: bool = False, ip: str = "", now: dt.datetime | None = None,
    with_clauses: bool = True,
) -> CaseView:
    """Everything the case page shows. ``reveal`` shows ID numbers and phones in full and is audited."""
    now = now or utcnow()
    if reveal and actor.role not in ACTION_ROLES["reveal"]:
        raise Forbidden(T.NOT_ALLOWED_REVEAL)
    with session_scope(ctx.engine) as session:
        case = load_case(session, actor, case_id)
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
                "category": label(HouseholdCategory, household.category), "members": household.members,
                "address": household.address, "group": household.group_name,
                "labor": household.has_labor_capacity,
            }
        dup = None
        if case.possible_duplicate_of_id:
            other = case_in_scope(session, case.possible_duplicate_of_id, actor.region_path)
            if other is not None:
                dup = {"id": other.id, "ref": other.ref, "open": other.closed_at is None,
                       "step_label": label(ProcedureStep, other.step)}
        merged_into = None
        if case.merged_into_id:
            other = case_in_scope(session, case.merged_into_id, actor.region_path)
            if other is not None:
                merged_into = {"id": other.id, "ref": other.ref}
        merged_from = [{"id": c.id, "ref": c.ref} for c in cases_merged_into(session, case.id)]
        assistance = [
            {"at": e.at, "kind": label(AssistanceKind, (e.data or {}).get("kind")), "amount": (e.data or {}).get("amount"),
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
        assignable = _assignable(session, actor, village) if "assign" in actions and village is not None else []
        assigned = ""
        if case.assigned_to_id:
            s = staff_by_id(session, case.assigned_to_id)
            assigned = s.display_name if s else ""
        village_households = []
        if "link_household" in actions and case.village_id:
            village_households = [(h.id, f"{h.head_name}（{h.address or h.group_name}）")
                                  for h in households_in_villages(session, [case.village_id])]
        view = CaseView(
            id=case.id, ref=case.ref, version=version_of(case), step=case.step,
            step_label=label(ProcedureStep, case.step), steps=_steps(case), outcome=case.outcome,
            outcome_label=label(Outcome, case.outcome), outcome_reason=case.outcome_reason,
            monitoring_type_label=label(MonitoringType, case.monitoring_type),
            channel_label=label(Channel, case.channel), urgent=case.urgent, urgent_reasons=case.urgent_reasons,
            first_aid_at=case.first_aid_at, risk_labels=[label(RiskType, r) for r in case.risk_types],
            description=case.description, region_label=region_label(session, village), village_id=case.village_id,
            created_at=case.created_at, due_at=case.due_at if case.closed_at is None else None,
            overdue=case.closed_at is None and is_overdue(case.due_at, now),
            working_days_left=(ctx.calendar.working_days_left(case.due_at, now)
                               if case.due_at and case.closed_at is None else None),
            notice_ends_at=notice_end(ctx, case), closed=case.closed_at is not None,
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
        view.clauses, view.clauses_error = clauses_for(ctx, risk_types, county)
    return view


def _owner_hint(actor: Actor, case: Case) -> str:
    """Why the actor sees no step button: the current step belongs to another role."""
    if case.closed_at is not None or case.step not in STEP_ROLES or actor.role in STEP_ROLES[case.step]:
        return ""
    roles = "、".join(T.ROLE_LABELS[r] for r in sorted(STEP_ROLES[case.step]))
    return T.STEP_OWNER_HINT.format(step=label(ProcedureStep, case.step), roles=roles)

"""The official procedure as a state machine: completing steps, the county's decision, merging, closing.

A case's ``step`` is the step that is being worked on now. Completing it (``advance``) records
who, when, a note and optional evidence, and moves the case to the next step with a fresh
working-day deadline. The order is fixed (``storage.enums.DECISION_STEPS``)::

    风险预警 → 入户核查 → 承诺授权 → 信息比对 → 民主评议 → 村级公示 → 乡镇审核 → 县级审定

At 县级审定 the county decides (``decide``): 纳入监测 with a monitoring type (the case moves to
帮扶, still open), 不予纳入 with a reason the villager is told (closed), or 合并 into another
case (closed). Under 帮扶, measures are recorded (``actions.record_assistance``) and 风险消除
(``clear_risk``) closes the case once its conditions are confirmed, never for a household
without labour capacity. A green-channel (urgent) case may get 先行救助 (``actions.first_aid``) at
any step; it does not skip any step afterwards.

``STEP_ROLES`` says who may complete each step; ``ACTION_ROLES`` who may do everything else.
Every change is checked against the version of the case the form was built from, so a replayed
or stale form changes nothing; it writes a timeline event and an audit row, and outcome
notifications go into the outbox in the same transaction.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from storage import session_scope
from storage.cases import (
    add_event,
    case_by_ref_in_scope,
    case_in_scope,
    events_with_action,
    set_risk_types,
    update_case,
)
from storage.enums import MonitoringType, Outcome, ProcedureStep
from storage.files import StoredFile
from storage.models import Household, utcnow

from .. import triage_texts as T
from ..context import Context
from ..errors import Conflict, Forbidden, ValidationError
from ..evidence import Upload, discard, store_for
from ..staff import Actor
from .common import STEP_ROLES, label
from .files import MAX_UPLOAD_BYTES, check_upload, store_upload
from .forms import MAX_EVIDENCE, MAX_REASON, checked_note, checked_text
from .guards import (
    Result,
    check_version,
    due,
    finish,
    load_case,
    local_time,
    notice_end,
    require,
    require_open,
)
from .notify import notify_villager

CLEAR_CONDITION_KEYS = ("income_stable", "basic_needs", "water_safe")


def advance(
    ctx: Context, actor: Actor, case_id: int, *, step: str, version: str, note: str = "", evidence: str = "",
    upload: Upload | None = None, upload_root: Path | None = None, max_upload_bytes: int = MAX_UPLOAD_BYTES,
    ip: str = "", now: dt.datetime | None = None,
) -> Result:
    """Complete the current step ``step`` and move the case to the next one.

    An evidence file (``upload``) is stored under ``upload_root``, the instance folder; without a
    root, files are refused."""
    now = now or utcnow()
    note = checked_note(note)
    evidence_text = checked_text(evidence, "evidence", limit=MAX_EVIDENCE, label=T.LABEL_EVIDENCE)
    try:
        wanted = ProcedureStep.parse(step).value
    except ValueError as exc:
        raise ValidationError(T.BAD_STEP, field="step") from exc
    store = store_for(upload_root) if upload_root is not None else None
    written: list[StoredFile] = []
    try:
        with session_scope(ctx.engine) as session:
            case = load_case(session, actor, case_id, for_update=True)
            require_open(case)
            if case.step != wanted:
                raise Conflict(T.OUT_OF_ORDER.format(current=label(ProcedureStep, case.step),
                                                     wanted=label(ProcedureStep, wanted)))
            if wanted not in STEP_ROLES or wanted == "county":
                raise Conflict(T.STEP_NEEDS_DECISION if wanted == "county" else T.BAD_STEP)
            if actor.role not in STEP_ROLES[wanted]:
                allowed = "、".join(T.ROLE_LABELS[r] for r in sorted(STEP_ROLES[wanted]))
                raise Forbidden(T.STEP_NOT_ALLOWED.format(step=label(ProcedureStep, wanted), roles=allowed,
                                                          role=actor.role_label))
            check_version(case, version)
            if wanted == "notice":
                ends = notice_end(ctx, case)
                if ends is not None and now < ends:
                    raise Conflict(T.NOTICE_RUNNING.format(days=ctx.notice_days, end=local_time(ends)))
            kind = check_upload(upload, upload_root, max_upload_bytes)
            data: dict[str, Any] = {}
            if evidence_text:
                data["evidence"] = evidence_text
            if kind is not None:
                store_upload(session, store, case, upload, kind, written)
                data["file"] = upload.filename[:100]
            add_event(session, case, action="step_done", actor_kind="staff", actor_id=actor.id,
                      actor_name=actor.name, step=wanted, note=note, data=data, now=now)
            nxt = ProcedureStep.parse(wanted).next().value
            update_case(session, case, step=nxt, step_started_at=now, due_at=due(session, ctx, nxt, case, now),
                        now=now)
            finish(session, actor, case, "step",
                   T.AUDIT_STEP.format(done=label(ProcedureStep, wanted), next=label(ProcedureStep, nxt)), ip)
            return Result(case.id, case.ref,
                          T.DONE_STEP.format(step=label(ProcedureStep, wanted), next=label(ProcedureStep, nxt)))
    except BaseException:
        if store is not None:
            discard(store, written)
        raise


def decide(
    ctx: Context, actor: Actor, case_id: int, *, outcome: str, version: str, monitoring_type: str = "",
    reason: str = "", merge_into: str = "", note: str = "", ip: str = "", now: dt.datetime | None = None,
) -> Result:
    """县级审定: 纳入监测 (monitored), 不予纳入 (rejected) or 合并 (merged)."""
    now = now or utcnow()
    require(actor, "decide")
    note = checked_note(note)
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
        reason = checked_text(reason, "reason", limit=MAX_REASON, label=T.LABEL_REASON, required=True)
    with session_scope(ctx.engine) as session:
        case = load_case(session, actor, case_id, for_update=True)
        require_open(case)
        if case.step != "county":
            raise Conflict(T.OUT_OF_ORDER.format(current=label(ProcedureStep, case.step),
                                                 wanted=label(ProcedureStep, "county")))
        check_version(case, version)
        add_event(session, case, action="decided", actor_kind="staff", actor_id=actor.id, actor_name=actor.name,
                  step="county", note=note,
                  data={"outcome": outcome, "monitoring_type": mtype, "reason": reason}, now=now)
        if outcome == "monitored":
            update_case(session, case, outcome="monitored", monitoring_type=mtype, step="assistance",
                        step_started_at=now, due_at=None, now=now)
        else:
            update_case(session, case, outcome="rejected", outcome_reason=reason, step="closed",
                        step_started_at=now, due_at=None, closed_at=now, now=now)
        sent = notify_villager(session, case, outcome, reason=reason, monitoring_type=mtype, now=now)
        finish(session, actor, case, "decide",
               T.AUDIT_DECIDE_MONITORED.format(type=label(MonitoringType, mtype)) if mtype
               else T.AUDIT_DECIDE_REJECTED.format(reason=reason), ip)
        return Result(case.id, case.ref, T.DONE_DECIDE.format(outcome=label(Outcome, outcome)), notified=sent)


def merge(
    ctx: Context, actor: Actor, case_id: int, *, into_ref: str = "", into_id: int | None = None, version: str,
    note: str = "", ip: str = "", now: dt.datetime | None = None, at_decision: bool = False,
) -> Result:
    """合并: close this case as a duplicate of another open case in the actor's scope."""
    now = now or utcnow()
    require(actor, "decide" if at_decision else "merge")
    note = checked_note(note)
    with session_scope(ctx.engine) as session:
        case = load_case(session, actor, case_id, for_update=True)
        require_open(case)
        check_version(case, version)
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
        sent = notify_villager(session, case, "merged", other_ref=target.ref, now=now)
        finish(session, actor, case, "merge", T.AUDIT_MERGE.format(ref=target.ref), ip)
        return Result(case.id, case.ref, T.DONE_MERGE.format(ref=target.ref), notified=sent,
                      extra={"into_id": target.id})


def clear_risk(ctx: Context, actor: Actor, case_id: int, *, conditions: list[str], version: str, note: str = "",
               ip: str = "", now: dt.datetime | None = None) -> Result:
    """风险消除: every condition confirmed, at least one measure recorded, and labour capacity."""
    now = now or utcnow()
    require(actor, "clear_risk")
    note = checked_note(note)
    missing = [c for c in CLEAR_CONDITION_KEYS if c not in set(conditions or [])]
    if missing:
        raise ValidationError(T.CLEAR_MISSING.format(items="、".join(T.CLEAR_CONDITIONS[c] for c in missing)),
                              field="conditions")
    with session_scope(ctx.engine) as session:
        case = load_case(session, actor, case_id, for_update=True)
        require_open(case)
        if case.step != "assistance":
            raise Conflict(T.CLEAR_NOT_YET)
        check_version(case, version)
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
        sent = notify_villager(session, case, "risk_cleared", now=now)
        finish(session, actor, case, "clear_risk",
               T.AUDIT_CLEAR.format(items="、".join(T.CLEAR_CONDITIONS[c] for c in CLEAR_CONDITION_KEYS)), ip)
        return Result(case.id, case.ref, T.DONE_CLEAR, notified=sent)

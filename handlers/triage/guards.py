"""What every change to a case checks first, and what every change records last.

A change loads the case in the actor's scope (locked), refuses a role that may not act, a closed
case, or a form built from an older version of the case, and ends with an audit row.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from storage.audit import audit
from storage.cases import case_in_scope
from storage.enums import Outcome
from storage.models import Case, Region
from storage.refs import CST
from storage.regions import deadline_days

from .. import triage_texts as T
from ..context import Context
from ..deadlines import DEFAULT_STEP_DAYS
from ..errors import Conflict, Forbidden, NotFound
from ..staff import Actor
from .common import ACTION_ROLES, label, version_of


@dataclass
class Result:
    case_id: int
    ref: str
    message: str
    notified: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


def load_case(session, actor: Actor, case_id: int, *, for_update: bool = False) -> Case:
    """The case if the actor's region holds it; ``NotFound`` otherwise (no hint that it exists)."""
    case = case_in_scope(session, case_id, actor.region_path, for_update=for_update)
    if case is None:
        raise NotFound(T.CASE_NOT_FOUND)
    return case


def require(actor: Actor, name: str) -> None:
    if actor.role not in ACTION_ROLES[name]:
        raise Forbidden(T.NOT_ALLOWED.format(role=actor.role_label, action=T.ACTION_LABELS.get(name, name)))


def check_version(case: Case, version: str) -> None:
    if not version or version != version_of(case):
        raise Conflict(T.STALE_FORM)


def require_open(case: Case) -> None:
    if case.closed_at is not None:
        raise Conflict(T.CASE_CLOSED.format(outcome=label(Outcome, case.outcome) or T.CLOSED))


def finish(session, actor: Actor, case: Case, action: str, detail: str, ip: str) -> None:
    """The audit row of a change."""
    audit(session, action=action, actor_id=actor.id, actor_name=actor.username, target=case.ref, detail=detail, ip=ip)


def notice_end(ctx: Context, case: Case) -> dt.datetime | None:
    """When the 村级公示 notice of a case at that step may come down."""
    if case.step != "notice":
        return None
    return case.step_started_at + dt.timedelta(days=ctx.notice_days)


def due(session, ctx: Context, step: str, case: Case, now: dt.datetime) -> dt.datetime | None:
    """The deadline of ``step`` started now: the region's working days, or the default."""
    if step not in DEFAULT_STEP_DAYS:
        return None
    village = session.get(Region, case.village_id) if case.village_id else None
    days = deadline_days(session, step=step, region=village)
    when = ctx.calendar.add_working_days(now, days if days is not None else DEFAULT_STEP_DAYS[step])
    if step == "notice":  # the township cannot act before the notice period is over
        when = max(when, now + dt.timedelta(days=ctx.notice_days))
    return when


def local_time(when: dt.datetime) -> str:
    local = when.astimezone(CST)
    return f"{local.month}月{local.day}日 {local:%H:%M}"

"""What staff do to a case besides completing steps: 先行救助, 帮扶 measures, the green channel,
linking a household, assigning, notes, and clearing a duplicate flag.

Each checks the role, the case's scope and the form's version, writes a timeline event and an
audit row in one transaction (``guards``).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from storage import session_scope
from storage.cases import add_event, open_cases_of_household, update_case
from storage.enums import AssistanceKind
from storage.households import household_in_scope
from storage.models import Case, Region, utcnow
from storage.people import staff_by_id

from .. import triage_texts as T
from ..context import Context
from ..errors import Conflict, Forbidden, ValidationError
from ..staff import Actor
from .common import label
from .forms import MAX_REASON, checked_amount, checked_id, checked_kind, checked_note, checked_text
from .guards import Result, check_version, finish, load_case, require, require_open
from .notify import notify_township


def _measure(kind: str, amount: int | None) -> str:
    return T.AUDIT_MEASURE.format(kind=label(AssistanceKind, kind),
                                  amount=T.AUDIT_AMOUNT.format(amount=amount) if amount else "")


def dismiss_duplicate(ctx: Context, actor: Actor, case_id: int, *, version: str, note: str = "", ip: str = "",
                      now: dt.datetime | None = None) -> Result:
    """Not a duplicate after all: clear the flag (recorded)."""
    now = now or utcnow()
    require(actor, "dismiss_duplicate")
    note = checked_note(note)
    with session_scope(ctx.engine) as session:
        case = load_case(session, actor, case_id, for_update=True)
        check_version(case, version)
        if not case.possible_duplicate_of_id:
            raise Conflict(T.NOT_FLAGGED)
        other = session.get(Case, case.possible_duplicate_of_id)
        add_event(session, case, action="duplicate_dismissed", actor_kind="staff", actor_id=actor.id,
                  actor_name=actor.name, step=case.step, note=note, data={"other_ref": other.ref if other else ""}, now=now)
        update_case(session, case, possible_duplicate_of_id=None, now=now)
        finish(session, actor, case, "dismiss_duplicate", T.AUDIT_DISMISS.format(ref=other.ref if other else "?"), ip)
        return Result(case.id, case.ref, T.DONE_DISMISS)


def first_aid(ctx: Context, actor: Actor, case_id: int, *, kind: str, version: str, amount: str = "", note: str = "",
              ip: str = "", now: dt.datetime | None = None) -> Result:
    """先行救助 for a green-channel case, at any step; the procedure carries on afterwards."""
    now = now or utcnow()
    require(actor, "first_aid")
    kind_code, value = checked_kind(kind), checked_amount(amount)
    note = checked_note(note, required=True)
    with session_scope(ctx.engine) as session:
        case = load_case(session, actor, case_id, for_update=True)
        require_open(case)
        if not case.urgent:
            raise Conflict(T.FIRST_AID_NOT_URGENT)
        check_version(case, version)
        add_event(session, case, action="first_aid", actor_kind="staff", actor_id=actor.id, actor_name=actor.name,
                  step=case.step, note=note, data={"kind": kind_code, "amount": value}, now=now)
        if case.first_aid_at is None:
            update_case(session, case, first_aid_at=now, now=now)
        finish(session, actor, case, "first_aid", _measure(kind_code, value), ip)
        return Result(case.id, case.ref, T.DONE_FIRST_AID)


def record_assistance(ctx: Context, actor: Actor, case_id: int, *, kind: str, version: str, amount: str = "",
                      note: str = "", ip: str = "", now: dt.datetime | None = None) -> Result:
    """帮扶: record a measure for a monitored case."""
    now = now or utcnow()
    require(actor, "assistance")
    kind_code, value = checked_kind(kind), checked_amount(amount)
    note = checked_note(note)
    with session_scope(ctx.engine) as session:
        case = load_case(session, actor, case_id, for_update=True)
        require_open(case)
        if case.step != "assistance":
            raise Conflict(T.ASSISTANCE_NOT_YET)
        check_version(case, version)
        add_event(session, case, action="assistance", actor_kind="staff", actor_id=actor.id, actor_name=actor.name,
                  step="assistance", note=note, data={"kind": kind_code, "amount": value}, now=now)
        finish(session, actor, case, "assistance", _measure(kind_code, value), ip)
        return Result(case.id, case.ref, T.DONE_ASSISTANCE)


def mark_urgent(ctx: Context, actor: Actor, case_id: int, *, reason: str, version: str, ip: str = "",
                now: dt.datetime | None = None) -> Result:
    """Move a case into the green channel (绿色通道) and notify the township staff at once."""
    now = now or utcnow()
    require(actor, "mark_urgent")
    reason = checked_text(reason, "reason", limit=MAX_REASON, label=T.LABEL_URGENT_REASON, required=True)
    with session_scope(ctx.engine) as session:
        case = load_case(session, actor, case_id, for_update=True)
        require_open(case)
        check_version(case, version)
        if case.urgent:
            raise Conflict(T.ALREADY_URGENT)
        add_event(session, case, action="urgent", actor_kind="staff", actor_id=actor.id, actor_name=actor.name,
                  step=case.step, note="", data={"reason": reason}, now=now)
        update_case(session, case, urgent=True, urgent_reasons=reason, now=now)
        sent = notify_township(session, case)
        finish(session, actor, case, "mark_urgent", reason, ip)
        return Result(case.id, case.ref, T.DONE_URGENT, notified=sent)


def link_household(ctx: Context, actor: Actor, case_id: int, *, household_id: str, version: str, ip: str = "",
                   now: dt.datetime | None = None) -> Result:
    """Attach an unbound reporter's case to the household record found at the visit."""
    now = now or utcnow()
    require(actor, "link_household")
    hid = checked_id(household_id, T.BAD_HOUSEHOLD, "household_id")
    with session_scope(ctx.engine) as session:
        case = load_case(session, actor, case_id, for_update=True)
        require_open(case)
        check_version(case, version)
        if case.household_id is not None:
            raise Conflict(T.ALREADY_LINKED)
        hh = household_in_scope(session, hid, actor.region_path)
        if hh is None or hh.village_id != case.village_id:
            raise ValidationError(T.BAD_HOUSEHOLD, field="household_id")
        others = open_cases_of_household(session, hh.id, exclude_id=case.id)
        fields: dict[str, Any] = {"household_id": hh.id}
        if others and not case.possible_duplicate_of_id:
            fields["possible_duplicate_of_id"] = others[-1].id
        add_event(session, case, action="household_linked", actor_kind="staff", actor_id=actor.id,
                  actor_name=actor.name, step=case.step, note=hh.head_name, now=now)
        update_case(session, case, now=now, **fields)
        finish(session, actor, case, "link_household", T.AUDIT_LINK.format(name=hh.head_name), ip)
        return Result(case.id, case.ref, T.DONE_LINK)


def assign(ctx: Context, actor: Actor, case_id: int, *, staff_id: str, version: str, ip: str = "",
           now: dt.datetime | None = None) -> Result:
    """Assign the case to a staff member who can see it (village cadres may only take it themselves)."""
    now = now or utcnow()
    require(actor, "assign")
    sid = checked_id(staff_id, T.BAD_ASSIGNEE, "staff_id")
    if actor.role == "village" and sid != actor.id:
        raise Forbidden(T.VILLAGE_ASSIGN_SELF)
    with session_scope(ctx.engine) as session:
        case = load_case(session, actor, case_id, for_update=True)
        require_open(case)
        check_version(case, version)
        staff = staff_by_id(session, sid)
        region = session.get(Region, staff.region_id) if staff else None
        sees_case = region is not None and case.region_path.startswith(region.path)
        if staff is None or not staff.active or staff.role == "admin" or not sees_case:
            raise ValidationError(T.BAD_ASSIGNEE, field="staff_id")
        add_event(session, case, action="assigned", actor_kind="staff", actor_id=actor.id, actor_name=actor.name,
                  step=case.step, data={"assignee": staff.display_name}, now=now)
        update_case(session, case, assigned_to_id=staff.id, now=now)
        finish(session, actor, case, "assign", T.AUDIT_ASSIGN.format(name=staff.username), ip)
        return Result(case.id, case.ref, T.DONE_ASSIGN.format(name=staff.display_name))


def add_note(ctx: Context, actor: Actor, case_id: int, *, note: str, version: str, ip: str = "",
             now: dt.datetime | None = None) -> Result:
    now = now or utcnow()
    require(actor, "note")
    note = checked_note(note, required=True)
    with session_scope(ctx.engine) as session:
        case = load_case(session, actor, case_id, for_update=True)
        check_version(case, version)
        add_event(session, case, action="note", actor_kind="staff", actor_id=actor.id, actor_name=actor.name,
                  step=case.step, note=note, now=now)
        finish(session, actor, case, "note", "", ip)
        return Result(case.id, case.ref, T.DONE_NOTE)

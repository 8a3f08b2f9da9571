"""Queue queries for the staff console: scoped by region, urgent first, then by due date.

The order is ``urgent DESC, due_at ASC (NULLS LAST), id ASC``. Overdue cases need no extra sort
key: an overdue case is one whose ``due_at`` lies before now, so ascending due dates already put
every overdue case ahead of every case that is still in time. Pages are cut with a keyset
(the last row's ``(urgent, due_at, id)``), so page 500 costs what page 1 costs; the open queue
walks ``ix_case_queue (closed_at, urgent, due_at)``.

Region scoping is a prefix match on ``Case.region_path`` (``/1/4/9/``). It is written as
``LIKE '<prefix>%'`` (paths hold only digits and slashes, so nothing needs escaping), which is
correct under every collation; on SQLite a range on the same column is added so the planner can
use ``ix_case_region_path`` for narrow scopes.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

from sqlalchemy import and_, false, func, or_, true
from sqlmodel import Session, select

from .models import Case, Household, Region, StaffUser

_PATH_RE = re.compile(r"^/(\d+/)*$")


@dataclass(frozen=True)
class QueueFilter:
    """What a staff member asked the queue for. ``region_path`` is the viewer's scope (required)."""

    region_path: str
    status: str = "open"  # open / closed / all
    step: str | None = None
    risk: str | None = None
    village_id: int | None = None
    channel: str | None = None
    assigned_to_id: int | None = None
    urgent_only: bool = False
    overdue_only: bool = False
    #: Exact or prefix reference number (``SB20261122-0007`` / ``SB20261122``).
    ref: str | None = None
    #: Reporter or household head name (prefix match).
    name: str | None = None
    #: Blind index of a phone number (from ``DataCipher.blind_index``).
    phone_idx: str | None = None


@dataclass(frozen=True)
class Cursor:
    """The position after the last row of a page."""

    urgent: bool
    due_at: dt.datetime | None
    id: int


def _scope(session: Session, prefix: str):
    if not _PATH_RE.match(prefix or ""):
        raise ValueError(f"not a region path: {prefix!r}")
    cond = Case.region_path.like(prefix + "%")
    if session.get_bind().dialect.name == "sqlite" and prefix != "/":
        # '/' sorts just before '0': every path below the prefix lies in [prefix, prefix[:-1]+'0').
        cond = and_(Case.region_path >= prefix, Case.region_path < prefix[:-1] + "0", cond)
    return cond


def _conditions(session: Session, f: QueueFilter, now: dt.datetime, *, with_step: bool = True) -> list:
    conds = [_scope(session, f.region_path)]
    if f.status == "open":
        conds.append(Case.closed_at.is_(None))
    elif f.status == "closed":
        conds.append(Case.closed_at.is_not(None))
    if with_step and f.step:
        conds.append(Case.step == f.step)
    if f.risk:
        conds.append(Case.risk_codes.like(f"%,{f.risk},%"))
    if f.village_id is not None:
        conds.append(Case.village_id == f.village_id)
    if f.channel:
        conds.append(Case.channel == f.channel)
    if f.assigned_to_id is not None:
        conds.append(Case.assigned_to_id == f.assigned_to_id)
    if f.urgent_only:
        conds.append(Case.urgent == true())
    if f.overdue_only:
        conds.append(and_(Case.due_at.is_not(None), Case.due_at < now, Case.closed_at.is_(None)))
    if f.ref:
        ref = f.ref.strip().upper()
        conds.append(Case.ref == ref if len(ref) >= 15 else Case.ref.like(ref + "%"))
    if f.name:
        heads = select(Household.id).where(Household.head_name.like(f.name + "%"))
        conds.append(or_(Case.reporter_name.like(f.name + "%"), Case.household_id.in_(heads)))
    if f.phone_idx:
        homes = select(Household.id).where(Household.phone_idx == f.phone_idx)
        conds.append(or_(Case.reporter_phone_idx == f.phone_idx, Case.household_id.in_(homes)))
    return conds


def _after(cursor: Cursor):
    """Rows strictly after ``cursor`` in queue order (urgent DESC, due_at ASC NULLS LAST, id ASC)."""
    u = true() if cursor.urgent else false()
    later_group = Case.urgent == false() if cursor.urgent else false()
    if cursor.due_at is None:
        same_group = and_(Case.urgent == u, Case.due_at.is_(None), Case.id > cursor.id)
    else:
        same_group = and_(
            Case.urgent == u,
            or_(
                Case.due_at > cursor.due_at,
                Case.due_at.is_(None),
                and_(Case.due_at == cursor.due_at, Case.id > cursor.id),
            ),
        )
    return or_(later_group, same_group)


def queue_page(
    session: Session, f: QueueFilter, *, now: dt.datetime, limit: int = 50, after: Cursor | None = None
) -> tuple[list[tuple[Case, str]], Cursor | None]:
    """One page of ``(case, village name)`` in queue order and the cursor of the next page (or None)."""
    stmt = (
        select(Case, Region.name)
        .join(Region, Region.id == Case.village_id, isouter=True)
        .where(*_conditions(session, f, now))
    )
    if after is not None:
        stmt = stmt.where(_after(after))
    stmt = stmt.order_by(Case.urgent.desc(), Case.due_at.asc().nulls_last(), Case.id.asc()).limit(limit + 1)
    rows = [(c, name or "") for c, name in session.exec(stmt)]
    nxt = None
    if len(rows) > limit:
        rows = rows[:limit]
        last = rows[-1][0]
        nxt = Cursor(urgent=bool(last.urgent), due_at=last.due_at, id=last.id)
    return rows, nxt


def queue_cases(session: Session, f: QueueFilter, *, now: dt.datetime, limit: int = 10000) -> list[tuple[Case, str]]:
    """Every row of a filter in queue order (for exports), up to ``limit``."""
    rows, _ = queue_page(session, f, now=now, limit=limit)
    return rows


def queue_total(session: Session, f: QueueFilter, *, now: dt.datetime) -> int:
    return session.exec(select(func.count()).select_from(Case).where(*_conditions(session, f, now))).one()


def step_counts(session: Session, f: QueueFilter, *, now: dt.datetime) -> dict[str, int]:
    """Cases per step for the filter with its step condition left out (the tabs above the queue)."""
    stmt = select(Case.step, func.count()).where(*_conditions(session, f, now, with_step=False)).group_by(Case.step)
    return {step: n for step, n in session.exec(stmt)}


def urgent_overdue_counts(session: Session, region_path: str, *, now: dt.datetime) -> tuple[int, int]:
    """(open urgent, open overdue) in the scope: the two numbers at the top of the queue."""
    scope = [_scope(session, region_path), Case.closed_at.is_(None)]
    urgent = session.exec(select(func.count()).select_from(Case).where(*scope, Case.urgent == true())).one()
    overdue = session.exec(
        select(func.count()).select_from(Case).where(*scope, Case.due_at.is_not(None), Case.due_at < now)
    ).one()
    return urgent, overdue


def villages_under(session: Session, region_path: str) -> list[Region]:
    """Villages in the scope, for the village filter."""
    if not _PATH_RE.match(region_path or ""):
        raise ValueError(f"not a region path: {region_path!r}")
    stmt = select(Region).where(Region.level == "village", Region.path.like(region_path + "%")).order_by(Region.path)
    return list(session.exec(stmt))


def staff_under(session: Session, region_path: str) -> list[StaffUser]:
    """Active staff whose region lies in the scope (for assignment)."""
    stmt = (
        select(StaffUser)
        .join(Region, Region.id == StaffUser.region_id)
        .where(Region.path.like(region_path + "%"), StaffUser.active == true())
        .order_by(StaffUser.id)
    )
    return list(session.exec(stmt))


def households_by_ids(session: Session, ids: list[int]) -> dict[int, Household]:
    """Households of a page of cases, in one query."""
    if not ids:
        return {}
    return {h.id: h for h in session.exec(select(Household).where(Household.id.in_(sorted(set(ids)))))}


def staff_names(session: Session, ids: list[int]) -> dict[int, str]:
    if not ids:
        return {}
    stmt = select(StaffUser.id, StaffUser.display_name).where(StaffUser.id.in_(sorted(set(ids))))
    return {i: n for i, n in session.exec(stmt)}

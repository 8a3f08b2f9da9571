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
from dataclasses import dataclass

from sqlalchemy import and_, case, false, func, or_, true
from sqlmodel import Session, select

from .models import Case, Household, Region
from .regions import PATH_RE as _PATH_RE


@dataclass(frozen=True)
class QueueFilter:
    """What a staff member asked the queue for. ``region_path`` is the viewer's scope (required)."""

    region_path: str
    status: str = "open"  # open / closed / all
    step: str | None = None
    risk: str | None = None
    village_id: int | None = None
    #: A village's Region.path: the village filter as a prefix match (index-only for the counts).
    village_path: str | None = None
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
    return Case.region_path.like(prefix + "%")


def _conditions(session: Session, f: QueueFilter, now: dt.datetime, *, with_step: bool = True) -> list:
    conds = [_scope(session, f.region_path)]
    if f.status == "open" and f.name:
        # A name search reads every row anyway: written so that no index on closed_at is tried
        # (SQLite's statistics take "closed_at IS NULL" for one row and would look up 85 % of
        # the table row by row).
        conds.append(func.coalesce(Case.closed_at, None).is_(None))
    elif f.status == "open":
        conds.append(Case.closed_at.is_(None))
    elif f.status == "closed":
        conds.append(Case.closed_at.is_not(None))
    if with_step and f.step:
        conds.append(Case.step == f.step)
    if f.risk:
        conds.append(Case.risk_codes.like(f"%,{f.risk},%"))
    if f.village_id is not None:
        conds.append(Case.village_id == f.village_id)
    if f.village_path:  # same as village_id, but answered from ix_case_counts alone
        conds.append(_scope(session, f.village_path))
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
        if len(ref) >= 15:
            conds.append(Case.ref == ref)
        else:
            conds.append(Case.ref.like(ref.replace("%", "").replace("_", "") + "%"))
    if f.name:
        heads = select(Household.id).where(Household.head_name.like(f.name + "%"))
        conds.append(or_(Case.reporter_name.like(f.name + "%"), Case.household_id.in_(heads)))
    if f.phone_idx:
        # Resolved first, so the database sees two indexed equalities it can OR together.
        homes = list(session.exec(select(Household.id).where(Household.phone_idx == f.phone_idx)))
        conds.append(or_(Case.reporter_phone_idx == f.phone_idx, Case.household_id.in_(homes))
                     if homes else Case.reporter_phone_idx == f.phone_idx)
    return conds


#: The queue in segments, each served in order by ``ix_case_queue (closed_at, urgent, due_at)``
#: (plus the row id): (urgent, without a due date).
_SEGMENTS: tuple[tuple[bool, bool], ...] = ((True, False), (True, True), (False, False), (False, True))


def _segment_query(base, urgent: bool, no_due: bool, after: Cursor | None, *, open_only: bool):
    stmt = base.where(Case.urgent == (true() if urgent else false()))
    # For the open queue closed_at and urgent are constant here; naming them first in ORDER BY
    # lets PostgreSQL read ix_case_queue in order (it does not treat IS NULL as an equality).
    lead = [Case.closed_at.asc(), Case.urgent.asc()] if open_only else []
    if no_due:
        stmt = stmt.where(Case.due_at.is_(None))
        if after is not None:
            stmt = stmt.where(Case.id > after.id)
        return stmt.order_by(*lead, Case.id.asc())
    stmt = stmt.where(Case.due_at.is_not(None))
    if after is not None:
        # A range on due_at (index-friendly), then the ties after the cursor's id.
        stmt = stmt.where(Case.due_at >= after.due_at, or_(Case.due_at > after.due_at, Case.id > after.id))
    return stmt.order_by(*lead, Case.due_at.asc(), Case.id.asc())


def queue_page(
    session: Session, f: QueueFilter, *, now: dt.datetime, limit: int = 50, after: Cursor | None = None
) -> tuple[list[tuple[Case, str]], Cursor | None]:
    """One page of ``(case, village name)`` in queue order and the cursor of the next page (or None).

    The order is walked segment by segment (urgent with a due date, urgent without, then the
    same for the others), so each query is an ordered index range that stops after ``limit``
    rows instead of a sort of every matching case.
    """
    base = (
        select(Case, Region.name)
        .join(Region, Region.id == Case.village_id, isouter=True)
        .where(*_conditions(session, f, now))
    )
    if f.ref or f.phone_idx or f.name or f.assigned_to_id is not None:
        stmt = base.where(_after(after)) if after is not None else base
        stmt = stmt.order_by(Case.urgent.desc(), Case.due_at.asc().nulls_last(), Case.id.asc()).limit(limit + 1)
        return _cut([(c, name or "") for c, name in session.exec(stmt)], limit)
    segments = [seg for seg in _SEGMENTS if not (f.urgent_only and not seg[0])]
    if after is not None:
        here = (after.urgent, after.due_at is None)
        segments = segments[segments.index(here):] if here in segments else []
    rows: list[tuple[Case, str]] = []
    for urgent, no_due in segments:
        cursor = after if (after is not None and (after.urgent, after.due_at is None) == (urgent, no_due)) else None
        want = limit + 1 - len(rows)
        stmt = _segment_query(base, urgent, no_due, cursor, open_only=f.status == "open").limit(want)
        rows += [(c, name or "") for c, name in session.exec(stmt)]
        if len(rows) > limit:
            break
    return _cut(rows, limit)


def _cut(rows: list[tuple[Case, str]], limit: int) -> tuple[list[tuple[Case, str]], Cursor | None]:
    if len(rows) <= limit:
        return rows, None
    rows = rows[:limit]
    last = rows[-1][0]
    return rows, Cursor(urgent=bool(last.urgent), due_at=last.due_at, id=last.id)


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


def queue_cases(session: Session, f: QueueFilter, *, now: dt.datetime, limit: int = 10000) -> list[tuple[Case, str]]:
    """Every row of a filter in queue order (for exports), up to ``limit``."""
    rows, _ = queue_page(session, f, now=now, limit=limit)
    return rows


@dataclass(frozen=True)
class QueueStats:
    """Counts for the filter with its step condition left out (one aggregate query)."""

    per_step: dict[str, int]
    urgent: int
    overdue: int

    def total(self, step: str | None) -> int:
        return self.per_step.get(step, 0) if step else sum(self.per_step.values())


def queue_stats(session: Session, f: QueueFilter, *, now: dt.datetime) -> QueueStats:
    """Cases per step, and how many are urgent and overdue, in one pass over the filter's cases."""
    urgent = func.sum(case((Case.urgent == true(), 1), else_=0))
    overdue = func.sum(case((and_(Case.closed_at.is_(None), Case.due_at < now), 1), else_=0))
    stmt = (
        select(Case.step, func.count(), urgent, overdue)
        .where(*_conditions(session, f, now, with_step=False))
        .group_by(Case.step)
    )
    per_step, n_urgent, n_overdue = {}, 0, 0
    for step, n, u, o in session.exec(stmt):
        per_step[step] = int(n)
        n_urgent += int(u or 0)
        n_overdue += int(o or 0)
    if f.step:  # urgent/overdue of the rows actually listed
        stmt = select(urgent, overdue).where(*_conditions(session, f, now))
        u, o = session.exec(stmt).one()
        n_urgent, n_overdue = int(u or 0), int(o or 0)
    return QueueStats(per_step=per_step, urgent=n_urgent, overdue=n_overdue)

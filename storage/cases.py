"""Cases, their timeline and evidence, and the inbound-message dedupe table."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from sqlalchemy import func
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from .models import Attachment, Case, CaseEvent, InboundMessage, utcnow
from .refs import next_ref

OPEN = Case.closed_at.is_(None)  # type: ignore[union-attr]


def create_case(
    session: Session,
    *,
    inbound_key: str | None,
    fields: dict[str, Any],
    actor_kind: str = "villager",
    actor_id: int | None = None,
    actor_name: str = "",
    now: dt.datetime | None = None,
) -> tuple[Case, bool]:
    """Insert a case and its first timeline event; idempotent on ``inbound_key``.

    Returns ``(case, created)``. A second call with the same key (sequential or concurrent,
    in any process) returns the first case and ``created=False``: the unique constraint is
    the guard, and ``IntegrityError`` leads to the existing row, never a second one.
    """
    now = now or utcnow()
    try:
        with session.begin_nested():
            risk_types = list(fields.get("risk_types") or [])
            case = Case(
                ref=next_ref(session, now),
                inbound_key=inbound_key,
                created_at=now,
                updated_at=now,
                step_started_at=now,
                **{**fields, "risk_types": risk_types, "risk_codes": _codes(risk_types)},
            )
            session.add(case)
            session.flush()
            session.add(
                CaseEvent(
                    case_id=case.id,
                    at=now,
                    actor_kind=actor_kind,
                    actor_id=actor_id,
                    actor_name=actor_name,
                    action="created",
                    step=case.step,
                    note="",
                    data={"channel": case.channel, "urgent": case.urgent},
                )
            )
            session.flush()
    except IntegrityError:
        if inbound_key is None:
            raise
        existing = case_by_inbound_key(session, inbound_key)
        if existing is None:  # the conflict was something else
            raise
        return existing, False
    return case, True


def _codes(risk_types: Sequence[str]) -> str:
    return "," + "".join(f"{c}," for c in risk_types)


def set_risk_types(session: Session, case: Case, risk_types: Sequence[str]) -> None:
    case.risk_types = list(risk_types)
    case.risk_codes = _codes(risk_types)
    case.updated_at = utcnow()
    session.add(case)


def case_by_inbound_key(session: Session, key: str) -> Case | None:
    return session.exec(select(Case).where(Case.inbound_key == key)).first()


def case_by_ref(session: Session, ref: str) -> Case | None:
    return session.exec(select(Case).where(Case.ref == ref.strip().upper())).first()


def cases_for_reporter(
    session: Session, *, reporter_id: int | None = None, household_id: int | None = None, limit: int = 10
) -> list[Case]:
    found: dict[int, Case] = {}
    for cond in _owner_conditions(household_id, reporter_id):
        stmt = select(Case).where(cond).order_by(Case.created_at.desc(), Case.id.desc()).limit(limit)
        found.update((c.id, c) for c in session.exec(stmt))
    return sorted(found.values(), key=_newest_first)[:limit]


def _owner_conditions(household_id: int | None, reporter_id: int | None) -> list:
    """One condition per owner column, each queried on its own: with ``household_id = ? OR
    reporter_id = ?`` SQLite walks the whole open-queue index instead (a scan of every open case
    per report, measured growing with the table), while each half alone is an index lookup."""
    conds = []
    if household_id is not None:
        conds.append(Case.household_id == household_id)
    if reporter_id is not None:
        conds.append(Case.reporter_id == reporter_id)
    return conds


def _newest_first(case: Case) -> tuple:
    return (-case.created_at.timestamp(), -(case.id or 0))


def open_case_for(
    session: Session, *, household_id: int | None = None, reporter_id: int | None = None,
    exclude_id: int | None = None,
) -> Case | None:
    """The newest open case of a household (or reporter), e.g. to attach evidence or flag a duplicate."""
    found = []
    for cond in _owner_conditions(household_id, reporter_id):
        stmt = select(Case).where(cond, OPEN)
        if exclude_id is not None:
            stmt = stmt.where(Case.id != exclude_id)
        case = session.exec(stmt.order_by(Case.created_at.desc(), Case.id.desc()).limit(1)).first()
        if case is not None:
            found.append(case)
    return min(found, key=_newest_first, default=None)


def add_event(
    session: Session,
    case: Case,
    *,
    action: str,
    actor_kind: str,
    actor_id: int | None = None,
    actor_name: str = "",
    step: str | None = None,
    note: str = "",
    data: dict[str, Any] | None = None,
    now: dt.datetime | None = None,
) -> CaseEvent:
    event = CaseEvent(
        case_id=case.id,
        at=now or utcnow(),
        actor_kind=actor_kind,
        actor_id=actor_id,
        actor_name=actor_name,
        action=action,
        step=step,
        note=note,
        data=data or {},
    )
    session.add(event)
    case.updated_at = event.at
    session.add(case)
    session.flush()
    return event


def events_of(session: Session, case_id: int) -> list[CaseEvent]:
    return list(session.exec(select(CaseEvent).where(CaseEvent.case_id == case_id).order_by(CaseEvent.at, CaseEvent.id)))


def add_attachment(session: Session, case: Case, **fields: Any) -> Attachment:
    att = Attachment(case_id=case.id, **fields)
    session.add(att)
    session.flush()
    return att


def attachments_of(session: Session, case_id: int) -> list[Attachment]:
    return list(session.exec(select(Attachment).where(Attachment.case_id == case_id).order_by(Attachment.id)))


def count_cases(session: Session) -> int:
    return session.exec(select(func.count()).select_from(Case)).one()


# --- inbound WeChat messages -------------------------------------------------------------


def claim_inbound(session: Session, *, source: str, dedupe_key: str, msg_type: str) -> tuple[InboundMessage, bool]:
    """Record an inbound message; ``(row, True)`` the first time, ``(existing_row, False)`` on a retry."""
    try:
        with session.begin_nested():
            # msg_type is only a record; WeChat's longer events (event:user_authorization_cancellation)
            # must not overflow the column (PostgreSQL refuses what SQLite would store).
            row = InboundMessage(source=source, dedupe_key=dedupe_key, msg_type=msg_type[:32])
            session.add(row)
            session.flush()
        return row, True
    except IntegrityError:
        row = session.exec(
            select(InboundMessage).where(InboundMessage.source == source, InboundMessage.dedupe_key == dedupe_key)
        ).one()
        return row, False


def store_reply(session: Session, row: InboundMessage, reply: str, *, case_id: int | None = None) -> None:
    row.reply = reply
    if case_id is not None:
        row.case_id = case_id
    session.add(row)
    session.flush()


def inbound_reply(session: Session, *, source: str, dedupe_key: str) -> InboundMessage | None:
    return session.exec(
        select(InboundMessage).where(InboundMessage.source == source, InboundMessage.dedupe_key == dedupe_key)
    ).first()

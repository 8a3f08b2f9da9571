"""The outbox: messages to users and staff, written in the same transaction as the change that
causes them and delivered later by ``huinong worker`` with retries, so a WeChat outage loses nothing.

Several workers may run at once: on PostgreSQL a batch is claimed with
``SELECT … FOR UPDATE SKIP LOCKED``; SQLite serialises writers (``BEGIN IMMEDIATE``), which
gives the same guarantee. A claim that is not finished within ``stale_after`` (the worker died)
is claimed again.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from .models import Outbox, utcnow

#: Seconds to wait before attempt n+1 (then the last value repeats until max_attempts).
BACKOFF = (5, 30, 120, 600, 1800)


def enqueue(
    session: Session,
    *,
    kind: str,
    recipient: str,
    payload: dict[str, Any],
    dedupe_key: str | None = None,
    case_id: int | None = None,
    now: dt.datetime | None = None,
) -> Outbox | None:
    """Add a message; with ``dedupe_key`` a second enqueue of the same message is a no-op (returns None)."""
    try:
        with session.begin_nested():
            row = Outbox(
                kind=kind, recipient=recipient, payload=payload, dedupe_key=dedupe_key,
                case_id=case_id, next_attempt_at=now or utcnow(),
            )
            session.add(row)
            session.flush()
        return row
    except IntegrityError:
        if dedupe_key is None:
            raise
        return None


def claim_batch(
    session: Session, *, worker: str, limit: int = 20, stale_after: int = 300, now: dt.datetime | None = None
) -> list[Outbox]:
    """Mark up to ``limit`` due messages as being sent by ``worker`` and return them."""
    now = now or utcnow()
    stale = now - dt.timedelta(seconds=stale_after)
    due = (Outbox.status == "pending") & (Outbox.next_attempt_at <= now)
    abandoned = (Outbox.status == "sending") & (Outbox.locked_at < stale)
    stmt = select(Outbox).where(due | abandoned).order_by(Outbox.next_attempt_at, Outbox.id).limit(limit)
    if session.get_bind().dialect.name == "postgresql":
        stmt = stmt.with_for_update(skip_locked=True)
    rows = list(session.exec(stmt))
    for row in rows:
        row.status = "sending"
        row.locked_by = worker
        row.locked_at = now
        row.attempts += 1
        session.add(row)
    session.flush()
    return rows


def mark_sent(session: Session, row: Outbox, *, now: dt.datetime | None = None) -> None:
    row.status = "sent"
    row.sent_at = now or utcnow()
    row.last_error = ""
    session.add(row)


def mark_failed(
    session: Session, row: Outbox, *, error: str, retry: bool = True, max_attempts: int = 8,
    now: dt.datetime | None = None,
) -> None:
    """Schedule another attempt with backoff, or give up (status ``failed``) and keep the error."""
    now = now or utcnow()
    row.last_error = error[:500]
    row.locked_by = None
    row.locked_at = None
    if retry and row.attempts < max_attempts:
        delay = BACKOFF[min(row.attempts - 1, len(BACKOFF) - 1)]
        row.status = "pending"
        row.next_attempt_at = now + dt.timedelta(seconds=delay)
    else:
        row.status = "failed"
    session.add(row)

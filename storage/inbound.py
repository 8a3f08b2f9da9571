"""Inbound WeChat messages: the dedupe record of each (``claim_inbound``), compare-and-set updates
of its stored reply (so a retry, a deferred reply and a takeover after a crash never deliver
twice), and the batched record of messages answered at once (``record_answered``)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from sqlalchemy import update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from .db import insert_rows
from .models import InboundMessage, utcnow


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


def reply_once(session: Session, inbound_id: int, reply: str, *, case_id: int | None = None) -> bool:
    """Store ``reply`` only if none is stored yet; True when this call stored it."""
    values: dict = {"reply": reply}
    if case_id is not None:
        values["case_id"] = case_id
    stmt = (
        update(InboundMessage)
        .where(InboundMessage.id == inbound_id, InboundMessage.reply.is_(None))
        .values(**values)
    )
    return session.execute(stmt).rowcount == 1


def replace_reply(session: Session, inbound_id: int, *, expected: str, reply: str,
                  case_id: int | None = None) -> bool:
    """Change the stored reply from ``expected`` to ``reply``; True when it was still ``expected``."""
    values: dict = {"reply": reply}
    if case_id is not None:
        values["case_id"] = case_id
    stmt = (
        update(InboundMessage)
        .where(InboundMessage.id == inbound_id, InboundMessage.reply == expected)
        .values(**values)
    )
    return session.execute(stmt).rowcount == 1


def inbound_state(session: Session, inbound_id: int) -> tuple[str | None, dt.datetime] | None:
    """``(stored reply, received_at)`` of an inbound message, read fresh from the database."""
    row = session.execute(
        select(InboundMessage.reply, InboundMessage.received_at).where(InboundMessage.id == inbound_id)
    ).first()
    return (row[0], row[1]) if row else None


def take_over(session: Session, inbound_id: int, *, seen_received_at: dt.datetime, unfinished: tuple[str, ...],
              now: dt.datetime | None = None) -> bool:
    """Restart the processing of a message whose first copy died: moves ``received_at`` to now,
    only if nobody else did since it was read and the reply is still NULL or one of ``unfinished``.
    True for exactly one caller."""
    stmt = (
        update(InboundMessage)
        .where(
            InboundMessage.id == inbound_id,
            InboundMessage.received_at == seen_received_at,
            InboundMessage.reply.is_(None) | InboundMessage.reply.in_(unfinished),
        )
        .values(received_at=now or utcnow())
    )
    return session.execute(stmt).rowcount == 1


def record_answered(conn: Connection, messages: Sequence[dict], *, now: dt.datetime | None = None) -> None:
    """Inbound messages (``source``, ``dedupe_key``, ``msg_type``, ``reply``, ``case_id``) with their
    stored replies, in ``conn``'s transaction, in one statement: what ``claim_inbound`` and
    ``reply_once`` write one by one. ``IntegrityError`` when one was seen before."""
    if messages:
        now = now or utcnow()
        insert_rows(conn, InboundMessage.__table__, [{**m, "msg_type": m["msg_type"][:32], "received_at": now} for m in messages])

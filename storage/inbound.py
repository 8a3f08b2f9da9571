"""What the WeChat edge needs from the database beyond ``cases.claim_inbound``: compare-and-set
updates of an inbound message's stored reply (so a retry, a deferred reply and a takeover after a
crash never deliver twice), WeChat identities' details, and the updates a chat dialogue makes to
its case."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from sqlalchemy import update
from sqlalchemy.engine import Connection
from sqlmodel import Session, select

from .db import insert_rows
from .models import Case, InboundMessage, WeChatUser, utcnow

# --- inbound messages --------------------------------------------------------------------


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


# --- WeChat identities ---------------------------------------------------------------------


def set_subscribed(session: Session, user: WeChatUser, subscribed: bool) -> None:
    user.subscribed = subscribed
    session.add(user)
    session.flush()


def save_reporter_details(
    session: Session, user: WeChatUser, *, name: str | None = None, village_id: int | None = None,
    phone_enc: str | None = None, consented_at: dt.datetime | None = None,
) -> WeChatUser:
    """Remember what an unbound reporter told us, so the next report needs fewer turns."""
    if name:
        user.name = name
    if village_id is not None:
        user.village_id = village_id
    if phone_enc is not None:
        user.phone_enc = phone_enc
    if consented_at is not None:
        user.consented_at = consented_at
    session.add(user)
    session.flush()
    return user


# --- a case being completed in chat --------------------------------------------------------


def append_description(session: Session, case: Case, text: str, *, max_chars: int) -> Case:
    """Add one chat turn to the case's description (kept within ``max_chars``)."""
    text = text.strip()
    if not text:
        return case
    joined = f"{case.description}\n{text}" if case.description else text
    case.description = joined[:max_chars]
    case.updated_at = utcnow()
    session.add(case)
    session.flush()
    return case


def set_reporter_phone(session: Session, case: Case, *, phone_enc: str | None, phone_idx: str | None) -> None:
    case.reporter_phone_enc = phone_enc
    case.reporter_phone_idx = phone_idx
    session.add(case)
    session.flush()


def mark_urgent(session: Session, case: Case, reasons: str) -> Case:
    """Move a case to the green channel (绿色通道) after its description showed sudden hardship."""
    case.urgent = True
    case.urgent_reasons = "；".join(x for x in (case.urgent_reasons, reasons) if x)[:500]
    case.updated_at = utcnow()
    session.add(case)
    session.flush()
    return case


def record_answered(conn: Connection, messages: Sequence[dict], *, now: dt.datetime | None = None) -> None:
    """Inbound messages (``source``, ``dedupe_key``, ``msg_type``, ``reply``, ``case_id``) with their
    stored replies, in ``conn``'s transaction, in one statement: what ``claim_inbound`` and
    ``reply_once`` write one by one. ``IntegrityError`` when one was seen before."""
    if messages:
        now = now or utcnow()
        insert_rows(conn, InboundMessage.__table__, [{**m, "msg_type": m["msg_type"][:32], "received_at": now} for m in messages])

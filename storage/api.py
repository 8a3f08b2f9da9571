"""The mini-program API's own records: session tokens and idempotency records.

Only a SHA-256 hash of a session token is stored (``ApiSession.token_hash``); the token itself
exists only in the client. WeChat's ``session_key`` is stored sealed by the caller's cipher.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import delete, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from .models import ApiSession, IdempotencyRecord, utcnow

# --- sessions ------------------------------------------------------------------------------


def create_api_session(
    session: Session, *, token_hash: str, user_id: int, expires_at: dt.datetime, session_key_enc: str | None,
    now: dt.datetime | None = None,
) -> ApiSession:
    row = ApiSession(
        token_hash=token_hash, user_id=user_id, created_at=now or utcnow(), expires_at=expires_at,
        session_key_enc=session_key_enc,
    )
    session.add(row)
    session.flush()
    return row


def api_session(session: Session, token_hash: str) -> ApiSession | None:
    return session.get(ApiSession, token_hash)


def revoke_api_session(session: Session, token_hash: str) -> bool:
    """Mark the session revoked; False when there was no such (live) session."""
    row = session.get(ApiSession, token_hash)
    if row is None or row.revoked:
        return False
    row.revoked = True
    session.add(row)
    session.flush()
    return True


# --- idempotency ---------------------------------------------------------------------------


def idempotency_record(session: Session, *, user_id: int, key: str) -> IdempotencyRecord | None:
    stmt = select(IdempotencyRecord).where(IdempotencyRecord.user_id == user_id, IdempotencyRecord.key == key)
    return session.exec(stmt).first()


def claim_idempotency(
    session: Session, *, user_id: int, key: str, request_hash: str, case_id: int | None
) -> tuple[IdempotencyRecord, bool]:
    """Insert the record; ``(row, True)`` the first time, ``(existing_row, False)`` if it exists.

    The unique constraint on (user_id, key) decides between concurrent requests.
    """
    try:
        with session.begin_nested():
            row = IdempotencyRecord(user_id=user_id, key=key, request_hash=request_hash, case_id=case_id)
            session.add(row)
            session.flush()
        return row, True
    except IntegrityError:
        existing = idempotency_record(session, user_id=user_id, key=key)
        if existing is None:
            raise
        return existing, False


def finish_idempotency(session: Session, record_id: int, case_id: int) -> bool:
    """Point a pending record at its case; True only for the one request that did it."""
    stmt = (
        update(IdempotencyRecord)
        .where(IdempotencyRecord.id == record_id, IdempotencyRecord.case_id.is_(None))
        .values(case_id=case_id)
    )
    return session.execute(stmt).rowcount == 1


def delete_pending_idempotency(session: Session, record_id: int) -> None:
    """Forget a record whose request failed before it created a case (so a corrected retry works)."""
    session.execute(
        delete(IdempotencyRecord).where(IdempotencyRecord.id == record_id, IdempotencyRecord.case_id.is_(None))
    )

"""Append-only audit log: rows are only ever inserted, never updated or deleted by the code."""

from __future__ import annotations

from sqlmodel import Session, select

from .models import AuditLog


def audit(
    session: Session,
    *,
    action: str,
    actor_id: int | None = None,
    actor_name: str = "",
    target: str = "",
    detail: str = "",
    ip: str = "",
) -> AuditLog:
    row = AuditLog(action=action, actor_id=actor_id, actor_name=actor_name, target=target, detail=detail[:1000], ip=ip)
    session.add(row)
    session.flush()
    return row


def recent(session: Session, *, limit: int = 100, offset: int = 0, action: str | None = None) -> list[AuditLog]:
    stmt = select(AuditLog)
    if action:
        stmt = stmt.where(AuditLog.action == action)
    return list(session.exec(stmt.order_by(AuditLog.id.desc()).offset(offset).limit(limit)))

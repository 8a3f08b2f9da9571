"""Staff accounts in the console: who is acting (``Actor``), login with lockout, the audit log.

Every login, success or failure, is written to the append-only audit log. After
``MAX_FAILURES`` wrong passwords in a row the account is locked for ``LOCK_MINUTES``; while
locked even the right password is refused (and audited), so guessing gains nothing.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from storage import session_scope
from storage.audit import audit, recent
from storage.models import AuditLog, Region, StaffUser, utcnow
from storage.people import (
    DUMMY_HASH,
    record_login_failure,
    record_login_success,
    staff_by_username,
    verify_password,
)
from storage.regions import ancestors, region_label

from . import triage_texts as T
from .context import Context
from .errors import Forbidden, HandlerError, ValidationError

MAX_FAILURES = 5
LOCK_MINUTES = 15
MAX_USERNAME = 64
MAX_PASSWORD = 256


class LoginFailed(HandlerError):
    status = 401
    code = "login_failed"


class AccountLocked(HandlerError):
    status = 423
    code = "locked"


@dataclass(frozen=True)
class Actor:
    """The staff member behind a request, with the region node that scopes what they see."""

    id: int
    username: str
    name: str
    role: str
    region_id: int
    region_path: str
    region_name: str
    region_level: str

    @property
    def role_label(self) -> str:
        return T.ROLE_LABELS.get(self.role, self.role)

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


def _actor(session, staff: StaffUser) -> Actor | None:
    region = session.get(Region, staff.region_id)
    if region is None or not staff.active:
        return None
    return Actor(
        id=staff.id, username=staff.username, name=staff.display_name or staff.username, role=staff.role,
        region_id=region.id, region_path=region.path, region_name=_local_label(session, region),
        region_level=region.level,
    )


def _local_label(session, region: Region) -> str:
    """白河县城关镇: the names from the county down (the province and city add nothing here)."""
    chain = [r for r in ancestors(session, region) if r.level in ("county", "township", "village")]
    return "".join(r.name for r in chain) or region_label(session, region)


def load_actor(ctx: Context, staff_id: int) -> Actor | None:
    """The active staff member with this id, or None (deleted or deactivated accounts log out)."""
    with session_scope(ctx.engine) as session:
        staff = session.get(StaffUser, staff_id)
        return _actor(session, staff) if staff else None


def authenticate(ctx: Context, *, username: str, password: str, ip: str = "", now: dt.datetime | None = None) -> Actor:
    """Check a password; raise ``LoginFailed`` / ``AccountLocked`` with a Chinese message otherwise."""
    now = now or utcnow()
    username = (username or "").strip()
    if not username or not password:
        raise ValidationError(T.LOGIN_EMPTY, field="username")
    if len(username) > MAX_USERNAME or len(password) > MAX_PASSWORD:
        raise LoginFailed(T.LOGIN_FAILED)
    # Failures are committed (counter, lock, audit row) before the error is raised.
    error: HandlerError | None = None
    actor: Actor | None = None
    with session_scope(ctx.engine) as session:
        staff = staff_by_username(session, username)
        if staff is None or not staff.active:
            verify_password(password, DUMMY_HASH)  # same cost as a real check
            audit(session, action="login_failed", actor_name=username[:64], detail=T.AUDIT_UNKNOWN_ACCOUNT, ip=ip)
            error = LoginFailed(T.LOGIN_FAILED)
        elif staff.locked_until is not None and staff.locked_until > now:
            audit(session, action="login_locked", actor_id=staff.id, actor_name=staff.username,
                  detail=T.AUDIT_LOCKED, ip=ip)
            error = AccountLocked(T.LOGIN_LOCKED.format(minutes=_minutes_left(staff.locked_until, now)))
        elif not verify_password(password, staff.password_hash):
            record_login_failure(session, staff, max_failures=MAX_FAILURES, lock_minutes=LOCK_MINUTES)
            locked = staff.locked_until is not None and staff.locked_until > now
            audit(session, action="login_failed", actor_id=staff.id, actor_name=staff.username,
                  detail=T.AUDIT_NOW_LOCKED if locked else T.AUDIT_WRONG_PASSWORD, ip=ip)
            error = AccountLocked(T.LOGIN_LOCKED.format(minutes=LOCK_MINUTES)) if locked else LoginFailed(T.LOGIN_FAILED)
        else:
            actor = _actor(session, staff)
            if actor is None:
                error = LoginFailed(T.LOGIN_FAILED)
            else:
                record_login_success(session, staff)
                audit(session, action="login", actor_id=staff.id, actor_name=staff.username, ip=ip)
    if error is not None or actor is None:
        raise error or LoginFailed(T.LOGIN_FAILED)
    return actor


def _minutes_left(until: dt.datetime, now: dt.datetime) -> int:
    return max(1, int((until - now).total_seconds() // 60) + 1)


def record_logout(ctx: Context, actor: Actor, *, ip: str = "") -> None:
    with session_scope(ctx.engine) as session:
        audit(session, action="logout", actor_id=actor.id, actor_name=actor.username, ip=ip)


@dataclass(frozen=True)
class AuditRow:
    id: int
    at: dt.datetime
    actor_name: str
    action: str
    action_label: str
    target: str
    detail: str
    ip: str


def audit_log(
    ctx: Context, actor: Actor, *, action: str | None = None, page: int = 1, per_page: int = 100
) -> list[AuditRow]:
    """The newest audit rows; admins only."""
    if not actor.is_admin:
        raise Forbidden(T.ADMIN_ONLY)
    if page < 1 or page > 10_000:
        raise ValidationError(T.BAD_PAGE, field="page")
    with session_scope(ctx.engine) as session:
        rows: list[AuditLog] = recent(session, limit=per_page, offset=(page - 1) * per_page, action=action or None)
        return [
            AuditRow(r.id, r.at, r.actor_name, r.action, T.AUDIT_LABELS.get(r.action, r.action), r.target, r.detail, r.ip)
            for r in rows
        ]


def record_refusal(ctx: Context, actor: Actor | None, *, path: str, ip: str = "") -> None:
    """A POST without a valid CSRF token (forged or replayed from elsewhere): refused and audited."""
    with session_scope(ctx.engine) as session:
        audit(session, action="csrf_refused", actor_id=actor.id if actor else None,
              actor_name=actor.username if actor else "", target=path[:128], ip=ip)

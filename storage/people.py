"""WeChat identities (and their binding to a household) and staff accounts."""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import hmac
import os
import secrets
from collections.abc import Sequence
from typing import NamedTuple

from sqlalchemy import String, bindparam, func, null, true
from sqlalchemy import select as sa_select
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from .db import one_of
from .models import Case, Household, KeyValue, Region, StaffUser, WeChatUser, utcnow

# scrypt parameters: ~50 ms per hash on the target machine, 16 MiB of memory.
_SCRYPT = {"n": 2**14, "r": 8, "p": 1}
#: Under ``HUINONG_ENV=test`` only: a trivial cost, so the test suite's hundreds of demo staff
#: accounts and logins do not spend minutes in scrypt. Never used by development or production.
_SCRYPT_TEST = {"n": 2**4, "r": 8, "p": 1}
_MAXMEM = 64 * 1024 * 1024
_DKLEN = 32


def _cost() -> dict[str, int]:
    return _SCRYPT_TEST if os.environ.get("HUINONG_ENV") == "test" else _SCRYPT


def _scrypt(password: str, salt: bytes, *, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(password.encode("utf-8"), salt=salt, n=n, r=r, p=p, maxmem=_MAXMEM, dklen=_DKLEN)


def hash_password(password: str) -> str:
    """``scrypt$n$r$p$salt$digest``: the hash records its own cost, so a change of cost (or a
    hash made under the test cost) stays verifiable."""
    cost = _cost()
    salt = secrets.token_bytes(16)
    digest = _scrypt(password, salt, **cost)
    return f"scrypt${cost['n']}${cost['r']}${cost['p']}${salt.hex()}${digest.hex()}"


def verify_password(password: str, stored: str) -> bool:
    """Check against a hash of either format: ``scrypt$n$r$p$salt$digest`` or the older
    ``scrypt$salt$digest`` (made with the production cost)."""
    parts = stored.split("$")
    try:
        if len(parts) == 3:
            scheme, salt_hex, digest_hex = parts
            cost = dict(_SCRYPT)
        elif len(parts) == 6:
            scheme, n, r, p, salt_hex, digest_hex = parts
            cost = {"n": int(n), "r": int(r), "p": int(p)}
        else:
            return False
        if scheme != "scrypt":
            return False
        digest = _scrypt(password, bytes.fromhex(salt_hex), **cost)
    except ValueError:  # malformed numbers or hex, or a cost scrypt refuses
        return False
    return hmac.compare_digest(digest.hex(), digest_hex)


#: Verifying against this when the user does not exist keeps login timing uniform (production cost).
DUMMY_HASH = "scrypt$" + "00" * 16 + "$" + "00" * 32


def get_or_create_wechat_user(session: Session, *, openid: str, app: str = "oa") -> WeChatUser:
    """The row for ``openid``; created on first sight, race-safe through the unique constraint."""
    stmt = select(WeChatUser).where(WeChatUser.app == app, WeChatUser.openid == openid)
    user = session.exec(stmt).first()
    if user:
        return user
    try:
        with session.begin_nested():
            user = WeChatUser(app=app, openid=openid)
            session.add(user)
    except IntegrityError:
        user = session.exec(stmt).one()
    return user


def wechat_user(session: Session, user_id: int | None) -> WeChatUser | None:
    return session.get(WeChatUser, user_id) if user_id is not None else None


def set_unionid(session: Session, user: WeChatUser, unionid: str | None) -> None:
    if unionid and user.unionid != unionid:
        user.unionid = unionid
        session.add(user)
        session.flush()


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


def bind_household(session: Session, user: WeChatUser, household: Household) -> WeChatUser:
    user.household_id = household.id
    user.village_id = household.village_id
    if not user.name:
        user.name = household.head_name
    session.add(user)
    session.flush()
    return user


def create_staff(
    session: Session,
    *,
    username: str,
    password: str,
    role: str,
    region_id: int,
    display_name: str = "",
    wechat_openid: str | None = None,
) -> StaffUser:
    staff = StaffUser(
        username=username,
        display_name=display_name or username,
        password_hash=hash_password(password),
        role=role,
        region_id=region_id,
        wechat_openid=wechat_openid,
    )
    session.add(staff)
    session.flush()
    return staff


def staff_by_id(session: Session, staff_id: int | None) -> StaffUser | None:
    return session.get(StaffUser, staff_id) if staff_id is not None else None


def staff_by_username(session: Session, username: str) -> StaffUser | None:
    return session.exec(select(StaffUser).where(StaffUser.username == username)).first()


def staff_in_region(session: Session, *, region_path_prefix: str, roles: tuple[str, ...]) -> list[StaffUser]:
    """Active staff with one of ``roles`` whose region is exactly the node with this path."""
    stmt = (
        select(StaffUser)
        .join(Region, Region.id == StaffUser.region_id)
        .where(Region.path == region_path_prefix, StaffUser.role.in_(roles), StaffUser.active)
    )
    return list(session.exec(stmt))


def record_login_failure(session: Session, staff: StaffUser, *, max_failures: int, lock_minutes: int) -> None:
    staff.failed_logins += 1
    if staff.failed_logins >= max_failures:
        staff.locked_until = utcnow() + dt.timedelta(minutes=lock_minutes)
        staff.failed_logins = 0
    session.add(staff)


def record_login_success(session: Session, staff: StaffUser) -> None:
    staff.failed_logins = 0
    staff.locked_until = None
    session.add(staff)


class Sender(NamedTuple):
    """A WeChat sender as the one-click path needs them: their household (``head_name`` None: not
    bound, or the household is gone), the village of either, and their dialogue state in the
    key-value table (when asked for)."""

    openid: str
    id: int
    household_id: int | None
    village_id: int | None
    name: str
    phone_enc: str | None
    consented_at: dt.datetime | None
    head_name: str | None
    village_row_id: int | None
    village_level: str | None
    village_name: str | None
    village_path: str | None
    state_key: str | None
    state_expires_at: dt.datetime | None

    def dialogue_open(self, now: dt.datetime) -> bool:
        """A live dialogue state (``DatabaseKV.get`` would return it)."""
        return self.state_key is not None and (self.state_expires_at is None or self.state_expires_at > now)


@functools.cache
def _senders_stmt(dialect: str, with_state: bool):
    u, h, r, k = WeChatUser.__table__, Household.__table__, Region.__table__, KeyValue.__table__
    stmt = (
        sa_select(u.c.openid, u.c.id, u.c.household_id, u.c.village_id, u.c.name, u.c.phone_enc, u.c.consented_at,
                  h.c.head_name, r.c.id, r.c.level, r.c.name, r.c.path, *((k.c.key, k.c.expires_at) if with_state else (null(), null())))
        .select_from(u)
        .outerjoin(h, h.c.id == u.c.household_id)
        .outerjoin(r, r.c.id == func.coalesce(h.c.village_id, u.c.village_id))
        .where(u.c.app == bindparam("app"), one_of(u.c.openid, "openids", dialect, String()))
    )
    return stmt.outerjoin(k, k.c.key == bindparam("prefix") + u.c.openid) if with_state else stmt


def senders(conn: Connection, openids: Sequence[str], *, app: str = "oa",
            state_prefix: str | None = None) -> dict[str, Sender]:
    """The senders of ``openids`` that exist, by openid, in one statement. ``state_prefix``: read
    their dialogue states from the key-value table under ``state_prefix + openid``."""
    if not openids:
        return {}
    rows = conn.execute(_senders_stmt(conn.dialect.name, state_prefix is not None), {"app": app, "openids": list(openids),
                                                             "prefix": state_prefix})
    return {row.openid: Sender(*row) for row in rows}


def villager_openids(session: Session, case: Case) -> list[str]:
    """Official-account openids to tell the villager about ``case``: the reporter, else the household's."""
    if case.reporter_id is not None:
        user = session.get(WeChatUser, case.reporter_id)
        if user is not None and user.app == "oa" and user.subscribed:
            return [user.openid]
    if case.household_id is not None:
        stmt = (
            select(WeChatUser.openid)
            .where(WeChatUser.household_id == case.household_id, WeChatUser.app == "oa", WeChatUser.subscribed == true())
            .order_by(WeChatUser.id)
        )
        return list(session.exec(stmt))
    return []


def staff_under(session: Session, region_path: str) -> list[StaffUser]:
    """Active staff whose region lies in the scope (for assignment)."""
    stmt = (
        select(StaffUser)
        .join(Region, Region.id == StaffUser.region_id)
        .where(Region.path.like(region_path + "%"), StaffUser.active == true())
        .order_by(StaffUser.id)
    )
    return list(session.exec(stmt))


def staff_names(session: Session, ids: list[int]) -> dict[int, str]:
    if not ids:
        return {}
    stmt = select(StaffUser.id, StaffUser.display_name).where(StaffUser.id.in_(sorted(set(ids))))
    return {i: n for i, n in session.exec(stmt)}

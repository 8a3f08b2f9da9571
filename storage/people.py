"""Households, WeChat identities and staff accounts."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import os
import secrets

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from .crypto import DataCipher
from .models import Household, StaffUser, WeChatUser, utcnow

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


def create_household(
    session: Session,
    cipher: DataCipher,
    *,
    head_name: str,
    village_id: int,
    id_number: str | None = None,
    phone: str | None = None,
    group_name: str = "",
    address: str = "",
    category: str = "ordinary",
    members: int = 1,
    has_labor_capacity: bool = True,
) -> Household:
    household = Household(
        head_name=head_name,
        village_id=village_id,
        id_number_enc=cipher.encrypt(id_number),
        id_number_idx=cipher.blind_index(id_number),
        phone_enc=cipher.encrypt(phone),
        phone_idx=cipher.blind_index(phone),
        group_name=group_name,
        address=address,
        category=category,
        members=members,
        has_labor_capacity=has_labor_capacity,
        bind_token=secrets.token_urlsafe(12),
    )
    session.add(household)
    session.flush()
    return household


def household_by_token(session: Session, token: str) -> Household | None:
    if not token:
        return None
    return session.exec(select(Household).where(Household.bind_token == token)).first()


def households_by_id_number(session: Session, cipher: DataCipher, id_number: str) -> list[Household]:
    idx = cipher.blind_index(id_number)
    return list(session.exec(select(Household).where(Household.id_number_idx == idx)))


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


def staff_by_username(session: Session, username: str) -> StaffUser | None:
    return session.exec(select(StaffUser).where(StaffUser.username == username)).first()


def staff_in_region(session: Session, *, region_path_prefix: str, roles: tuple[str, ...]) -> list[StaffUser]:
    """Active staff with one of ``roles`` whose region is exactly the node with this path."""
    from .models import Region

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

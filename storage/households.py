"""Households (户): creating them, the reads of the intake path and the console's look-ups.
(Binding a WeChat user to one: ``storage.people``.)"""

from __future__ import annotations

import functools
import secrets
from collections.abc import Iterable
from typing import NamedTuple

from sqlalchemy import Integer
from sqlalchemy import select as sa_select
from sqlalchemy.engine import Connection
from sqlmodel import Session, select

from .crypto import DataCipher
from .db import one_of
from .models import Household, Region


class HouseholdPlace(NamedTuple):
    """A household and its village."""

    id: int
    head_name: str
    village_id: int
    village_name: str
    village_level: str
    village_path: str


_h, _r = Household.__table__, Region.__table__


@functools.cache
def _places(dialect: str):
    return (sa_select(_h.c.id, _h.c.head_name, _h.c.village_id, _r.c.name, _r.c.level, _r.c.path)
            .join(_r, _r.c.id == _h.c.village_id).where(one_of(_h.c.id, "ids", dialect, Integer())))


def households_by_id(conn: Connection, ids: Iterable[int]) -> dict[int, HouseholdPlace]:
    """The households of ``ids`` that exist, with their village, in one statement."""
    wanted = sorted(set(ids))
    if not wanted:
        return {}
    return {r.id: HouseholdPlace(*r) for r in conn.execute(_places(conn.dialect.name), {"ids": wanted})}


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


def get_household(session: Session, household_id: int | None) -> Household | None:
    return session.get(Household, household_id) if household_id is not None else None


def household_in_scope(session: Session, household_id: int, region_path: str) -> Household | None:
    stmt = (
        select(Household)
        .join(Region, Region.id == Household.village_id)
        .where(Household.id == household_id, Region.path.like(region_path + "%"))
    )
    return session.exec(stmt).first()


def households_in_villages(session: Session, village_ids: list[int]) -> list[Household]:
    """The households of the villages ``village_ids``, in id order."""
    if not village_ids:
        return []
    stmt = select(Household).where(Household.village_id.in_(village_ids)).order_by(Household.id)
    return list(session.exec(stmt))


def households_by_ids(session: Session, ids: list[int]) -> dict[int, Household]:
    """Households of a page of cases (ORM rows, on a Session), in one query."""
    if not ids:
        return {}
    return {h.id: h for h in session.exec(select(Household).where(Household.id.in_(sorted(set(ids)))))}

"""Households (户): the reads of the intake path. (Creating and binding: ``storage.people``.)"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from typing import NamedTuple

from sqlalchemy import Integer, select
from sqlalchemy.engine import Connection
from sqlmodel import Session

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
    return (select(_h.c.id, _h.c.head_name, _h.c.village_id, _r.c.name, _r.c.level, _r.c.path)
            .join(_r, _r.c.id == _h.c.village_id).where(one_of(_h.c.id, "ids", dialect, Integer())))


def households_by_id(conn: Connection, ids: Iterable[int]) -> dict[int, HouseholdPlace]:
    """The households of ``ids`` that exist, with their village, in one statement."""
    wanted = sorted(set(ids))
    if not wanted:
        return {}
    return {r.id: HouseholdPlace(*r) for r in conn.execute(_places(conn.dialect.name), {"ids": wanted})}


def get_household(session: Session, household_id: int | None) -> Household | None:
    return session.get(Household, household_id) if household_id is not None else None

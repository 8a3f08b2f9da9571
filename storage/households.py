"""Households (户): the reads of the intake path. (Creating and binding: ``storage.people``.)"""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple

from sqlalchemy import select
from sqlalchemy.engine import Connection

from .models import Household


class HouseholdPlace(NamedTuple):
    id: int
    head_name: str
    village_id: int


def households_by_id(conn: Connection, ids: Iterable[int]) -> dict[int, HouseholdPlace]:
    """The households of ``ids`` that exist, with their village, in one statement."""
    wanted = sorted(set(ids))
    if not wanted:
        return {}
    t = Household.__table__
    rows = conn.execute(select(t.c.id, t.c.head_name, t.c.village_id).where(t.c.id.in_(wanted)))
    return {r.id: HouseholdPlace(*r) for r in rows}

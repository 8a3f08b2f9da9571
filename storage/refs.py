"""Reference numbers a villager can read over the phone: ``SB20261122-0007``.

``SB`` (申报), the day in China Standard Time, and a per-day sequence taken from a counter row
inside the case's own transaction, so a rolled-back report leaves no gap and two concurrent
reports never get the same number (:func:`take_refs`).
"""

from __future__ import annotations

import datetime as dt
import functools
import re

from sqlalchemy import bindparam
from sqlalchemy.engine import Connection

from .db import upsert
from .models import RefCounter

CST = dt.timezone(dt.timedelta(hours=8), "CST")
REF_RE = re.compile(r"^SB\d{8}-\d{4,}$")


def format_ref(day: str, seq: int) -> str:
    return f"SB{day}-{seq:04d}"


@functools.cache
def _take(dialect: str):
    t = RefCounter.__table__
    stmt = upsert(dialect, t).values(day=bindparam("day"), last=bindparam("n"))
    return stmt.on_conflict_do_update(index_elements=[t.c.day], set_={"last": t.c.last + bindparam("more")}).returning(
        t.c.last)


def take_refs(conn: Connection, now: dt.datetime, count: int) -> list[str]:
    """``count`` consecutive reference numbers of ``now``'s day (CST), taken in ``conn``'s
    transaction: one ``INSERT … ON CONFLICT DO UPDATE … RETURNING`` on the day's counter row, which
    then stays locked until the transaction ends, so no two transactions share a number and a
    rolled-back one leaves no gap."""
    if count <= 0:
        return []
    day = now.astimezone(CST).strftime("%Y%m%d")
    last = conn.execute(_take(conn.dialect.name), {"day": day, "n": count, "more": count}).scalar_one()
    return [format_ref(day, seq) for seq in range(last - count + 1, last + 1)]

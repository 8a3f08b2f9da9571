"""Reference numbers a villager can read over the phone: ``SB20261122-0007``.

``SB`` (申报), the day in China Standard Time, and a per-day sequence taken from a counter row
inside the case's own transaction, so a rolled-back report leaves no gap and two concurrent
reports never get the same number.
"""

from __future__ import annotations

import datetime as dt
import re

from sqlalchemy import update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from .models import RefCounter

CST = dt.timezone(dt.timedelta(hours=8), "CST")
REF_RE = re.compile(r"^SB\d{8}-\d{4,}$")


def format_ref(day: str, seq: int) -> str:
    return f"SB{day}-{seq:04d}"


def is_ref(text: str) -> bool:
    return bool(REF_RE.match(text.strip().upper()))


def next_ref(session: Session, now: dt.datetime) -> str:
    """Allocate the next reference number for ``now``'s day (CST) in the current transaction."""
    day = now.astimezone(CST).strftime("%Y%m%d")
    for _ in range(3):
        stmt = (
            update(RefCounter)
            .where(RefCounter.day == day)
            .values(last=RefCounter.last + 1)
            .returning(RefCounter.last)
        )
        seq = session.execute(stmt).scalar()
        if seq is not None:
            return format_ref(day, seq)
        try:
            with session.begin_nested():
                session.add(RefCounter(day=day, last=1))
            return format_ref(day, 1)
        except IntegrityError:
            continue  # another transaction created today's counter first: increment it
    raise RuntimeError("could not allocate a reference number")

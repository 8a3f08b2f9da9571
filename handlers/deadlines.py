"""Working-day deadlines (时限).

China's official calendar has public holidays *and* make-up working days (调休: a Saturday or
Sunday that is a working day). Both lists are settings (``HUINONG_HOLIDAYS``,
``HUINONG_EXTRA_WORKDAYS``); weekends are otherwise days off. Deadlines run to the end of the
due day in China Standard Time.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, field

CST = dt.timezone(dt.timedelta(hours=8), "CST")

#: Default working days per step. The 10-day feedback after a warning is the Shaanxi plan's
#: (专栏3-1); the others are sensible defaults that a region overrides in its DeadlineRule rows.
DEFAULT_STEP_DAYS: dict[str, int] = {
    "warning": 10,
    "visit": 5,
    "consent": 3,
    "data_check": 5,
    "review": 5,
    "notice": 5,
    "township": 5,
    "county": 5,
}


@dataclass(frozen=True)
class WorkCalendar:
    holidays: frozenset[dt.date] = field(default_factory=frozenset)
    extra_workdays: frozenset[dt.date] = field(default_factory=frozenset)

    @classmethod
    def from_strings(cls, holidays: Iterable[str] = (), extra_workdays: Iterable[str] = ()) -> WorkCalendar:
        return cls(
            frozenset(dt.date.fromisoformat(d.strip()) for d in holidays if d.strip()),
            frozenset(dt.date.fromisoformat(d.strip()) for d in extra_workdays if d.strip()),
        )

    def is_workday(self, day: dt.date) -> bool:
        if day in self.extra_workdays:
            return True
        if day in self.holidays:
            return False
        return day.weekday() < 5

    def add_working_days(self, start: dt.datetime, days: int) -> dt.datetime:
        """The end (23:59:59 CST) of the ``days``-th working day after ``start``'s day."""
        if days < 0:
            raise ValueError("days must be >= 0")
        day = start.astimezone(CST).date()
        counted = 0
        while counted < days:
            day += dt.timedelta(days=1)
            if self.is_workday(day):
                counted += 1
        end = dt.datetime.combine(day, dt.time(23, 59, 59), tzinfo=CST)
        return end.astimezone(dt.UTC)

    def working_days_left(self, due: dt.datetime, now: dt.datetime) -> int:
        """Working days from ``now``'s day to the due day (negative when overdue)."""
        a, b = now.astimezone(CST).date(), due.astimezone(CST).date()
        sign = 1 if b >= a else -1
        lo, hi = min(a, b), max(a, b)
        n = sum(1 for i in range(1, (hi - lo).days + 1) if self.is_workday(lo + dt.timedelta(days=i)))
        return sign * n


def is_overdue(due: dt.datetime | None, now: dt.datetime) -> bool:
    return due is not None and now > due

import datetime as dt

from handlers.deadlines import CST, WorkCalendar, is_overdue


def at(y, m, d, h=10):
    return dt.datetime(y, m, d, h, tzinfo=CST)


def test_ten_working_days_skip_weekends():
    cal = WorkCalendar()
    due = cal.add_working_days(at(2026, 11, 20), 10)  # a Friday
    assert due.astimezone(CST).date() == dt.date(2026, 12, 4)


def test_holidays_and_makeup_workdays():
    cal = WorkCalendar.from_strings(
        holidays=["2026-10-01", "2026-10-02", "2026-10-05", "2026-10-06", "2026-10-07"],
        extra_workdays=["2026-10-10"],
    )
    # From Wed 30 Sep: Oct 1-7 are off (holidays + weekend); Thu 8 and Fri 9 are working days,
    # and so is Sat 10 (make-up day); Sun 11 is not.
    days = [cal.add_working_days(at(2026, 9, 30), n).astimezone(CST).date() for n in (1, 2, 3, 4)]
    assert days == [dt.date(2026, 10, 8), dt.date(2026, 10, 9), dt.date(2026, 10, 10), dt.date(2026, 10, 12)]


def test_due_runs_to_end_of_day_and_overdue():
    cal = WorkCalendar()
    due = cal.add_working_days(at(2026, 11, 23), 1)
    assert not is_overdue(due, at(2026, 11, 24, 23))
    assert is_overdue(due, at(2026, 11, 25, 0))
    assert cal.working_days_left(due, at(2026, 11, 23)) == 1
    assert cal.working_days_left(due, at(2026, 11, 26)) == -2

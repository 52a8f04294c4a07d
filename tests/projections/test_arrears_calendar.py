"""The send window: allowed weekdays and hours in local time, holidays from CalendarDay facts."""

from __future__ import annotations

from projections import reasons as R
from projections._arrears.calendar import SendWindow
from projections._arrears.state import Flag

from .helpers import HOUR, t

WEEKDAYS = SendWindow(8, 20, (0, 1, 2, 3, 4), 0)


def holiday(*dates: str) -> dict[str, Flag]:
    return {d: Flag(True, 0, f"e{i}") for i, d in enumerate(dates)}


def test_allowed_instant_is_returned_as_is():
    at = t("2024-03-06T10:15")
    assert WEEKDAYS.next_allowed(at, {}) == (at, None)


def test_before_and_after_hours_move_to_the_next_opening():
    assert WEEKDAYS.next_allowed(t("2024-03-06T02:00"), {}) == (t("2024-03-06T08:00"), R.OUTSIDE_ALLOWED_HOURS)
    assert WEEKDAYS.next_allowed(t("2024-03-06T20:00"), {}) == (t("2024-03-07T08:00"), R.OUTSIDE_ALLOWED_HOURS)


def test_weekend_moves_to_monday():
    assert WEEKDAYS.next_allowed(t("2024-03-09T12:00"), {}) == (t("2024-03-11T08:00"), R.OUTSIDE_ALLOWED_HOURS)


def test_holiday_wins_the_reason_and_chains_over_days():
    cal = holiday("2024-03-07", "2024-03-08")
    assert WEEKDAYS.next_allowed(t("2024-03-06T21:00"), cal) == (t("2024-03-11T08:00"), R.HOLIDAY_WAIT)


def test_a_holiday_revoked_later_is_not_a_holiday():
    cal = {"2024-03-06": Flag(False, 5, "e2")}
    at = t("2024-03-06T10:00")
    assert WEEKDAYS.next_allowed(at, cal) == (at, None)


def test_local_offset_shifts_the_window():
    tokyo = SendWindow(8, 20, (0, 1, 2, 3, 4), 9 * HOUR)
    # 23:30 UTC Tuesday is 08:30 Wednesday in UTC+9: allowed.
    at = t("2024-03-05T23:30")
    assert tokyo.next_allowed(at, {}) == (at, None)
    assert tokyo.next_allowed(t("2024-03-05T12:00"), {}) == (t("2024-03-05T23:00"), R.OUTSIDE_ALLOWED_HOURS)


def test_no_allowed_time_within_the_horizon_says_so():
    only_monday = SendWindow(8, 20, (0,), 0)
    import datetime as dt

    mondays = [(dt.date(2024, 3, 11) + dt.timedelta(weeks=w)).isoformat() for w in range(60)]
    assert only_monday.next_allowed(t("2024-03-10T12:00"), holiday(*mondays)) == (None, R.HOLIDAY_WAIT)

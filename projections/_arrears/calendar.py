"""When a notice may go out: allowed weekdays and hours, minus holidays from CalendarDay events."""

from __future__ import annotations

from datetime import date

from projections import reasons as R

from .state import Flag

HOUR_NS = 3_600_000_000_000
DAY_NS = 24 * HOUR_NS
_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()
_SEARCH_DAYS = 400  # more than a year of holidays in a row means the calendar is wrong


class SendWindow:
    """Allowed send times in local time (UTC + offset); holidays come from facts."""

    __slots__ = ("from_ns", "until_ns", "weekdays", "offset_ns")

    def __init__(self, from_hour: int, until_hour: int, weekdays: tuple[int, ...], offset_ns: int):
        self.from_ns = from_hour * HOUR_NS
        self.until_ns = until_hour * HOUR_NS
        self.weekdays = frozenset(weekdays)
        self.offset_ns = offset_ns

    def next_allowed(self, t: int, calendar: dict[str, Flag]) -> tuple[int | None, str | None]:
        """The first allowed instant at or after ``t``, and why ``t`` itself was not allowed.

        Returns ``(t, None)`` when ``t`` is allowed, ``(later, reason)`` when it
        must wait (``HOLIDAY_WAIT`` if a holiday was in the way, else
        ``OUTSIDE_ALLOWED_HOURS``), and ``(None, reason)`` when no allowed time
        exists within the search horizon.
        """
        local = t + self.offset_ns
        day, into = divmod(local, DAY_NS)
        reason = None
        for step in range(_SEARCH_DAYS):
            blocked = self._day_blocked(day + step, calendar)
            if blocked is None:
                start = 0 if step else into
                if start < self.until_ns:
                    at = max(start, self.from_ns)
                    if step == 0 and at == into:
                        return t, None
                    return (day + step) * DAY_NS + at - self.offset_ns, reason or R.OUTSIDE_ALLOWED_HOURS
                blocked = R.OUTSIDE_ALLOWED_HOURS
            if reason is None or blocked == R.HOLIDAY_WAIT:
                reason = blocked
        return None, reason

    def _day_blocked(self, day: int, calendar: dict[str, Flag]) -> str | None:
        """Why a local day allows no sending, or None if it does."""
        if (day + 3) % 7 not in self.weekdays:  # 1970-01-01 was a Thursday (weekday 3)
            return R.OUTSIDE_ALLOWED_HOURS
        if calendar:
            entry = calendar.get(date.fromordinal(_EPOCH_ORDINAL + day).isoformat())
            if entry is not None and entry.active:
                return R.HOLIDAY_WAIT
        return None

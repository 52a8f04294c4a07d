"""The ``calendar`` stream: one CalendarDay per day, published a week ahead."""

from __future__ import annotations

import datetime as dt
from typing import Final

from projections.payloads import CalendarDay

from ._jsonl import DAY, HOUR, NS, StreamWriter

# England and Wales bank holidays (gov.uk), the calendar facts the arrears rules read.
HOLIDAYS: Final[dict[str, str]] = {
    "2023-01-02": "New Year's Day (substitute)",
    "2023-04-07": "Good Friday",
    "2023-04-10": "Easter Monday",
    "2023-05-01": "Early May bank holiday",
    "2023-05-08": "Coronation bank holiday",
    "2023-05-29": "Spring bank holiday",
    "2023-08-28": "Summer bank holiday",
    "2023-12-25": "Christmas Day",
    "2023-12-26": "Boxing Day",
    "2024-01-01": "New Year's Day",
    "2024-03-29": "Good Friday",
    "2024-04-01": "Easter Monday",
    "2024-05-06": "Early May bank holiday",
    "2024-05-27": "Spring bank holiday",
    "2024-08-26": "Summer bank holiday",
    "2024-12-25": "Christmas Day",
    "2024-12-26": "Boxing Day",
    "2025-01-01": "New Year's Day",
    "2025-04-18": "Good Friday",
    "2025-04-21": "Easter Monday",
    "2025-05-05": "Early May bank holiday",
    "2025-05-26": "Spring bank holiday",
    "2025-08-25": "Summer bank holiday",
    "2025-12-25": "Christmas Day",
    "2025-12-26": "Boxing Day",
    "2026-01-01": "New Year's Day",
    "2026-04-03": "Good Friday",
    "2026-04-06": "Easter Monday",
    "2026-05-04": "Early May bank holiday",
    "2026-05-25": "Spring bank holiday",
    "2026-08-31": "Summer bank holiday",
    "2026-12-25": "Christmas Day",
    "2026-12-28": "Boxing Day (substitute)",
}

PUBLISHED_AHEAD: Final = 7 * DAY


def day_start_ns(date: dt.date) -> int:
    """Midnight UTC of ``date`` in integer nanoseconds."""
    midnight = dt.datetime(date.year, date.month, date.day, tzinfo=dt.UTC)
    return int(midnight.timestamp()) * NS


def calendar_stream(seed: int, start: dt.date, days: int) -> StreamWriter:
    """CalendarDay events for every day of the window, each published a week before it.

    Days in the first week are published an hour before the window opens, so
    every day's facts are known before anything happens on it.
    """
    writer = StreamWriter(seed, "calendar")
    window_start = day_start_ns(start)
    for d in range(days):
        date = start + dt.timedelta(days=d)
        iso = date.isoformat()
        name = HOLIDAYS.get(iso, "")
        published = max(day_start_ns(date) - PUBLISHED_AHEAD, window_start - HOUR)
        payload = CalendarDay(date=iso, holiday=bool(name), name=name)
        writer.emit(payload, occurred_at=published, received_at=published, source="calendar")
    return writer

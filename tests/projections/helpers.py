"""Building arrears logs in virtual time and replaying them through the real runner.

Times are integer ns UTC. ``Log.add`` appends one event to a memory store whose
clock returns the event's receive time, so ``recorded_at`` (the delivery time
of the identity schedule) is exactly what the test says.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterable

import replay
from eventstore import NewEvent, RecordedEvent, open_store
from projections import ArrearsConfig, ArrearsProjection, Decision, Status

NS = 1_000_000_000
MINUTE = 60 * NS
HOUR = 60 * MINUTE
DAY = 24 * HOUR


def t(iso: str) -> int:
    """ISO UTC time (e.g. "2024-03-04T09:00") as integer ns."""
    return int(dt.datetime.fromisoformat(iso).replace(tzinfo=dt.UTC).timestamp()) * NS


class Log:
    """Events in the order they were received; ``events()`` appends them to a memory store."""

    def __init__(self) -> None:
        self._entries: list[tuple[int, int, object, int, str | None]] = []

    def add(self, payload, at: int, received: int | None = None, stream: str | None = None) -> str:
        """Record ``payload`` that happened at ``at`` (source time), received at ``received``.

        Returns the event id (deterministic: the n-th event added gets uuid n).
        """
        n = len(self._entries) + 1
        self._entries.append((at if received is None else received, n, payload, at, stream))
        return str(uuid.UUID(int=n))

    def events(self) -> list[RecordedEvent]:
        """The recorded events, in receive order, with ``recorded_at`` = receive time."""
        clock = [0]
        store = open_store("memory://", clock=lambda: clock[0])
        for received, n, payload, at, stream in sorted(self._entries, key=lambda e: (e[0], e[1])):
            clock[0] = received
            account = getattr(payload, "account_id", "calendar")
            event = NewEvent.of(payload, id=uuid.UUID(int=n), occurred_at=at)
            store.append(stream or f"account-{account}", [event])
        return list(store.read_all())


def run(events: Iterable[RecordedEvent] | Log, config: ArrearsConfig | None = None, deliveries=None):
    """Replay through the arrears projection with the identity schedule (or ``deliveries``)."""
    if isinstance(events, Log):
        events = events.events()
    projection = ArrearsProjection(config)
    chosen = deliveries if deliveries is not None else list(replay.deliveries_of(events))
    return replay.run(chosen, projection, collect=False, strict=True)


def notices(result, account: str | None = None) -> list[Decision]:
    """The arrears-notice decisions of a run, optionally for one account."""
    return [d for d in result.decisions
            if d.kind == "arrears-notice" and (account is None or d.subject == account)]


def statuses(result, account: str | None = None) -> list[str]:
    return [str(d.status) for d in notices(result, account)]


def released(result, account: str | None = None) -> list[Decision]:
    return [d for d in notices(result, account) if d.status == Status.RELEASED]


# -- a standard account: overdue debt, daily readings -----------------------------
STATED = "2024-03-04T02:00"  # a Monday; the hold (48 h) ends Wed 02:00, release waits to 08:00
RELEASE = "2024-03-06T08:00"


def readings(log: Log, account: str = "A1", first: str = "2024-03-01", days: int = 5,
             meter: str | None = None, start_kwh: float = 1000.0, lag: int = 5 * MINUTE) -> list[str]:
    """Daily real readings at 00:30 device time, received ``lag`` later; returns their ids."""
    from projections.payloads import MeterReading

    base = t(f"{first}T00:30")
    return [
        log.add(MeterReading(meter or f"M-{account}", account, start_kwh + 8.0 * d), base + d * DAY,
                base + d * DAY + lag)
        for d in range(days)
    ]


def statement(log: Log, account: str = "A1", balance: int = 10_000, at: str = STATED,
              due: str = "2024-03-01T00:00", provisional: bool = False, received: int | None = None) -> str:
    """An AccountBalance stated at ``at`` (and received then, unless given), due at ``due``."""
    from projections.payloads import AccountBalance

    stated = t(at)
    payload = AccountBalance(account, balance, provisional=provisional, due_at=t(due))
    return log.add(payload, stated, received)


def reasons_of(result, status: Status, account: str = "A1") -> list[tuple[str, ...]]:
    return [d.reasons for d in notices(result, account) if d.status == status]

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
    """An ordered event log; append in receive order (the store keeps recorded_at monotonic)."""

    def __init__(self) -> None:
        self._received = 0
        self.store = open_store("memory://", clock=lambda: self._received)
        self._n = 0

    def add(self, payload, at: int, received: int | None = None, stream: str | None = None) -> uuid.UUID:
        """Append ``payload`` that happened at ``at`` (device/source time), received at ``received``."""
        self._received = at if received is None else received
        self._n += 1
        event_id = uuid.UUID(int=self._n)  # deterministic ids: replays compare byte for byte
        account = getattr(payload, "account_id", "calendar")
        self.store.append(stream or f"account-{account}", [NewEvent.of(payload, id=event_id, occurred_at=at)])
        return event_id

    def events(self) -> list[RecordedEvent]:
        return list(self.store.read_all())


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

"""What a checker sees of one run: the log, the schedule, the replay's result and tables."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec
import polars as pl
import pyarrow as pa

from eventstore import RecordedEvent
from replay import Delivery, Drop, RunResult

from ._schedules import Schedule, Skew

EVENT_COLUMNS = {
    "run_id": pl.String, "position": pl.Int64, "event_id": pl.String, "stream": pl.String,
    "type": pl.String, "source": pl.String, "occurred_at": pl.Int64, "recorded_at": pl.Int64,
    "data": pl.String,
}
# Payload fields lifted into columns of ``events``, so invariants join and filter on typed
# columns instead of parsing JSON per row per example (``data`` keeps everything else).
PAYLOAD_COLUMNS = {
    "account_id": pl.String, "payment_id": pl.String, "amount_minor": pl.Int64,
    "balance_minor": pl.Int64, "due_at": pl.Int64, "provisional": pl.Boolean, "flag": pl.String,
    "active": pl.Boolean, "stage": pl.String, "notice_id": pl.String,
}


@dataclass(frozen=True)
class Trace:
    """One example: ``events`` replayed under ``schedule`` through ``projection``.

    ``base`` is the unperturbed replay of the same log (for convergence), made
    on first use by ``base_of``; None when the schedule is the identity.
    """

    run_id: str
    events: Sequence[RecordedEvent]
    schedule: Schedule
    deliveries: Sequence[Delivery]
    drops: Sequence[Drop]
    result: RunResult
    projection: Any
    base_of: Callable[[], RunResult] | None = None
    extra: Mapping[str, pl.DataFrame] = field(default_factory=dict)
    # The log's ``events`` table with an empty run_id (shared by every run of the log);
    # ``table("events")`` fills in this run's id when asked, batches fill in many at once.
    log_events: pa.Table | None = None

    @property
    def base(self) -> RunResult | None:
        """The unperturbed replay of the same log, or None for the identity schedule."""
        if self.base_of is None or not self.schedule.perturbations:
            return None
        return self.base_of()

    def table(self, name: str) -> pl.DataFrame:
        """A trace table (``replay/_schema.py``) or ``events``, as a polars frame."""
        if name in self.extra:
            return self.extra[name]
        if name == "events" and self.log_events is not None:
            frame = pl.from_arrow(self.log_events)
            assert isinstance(frame, pl.DataFrame)
            return frame.with_columns(run_id=pl.lit(self.run_id, dtype=pl.String))
        tables = self.result.tables
        if tables is None:
            raise ValueError(f"run {self.run_id} kept no tables (replay.run(collect=False))")
        return tables[name]

    def every_event_arrives(self) -> bool:
        """True when every event of the log is delivered unchanged (no drop, no clock skew)."""
        return not self.drops and not any(isinstance(p, Skew) for p in self.schedule.perturbations)


def events_frame(events: Sequence[RecordedEvent], run_id: str = "") -> pl.DataFrame:
    """The ``events`` table of a log: one row per event, payload as JSON text (None if not JSON).

    Besides the envelope it has the columns of ``PAYLOAD_COLUMNS`` (None where
    an event's payload has no such field).
    """
    payloads = [_payload(e.data) for e in events]
    columns: dict[str, list] = {
        "run_id": [run_id] * len(events),
        "position": [e.position for e in events],
        "event_id": msgspec.json.decode(msgspec.json.encode([e.id for e in events])),
        "stream": [e.stream for e in events],
        "type": [e.type for e in events],
        "source": [e.metadata.source for e in events],
        "occurred_at": [e.occurred_at for e in events],
        "recorded_at": [e.recorded_at for e in events],
        "data": [text for text, _ in payloads],
    }
    for name, dtype in PAYLOAD_COLUMNS.items():
        columns[name] = [_field(fields, name, dtype) for _, fields in payloads]
    return pl.DataFrame(columns, schema={**EVENT_COLUMNS, **PAYLOAD_COLUMNS})


def _payload(data: bytes) -> tuple[str | None, dict]:
    try:
        text = data.decode("utf-8")
        fields = msgspec.json.decode(data)
    except (UnicodeDecodeError, msgspec.DecodeError):
        return None, {}  # raw bytes of an unknown type: SQL sees NULL, never a half-parsed value
    return text, fields if isinstance(fields, dict) else {}


_PYTHON_TYPES = {pl.String: str, pl.Int64: int, pl.Boolean: bool}


def _field(fields: dict, name: str, dtype: Any) -> Any:
    value = fields.get(name)
    wanted = _PYTHON_TYPES[dtype]
    # Absent, or of another type in some unknown payload: NULL, never an error.
    return value if type(value) is wanted else None

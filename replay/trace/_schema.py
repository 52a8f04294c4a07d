"""Rows of the trace tables. One Parquet file per table per run directory.

These are the columns invariants query in SQL; keep names and meanings stable.
All times are integer nanoseconds UTC in virtual time unless said otherwise.
"""

from __future__ import annotations

import msgspec


class RunRow(msgspec.Struct, frozen=True):
    """``runs``: one row per run."""

    run_id: str
    projection: str
    version: str
    config: str  # JSON of projection.config()
    source: str  # store URI or log path
    seed: int | None
    schedule: str  # JSON of the delivery schedule ("identity" when unperturbed)
    events: int
    deliveries: int
    drops: int
    decisions: int
    timers: int
    faults: int
    digest: str  # sha256 over the other tables, for the determinism check


class DeliveryRow(msgspec.Struct, frozen=True):
    """``deliveries``: every delivery of an event to the projection, in delivery order."""

    run_id: str
    seq: int  # delivery order, 0-based, shared with timer firings
    position: int  # the event's global position in the source
    event_id: str
    stream: str
    type: str
    source: str | None  # metadata.source, the partition / clock-skew unit
    occurred_at: int
    recorded_at: int
    delivered_at: int  # ctx.now during apply
    copy: int  # 0 for the first delivery, 1.. for duplicates
    perturbation: str  # none | delayed | duplicate | reordered | skewed | partitioned
    delay_ns: int


class DropRow(msgspec.Struct, frozen=True):
    """``drops``: events of the base log that were never delivered."""

    run_id: str
    position: int
    event_id: str
    stream: str
    type: str
    reason: str  # dropped | partition


class DecisionRow(msgspec.Struct, frozen=True):
    """``decisions``: every ``ctx.decide`` call, with the seq that caused it."""

    run_id: str
    seq: int  # 0-based order of decisions within the run
    cause_seq: int  # the delivery or timer seq being handled
    at: int
    kind: str
    subject: str
    action: str
    status: str
    reasons: list[str]
    confidence: float
    min_confidence: float
    inputs: list[str]
    effect_key: str | None
    external: bool
    irreversible: bool
    input_time: int | None
    freshness_ns: int | None
    hold_until: int | None


class TimerRow(msgspec.Struct, frozen=True):
    """``timers``: every timer scheduled, and what became of it."""

    run_id: str
    key: str
    scheduled_at: int
    due_at: int
    fired_seq: int | None  # the seq it fired at, None if cancelled or pending
    outcome: str  # fired | cancelled | replaced | pending


class FaultRow(msgspec.Struct, frozen=True):
    """``faults``: fault events seen and errors a projection raised on an event."""

    run_id: str
    seq: int
    at: int
    source: str
    kind: str
    detail: str


class ViolationRow(msgspec.Struct, frozen=True):
    """``violations``: rows an invariant returned, as JSON, with the invariant id."""

    run_id: str
    invariant: str
    description: str
    row: str


TABLES: dict[str, type[msgspec.Struct]] = {
    "runs": RunRow,
    "deliveries": DeliveryRow,
    "drops": DropRow,
    "decisions": DecisionRow,
    "timers": TimerRow,
    "faults": FaultRow,
    "violations": ViolationRow,
}

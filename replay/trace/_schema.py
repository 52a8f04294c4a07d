"""Rows of the trace tables. One Parquet file per table per run directory.

These are the columns invariants query in SQL; keep names and meanings stable.
All times are integer nanoseconds UTC in virtual time unless said otherwise.
"""

from __future__ import annotations

import typing

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


# What every column means, for `unbroken query --help` and docs/trace-schema.md (both generated
# from here; a test checks every column of TABLES is described and nothing else is).
COLUMN_DOCS: dict[str, dict[str, str]] = {
    "runs": {
        "run_id": "the run's id (replay --run-id; e1, e2... for check's examples)",
        "projection": "the projection's name",
        "version": "the projection's version",
        "config": "JSON of projection.config()",
        "source": "store URI or log path the events came from",
        "seed": "the search seed of a check run, else null",
        "schedule": 'JSON of the delivery schedule ("identity" when unperturbed)',
        "events": "distinct events of the source (delivered once or more, or dropped)",
        "deliveries": "rows in deliveries",
        "drops": "rows in drops",
        "decisions": "rows in decisions",
        "timers": "rows in timers",
        "faults": "rows in faults",
        "digest": "sha256 over every other table's rows: equal digests, identical runs",
    },
    "deliveries": {
        "run_id": "the run",
        "seq": "the step: 0, 1, 2... in delivery order, one counter shared with timer firings",
        "position": "the event's global position in the store or log (1-based)",
        "event_id": "the event's id (UUID)",
        "stream": "the event's stream",
        "type": "the event's type",
        "source": "metadata.source: the unit a partition or a clock skew applies to",
        "occurred_at": "when it happened at the source (device time; may be wrong)",
        "recorded_at": "when the system received it (what an identity replay delivers at)",
        "delivered_at": "the virtual time of this delivery: ctx.now during apply",
        "copy": "0 for the first delivery of the event, 1, 2... for duplicates",
        "perturbation": "none | delayed | duplicate | reordered | skewed | partitioned",
        "delay_ns": "how far the schedule moved this delivery (ns; 0 when not moved)",
    },
    "drops": {
        "run_id": "the run",
        "position": "the dropped event's global position",
        "event_id": "the dropped event's id",
        "stream": "its stream",
        "type": "its type",
        "reason": "dropped | partition",
    },
    "decisions": {
        "run_id": "the run",
        "seq": "0, 1, 2... in the order decisions were made (its own counter, not a step)",
        "cause_seq": "the step that made it: deliveries.seq or timers.fired_seq",
        "at": "virtual time of the decision (ctx.now); a keyword in DuckDB: write d.at or \"at\"",
        "kind": "what sort of decision (e.g. arrears-notice)",
        "subject": "what it is about (e.g. an account)",
        "action": "what it does (e.g. send-notice)",
        "status": "proposed | held | released | cancelled | blocked | sent",
        "reasons": "stable reason codes (list of text)",
        "confidence": "how sure the projection is (0..1)",
        "min_confidence": "the bar it had to clear",
        "inputs": "ids of the events it rests on (join events/deliveries on event_id)",
        "effect_key": "idempotency key of the external effect (INV-4), null if none",
        "external": "true when it has an effect outside the system",
        "irreversible": "true when the effect cannot be undone (INV-3)",
        "input_time": "source time of the freshest input it rests on (INV-1), null if not stated",
        "freshness_ns": "how old that input may be at `at` (ns, INV-1), null if not stated",
        "hold_until": "end of a hold's window (INV-3), null if not a hold",
    },
    "timers": {
        "run_id": "the run",
        "key": "the timer's key (ctx.schedule(at, key))",
        "scheduled_at": "virtual time when it was scheduled",
        "due_at": "virtual time it was due",
        "fired_seq": "the step it fired as (deliveries share the counter), null if it never fired",
        "outcome": "fired | cancelled | replaced | pending (still waiting at the end)",
    },
    "faults": {
        "run_id": "the run",
        "seq": "the step it happened at: deliveries.seq or timers.fired_seq",
        "at": "virtual time",
        "source": "projection:<name> for the projection's own failures, else the fault event's source",
        "kind": ("projection_error (apply/on_timer raised; the step was undone) | "
                 "projection_returned_none | timer_without_on_timer | a fault event's own kind"),
        "detail": "what and where: the event's position, id, type, stream, and the exception",
    },
    "violations": {
        "run_id": "the run",
        "invariant": "the invariant's id (e.g. AR-1)",
        "description": "what the invariant says",
        "row": "one row the invariant's query returned, as JSON",
    },
}

JOINS: tuple[str, ...] = (
    "every table has run_id; join on it first when several runs are open",
    "decisions.cause_seq = deliveries.seq: the delivery that caused a decision",
    "decisions.cause_seq = timers.fired_seq: the timer that caused a decision",
    "faults.seq = deliveries.seq (or timers.fired_seq): the step that failed",
    "deliveries.position, drops.position: the event's position in the source (in check's "
    "invariants also events.position, with run_id)",
    "decisions.inputs holds event ids: unnest(inputs) = deliveries.event_id",
)


_SQL_TYPES = {str: "text", int: "int64", float: "double", bool: "boolean"}


def _sql_type(tp: object) -> str:
    """A column's Python type as the SQL type a query sees."""
    args = typing.get_args(tp)
    if typing.get_origin(tp) is list:
        return f"list of {_sql_type(args[0])}"
    if args and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        return f"{_sql_type(rest[0])} or null"
    return _SQL_TYPES.get(tp, str(tp))  # type: ignore[call-overload]


def _column_type(table: str, column: str) -> str:
    hints = typing.get_type_hints(TABLES[table])
    return _sql_type(hints[column])


def schema_text() -> str:
    """The trace tables as plain text: each table, its columns with type and meaning, the joins."""
    lines = ["trace tables (times are int64 ns UTC in virtual time unless said otherwise):"]
    for table, columns in COLUMN_DOCS.items():
        doc = (TABLES[table].__doc__ or "").split(":", 1)[-1].strip()
        lines.append(f"  {table}: {doc}")
        for column, meaning in columns.items():
            lines.append(f"    {column} ({_column_type(table, column)}): {meaning}")
    lines.append("joins:")
    lines.extend(f"  {j}" for j in JOINS)
    return "\n".join(lines)


def schema_markdown() -> str:
    """The trace tables as Markdown (docs/trace-schema.md holds this between its markers)."""
    out = ["All times are int64 nanoseconds UTC in virtual time unless said otherwise.", ""]
    for table, columns in COLUMN_DOCS.items():
        doc = (TABLES[table].__doc__ or "").split(":", 1)[-1].strip()
        out += [f"### `{table}`", "", doc, "", "| column | type | meaning |", "| --- | --- | --- |"]
        for column, meaning in columns.items():
            out.append(f"| `{column}` | {_column_type(table, column)} | {meaning.replace('|', '&#124;')} |")
        out.append("")
    out += ["### Joins", ""]
    out += [f"- {j}" for j in JOINS]
    return "\n".join(out) + "\n"


BEGIN, END = "<!-- schema:begin -->", "<!-- schema:end -->"


def refresh_doc(path: str) -> bool:
    """Rewrite the generated part of ``path`` (between its markers); True when it changed."""
    from pathlib import Path

    doc = Path(path)
    text = doc.read_text(encoding="utf-8")
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    new = f"{head}{BEGIN}\n{schema_markdown()}{END}{tail}"
    if new != text:
        doc.write_text(new, encoding="utf-8")
    return new != text


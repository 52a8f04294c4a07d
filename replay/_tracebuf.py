"""Trace rows on their way out: buffered, hashed into the run digest, written, collected.

The runner's hot loop only appends objects it already has (the delivery and
its seq, the decision and its cause); this module turns a batch of them into
columns in one pass per column, feeds the digest, hands the batch to the
Parquet writer and, when asked, keeps the columns for in-memory frames.

The digest is a chain of sha256 over fixed chunks of ``CHUNK`` rows per table
(msgpack of the chunk's columns, ``run_id`` left out so two runs of the same
log compare equal). For ``deliveries`` the hashed columns are the delivery
core: seq, the whole delivered event (payload included), at, copy,
perturbation and delay, from which every column of the table follows; hashing
the events as msgpack in C is cheaper than building the columns, which are
then only built when a trace is written or collected. Chunks are cut by row number, not by flush, so the digest
does not depend on batch size or on where a snapshot was taken; its whole
state (chain, row count, the rows of the unfinished chunk) fits in a snapshot.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping

import msgspec
import polars as pl

from ._delivery import Drop
from ._schema import TABLES
from ._trace import TraceWriter, arrow_batch, columns, empty_frame

CHUNK = 4096
HASHED_TABLES = ("deliveries", "drops", "decisions", "timers", "faults", "violations")
_encode = msgspec.msgpack.encode
_json = msgspec.json


class Digest:
    """Running sha256 over every trace row except ``runs`` (see module docstring)."""

    def __init__(self, state: dict | None = None) -> None:
        fresh = {t: [b"", 0, None] for t in HASHED_TABLES}
        self.state: dict[str, list] = state if state is not None else fresh

    def update(self, table: str, cols: list[list]) -> None:
        """Hash ``cols`` (one batch, columns without run_id) after the rows seen so far."""
        chain, rows, carry = self.state[table]
        if carry:
            cols = [a + b for a, b in zip(carry, cols, strict=True)]
        n = len(cols[0])
        full = n - n % CHUNK
        for i in range(0, full, CHUNK):
            chain = _chunk_hash(chain, [c[i : i + CHUNK] for c in cols])
        carry = [c[full:] for c in cols] if full < n else None
        self.state[table] = [chain, rows + full, carry]

    def hexdigest(self) -> str:
        """The digest of everything hashed so far (unfinished chunks included)."""
        summary = []
        for table in HASHED_TABLES:
            chain, rows, carry = self.state[table]
            if carry:
                chain, rows = _chunk_hash(chain, carry), rows + len(carry[0])
            summary.append([table, rows, chain])
        return hashlib.sha256(_encode(summary)).hexdigest()


def _chunk_hash(chain: bytes, cols: list[list]) -> bytes:
    return hashlib.sha256(chain + _encode(cols)).digest()


def _transpose(rows: list[tuple], width: int) -> list[list]:
    return [list(c) for c in zip(*rows, strict=True)] if rows else [[] for _ in range(width)]


def delivery_core(seqs: list[int], items: list, identity: bool) -> list[list]:
    """What a batch of deliveries consists of: seq, event, at, copy, perturbation, delay_ns.

    ``items`` are events (identity schedule) or ``Delivery`` objects; both
    give the same core, so the digest does not depend on the path taken.
    """
    n = len(items)
    if identity:
        return [list(seqs), list(items), [e.recorded_at for e in items], [0] * n,
                ["none"] * n, [0] * n]
    return [list(seqs), [d.event for d in items], [d.at for d in items],
            [d.copy for d in items], [d.perturbation for d in items],
            [d.delay_ns for d in items]]


def delivery_columns(core: list[list]) -> list[list]:
    """Columns of ``deliveries`` (without run_id) from a batch's core.

    One comprehension per column: building a tuple per row instead would
    wake the garbage collector every few hundred rows.
    """
    seqs, evs, ats, copies, perturbations, delays = core
    return [
        seqs,
        [e.position for e in evs],
        _json.decode(_json.encode([e.id for e in evs])),  # uuid -> str in C
        [e.stream for e in evs],
        [e.type for e in evs],
        [e.metadata.source for e in evs],
        [e.occurred_at for e in evs],
        [e.recorded_at for e in evs],
        ats,
        copies,
        perturbations,
        delays,
    ]


def decision_columns(first_seq: int, causes: list[int], objs: list) -> list[list]:
    """Columns of ``decisions`` (without run_id); seqs continue from ``first_seq``."""
    return [
        list(range(first_seq, first_seq + len(objs))),
        list(causes),
        [d.at for d in objs],
        [d.kind for d in objs],
        [d.subject for d in objs],
        [d.action for d in objs],
        [str(d.status) for d in objs],
        [list(d.reasons) for d in objs],
        [float(d.confidence) for d in objs],
        [float(d.min_confidence) for d in objs],
        [list(d.inputs) for d in objs],
        [d.effect_key for d in objs],
        [bool(d.external) for d in objs],
        [bool(d.irreversible) for d in objs],
        [d.input_time for d in objs],
        [d.freshness_ns for d in objs],
        [d.hold_until for d in objs],
    ]


def drop_rows(drops: list[Drop]) -> list[tuple]:
    """Rows of ``drops`` (without run_id)."""
    return [(d.position, str(d.event.id), d.event.stream, d.event.type, d.reason) for d in drops]


class TraceBuffer:
    """Column batches of one run, flushed to the digest, a writer and memory."""

    def __init__(
        self, run_id: str, writer: TraceWriter | None, collect: bool, digest: Digest
    ) -> None:
        self.run_id = run_id
        self.writer = writer
        self.digest = digest
        self.collected: dict[str, list[list]] | None = (
            {t: [[] for _ in columns(t)[1:]] for t in TABLES} if collect else None
        )
        self.rows = dict.fromkeys(HASHED_TABLES, 0)
        self.first_deliveries = 0  # deliveries with copy == 0: distinct events delivered
        self.identity = False  # delivery_items hold events (identity schedule), else Deliveries
        self.delivery_seqs: list[int] = []
        self.delivery_items: list = []
        self.fault_rows: list[tuple] = []  # (seq, at, source, kind, detail)

    def restore_counts(self, rows: dict[str, int], first_deliveries: int) -> None:
        """Continue the row counters of a run resumed from a snapshot."""
        self.rows = dict(rows)
        self.first_deliveries = first_deliveries

    def emit(self, table: str, cols: list[list]) -> None:
        """Send one batch of ``table`` rows (columns without run_id) everywhere it goes."""
        n = len(cols[0])
        if not n:
            return
        self.rows[table] = self.rows.get(table, 0) + n
        if table != "runs":
            self.digest.update(table, cols)
        self._output(table, cols)

    def _output(self, table: str, cols: list[list]) -> None:
        if self.writer is not None:
            self.writer.write(table, self.run_id, cols)
        if self.collected is not None:
            for kept, col in zip(self.collected[table], cols, strict=True):
                kept.extend(col)

    def _flush_deliveries(self) -> None:
        core = delivery_core(self.delivery_seqs, self.delivery_items, self.identity)
        self.delivery_seqs.clear()  # cleared in place: the runner holds their append methods
        self.delivery_items.clear()
        self.rows["deliveries"] += len(core[0])
        self.first_deliveries += core[3].count(0)
        self.digest.update("deliveries", core)
        if self.writer is not None or self.collected is not None:
            self._output("deliveries", delivery_columns(core))

    def flush(self, ctx) -> None:
        """Move every buffered row out (called between steps, never inside one)."""
        if self.delivery_items:
            self._flush_deliveries()
        if ctx.decision_objs:
            first = self.rows["decisions"]
            self.emit("decisions", decision_columns(first, ctx.decision_causes, ctx.decision_objs))
            ctx.decision_objs.clear()
            ctx.decision_causes.clear()
        if ctx.timer_rows:
            self.emit("timers", _transpose(ctx.timer_rows, 5))
            ctx.timer_rows.clear()
        if self.fault_rows:
            self.emit("faults", _transpose(self.fault_rows, 5))
            self.fault_rows.clear()
        ctx.journal.clear()  # steps before a flush can no longer be undone

    def frames(self) -> Mapping[str, pl.DataFrame]:
        """The collected tables as polars frames, built on first access."""
        assert self.collected is not None
        return LazyFrames(self.run_id, self.collected)


class LazyFrames(Mapping):
    """table name -> polars DataFrame with exactly the schema's columns, built when asked."""

    def __init__(self, run_id: str, collected: dict[str, list[list]]) -> None:
        self._run_id = run_id
        self._collected = collected
        self._built: dict[str, pl.DataFrame] = {}

    def __getitem__(self, table: str) -> pl.DataFrame:
        frame = self._built.get(table)
        if frame is None:
            frame = self._built[table] = self._build(table)
        return frame

    def _build(self, table: str) -> pl.DataFrame:
        cols = self._collected[table]
        n = len(cols[0])
        if not n:
            return empty_frame(table)
        # via Arrow: several times cheaper than polars' own list conversion for small frames
        frame = pl.from_arrow(arrow_batch(table, self._run_id, cols))
        assert isinstance(frame, pl.DataFrame)
        return frame

    def __iter__(self) -> Iterator[str]:
        return iter(self._collected)

    def __len__(self) -> int:
        return len(self._collected)

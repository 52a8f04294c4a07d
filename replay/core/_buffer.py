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

Deliveries are hashed as they come, a few hundred at a time (``compact``):
their events go into the digest as msgpack bytes at once instead of being
kept until the flush, and each full chunk is hashed on a thread of its own
(``_link_later``) while the replay goes on. A decoded event holds a
``uuid.UUID``, which the garbage collector tracks; tens of thousands of them
kept alive across collections were promoted into the oldest generation and
made full collections run every ~40k events (a quarter of a 1M-event
replay's time).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from itertools import chain

import msgspec
import polars as pl
import pyarrow as pa

from replay._delivery import Drop
from replay.trace import (
    TABLES,
    DeliveryColumns,
    TraceWriter,
    arrow_batch,
    arrow_schema,
    columns,
    empty_frame,
)

CHUNK = 4096
HASHED_TABLES = ("deliveries", "drops", "decisions", "timers", "faults", "violations")
_encode = msgspec.msgpack.encode
_json = msgspec.json


class Digest:
    """Running sha256 over every trace row except ``runs`` (see module docstring).

    ``deliveries`` keep their unfinished chunk with the events already encoded
    (``EncodedChunk``); ``state`` shows it with the events decoded, as plain
    msgpack values that encode back to the same bytes, so snapshots hold the
    same thing either way.
    """

    def __init__(self, state: dict | None = None) -> None:
        self._tables: dict[str, list] = {t: [b"", 0, None] for t in HASHED_TABLES}
        self._deliveries = EncodedChunk()
        if state is not None:
            self.state = state

    @property
    def state(self) -> dict[str, list]:
        """Per table: [chain, rows hashed, unfinished chunk's columns or None] (what a snapshot keeps)."""
        tables = {t: list(v) for t, v in self._tables.items()}
        tables["deliveries"][0] = _settled(tables["deliveries"][0])  # waits for the hasher
        tables["deliveries"][2] = self._deliveries.columns()
        return tables

    @state.setter
    def state(self, state: dict[str, list]) -> None:
        self._tables = {t: list(state[t]) for t in HASHED_TABLES}
        self._deliveries = EncodedChunk(self._tables["deliveries"][2])
        self._tables["deliveries"][2] = None

    def update(self, table: str, cols: list[list]) -> None:
        """Hash ``cols`` (one batch, columns without run_id) after the rows seen so far."""
        if table == "deliveries":
            self.update_deliveries(cols)
            return
        chain, rows, carry = self._tables[table]
        if carry:
            cols = [a + b for a, b in zip(carry, cols, strict=True)]
        n = len(cols[0])
        full = n - n % CHUNK
        for i in range(0, full, CHUNK):
            chain = _chunk_hash(chain, [c[i : i + CHUNK] for c in cols])
        carry = [c[full:] for c in cols] if full < n else None
        self._tables[table] = [chain, rows + full, carry]

    def update_deliveries(self, core: list[list]) -> None:
        """Hash a batch of delivery cores (see ``delivery_core``); its events are encoded here."""
        pending = self._deliveries
        n, i = len(core[0]), 0
        while i < n:
            take = min(n - i, CHUNK - pending.n)
            pending.add([c[i : i + take] for c in core] if take < n else core)
            i += take
            if pending.n == CHUNK:
                chain, rows, _ = self._tables["deliveries"]
                self._tables["deliveries"] = [_link_later(chain, pending.encoded()), rows + CHUNK, None]
                pending = self._deliveries = EncodedChunk()

    def hexdigest(self) -> str:
        """The digest of everything hashed so far (unfinished chunks included)."""
        summary = []
        for table in HASHED_TABLES:
            chain, rows, carry = self._tables[table]
            chain = _settled(chain)
            if table == "deliveries" and self._deliveries.n:
                chain, rows = _link(chain, self._deliveries.encoded()), rows + self._deliveries.n
            elif carry:
                chain, rows = _chunk_hash(chain, carry), rows + len(carry[0])
            summary.append([table, rows, chain])
        return hashlib.sha256(_encode(summary)).hexdigest()


class EncodedChunk:
    """The unfinished chunk of ``deliveries``: core columns with the events as msgpack bytes.

    ``encoded`` gives exactly what ``_chunk_hash`` encodes for the same rows
    with the event objects: the events column is spliced in as its msgpack array.
    """

    __slots__ = ("cols", "events", "n")

    def __init__(self, columns: list[list] | None = None) -> None:
        self.cols: list[list] = [[], [], [], [], []]  # seq, at, copy, perturbation, delay_ns
        self.events: list[bytes] = []  # each: a run of encoded events, without array header
        self.n = 0
        if columns:
            self.add(columns)

    def add(self, core: list[list]) -> None:
        """Append rows given as core columns (events as objects or their decoded msgpack)."""
        seqs, events, *rest = core
        n = len(seqs)
        if n:
            self.cols[0].extend(seqs)
            for kept, col in zip(self.cols[1:], rest, strict=True):
                kept.extend(col)
            self.events.append(_encode(events)[len(_array_header(n)) :])
            self.n += n

    def encoded(self) -> bytes:
        """What ``_chunk_hash`` hashes after the chain: msgpack of the core columns, events spliced in."""
        seqs, ats, copies, perturbations, delays = self.cols
        events = msgspec.Raw(b"".join([_array_header(self.n), *self.events]))
        return _encode([seqs, events, ats, copies, perturbations, delays])

    def columns(self) -> list[list] | None:
        """The rows as core columns with each event decoded to plain msgpack values, or None."""
        if not self.n:
            return None
        events = msgspec.msgpack.decode(b"".join([_array_header(self.n), *self.events]))
        seqs, ats, copies, perturbations, delays = (list(c) for c in self.cols)
        return [seqs, events, ats, copies, perturbations, delays]


def _array_header(n: int) -> bytes:
    """The msgpack array header for ``n`` items, as msgspec writes it (the shortest form)."""
    if n < 16:
        return bytes((0x90 | n,))
    if n < 0x10000:
        return b"\xdc" + n.to_bytes(2, "big")
    return b"\xdd" + n.to_bytes(4, "big")


def _chunk_hash(chain: bytes, cols: list[list]) -> bytes:
    return hashlib.sha256(chain + _encode(cols)).digest()


_hasher: tuple[int, ThreadPoolExecutor] | None = None


def _link_later(chain: bytes | Future, data: bytes) -> Future:
    """sha256(chain + data), computed on the hasher thread; chains may be pending themselves.

    Full chunks of ``deliveries`` (about a megabyte each) are hashed off the
    replay's thread: hashlib lets go of the GIL while it hashes, so this
    overlaps the replay on another core. One thread per process (made anew
    in a forked child, which inherits the object but not the thread).
    """
    global _hasher
    if _hasher is None or _hasher[0] != os.getpid():
        _hasher = (os.getpid(), ThreadPoolExecutor(1, thread_name_prefix="trace-digest"))
    return _hasher[1].submit(_link, chain, data)


def _link(chain: bytes | Future, data: bytes) -> bytes:
    h = hashlib.sha256(_settled(chain))  # FIFO on one thread: a pending chain is done by now
    h.update(data)  # = sha256(chain + data), without copying a megabyte
    return h.digest()


def _settled(chain: bytes | Future) -> bytes:
    """The chain's bytes, waiting for the hasher when it is still being computed."""
    return chain.result() if isinstance(chain, Future) else chain


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
        self.delivery_batch: DeliveryColumns | None = None  # compacted rows for the writer
        self.delivery_cols: list[list] | None = None  # the same as lists, to collect
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

    def compact(self) -> None:
        """Hash the deliveries buffered so far and keep only their columns (any time).

        The runner calls this every few hundred deliveries so that delivered
        events do not live until the flush (see the module docstring).
        """
        if not self.delivery_items:
            return
        core = delivery_core(self.delivery_seqs, self.delivery_items, self.identity)
        self.delivery_seqs.clear()  # cleared in place: the runner holds their append methods
        self.delivery_items.clear()
        self.rows["deliveries"] += len(core[0])
        self.first_deliveries += core[3].count(0)
        self.digest.update_deliveries(core)
        if self.writer is not None:
            if self.delivery_batch is None:  # made here: ``identity`` is set after __init__
                self.delivery_batch = DeliveryColumns(self.identity)
            self.delivery_batch.add(core)
        if self.collected is not None:
            cols = delivery_columns(core)
            if self.delivery_cols is None:
                self.delivery_cols = cols
            else:
                for kept, col in zip(self.delivery_cols, cols, strict=True):
                    kept.extend(col)

    def flush(self, ctx) -> None:
        """Move every buffered row out (called between steps, never inside one)."""
        self.compact()
        if self.delivery_batch is not None:
            assert self.writer is not None
            batch, self.delivery_batch = self.delivery_batch, None
            self.writer.write_deliveries(self.run_id, batch)
        if self.delivery_cols is not None:
            assert self.collected is not None
            cols, self.delivery_cols = self.delivery_cols, None
            for kept, col in zip(self.collected["deliveries"], cols, strict=True):
                kept.extend(col)
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

    def arrow(self, table: str, *more: LazyFrames) -> pa.Table:
        """``table`` as one Arrow table of the schema's types: this run's rows, then each of ``more``'s.

        For callers that judge many runs at once (one table per batch instead
        of a frame per run). Same columns and values as the frames; each row's
        ``run_id`` is its own run's. Builds from the collected columns, never
        from frames already built, and does not change them.
        """
        runs = (self, *more)
        parts = [r._collected[table] for r in runs]
        schema = arrow_schema(table)
        # One Arrow conversion per column over all runs: a record batch per run costs more.
        run_ids = list(chain.from_iterable([r._run_id] * len(c[0]) for r, c in zip(runs, parts, strict=True)))
        if not run_ids:
            return schema.empty_table()
        arrays = [pa.array(run_ids, type=pa.string())]
        for i, field in enumerate(list(schema)[1:]):
            values = parts[0][i] if len(parts) == 1 else list(chain.from_iterable(c[i] for c in parts))
            arrays.append(pa.array(values, type=field.type))
        return pa.Table.from_arrays(arrays, schema=schema)

    def __iter__(self) -> Iterator[str]:
        return iter(self._collected)

    def __len__(self) -> int:
        return len(self._collected)

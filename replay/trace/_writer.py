"""The trace writer: one directory per run, one Parquet file per table.

Tables and columns come from ``replay/_schema.py``. Rows arrive as column
batches (``deliveries``, a row per event, as ``DeliveryColumns`` filled while
the events are fresh) and go out as Parquet row groups, so memory stays flat
in the log's length. Encoding and compressing a row group happens on one
background thread (pyarrow releases the GIL), overlapping the replay, and so
does building the ``deliveries`` Arrow arrays from their buffers; at most
``MAX_IN_FLIGHT`` batches wait for it (one flush's tables), so memory stays
bounded. Files are written under a ``.partial`` name and renamed on
``close``: a trace directory never holds a half-written table under its real
name.
"""

from __future__ import annotations

from array import array
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from functools import cache
from pathlib import Path

import msgspec
import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from replay._errors import ReplayError

from ._schema import TABLES

_ARROW_SCALARS = {
    msgspec.inspect.StrType: pa.string(),
    msgspec.inspect.IntType: pa.int64(),
    msgspec.inspect.FloatType: pa.float64(),
    msgspec.inspect.BoolType: pa.bool_(),
}


def _arrow_type(info: msgspec.inspect.Type) -> pa.DataType:
    if isinstance(info, msgspec.inspect.UnionType):
        (inner,) = [t for t in info.types if not isinstance(t, msgspec.inspect.NoneType)]
        return _arrow_type(inner)
    if isinstance(info, msgspec.inspect.ListType):
        return pa.list_(_arrow_type(info.item_type))
    return _ARROW_SCALARS[type(info)]


@cache
def columns(table: str) -> tuple[str, ...]:
    """The column names of ``table``, in schema order."""
    return TABLES[table].__struct_fields__


@cache
def arrow_schema(table: str) -> pa.Schema:
    """The Arrow schema of ``table``, derived from its row struct in ``_schema.py``."""
    info = msgspec.inspect.type_info(TABLES[table])
    return pa.schema(
        [pa.field(f.name, _arrow_type(f.type), nullable=_nullable(f.type)) for f in info.fields]
    )


def _nullable(info: msgspec.inspect.Type) -> bool:
    return isinstance(info, msgspec.inspect.UnionType)


@cache
def polars_schema(table: str) -> pl.Schema:
    """The polars schema of ``table`` (the same types the Parquet files hold)."""
    return pl.Schema(pl.from_arrow(arrow_schema(table).empty_table()).schema)


def arrow_batch(table: str, run_id: str, cols: list[list]) -> pa.Table:
    """An Arrow table of ``table``'s schema: ``run_id`` repeated, then ``cols`` in order."""
    schema = arrow_schema(table)
    arrays = [pa.repeat(pa.scalar(run_id, pa.string()), len(cols[0]))]
    arrays += [pa.array(c, type=f.type) for c, f in zip(cols, list(schema)[1:], strict=True)]
    return pa.Table.from_arrays(arrays, schema=schema)


class DeliveryColumns:
    """The ``deliveries`` columns of one flush, converted as rows come, a few hundred at a time.

    ``add`` takes a chunk's core (see ``_tracebuf.delivery_core``) while its
    events are still in the CPU cache and keeps only compact buffers: int64
    arrays for the numbers, each chunk's strings joined into one ``str`` and
    the ids as one JSON text per chunk. ``arrays`` turns them into Arrow
    arrays with vectorised splits. Converting the 65,536 rows of Python
    objects at the flush instead cost about a microsecond per row: by then
    they are spread over memory that is no longer cached. Under the identity
    schedule delivered_at is recorded_at and copy, perturbation and delay are
    constants, so only their row count is kept.
    """

    __slots__ = ("_ids", "_ints", "_strs", "identity", "n")

    def __init__(self, identity: bool) -> None:
        self.identity = identity
        self.n = 0
        # seq, position, occurred_at, recorded_at, then (not identity) delivered_at, copy, delay_ns
        self._ints = [array("q") for _ in range(4 if identity else 7)]
        # stream, type, source, then (not identity) perturbation; each a list of chunks
        self._strs: list[list[str | pa.Array]] = [[] for _ in range(3 if identity else 4)]
        self._ids: list[bytes] = []  # per chunk: the JSON array of its ids

    def add(self, core: list[list]) -> None:
        """Append one chunk of deliveries: seq, event, at, copy, perturbation, delay_ns columns."""
        seqs, events, ats, copies, perturbations, delays = core
        if not seqs:
            return
        ints, strs = self._ints, self._strs
        ints[0].fromlist(seqs)
        ints[1].fromlist([e.position for e in events])
        ints[2].fromlist([e.occurred_at for e in events])
        strs[0].append(_joined([e.stream for e in events]))
        strs[1].append(_joined([e.type for e in events]))
        strs[2].append(_joined([e.metadata.source for e in events]))
        self._ids.append(_json.encode([e.id for e in events]))  # UUID -> str in C
        if self.identity:  # ats are the recorded_at (see delivery_core)
            ints[3].fromlist(ats)
        else:
            ints[3].fromlist([e.recorded_at for e in events])
            for kept, values in zip(ints[4:], (ats, copies, delays), strict=True):
                kept.fromlist(values)
            strs[3].append(_joined(perturbations))
        self.n += len(seqs)

    def arrays(self) -> list[pa.Array]:
        """The columns after ``run_id``, in schema order, as Arrow arrays."""
        seq, position, occurred, recorded, *delivery = (_int64(a) for a in self._ints)
        stream, type_, source, *perturbation = (_split(pieces) for pieces in self._strs)
        if self.identity:
            zeros = pa.repeat(pa.scalar(0, pa.int64()), self.n)
            delivery = [recorded, zeros, zeros]
            perturbation = [pa.repeat(pa.scalar("none", pa.string()), self.n)]
        delivered, copy, delay = delivery
        return [seq, position, _ids(self._ids, self.n), stream, type_, source, occurred,
                recorded, delivered, copy, *perturbation, delay]


_SEP = "\x1f"  # ASCII unit separator: joins a chunk's strings (chunks holding it are converted as they are)
_json = msgspec.json


def _joined(values: list) -> str | pa.Array:
    try:
        joined = _SEP.join(values)
    except TypeError:  # a None (or a non-str): let Arrow take the chunk as it is
        return pa.array(values, type=pa.string(), from_pandas=False)
    if joined.count(_SEP) != len(values) - 1:  # a value holds the separator itself
        return pa.array(values, type=pa.string(), from_pandas=False)
    return joined


def _split(pieces: list[str | pa.Array]) -> pa.Array:
    """One string array from joined chunks (split in C) and chunks already converted, in order."""
    arrays: list[pa.Array] = []
    run: list[str] = []
    for piece in [*pieces, None]:
        if isinstance(piece, str):
            run.append(piece)
            continue
        if run:
            arrays.append(pc.split_pattern(pa.array([_SEP.join(run)]), _SEP).flatten())
            run = []
        if piece is not None:
            arrays.append(piece)
    return pa.concat_arrays(arrays) if arrays else pa.array([], pa.string())


def _int64(values: array) -> pa.Array:
    return pa.Array.from_buffers(pa.int64(), len(values), [None, pa.py_buffer(values)])


_QUOTE, _UUID_ROW = ord('"'), 39  # a UUID in JSON: '"' + 36 characters + '"', then ','


def _ids(pieces: list[bytes], n: int) -> pa.Array:
    """The ids as strings, sliced out of their JSON when each is a 36-character string.

    That is so when every id is a UUID. The check is exact: n rows of 39
    bytes, 2n quotes in all, each row's at its offsets 0 and 37, and no
    backslash, hence no escape: then row i holds the i-th string, unchanged.
    Anything else (ids of other types) is decoded one by one.
    """
    text = b",".join([p[1:-1] for p in pieces]) + b","
    if len(text) == n * _UUID_ROW and text.count(b'"') == 2 * n and b"\\" not in text:
        rows = np.frombuffer(text, np.uint8).reshape(n, _UUID_ROW)
        if (rows[:, 0] == _QUOTE).all() and (rows[:, 37] == _QUOTE).all():
            data = pa.py_buffer(np.ascontiguousarray(rows[:, 1:37]))
            offsets = pa.py_buffer(np.arange(0, 36 * n + 1, 36, dtype=np.int32))
            return pa.Array.from_buffers(pa.string(), n, [None, offsets, data])
    ids = [v for p in pieces for v in _json.decode(p)]
    return pa.array(ids, type=pa.string(), from_pandas=False)


def _delivery_table(run_id: str, batch: DeliveryColumns) -> pa.Table:
    run_ids = pa.repeat(pa.scalar(run_id, pa.string()), batch.n)
    return pa.Table.from_arrays([run_ids, *batch.arrays()], schema=arrow_schema("deliveries"))


def empty_frame(table: str) -> pl.DataFrame:
    """An empty frame with ``table``'s columns and types."""
    return pl.DataFrame(schema=polars_schema(table))


MAX_IN_FLIGHT = 3


@cache
def parquet_layout(table: str) -> dict:
    """How ``table``'s columns are encoded in Parquet (values and types are the schema's either way).

    By default plain pages without dictionaries: measured smaller and about
    twice as cheap to write as dictionary pages for every column on these
    tables. ``deliveries``, a row per event, is laid out per column (65,536
    rows of a 1M-event replay, zstd: 18.6 -> 12.2 ms of writer CPU,
    1.57 -> 1.33 MB): dictionaries for the few distinct strings (stream,
    type, source...), deltas for the integers (seqs, positions and times
    that mostly rise), the ids' lengths apart from their bytes, and
    statistics (min/max per row group, for pruning) only on the integers;
    on strings every row group spans nearly the whole range anyway.
    """
    if table != "deliveries":
        return {"use_dictionary": False}
    schema = arrow_schema(table)
    ints = [f.name for f in schema if f.type == pa.int64()]
    return {
        "use_dictionary": ["run_id", "stream", "type", "source", "perturbation"],
        "column_encoding": {"event_id": "DELTA_LENGTH_BYTE_ARRAY"}
        | dict.fromkeys(ints, "DELTA_BINARY_PACKED"),
        "write_statistics": ints,
    }


class TraceWriter:
    """Writes the tables of one run into ``directory`` as Parquet row groups."""

    def __init__(self, directory: str | Path, compression: str = "zstd") -> None:
        self.directory = Path(directory)
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise ReplayError(f"cannot create trace directory {self.directory}: {e}") from e
        self._compression = compression
        self._writers: dict[str, pq.ParquetWriter] = {}
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="trace-writer")
        self._in_flight: deque[Future] = deque()
        for table in TABLES:  # every table exists from the start, as .partial until close
            self._writer(table)

    def write(self, table: str, run_id: str, cols: list[list]) -> None:
        """Append one batch of rows: ``cols`` are the columns after ``run_id``, in schema order."""
        if cols[0]:
            batch = arrow_batch(table, run_id, cols)  # here: converting Python objects needs the GIL
            self._submit(table, lambda: batch)

    def write_deliveries(self, run_id: str, batch: DeliveryColumns) -> None:
        """Append one batch of ``deliveries`` rows gathered in ``batch`` (which is not touched again).

        Its Arrow arrays are built on the writer thread too: splitting and
        concatenating them runs in Arrow's C++ without the GIL, so it overlaps
        the replay instead of pausing it at every flush.
        """
        if batch.n:
            self._submit("deliveries", lambda: _delivery_table(run_id, batch))

    def _submit(self, table: str, make: Callable[[], pa.Table]) -> None:
        """Queue ``make()``'s table for writing; ``make`` runs on the writer thread."""
        # A flush sends deliveries, then decisions and timers at once: queue them rather than
        # wait for the big one to be encoded before handing over the small ones.
        self._settle(MAX_IN_FLIGHT - 1)
        writer = self._writer(table)
        self._in_flight.append(self._pool.submit(lambda: writer.write_table(make())))

    def _settle(self, keep: int = 0) -> None:
        """Wait until at most ``keep`` batches are in flight; a write's error is raised here."""
        while len(self._in_flight) > keep:
            self._in_flight.popleft().result()

    def _writer(self, table: str) -> pq.ParquetWriter:
        writer = self._writers.get(table)
        if writer is None:
            writer = pq.ParquetWriter(
                self._partial(table), arrow_schema(table), compression=self._compression,
                **parquet_layout(table),
            )
            self._writers[table] = writer
        return writer

    def _partial(self, table: str) -> Path:
        return self.directory / f"{table}.parquet.partial"

    def close(self) -> None:
        """Finish every table (empty tables get a file too) and move them to their real names."""
        self._settle()
        self._pool.shutdown()
        for table in TABLES:
            self._writer(table).close()
            self._partial(table).replace(self.directory / f"{table}.parquet")
        self._writers.clear()

    def abort(self) -> None:
        """Close the files without publishing them: the run failed.

        They stay as readable ``.partial`` Parquet files holding the rows
        flushed before the failure, for a post-mortem.
        """
        while self._in_flight:
            try:
                self._in_flight.popleft().result()
            except Exception:  # noqa: S110 - the run's own error is the one to report
                pass
        self._pool.shutdown()
        for writer in self._writers.values():
            writer.close()
        self._writers.clear()


def load_trace(directory: str | Path) -> dict[str, pl.DataFrame]:
    """Read a trace directory back: table name -> polars DataFrame, every table present."""
    directory = Path(directory)
    if not directory.is_dir():
        raise ReplayError(f"trace directory {directory} does not exist")
    frames = {}
    for table in TABLES:
        path = directory / f"{table}.parquet"
        if not path.exists():
            partial = list(directory.glob("*.parquet.partial"))
            hint = " (it holds .partial files: the run did not finish)" if partial else ""
            raise ReplayError(f"trace {directory} has no {table}.parquet{hint}")
        frames[table] = pl.read_parquet(path)
    return frames

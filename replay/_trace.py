"""The trace writer: one directory per run, one Parquet file per table.

Tables and columns come from ``replay/_schema.py``. Rows arrive as column
batches and go out as Parquet row groups, so memory stays flat in the log's
length. Encoding and compressing a row group happens on one background thread
(pyarrow releases the GIL), overlapping the replay; at most one batch is in
flight, so memory stays bounded. Files are written under a ``.partial`` name
and renamed on ``close``: a trace directory never holds a half-written table
under its real name.
"""

from __future__ import annotations

from array import array
from concurrent.futures import Future, ThreadPoolExecutor
from functools import cache
from pathlib import Path

import msgspec
import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ._errors import ReplayError
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

    ``add`` takes a batch's core (see ``_tracebuf.delivery_core``) while its
    events are still in the CPU cache and keeps only compact buffers: int64
    arrays for the numbers, each chunk's strings joined into one ``str`` (one
    allocation for the chunk instead of a string kept alive per row) and the
    ids as one JSON text per chunk. ``arrays`` turns them into Arrow arrays
    with vectorised splits. Converting 65,536 rows of Python objects at the
    flush instead cost about a microsecond per row: by then they are spread
    over memory that is no longer cached.
    """

    __slots__ = ("_ids", "_ints", "_strs", "n")

    def __init__(self) -> None:
        self.n = 0
        # seq, position, occurred_at, recorded_at, delivered_at, copy, delay_ns
        self._ints = [array("q") for _ in range(7)]
        self._strs: list[list[str | pa.Array]] = [[], [], [], []]  # stream type source perturbation
        self._ids: list[bytes] = []  # per chunk: the JSON array of its ids

    def add(self, core: list[list]) -> None:
        """Append one chunk of deliveries: seq, event, at, copy, perturbation, delay_ns columns."""
        seqs, events, ats, copies, perturbations, delays = core
        if not seqs:
            return
        ints = self._ints
        for kept, values in zip(ints, (seqs, [e.position for e in events],
                                       [e.occurred_at for e in events],
                                       [e.recorded_at for e in events], ats, copies, delays),
                                strict=True):
            kept.extend(array("q", values))  # array -> array is a memcpy; a list is not
        for kept, values in zip(self._strs, ([e.stream for e in events], [e.type for e in events],
                                             [e.metadata.source for e in events], perturbations),
                                strict=True):
            kept.append(_joined(values))
        self._ids.append(_json.encode([e.id for e in events]))  # a UUID -> its str, in C
        self.n += len(seqs)

    def arrays(self) -> list[pa.Array]:
        """The columns after ``run_id``, in schema order, as Arrow arrays."""
        seq, position, occurred, recorded, delivered, copy, delay = (_int64(a) for a in self._ints)
        stream, type_, source, perturbation = (_split(pieces) for pieces in self._strs)
        return [seq, position, _ids(self._ids, self.n), stream, type_, source, occurred,
                recorded, delivered, copy, perturbation, delay]


_SEP = "\x1f"  # ASCII unit separator: joins a chunk's strings; chunks holding it are converted as they are
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


_UUID_WIDTH = 39  # '"' + 36 + '"' + ','
_UUID_BYTE = np.zeros(256, bool)
_UUID_BYTE[list(b"0123456789abcdef")] = True
_DASHES = [9, 14, 19, 24]  # within a row, after the opening quote


def _ids(pieces: list[bytes], n: int) -> pa.Array:
    """The ids as strings: sliced out of the JSON in place when every id is a canonical UUID."""
    text = b",".join(p[1:-1] for p in pieces) + b","
    rows = np.frombuffer(text, np.uint8)
    if len(rows) == n * _UUID_WIDTH:
        rows = rows.reshape(n, _UUID_WIDTH)
        ok = (rows[:, [0, 37]] == ord('"')).all() and (rows[:, 38] == ord(",")).all()
        ok = ok and (rows[:, _DASHES] == ord("-")).all()
        body = np.delete(rows[:, 1:37], [d - 1 for d in _DASHES], axis=1)
        if ok and _UUID_BYTE[body].all():
            data = np.ascontiguousarray(rows[:, 1:37])
            offsets = np.arange(0, 36 * n + 1, 36, dtype=np.int32)
            return pa.Array.from_buffers(pa.string(), n, [None, pa.py_buffer(offsets),
                                                          pa.py_buffer(data)])
    ids = [v for p in pieces for v in _json.decode(p)]  # not all UUIDs: the general way
    return pa.array(ids, type=pa.string(), from_pandas=False)


def empty_frame(table: str) -> pl.DataFrame:
    """An empty frame with ``table``'s columns and types."""
    return pl.DataFrame(schema=polars_schema(table))


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
        self._in_flight: Future | None = None
        for table in TABLES:  # every table exists from the start, as .partial until close
            self._writer(table)

    def write(self, table: str, run_id: str, cols: list[list]) -> None:
        """Append one batch of rows: ``cols`` are the columns after ``run_id``, in schema order."""
        if cols[0]:
            self._submit(table, arrow_batch(table, run_id, cols))

    def write_deliveries(self, run_id: str, batch: DeliveryColumns) -> None:
        """Append one batch of ``deliveries`` rows gathered in ``batch``."""
        if batch.n:
            run_ids = pa.repeat(pa.scalar(run_id, pa.string()), batch.n)
            schema = arrow_schema("deliveries")
            self._submit("deliveries", pa.Table.from_arrays([run_ids, *batch.arrays()], schema=schema))

    def _submit(self, table: str, batch: pa.Table) -> None:
        self._settle()
        self._in_flight = self._pool.submit(self._writer(table).write_table, batch)

    def _settle(self) -> None:
        """Wait for the batch in flight; its error, if any, is raised here."""
        if self._in_flight is not None:
            in_flight, self._in_flight = self._in_flight, None
            in_flight.result()

    def _writer(self, table: str) -> pq.ParquetWriter:
        writer = self._writers.get(table)
        if writer is None:
            # zstd without dictionary pages: measured smaller and ~2x cheaper to write
            # than with them on these tables (see tests/bench/bench_replay.py)
            writer = pq.ParquetWriter(
                self._partial(table), arrow_schema(table), compression=self._compression,
                use_dictionary=False,
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
        try:
            self._settle()
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

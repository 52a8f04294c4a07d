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

from concurrent.futures import Future, ThreadPoolExecutor
from functools import cache
from pathlib import Path

import msgspec
import polars as pl
import pyarrow as pa
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
            batch = arrow_batch(table, run_id, cols)
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

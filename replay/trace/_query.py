"""SQL over trace directories: read-only DuckDB views, and the guard that keeps them so.

Two layers keep a query from doing anything but reading the traces:

1. DuckDB itself: once the views exist, ``allowed_paths`` is set to exactly the
   trace files, ``enable_external_access`` is turned off (no other file, URL,
   COPY, ATTACH, EXPORT, extension install or load) and ``lock_configuration``
   is turned on (no ``SET``/``RESET`` can undo that).
2. Before execution, the SQL is parsed with DuckDB's own parser
   (``extract_statements``): exactly one statement, and it must be a SELECT
   (which covers WITH, FROM-first, VALUES, DESCRIBE, SHOW and SUMMARIZE). The
   parsed statement object is what runs, so what was checked is what executes.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

import duckdb
import polars as pl

from replay._errors import ReplayError

from ._schema import TABLES

_GLOB_CHARS: Final = frozenset("*?[]{}")


class QueryError(ReplayError, ValueError):
    """A trace query could not run: bad SQL, a missing column, a trace directory that is not one."""


class QueryRefused(QueryError):
    """A statement that would write, change settings or reach outside the traces; never executed."""


class TraceConnection:
    """A read-only DuckDB connection whose tables are the trace tables of one or more runs.

    Tables: ``runs, deliveries, drops, decisions, timers, faults, violations``,
    each the union of that table's Parquet file across every directory (the
    ``run_id`` column tells runs apart). A table no directory has is empty but
    keeps its columns. Only single SELECT statements are executed.
    """

    def __init__(self, dirs: Sequence[str | os.PathLike[str]]) -> None:
        self.dirs = tuple(dict.fromkeys(_trace_dir(d) for d in dirs))  # a run named twice counts once
        if not self.dirs:
            raise QueryError("name at least one trace directory")
        self._con = duckdb.connect(
            ":memory:", config={"autoinstall_known_extensions": False, "autoload_known_extensions": False}
        )
        try:
            allowed = self._create_views()
            _lock(self._con, allowed)
        except BaseException:
            self._con.close()
            raise

    @property
    def tables(self) -> tuple[str, ...]:
        return tuple(TABLES)

    def _create_views(self) -> list[str]:
        allowed: list[str] = []
        for table in TABLES:
            files = [str(d / f"{table}.parquet") for d in self.dirs if (d / f"{table}.parquet").is_file()]
            if files:
                listed = ", ".join(_literal(f) for f in files)
                self._con.execute(
                    f"CREATE VIEW {table} AS SELECT * FROM read_parquet([{listed}], union_by_name = true)"
                )
                allowed.extend(files)
            else:
                self._create_empty(table)
        return allowed

    def _create_empty(self, table: str) -> None:
        from ._writer import arrow_schema

        empty = arrow_schema(table).empty_table()  # noqa: F841 - read by DuckDB's replacement scan
        self._con.execute(f"CREATE TABLE {table} AS SELECT * FROM empty")

    def check(self, sql: str) -> duckdb.Statement:
        """The one parsed SELECT statement in ``sql``; raises ``QueryRefused`` or ``QueryError``."""
        if not isinstance(sql, str) or not sql.strip():
            raise QueryError("the query is empty; try: SELECT * FROM runs")
        try:
            statements = self._con.extract_statements(sql)
        except duckdb.Error as e:
            raise QueryError(f"the query does not parse: {e}") from e
        if len(statements) != 1:
            raise QueryRefused(f"one statement per query, got {len(statements)}")
        kind = statements[0].type
        if kind != duckdb.StatementType.SELECT:
            raise QueryRefused(
                f"only SELECT queries run on a trace (it is read-only); this is a {kind.name} statement"
            )
        return statements[0]

    def execute(self, sql: str, parameters: Sequence[Any] | dict[str, Any] | None = None) -> duckdb.DuckDBPyConnection:
        """Run one SELECT; the result has ``fetchall()``, ``fetchmany()``, ``description``."""
        statement = self.check(sql)
        try:
            return self._con.execute(statement, parameters)
        except duckdb.Error as e:
            raise _query_error(e) from e

    def pl(self, sql: str, parameters: Sequence[Any] | dict[str, Any] | None = None) -> pl.DataFrame:
        """Run one SELECT and return its rows as a polars DataFrame."""
        statement = self.check(sql)
        try:
            frame = pl.from_arrow(self._con.sql(statement, params=parameters).to_arrow_table())
        except duckdb.Error as e:
            raise _query_error(e) from e
        assert isinstance(frame, pl.DataFrame)
        return frame

    def close(self) -> None:
        self._con.close()

    def __enter__(self) -> TraceConnection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _query_error(error: duckdb.Error) -> QueryError:
    # DuckDB refuses a file outside allowed_paths while binding, before anything is read.
    if isinstance(error, duckdb.PermissionException):
        return QueryRefused(f"only the trace tables can be read: {error}")
    return QueryError(str(error))


def _trace_dir(path: str | os.PathLike[str]) -> Path:
    directory = Path(path)
    if not directory.is_dir():
        raise QueryError(f"trace directory {str(directory)!r} does not exist or is not a directory")
    directory = directory.resolve()
    if _GLOB_CHARS & set(str(directory)):
        raise QueryError(f"trace directory {str(directory)!r} has a glob character (*?[]{{}}) in its path; rename it")
    if not any((directory / f"{table}.parquet").is_file() for table in TABLES):
        raise QueryError(
            f"{str(directory)!r} is not a trace directory: it has none of "
            + ", ".join(f"{t}.parquet" for t in TABLES)
        )
    return directory


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _lock(con: duckdb.DuckDBPyConnection, allowed: list[str]) -> None:
    """Close every door out of the traces; the configuration cannot be changed afterwards."""
    listed = ", ".join(_literal(p) for p in allowed)
    con.execute(f"SET allowed_paths = [{listed}]")
    con.execute("SET enable_external_access = false")
    con.execute("SET lock_configuration = true")


def open_trace(*dirs: str | os.PathLike[str]) -> TraceConnection:
    """A read-only SQL connection over the trace tables of ``dirs`` (see ``TraceConnection``)."""
    return TraceConnection(dirs)


def query(dirs: str | os.PathLike[str] | Sequence[str | os.PathLike[str]], sql: str) -> pl.DataFrame:
    """Run one SELECT over the traces in ``dirs`` and return a polars DataFrame.

    Raises ``QueryRefused`` for anything but a single SELECT, ``QueryError`` when
    DuckDB cannot run it (its message included).
    """
    paths = [dirs] if isinstance(dirs, (str, os.PathLike)) else list(dirs)
    with open_trace(*paths) as con:
        return con.pl(sql)

"""SQL over trace directories: read-only DuckDB views, and the guard that keeps them so.

Every DuckDB connection unbroken opens on a user's SQL (``unbroken query``, and
every invariant that ``unbroken check`` and saved counterexamples run) comes
from one constructor, ``Sandbox``. Three layers keep a query from doing
anything but reading the tables it was given:

1. DuckDB itself: once the tables exist, ``allowed_paths`` is set to exactly the
   trace files (none for in-memory tables), ``enable_external_access`` is turned
   off (no other file, URL, COPY, ATTACH, EXPORT, extension install or load),
   Python replacement scans are off (no variable of the calling code becomes a
   table) and ``lock_configuration`` is turned on (no ``SET``/``RESET`` can undo
   that). DuckDB's temp directory is a private one made for the connection and
   removed with it, never ``.tmp`` under the current directory.
2. Before execution, the SQL is parsed with DuckDB's own parser
   (``extract_statements``): exactly one statement, and it must be a SELECT
   (which covers WITH, FROM-first, VALUES, DESCRIBE, SHOW and SUMMARIZE). The
   parsed statement object is what runs, so what was checked is what executes.
3. The parsed tree (``json_serialize_sql``) is walked: a table is one of the
   sandbox's tables or a CTE in scope, a table function is one of
   ``range``/``generate_series``/``unnest``/``json_each``/``json_tree``, and no
   function reads settings or catalog metadata (``current_setting``,
   ``duckdb_*()``, ``pragma_*``): those show absolute paths.

A query runs in a worker thread while the caller waits, so it has a time limit
(``timeout``; ``QueryTimeout``) and Ctrl-C stops it (``KeyboardInterrupt``
after DuckDB has been interrupted).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, Final, TypeVar

import duckdb
import polars as pl

from replay._errors import ReplayError

from ._schema import TABLES

_GLOB_CHARS: Final = frozenset("*?[]{}")
DEFAULT_TIMEOUT: Final = 60.0
"""Seconds a query may run before it is stopped (``unbroken query --timeout``)."""

TABLE_FUNCTIONS: Final = frozenset({"range", "generate_series", "unnest", "json_each", "json_tree"})
"""The table functions a sandboxed query may call: none reads a file or the catalog."""
_REFUSED_FUNCTIONS: Final = frozenset({"current_setting", "getenv"})
_REFUSED_PREFIXES: Final = ("duckdb_", "pragma_")
_T = TypeVar("_T")


class QueryError(ReplayError, ValueError):
    """A trace query could not run: bad SQL, a missing column, a trace directory that is not one."""


class QueryRefused(QueryError):
    """A statement that would write, change settings or reach outside the traces; never executed."""


class QueryTimeout(QueryError):
    """A query that ran longer than its time limit; DuckDB was interrupted."""


class Sandbox:
    """A locked DuckDB connection that runs checked SELECTs over a fixed set of tables.

    ``prepare(connection)`` runs before the lock: it creates the tables (views
    over files, or registered Arrow/polars data) and returns the files they
    read, which become DuckDB's ``allowed_paths``. Afterwards only ``register``
    (in-memory data) adds tables. ``tables`` names what queries may read.
    """

    def __init__(self, tables: Iterable[str] = (),
                 prepare: Callable[[duckdb.DuckDBPyConnection], Sequence[str]] | None = None,
                 threads: int | None = None) -> None:
        self.tables: set[str] = {t.lower() for t in tables}
        self._temp = tempfile.mkdtemp(prefix="unbroken-duckdb-")
        self._checked: dict[str, duckdb.Statement] = {}
        self._worker: _Worker | None = None
        try:
            self._con = duckdb.connect(":memory:", config={
                "autoinstall_known_extensions": False, "autoload_known_extensions": False,
                "temp_directory": self._temp})
        except BaseException:
            shutil.rmtree(self._temp, ignore_errors=True)
            raise
        try:
            if threads is not None:
                self._con.execute(f"SET threads = {int(threads)}")
            allowed = list(prepare(self._con)) if prepare is not None else []
            _lock(self._con, allowed)
        except BaseException:
            self.close()
            raise

    def register(self, name: str, data: Any) -> None:
        """Make ``data`` (an Arrow table or polars frame) the table ``name``; no file is involved."""
        self._con.register(name, data)
        self.tables.add(name.lower())

    def check(self, sql: str) -> duckdb.Statement:
        """The one parsed SELECT statement in ``sql`` that reads only this sandbox's tables.

        Raises ``QueryRefused`` (never executed) or ``QueryError`` (does not parse).
        A statement that passed once is remembered, so invariants checked per
        batch are parsed once.
        """
        known = self._checked.get(sql) if isinstance(sql, str) else None
        if known is not None:
            return known
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
        self._check_tree(sql)
        self._checked[sql] = statements[0]
        return statements[0]

    def _check_tree(self, sql: str) -> None:
        try:
            rows = self._con.execute("SELECT json_serialize_sql(?)", [sql]).fetchall()
            tree = json.loads(rows[0][0]) if rows else {"error": True}
        except (duckdb.Error, ValueError) as e:
            raise QueryRefused(f"the query could not be checked: {e}") from e
        if tree.get("error"):
            raise QueryRefused(
                f"this form of SELECT cannot be checked ({tree.get('error_message', 'unknown form')}); "
                "write it as a plain SELECT")
        for statement in tree["statements"]:
            _walk(statement, frozenset(), self.tables)

    def run(self, work: Callable[[duckdb.DuckDBPyConnection], _T], timeout: float | None) -> _T:
        """``work(connection)`` in the worker thread; ``QueryTimeout`` after ``timeout`` seconds.

        Ctrl-C (``KeyboardInterrupt`` in the waiting thread) interrupts DuckDB,
        waits for the worker to stop, and is raised again.
        """
        if self._worker is None:
            self._worker = _Worker()
        return self._worker.run(self._con, work, timeout)

    def execute(self, sql: str, parameters: Sequence[Any] | dict[str, Any] | None = None,
                timeout: float | None = DEFAULT_TIMEOUT) -> duckdb.DuckDBPyConnection:
        """Check and run one SELECT; the result has ``fetchall()``, ``fetchmany()``, ``description``."""
        statement = self.check(sql)
        try:
            return self.run(lambda con: con.execute(statement, parameters), timeout)
        except duckdb.Error as e:
            raise _query_error(e) from e

    def close(self) -> None:
        """Close the connection, stop the worker and remove the private temp directory."""
        if self._worker is not None:
            self._worker.stop()
            self._worker = None
        con = getattr(self, "_con", None)
        if con is not None:
            con.close()
        shutil.rmtree(self._temp, ignore_errors=True)


class _Worker:
    """One daemon thread that runs a connection's queries, so the caller can wait interruptibly."""

    def __init__(self) -> None:
        self._lock = threading.Condition()
        self._job: tuple[Callable[[], Any], list[Any]] | None = None
        self._stopping = False
        self._thread = threading.Thread(target=self._loop, name="unbroken-sql", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while True:
            with self._lock:
                while self._job is None and not self._stopping:
                    self._lock.wait()
                if self._job is None:
                    return
                work, box = self._job
            try:
                box.extend([True, work()])
            except BaseException as e:  # handed to the waiting thread
                box.extend([False, e])
            with self._lock:
                self._job = None
                self._lock.notify_all()

    def run(self, con: duckdb.DuckDBPyConnection, work: Callable[[duckdb.DuckDBPyConnection], _T],
            timeout: float | None) -> _T:
        box: list[Any] = []
        with self._lock:
            self._job = (lambda: work(con), box)
            self._lock.notify_all()
        timed_out = False
        try:
            with self._lock:
                if not self._lock.wait_for(lambda: bool(box), timeout):
                    timed_out = True
        except KeyboardInterrupt:
            self._stop_query(con, box)
            raise
        if timed_out:
            self._stop_query(con, box)
            raise QueryTimeout(
                f"the query ran longer than {timeout:g} s and was stopped; narrow it (WHERE, LIMIT) "
                "or allow more time (--timeout SECONDS)")
        ok, value = box
        if not ok:
            raise value
        return value

    def _stop_query(self, con: duckdb.DuckDBPyConnection, box: list[Any]) -> None:
        """Interrupt DuckDB until the worker has handed back its result (it must not run on)."""
        while True:
            con.interrupt()
            with self._lock:
                if self._lock.wait_for(lambda: bool(box), 0.05):
                    return

    def stop(self) -> None:
        with self._lock:
            self._stopping = True
            self._lock.notify_all()


def _walk(node: Any, ctes: frozenset[str], tables: set[str]) -> None:
    """Refuse any table, table function or function outside the sandbox (see the module docstring)."""
    if isinstance(node, list):
        for item in node:
            _walk(item, ctes, tables)
        return
    if not isinstance(node, dict):
        return
    cte_map = node.get("cte_map")
    if isinstance(cte_map, dict) and cte_map.get("map"):
        # each CTE sees the ones before it and itself (WITH RECURSIVE); the query sees them all
        for entry in cte_map["map"]:
            ctes = ctes | {str(entry.get("key", "")).lower()}
            _walk(entry.get("value"), ctes, tables)
        node = {k: v for k, v in node.items() if k != "cte_map"}
    kind = node.get("type")
    if kind == "BASE_TABLE":
        _check_table(node, ctes, tables)
    elif kind == "TABLE_FUNCTION":
        function = node.get("function") or {}
        name = str(function.get("function_name", "")).lower()
        if name not in TABLE_FUNCTIONS or function.get("catalog") or function.get("schema"):
            raise QueryRefused(
                f"table function {name}() is refused: a query reads only the trace tables "
                f"({', '.join(sorted(tables))}) and {', '.join(f'{f}()' for f in sorted(TABLE_FUNCTIONS))}")
    elif kind == "SHOW_REF" and node.get("show_type") == "SHOW_SPECIAL":
        if str(node.get("table_name", "")).strip('"').lower() != "tables":
            raise QueryRefused(f"SHOW {node.get('table_name')} is refused; SHOW TABLES and DESCRIBE t work")
    if node.get("class") == "FUNCTION":
        name = str(node.get("function_name", "")).lower()
        if name in _REFUSED_FUNCTIONS or name.startswith(_REFUSED_PREFIXES):
            raise QueryRefused(f"{name}() is refused: it shows settings or the catalog, not the traces")
    for value in node.values():
        if isinstance(value, (dict, list)):
            _walk(value, ctes, tables)


def _check_table(node: dict[str, Any], ctes: frozenset[str], tables: set[str]) -> None:
    name = str(node.get("table_name", ""))
    qualified = node.get("catalog_name") or node.get("schema_name")
    if not qualified and (name.lower() in ctes or name.lower() in tables):
        return
    shown = ".".join(str(p) for p in (node.get("qualified_name") or {}).get("path", [name])) or name
    raise QueryRefused(
        f"{shown!r} is refused: it is not a table here; a query reads only the tables "
        f"({', '.join(sorted(tables))}) and its own WITH names")


class TraceConnection:
    """A read-only DuckDB connection whose tables are the trace tables of one or more runs.

    Tables: ``runs, deliveries, drops, decisions, timers, faults, violations``,
    each the union of that table's Parquet file across every directory (the
    ``run_id`` column tells runs apart). A table no directory has is empty but
    keeps its columns. Only single SELECT statements over those tables are
    executed (see the module docstring), each within ``timeout`` seconds.
    """

    def __init__(self, dirs: Sequence[str | os.PathLike[str]], timeout: float | None = DEFAULT_TIMEOUT) -> None:
        self.dirs = tuple(dict.fromkeys(_trace_dir(d) for d in dirs))  # a run named twice counts once
        if not self.dirs:
            raise QueryError("name at least one trace directory")
        self.timeout = timeout
        self._sandbox = Sandbox(TABLES, prepare=self._create_views)

    @property
    def tables(self) -> tuple[str, ...]:
        return tuple(TABLES)

    def _create_views(self, con: duckdb.DuckDBPyConnection) -> list[str]:
        allowed: list[str] = []
        for table in TABLES:
            files = [str(d / f"{table}.parquet") for d in self.dirs if (d / f"{table}.parquet").is_file()]
            if files:
                listed = ", ".join(_literal(f) for f in files)
                con.execute(f"CREATE VIEW {table} AS SELECT * FROM read_parquet([{listed}], union_by_name = true)")
                allowed.extend(files)
            else:
                from ._writer import arrow_schema

                con.register(f"_empty_{table}", arrow_schema(table).empty_table())
                con.execute(f"CREATE TABLE {table} AS SELECT * FROM _empty_{table}")
                con.unregister(f"_empty_{table}")
        return allowed

    def check(self, sql: str) -> duckdb.Statement:
        """The one parsed SELECT statement in ``sql``; raises ``QueryRefused`` or ``QueryError``."""
        return self._sandbox.check(sql)

    def execute(self, sql: str, parameters: Sequence[Any] | dict[str, Any] | None = None) -> duckdb.DuckDBPyConnection:
        """Run one SELECT; the result has ``fetchall()``, ``fetchmany()``, ``description``."""
        return self._sandbox.execute(sql, parameters, self.timeout)

    def pl(self, sql: str, parameters: Sequence[Any] | dict[str, Any] | None = None) -> pl.DataFrame:
        """Run one SELECT and return its rows as a polars DataFrame."""
        statement = self._sandbox.check(sql)
        try:
            table = self._sandbox.run(lambda con: con.sql(statement, params=parameters).to_arrow_table(),
                                      self.timeout)
        except duckdb.Error as e:
            raise _query_error(e) from e
        frame = pl.from_arrow(table)
        assert isinstance(frame, pl.DataFrame)
        return frame

    def close(self) -> None:
        self._sandbox.close()

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
    """Close every door out of the tables; the configuration cannot be changed afterwards."""
    listed = ", ".join(_literal(p) for p in allowed)
    con.execute(f"SET allowed_paths = [{listed}]")
    con.execute("SET python_enable_replacements = false")
    con.execute("SET enable_external_access = false")
    con.execute("SET lock_configuration = true")


def open_trace(*dirs: str | os.PathLike[str], timeout: float | None = DEFAULT_TIMEOUT) -> TraceConnection:
    """A read-only SQL connection over the trace tables of ``dirs`` (see ``TraceConnection``)."""
    return TraceConnection(dirs, timeout)


def query(dirs: str | os.PathLike[str] | Sequence[str | os.PathLike[str]], sql: str,
          timeout: float | None = DEFAULT_TIMEOUT) -> pl.DataFrame:
    """Run one SELECT over the traces in ``dirs`` and return a polars DataFrame.

    Raises ``QueryRefused`` for anything but a single SELECT over the trace
    tables, ``QueryTimeout`` after ``timeout`` seconds, ``QueryError`` when
    DuckDB cannot run it (its message included).
    """
    paths = [dirs] if isinstance(dirs, (str, os.PathLike)) else list(dirs)
    with open_trace(*paths, timeout=timeout) as con:
        return con.pl(sql)

"""Judging runs: DuckDB over the in-memory trace tables, Python checkers beside it.

One DuckDB connection is reused for the whole search; tables are handed to it
as polars frames (Arrow underneath, no files). Invariants marked ``batch``
are checked for a whole batch of runs with one query over the concatenated
tables (split back by ``run_id``): DuckDB's cost per query is ~1 ms whatever
the size, so this is what makes hundreds of examples per second possible.
A checker that crashes (any exception, ``SystemExit`` included: a Python
checker may call the projection's own code) or a query that fails gives an
unknown verdict with the error; it never stops the search (docs/style.md:
checkers return data). Only ``KeyboardInterrupt`` ends it.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import msgspec
import polars as pl
import pyarrow as pa

from ._invariants import Invariant, NotJudged, Verdict
from ._trace import Trace


class Evaluator:
    """Checks a fixed set of invariants over batches of traces; keeps time per invariant."""

    def __init__(self, invariants: Sequence[Invariant]) -> None:
        self.invariants = list(invariants)
        self.seconds: dict[str, float] = defaultdict(float)
        self._con: Any = None

    def close(self) -> None:
        """Close the DuckDB connection (it is reopened on the next use)."""
        if self._con is not None:
            self._con.close()
            self._con = None

    def evaluate(
        self, traces: Sequence[Trace], only: Sequence[Invariant] | None = None
    ) -> list[dict[str, Verdict]]:
        """One ``{invariant id: Verdict}`` per trace, in order, for ``only`` (default: all)."""
        invariants = self.invariants if only is None else list(only)
        out: list[dict[str, Verdict]] = [{} for _ in traces]
        for inv in invariants:
            if inv.check is not None:
                self._python(inv, traces, out)
        batch = [i for i in invariants if i.sql is not None and i.batch]
        if batch and traces:
            self._sql(batch, traces, out)
        single = [i for i in invariants if i.sql is not None and not i.batch]
        for n, trace in enumerate(traces):
            if single:
                self._sql(single, [trace], out[n : n + 1])
        return out

    def _python(self, inv: Invariant, traces: Sequence[Trace], out: list[dict]) -> None:
        start = time.perf_counter()
        for n, trace in enumerate(traces):
            try:
                rows = [_jsonable(r) for r in inv.check(trace)]  # type: ignore[misc]
                out[n][inv.id] = Verdict(not rows, inv.id, rows)
            except NotJudged:
                out[n][inv.id] = Verdict(True, inv.id, [], skipped=True)
            except KeyboardInterrupt:
                raise
            except BaseException as e:  # noqa: BLE001 - a crashing checker (even SystemExit) is an unknown
                out[n][inv.id] = Verdict(None, inv.id, [], _error(inv, e))
        self.seconds[inv.id] += time.perf_counter() - start

    def _sql(self, invariants: list[Invariant], traces: Sequence[Trace], out: list[dict]) -> None:
        con = self._connection()
        needed = set().union(*(i.tables for i in invariants))
        try:
            for name in sorted(needed):
                con.register(name, batch_table(name, traces))
        except Exception as e:
            for inv in invariants:
                for verdicts in out:
                    verdicts[inv.id] = Verdict(None, inv.id, [], _error(inv, e))
            return
        ids = [t.run_id for t in traces]
        for inv in invariants:
            start = time.perf_counter()
            for verdicts, verdict in zip(out, self._query(con, inv, ids), strict=True):
                verdicts[inv.id] = verdict
            self.seconds[inv.id] += time.perf_counter() - start

    def _query(self, con: Any, inv: Invariant, run_ids: list[str]) -> list[Verdict]:
        try:
            names, raw = _sandboxed_select(con, inv.sql)
            rows = [_jsonable(dict(zip(names, r, strict=True))) for r in raw]
        except Exception as e:
            return [Verdict(None, inv.id, [], _error(inv, e))] * len(run_ids)
        if len(run_ids) == 1:
            return [Verdict(not rows, inv.id, rows)]
        if rows and "run_id" not in names:
            why = f"invariant {inv.id} ({inv.source}) is marked batch but returns no run_id column"
            return [Verdict(None, inv.id, [], why)] * len(run_ids)
        by_run: dict[str, list[dict]] = defaultdict(list)
        for row in rows:
            by_run[row["run_id"]].append(row)
        return [Verdict(not by_run.get(r), inv.id, by_run.get(r, [])) for r in run_ids]

    def _connection(self) -> Any:
        if self._con is None:
            self._con = sandboxed_connection()
        return self._con


def sandboxed_connection() -> Any:
    """The DuckDB sandbox every invariant runs in (built in, user files, saved counterexamples).

    The same read-only sandbox as ``unbroken query`` (``replay.trace.Sandbox``): no
    file, URL, setting or catalog function is reachable, tables are registered
    in memory, each query is one checked SELECT with a time limit. Tables are
    tiny: one thread avoids scheduling overhead and keeps timings steady.
    """
    from replay.trace import TABLES, Sandbox

    return Sandbox([*TABLES, "events"], threads=1)


def _sandboxed_select(con: Any, sql: str) -> tuple[list[str], list[tuple]]:
    """Column names and rows of one checked SELECT (``QueryRefused``/``QueryTimeout`` otherwise)."""
    statement = con.check(sql)

    def fetch(connection: Any) -> tuple[list[str], list[tuple]]:
        cursor = connection.execute(statement)
        return [d[0] for d in cursor.description], cursor.fetchall()

    return con.run(fetch, INVARIANT_TIMEOUT)


INVARIANT_TIMEOUT = 60.0
"""Seconds one invariant query may run on one batch before its verdict is unknown (timed out)."""


def batch_table(name: str, traces: Sequence[Trace]) -> pa.Table | pl.DataFrame:
    """Table ``name`` over every trace, run after run: what a batch query scans.

    Built as one Arrow table straight from what the runs collected (and the
    logs' shared ``events`` tables) rather than a frame per run concatenated:
    the per-run frames cost more than the queries. Traces that carry the table
    some other way (``extra``) fall back to their frames; the rows are the same.
    """
    if any(name in t.extra for t in traces):
        return _concat([t.table(name) for t in traces])
    if name == "events" and all(t.log_events is not None for t in traces):
        return _events(traces)
    runs = [t.result.tables for t in traces]
    if name != "events" and all(hasattr(r, "arrow") for r in runs):
        return runs[0].arrow(name, *runs[1:])  # type: ignore[union-attr]
    return _concat([t.table(name) for t in traces])


def _events(traces: Sequence[Trace]) -> pa.Table:
    logs = [t.log_events for t in traces]
    table = pa.concat_tables(logs)  # type: ignore[arg-type]  # zero-copy: chunks of the shared tables
    ids = [t.run_id for t, log in zip(traces, logs, strict=True) for _ in range(log.num_rows)]  # type: ignore[union-attr]
    field = table.schema.field("run_id")
    return table.set_column(0, field, pa.array(ids, type=field.type))


def _concat(frames: list[pl.DataFrame]) -> pl.DataFrame:
    return frames[0] if len(frames) == 1 else pl.concat(frames, how="vertical", rechunk=False)


def _jsonable(row: dict) -> dict:
    return msgspec.to_builtins(row, enc_hook=str, str_keys=True)


def _error(inv: Invariant, e: BaseException) -> str:
    return f"invariant {inv.id} ({inv.source}) could not be checked: {type(e).__name__}: {e}"

"""The determinism check: replay the same deliveries twice and compare byte for byte."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import msgspec
import polars as pl

from replay._delivery import Delivery
from replay._errors import ReplayError

from ._runner import RunResult, run

# Where each table's rows sit on the run's timeline of seqs.
STEP_COLUMN = {"deliveries": "seq", "decisions": "cause_seq", "timers": "fired_seq",
               "faults": "seq", "drops": "position"}


class Mismatch(msgspec.Struct, frozen=True):
    """The first row where two replays differ: table, its seq, and both rows (None if absent)."""

    table: str
    seq: int | None
    first: dict | None
    second: dict | None


class DeterminismReport(msgspec.Struct, frozen=True):
    """``ok`` when both replays gave the same digest; otherwise the first mismatch."""

    ok: bool
    digests: tuple[str, str]
    mismatch: Mismatch | None = None

    def describe(self) -> str:
        """One paragraph for a person: identical, or where the replays part."""
        if self.ok:
            return f"deterministic: both replays have digest {self.digests[0]}"
        if self.mismatch is None:
            return f"digests differ ({self.digests[0]} vs {self.digests[1]}) but no row does"
        m = self.mismatch
        return (f"NOT deterministic: first difference in {m.table} at seq {m.seq}\n"
                f"  first replay:  {m.first}\n  second replay: {m.second}")


def check_determinism(
    deliveries: Iterable[Delivery] | Callable[[], Iterable[Delivery]],
    projection: Any,
    **run_options: Any,
) -> DeterminismReport:
    """Replay twice through the same projection; compare digests, name the first difference.

    ``deliveries`` is a list or tuple, or a callable giving a fresh iterable
    each time (a store read). ``run_options`` go to ``run`` (trace_dir gets a
    ``first``/``second`` subdirectory each).
    """
    results = [_replay(deliveries, projection, i, run_options) for i in ("first", "second")]
    a, b = results
    digests = (a.digest, b.digest)
    if a.digest == b.digest:
        return DeterminismReport(True, digests)
    return DeterminismReport(False, digests, first_mismatch(a, b))


def _replay(deliveries, projection, label: str, options: dict) -> RunResult:
    if callable(deliveries):
        deliveries = deliveries()
    elif not isinstance(deliveries, (list, tuple)):
        raise ReplayError("check_determinism replays twice: pass a list of deliveries or a "
                          "callable returning a fresh iterable, not a one-shot iterator")
    options = dict(options, run_id=f"{options.get('run_id', 'run')}-{label}", collect=True)
    if options.get("trace_dir") is not None:
        from pathlib import Path

        options["trace_dir"] = Path(options["trace_dir"]) / label
    return run(deliveries, projection, **options)


def first_mismatch(a: RunResult, b: RunResult) -> Mismatch | None:
    """The earliest differing row across the trace tables of two runs."""
    found = [m for table in STEP_COLUMN if (m := _first_in(table, a, b)) is not None]
    if not found:
        return None
    return min(found, key=lambda m: (m.seq is None, m.seq or 0, list(STEP_COLUMN).index(m.table)))


def _first_in(table: str, a: RunResult, b: RunResult) -> Mismatch | None:
    fa, fb = (r.tables[table].drop("run_id") for r in (a, b))
    ha, hb = fa.hash_rows(seed=0).to_list(), fb.hash_rows(seed=0).to_list()
    for i in range(max(len(ha), len(hb))):
        if i >= len(ha) or i >= len(hb) or ha[i] != hb[i]:
            ra = fa.row(i, named=True) if i < len(ha) else None
            rb = fb.row(i, named=True) if i < len(hb) else None
            return Mismatch(table, _step(table, ra, rb), ra, rb)
    return None


def _step(table: str, *rows: dict | None) -> int | None:
    values = [r[STEP_COLUMN[table]] for r in rows if r is not None]
    values = [v for v in values if v is not None]
    return min(values) if values else None


def frames_equal(a: pl.DataFrame, b: pl.DataFrame) -> bool:
    """True when two trace frames hold the same rows, ignoring ``run_id``."""
    return a.drop("run_id").equals(b.drop("run_id"))

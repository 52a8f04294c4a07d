"""Batch tables: one Arrow table per batch holds exactly the rows of each run's frames."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import polars as pl
import pytest
from hypothesis import Phase, given, settings
from hypothesis import seed as hypothesis_seed
from polars.testing import assert_frame_equal

import replay
from properties import (
    Delay,
    DropEvent,
    Evaluator,
    LogContext,
    Schedule,
    builtin_invariants,
    factory_of,
)
from properties._invariants import TABLE_NAMES
from properties._strategies import search_schedules

from .logs import flaw_log

TABLES = ("runs", "deliveries", "drops", "decisions", "timers", "faults")


def _runs():
    log = flaw_log()
    ctx = LogContext(log, factory_of("arrears"))
    schedules = [Schedule(), Schedule((Delay(1, 3_600_000_000_000),)), Schedule((DropEvent(2),))]
    return [ctx.trace(s, f"r{i}").result for i, s in enumerate(schedules)]


def test_arrow_of_several_runs_equals_their_frames_concatenated():
    runs = _runs()
    assert any(r.counts["drops"] for r in runs) and all(r.counts["decisions"] for r in runs)
    for table in TABLES:
        batch = runs[0].tables.arrow(table, *[r.tables for r in runs[1:]])
        frames = pl.concat([r.tables[table] for r in runs], how="vertical")
        assert_frame_equal(pl.from_arrow(batch), frames)
        assert batch.num_rows == sum(r.tables[table].height for r in runs)


def test_arrow_of_an_empty_table_has_the_schema():
    run = _runs()[0]
    empty = run.tables.arrow("faults")
    assert empty.num_rows == 0
    assert empty.schema.names == replay.empty_frame("faults").columns


FLAWED = Path(__file__).resolve().parents[2] / "examples" / "flawed_arrears.py"


def _schedules(log, n: int) -> list[Schedule]:
    drawn: list[Schedule] = []

    @settings(max_examples=n, database=None, deadline=None, phases=[Phase.generate])
    @hypothesis_seed(5)
    @given(search_schedules(log))
    def collect(s):
        drawn.append(s)

    collect()
    return drawn


@pytest.mark.parametrize("variant", ["counts_duplicate_payments", "hold_ignores_late_payments"])
def test_batch_verdicts_equal_the_per_run_frames(variant):
    log = flaw_log()
    ctx = LogContext(log, factory_of(f"{FLAWED}:{variant}"))
    traces = [ctx.trace(s, f"e{i}") for i, s in enumerate(_schedules(log, 100))]
    # Every table handed over as the run's own frame: the per-run path, the reference.
    framed = [replace(t, extra={n: t.table(n) for n in TABLE_NAMES}) for t in traces]
    evaluator = Evaluator(builtin_invariants())
    try:
        batched = evaluator.evaluate(traces)
        reference = evaluator.evaluate(framed)
    finally:
        evaluator.close()
    assert batched == reference
    broken = {i for verdicts in batched for i, v in verdicts.items() if v.valid is False}
    assert broken & {"AR-1", "AR-5"}  # an SQL invariant over events and deliveries found rows

"""Batch tables: one Arrow table per batch holds exactly the rows of each run's frames."""

from __future__ import annotations

import polars as pl
from polars.testing import assert_frame_equal

import replay
from properties import Delay, DropEvent, LogContext, Schedule, factory_of

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

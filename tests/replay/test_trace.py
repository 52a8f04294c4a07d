"""The trace writer and the run digest."""

from __future__ import annotations

import polars as pl
import pytest
from polars.testing import assert_frame_equal
from replay_helpers import LedgerProjection, payment_log

import replay.core._buffer as tracebuf_mod
import replay.core._runner as runner_mod
from replay import ReplayError, deliveries_of, load_trace, run
from replay.trace._schema import TABLES
from replay.trace._writer import polars_schema


def test_trace_directory_holds_every_table_and_reads_back_equal(tmp_path):
    events = payment_log(n=30, faults=True)
    result = run(list(deliveries_of(events)), LedgerProjection(), trace_dir=tmp_path / "t",
                 run_id="r1", source="memory://", seed=7)
    assert sorted(p.name for p in (tmp_path / "t").iterdir()) == sorted(
        f"{t}.parquet" for t in TABLES)
    loaded = load_trace(tmp_path / "t")
    for table in TABLES:
        assert loaded[table].schema == polars_schema(table), table
        assert_frame_equal(loaded[table], result.tables[table])
    runs = loaded["runs"].row(0, named=True)
    assert runs["projection"] == "ledger" and runs["seed"] == 7 and runs["source"] == "memory://"
    assert runs["config"] == '{"hold_ns":10000000000,"threshold":0}'
    assert runs["digest"] == result.digest
    assert runs["deliveries"] == len(events)


def test_identical_replays_give_identical_digests_whatever_the_run_id():
    events = payment_log(n=40)
    a = run(list(deliveries_of(events)), LedgerProjection(), run_id="a")
    b = run(list(deliveries_of(events)), LedgerProjection(), run_id="b")
    assert a.digest == b.digest
    other = run(list(deliveries_of(events)), LedgerProjection(hold_ns=1))
    assert other.digest != a.digest


def test_digest_does_not_depend_on_batch_or_chunk_boundaries(monkeypatch, tmp_path):
    events = payment_log(n=60)
    whole = run(list(deliveries_of(events)), LedgerProjection())
    monkeypatch.setattr(runner_mod, "BATCH_ROWS", 7)
    batched = run(list(deliveries_of(events)), LedgerProjection(), trace_dir=tmp_path)
    assert batched.digest == whole.digest
    # small batches make several row groups; the file still reads back whole
    assert load_trace(tmp_path)["deliveries"].height == len(events)
    monkeypatch.setattr(tracebuf_mod, "CHUNK", 5)
    rechunked = run(list(deliveries_of(events)), LedgerProjection())
    assert rechunked.digest != whole.digest  # chunk size is part of the encoding
    assert rechunked.digest == run(list(deliveries_of(events)), LedgerProjection()).digest


def test_a_failed_run_publishes_no_tables(tmp_path):
    class Broken(LedgerProjection):
        def apply(self, state, event, ctx):
            raise RuntimeError("boom")

    with pytest.raises(ReplayError):
        run(list(deliveries_of(payment_log(n=3))), Broken(), trace_dir=tmp_path, strict=True)
    assert not list(tmp_path.glob("*.parquet"))
    assert len(list(tmp_path.glob("*.parquet.partial"))) == len(TABLES)
    with pytest.raises(ReplayError, match="run did not finish"):
        load_trace(tmp_path)


def test_missing_trace_directory_is_a_clear_error(tmp_path):
    with pytest.raises(ReplayError, match="does not exist"):
        load_trace(tmp_path / "nope")


def test_decision_columns_keep_lists_and_nulls():
    result = run(list(deliveries_of(payment_log(n=2, reversals=False))), LedgerProjection())
    decisions = result.tables["decisions"]
    assert decisions.schema["reasons"] == pl.List(pl.String)
    assert decisions["reasons"].to_list()[0] == ["payment"]
    assert decisions["hold_until"].null_count() == decisions.height
    assert decisions["seq"].to_list() == list(range(decisions.height))


def test_identity_fast_path_and_explicit_deliveries_give_the_same_trace():
    from replay import Delivery

    events = payment_log(n=30, faults=True)
    fast = run(deliveries_of(events), LedgerProjection())
    explicit = run([Delivery(e, e.recorded_at) for e in events], LedgerProjection())
    assert fast.digest == explicit.digest
    for table in TABLES:
        assert_frame_equal(fast.tables[table], explicit.tables[table])


def test_digest_covers_the_delivered_payload():
    import msgspec

    events = payment_log(n=5, reversals=False)
    tampered = list(events)
    tampered[2] = msgspec.structs.replace(events[2], data=events[2].data.replace(b"102", b"103"))
    assert (run(deliveries_of(events), LedgerProjection()).digest
            != run(deliveries_of(tampered), LedgerProjection()).digest)

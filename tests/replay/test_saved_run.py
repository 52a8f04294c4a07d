"""A saved run (events.jsonl + its trace) replays delivery for delivery: ``unbroken replay --counterexample``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from replay_helpers import SECOND, payment_log

from eventstore.cli import main as unbroken
from replay import (
    Delivery,
    Drop,
    ProjectionSpecError,
    load_projection,
    read_recorded,
    run,
    write_recorded,
)

HELPERS = Path(__file__).with_name("replay_helpers.py")


def _perturbed(events):
    """Every event once, one duplicate, one delayed past its neighbours, one dropped."""
    deliveries = [Delivery(e, e.recorded_at) for e in events[1:]]
    deliveries.append(Delivery(events[3], events[3].recorded_at + 2 * SECOND, 1, "duplicate", 2 * SECOND))
    deliveries[5] = Delivery(events[6], events[6].recorded_at + 9 * SECOND, 0, "delayed", 9 * SECOND)
    return deliveries, [Drop(events[0].position, events[0], "dropped")]


def _saved_run(tmp_path: Path, hold_ns: int) -> Path:
    events = payment_log(n=12)
    deliveries, drops = _perturbed(events)
    root = tmp_path / "saved"
    projection = load_projection(f"{HELPERS}:LedgerProjection", hold_ns=hold_ns)
    run(deliveries, projection, drops=drops, trace_dir=root, collect=False)
    write_recorded(root / "events.jsonl", events)
    return root


def test_recorded_events_round_trip_every_field_and_byte(tmp_path: Path) -> None:
    events = payment_log(n=9)
    write_recorded(tmp_path / "e.jsonl", events)
    assert read_recorded(tmp_path / "e.jsonl") == events


def test_a_saved_run_replays_to_the_same_digest(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = _saved_run(tmp_path, hold_ns=5 * SECOND)
    spec = f"{HELPERS}:LedgerProjection"
    assert unbroken(["replay", "--counterexample", str(root), "--projection", spec,
                     "--config", f"hold_ns={5 * SECOND}"]) == 0
    assert "reproduced exactly" in capsys.readouterr().out


def test_a_changed_projection_no_longer_reproduces_the_saved_run(tmp_path: Path, capsys) -> None:
    root = _saved_run(tmp_path, hold_ns=5 * SECOND)
    spec = f"{HELPERS}:LedgerProjection"
    assert unbroken(["replay", "--counterexample", str(root), "--projection", spec,
                     "--config", f"hold_ns={7 * SECOND}"]) == 1
    assert "NOT reproduced" in capsys.readouterr().out


def test_a_saved_counterexample_reproduces_its_violation(tmp_path: Path, capsys) -> None:
    root = _saved_run(tmp_path, hold_ns=5 * SECOND)
    spec = f"{HELPERS}:LedgerProjection"
    (root / "counterexample.json").write_text(json.dumps(
        {"invariant": "X-1", "projection": spec, "config": {"hold_ns": 5 * SECOND}}))
    # a saved file never chooses code to run: its FILE.py projection must be named by the user
    assert unbroken(["replay", "--counterexample", str(root)]) == 3
    assert "not a registered projection" in capsys.readouterr().err
    # exit 0: reproduced exactly (the help's meaning; check --replay judges the invariant)
    assert unbroken(["replay", "--counterexample", str(root), "--projection", spec]) == 0
    out = capsys.readouterr().out
    assert "reproduced exactly" in out and f"unbroken check --replay {root} --projection {spec}" in out


def test_a_directory_without_events_is_refused_clearly(tmp_path: Path, capsys) -> None:
    assert unbroken(["replay", "--counterexample", str(tmp_path), "--projection", "arrears"]) == 3
    assert "no events.jsonl" in capsys.readouterr().err


def test_bad_projection_specs_name_what_is_wrong(tmp_path: Path) -> None:
    with pytest.raises(ProjectionSpecError, match="no file"):
        load_projection(f"{tmp_path}/missing.py:build")
    with pytest.raises(ProjectionSpecError, match="has no attribute 'nope'"):
        load_projection(f"{HELPERS}:nope")
    with pytest.raises(ProjectionSpecError, match="not a projection"):
        load_projection(f"{HELPERS}:payment_log")

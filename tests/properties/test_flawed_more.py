"""``unbroken check`` at its default settings finds each bug of examples/flawed_arrears_more.py.

One generated log for all of them: ``unbroken generate arrears --accounts 20
--days 30 --scenarios`` (677 events). Each variant is checked with the
defaults (200 examples, seed 0); the correct projection holds on the same log.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

import replay
from load import ArrearsProfile, generate_arrears
from properties import DropEvent, check, replay_counterexample

ROOT = Path(__file__).resolve().parents[2]
MORE = ROOT / "examples" / "flawed_arrears_more.py"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def log_path(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("more") / "mix.jsonl"
    generate_arrears(out, ArrearsProfile(accounts=20, days=30, seed=0, scenarios=True))
    return out


@pytest.fixture(scope="module")
def log(log_path):
    return list(replay.read_log(log_path))


def broken(report) -> dict:
    return {r.id: r for r in report.results if r.status == "broken"}


@pytest.mark.case("SM-AR-012")
def test_the_correct_projection_holds_on_the_scenario_log(log):
    report = check(log, "arrears")
    assert report.ok, report.render()


@pytest.mark.case("SM-AR-011")
def test_SM_AR_011_one_lost_reconciliation_is_found_kept_as_a_drop_and_replays(log, tmp_path):
    report = check(log, f"{MORE}:releases_provisional", trace_dir=tmp_path)
    found = broken(report)
    assert set(found) == {"SM-AR-011"}
    result = found["SM-AR-011"]
    assert 1 < result.first_broken_example <= 200  # the unperturbed log holds: a drop is needed
    cx = result.counterexample
    assert cx.events <= 5
    assert [type(p) for p in cx.schedule.perturbations] == [DropEvent]
    assert "never delivered" in cx.timeline and "AccountBalance" in cx.timeline
    outcome = replay_counterexample(cx.directory, projection=f"{MORE}:releases_provisional")
    assert outcome.reproduced and outcome.verdict.rows == cx.rows


@pytest.mark.case("SM-AR-009")
def test_SM_AR_009_ignoring_the_calendar_is_found_by_unbroken_check(log_path, tmp_path):
    out = tmp_path / "report.json"
    run = subprocess.run(
        [sys.executable, "-m", "eventstore.cli", "check", "--log", str(log_path),
         "--projection", f"{MORE}:ignores_calendar", "--report", str(out)],
        capture_output=True, text=True, timeout=300, cwd=ROOT,
    )
    assert run.returncode == 1, run.stdout + run.stderr
    row = next(line for line in run.stdout.splitlines() if line.startswith("SM-AR-009  BROKEN"))
    assert row.split()[-5:-3] == ["example", "1"]  # the unperturbed log already breaks it
    scenarios = {s["scenario"]: s for s in json.loads(out.read_text())["scenarios"]}
    assert scenarios["SM-AR-009"]["status"] == "failed"
    said = re.search(r"counterexample: (\d+) event", " ".join(scenarios["SM-AR-009"]["observations"]))
    assert said and int(said.group(1)) <= 5


@pytest.mark.case("SM-AR-010")
def test_SM_AR_010_a_trusted_device_clock_is_found_from_the_inputs_own_times(log):
    found = broken(check(log, f"{MORE}:trusts_device_clock"))
    assert {"INV-1", "SM-AR-010"} <= set(found)
    rows = found["INV-1"].counterexample.rows
    assert rows[0]["problem"] == "states an input time later than any input it cites was received"
    assert rows[0]["input_time"] > rows[0]["trusted_time"]
    assert all(r.counterexample.events <= 5 for r in found.values())


@pytest.mark.case("SM-AR-006")
def test_SM_AR_006_decisions_on_an_older_reading_are_found_per_decision(log):
    found = broken(check(log, f"{MORE}:latest_by_arrival"))
    assert "SM-AR-006" in found
    cx = found["SM-AR-006"].counterexample
    assert cx.events <= 5 and cx.rows[0]["cited_time"] < cx.rows[0]["latest_time"]


@pytest.mark.case("SM-AR-014")
def test_SM_AR_014_an_accepted_ack_taken_as_delivery_is_found(log):
    found = broken(check(log, f"{MORE}:ack_is_delivery"))
    assert set(found) == {"AR-4"} and found["AR-4"].counterexample.events <= 5


@pytest.mark.case("SM-AR-008")
def test_SM_AR_008_vulnerability_ignored_during_the_hold_is_found(log):
    found = broken(check(log, f"{MORE}:vulnerable_checked_at_hold_only"))
    assert "AR-3" in found and found["AR-3"].counterexample.events <= 5

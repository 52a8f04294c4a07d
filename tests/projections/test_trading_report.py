"""`unbroken check --report FILE.json`: the TR scenario report (status, checks, observations,
metrics), passing for the real projection and failing, with the counterexample, for a flaw."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

UNBROKEN = str(Path(sys.executable).with_name("unbroken"))
FLAWED = Path(__file__).resolve().parents[2] / "examples" / "flawed_trading.py"


@pytest.fixture(scope="module")
def log(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("log") / "trading.jsonl"
    subprocess.run([UNBROKEN, "generate", "trading", "--symbols", "2", "--minutes", "18",
                    "--out", str(path)], check=True, capture_output=True)
    return path


def _check(log: Path, projection: str, out: Path) -> tuple[int, dict]:
    done = subprocess.run([UNBROKEN, "check", "--log", str(log), "--projection", projection,
                           "--examples", "20", "--seed", "5", "--shrink-seconds", "5",
                           "--report", str(out)], capture_output=True, text=True, timeout=180)
    assert "Traceback" not in done.stderr, done.stderr
    return done.returncode, json.loads(out.read_text())


@pytest.mark.case("TR-001")
def test_scenario_report_of_the_trading_projection(log, tmp_path):
    """Every TR scenario passes, with checks counted and metrics measured on the unperturbed run."""
    code, doc = _check(log, "trading", tmp_path / "report.json")
    assert code == 0 and doc["status"] == "passed" and doc["domain"] == "trading"
    tr = {s["scenario"]: s for s in doc["scenarios"] if s["scenario"].startswith("TR-")}
    assert sorted(tr) == ["TR-001", "TR-002", "TR-003", "TR-004", "TR-005"]
    for s in tr.values():
        assert s["status"] == "passed" and s["checks_passed"] == 20 and s["checks_failed"] == 0
        assert s["observations"] and s["title"]
    assert tr["TR-001"]["metrics"]["trips"] == 1 and tr["TR-001"]["metrics"]["max_drawdown_bp"] > 1000
    assert tr["TR-003"]["metrics"]["max_attempt"] == 3 and tr["TR-003"]["metrics"]["given_up"] == 1
    assert tr["TR-004"]["metrics"]["max_intents_per_minute"] == 10
    assert tr["TR-004"]["metrics"]["max_queue_lag_s"] <= 90
    assert tr["TR-005"]["metrics"] == {"resets_released": 1, "resets_refused": 1,
                                       "final_switch": "armed"}


@pytest.mark.case("TR-005")
def test_scenario_report_names_the_failed_scenario_and_its_counterexample(log, tmp_path):
    """A reset that ignores the cooldown: TR-005 failed, with the schedule and violating row."""
    code, doc = _check(log, f"{FLAWED}:reset_ignores_cooldown", tmp_path / "report.json")
    assert code == 1 and doc["status"] == "failed" and doc["verdicts"] == ["BROKEN"]
    (tr5,) = [s for s in doc["scenarios"] if s["scenario"] == "TR-005"]
    assert tr5["status"] == "failed" and tr5["checks_failed"] > 0
    assert any("reset before the cooldown was over" in o for o in tr5["observations"])
    assert any(o.startswith("counterexample:") for o in tr5["observations"])

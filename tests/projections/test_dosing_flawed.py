"""Each flawed dosing variant in examples/flawed_dosing.py is found and shrunk by
``unbroken check`` on a log where the real projection holds every invariant."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import properties
import replay
from eventstore.cli import main
from projections.payloads.modbus import ModbusFrame
from tests.adapters.dosing_log import (
    NS,
    START,
    DosingLog,
    invalid_during_hold_log,
    level_falling_log,
    link_lost_log,
    readback_mismatch_log,
    restart_log,
)

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "flawed_dosing.py"
CASES = [
    ("trusts_last_value_forever", link_lost_log, "HY-1"),
    ("no_recheck_at_release", invalid_during_hold_log, "HY-1"),
    ("trusts_write_ack", readback_mismatch_log, "HY-3"),
    ("ignores_level_and_temperature", level_falling_log, "HY-1"),
    pytest.param("cap_in_memory", lambda: restart_log(commands=12), "HY-2",
                 marks=pytest.mark.slow),  # ~5 s: a 193-event log to shrink
]


@pytest.mark.parametrize(("flaw", "make_log", "invariant"), CASES,
                         ids=["trusts_last_value_forever", "no_recheck_at_release", "trusts_write_ack",
                              "ignores_level_and_temperature", "cap_in_memory"])
def test_unbroken_check_finds_and_shrinks_each_flawed_variant(tmp_path, capsys, flaw, make_log, invariant):
    log = tmp_path / "dosing.jsonl"
    replay.export_log(make_log().events(), log)
    base = ["check", "--log", str(log), "--examples", "40", "--seed", "2", "--shrink-seconds", "5"]
    assert main([*base, "--projection", "dosing"]) == 0, capsys.readouterr().out
    capsys.readouterr()
    cx = tmp_path / "cx"
    code = main([*base, "--projection", f"{EXAMPLES}:{flaw}", "--trace", str(cx)])
    out = capsys.readouterr().out
    assert code == 1, out
    assert f"{invariant} BROKEN" in out or f"{invariant}       BROKEN" in out, out
    saved = cx / invariant
    assert saved.is_dir(), f"no counterexample saved for {invariant}: {sorted(p.name for p in cx.iterdir())}"
    original = len(make_log().events())
    meta = json.loads((saved / "counterexample.json").read_text())
    lines = [line for line in (saved / "events.jsonl").read_text().splitlines() if line.strip()]
    assert meta["invariant"] == invariant and meta["events"] == len(lines)
    assert len(lines) < original / 4, f"not shrunk: {len(lines)} of {original} events"
    assert main(["check", "--replay", str(saved), "--projection", f"{EXAMPLES}:{flaw}"]) == 1


def _tank_log(**values) -> DosingLog:
    """Relays off, then EC low for two minutes with ``values`` (None: that sensor not read)."""
    log = DosingLog()
    log.relays(START)
    for i in range(24):
        decoded = {"ec": 1.5 + 0.01 * (i % 2), "ph": 6.0, "level": 70.0, "temperature": 21.0, **values}
        decoded = {k: v for k, v in decoded.items() if v is not None}
        at = START + 1 + i * 5 * NS
        log.add(ModbusFrame("tank1", 1, 4, 0, decoded=decoded, received_at=at), at)
    return log


@pytest.mark.parametrize(("values", "problem"), [
    ({"level": 15.0}, "dose released with level 15.0 below 20.0"),
    ({"temperature": 40.0}, "dose released with temperature 40.0 above 35.0"),
    ({"temperature": None}, "dose released with no reading of temperature"),
], ids=["level_low", "too_warm", "no_temperature"])
def test_HY_1_judges_the_level_and_temperature_a_dose_acts_on(values, problem):
    log = _tank_log(**values).events()
    assert properties.check(log, "dosing", examples=5, seed=1).exit_code() == 0
    report = properties.check(log, f"{EXAMPLES}:ignores_level_and_temperature", examples=5, seed=1,
                              shrink_budget_s=2)
    assert [r.id for r in report.broken] == ["HY-1"], report.render()
    rows = report.broken[0].counterexample.rows
    assert rows and {r["problem"] for r in rows} == {problem}, rows

"""The flawed kill-switch variants of examples/flawed_trading.py: `unbroken check` finds each
one's bug and shrinks it to a small counterexample, while the real projection passes."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

import properties
from load._trading_model import TradingProfile
from projections import TradingProjection
from projections.payloads import MarketTick, OrderFill

from .test_trading_scenarios import Log, generated

ROOT = Path(__file__).resolve().parents[2]
FLAWED = ROOT / "examples" / "flawed_trading.py"
ONE_SYMBOL = TradingProfile(symbols=1, minutes=16, crash_at=7, flood_at=1, limits_at=3)


def _flawed():
    spec = importlib.util.spec_from_file_location("flawed_trading", FLAWED)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _fills_log():
    """A small book built from fills, so a drawn Duplicate lands on a fill."""
    log = Log()
    for i in range(12):
        log.add(i, OrderFill(order_id=f"o{i}", symbol="X", side="buy", quantity=10.0,
                             price=100.0 + i, fill_id="1"))
        log.add(i + 0.5, MarketTick(symbol="X", price=100.0 + i))
    return log.events()


def _ticks_log():
    """Two symbols whose prices move every second, so a late tick rolls a price back."""
    log = Log()
    log.add(0, OrderFill(order_id="a", symbol="X", side="buy", quantity=10.0, price=100.0))
    for i in range(30):
        log.add(1 + i, MarketTick(symbol="X", price=100.0 + i))
    return log.events()


CASES = [  # variant, the log it is checked on, the invariant it must break
    ("reset_ignores_cooldown", lambda: generated(ONE_SYMBOL), "TR-005"),
    ("counts_duplicate_fills", _fills_log, "INV-5"),
    ("last_delivered_price_wins", _ticks_log, "INV-5"),
    ("one_retry_too_many", lambda: generated(ONE_SYMBOL), "TR-003"),
]


@pytest.mark.slow
@pytest.mark.parametrize(("variant", "log", "invariant"), CASES, ids=[c[0] for c in CASES])
def test_check_finds_and_shrinks_each_flawed_variant(variant, log, invariant, tmp_path):
    """Each flaw breaks its invariant; the counterexample is shrunk to a handful of events and
    saved; the real projection holds on the same log and seed."""
    events = log()
    projection = getattr(_flawed(), variant)()
    report = properties.check(events, projection, examples=150, seed=3, shrink_budget_s=15,
                              trace_dir=tmp_path / "cx")
    broken = {r.id: r for r in report.broken}
    assert invariant in broken, report.render()
    cx = broken[invariant].counterexample
    assert cx is not None and cx.events <= 12 < len(events), cx.render()
    assert (tmp_path / "cx" / invariant / "events.jsonl").exists()
    real = properties.check(events, TradingProjection(), examples=150, seed=3)
    assert real.ok, real.render()


def test_unbroken_check_command_reports_a_flawed_variant(tmp_path):
    """`unbroken check --projection examples/flawed_trading.py:...` exits 1 naming TR-005."""
    log = tmp_path / "trading.jsonl"
    subprocess.run([sys.executable, "-m", "eventstore.cli", "generate", "trading", "--symbols", "1",
                    "--minutes", "18", "--out", str(log)], check=True, capture_output=True)
    done = subprocess.run(
        [str(Path(sys.executable).with_name("unbroken")), "check", "--log", str(log),
         "--projection", f"{FLAWED}:reset_ignores_cooldown", "--examples", "5",
         "--invariants", "TR-005", "--shrink-seconds", "5"],
        capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "TR-005" in done.stdout and "reset before the cooldown was over" in done.stdout

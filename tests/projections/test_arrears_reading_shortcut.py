"""The re-check after a reading is skipped only when it would change nothing.

``Notices.unchanged_by_reading`` answers, without an assessment, whether
``evaluate(..., "reading")`` would decide, schedule or change anything. These
tests replay logs with the shortcut and with it switched off (every re-check
evaluated in full) and require byte-identical traces and state, and that the
shortcut was actually taken.
"""

from __future__ import annotations

import msgspec
import pytest

import replay
from load import ArrearsProfile, generate_arrears
from projections._arrears.notices import Notices

from .helpers import Log, readings, run, statement, t
from .test_arrears_convergence import perturbed, rich_log


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    path = tmp_path_factory.mktemp("shortcut") / "log.jsonl"
    generate_arrears(path, ArrearsProfile(accounts=60, days=45, seed=11))
    return list(replay.read_log(path))


def both_ways(monkeypatch, events, deliveries=None) -> tuple[int, int]:
    """Replay with and without the shortcut; they must agree byte for byte. Returns (taken, asked)."""
    original = Notices.unchanged_by_reading
    answers: list[bool] = []

    def counted(self, *args):
        answers.append(original(self, *args))
        return answers[-1]

    monkeypatch.setattr(Notices, "unchanged_by_reading", counted)
    fast = run(events, deliveries=deliveries)
    monkeypatch.setattr(Notices, "unchanged_by_reading", lambda self, *args: False)
    full = run(events, deliveries=deliveries)
    assert fast.digest == full.digest
    assert fast.counts == full.counts
    assert msgspec.msgpack.encode(fast.state) == msgspec.msgpack.encode(full.state)
    return sum(answers), len(answers)


def test_shortcut_changes_nothing_on_a_generated_log(monkeypatch, generated):
    taken, asked = both_ways(monkeypatch, generated)
    assert 0 < taken < asked  # skipped some re-checks, evaluated others


@pytest.mark.parametrize("seed", range(4))
def test_shortcut_changes_nothing_under_perturbed_delivery(monkeypatch, seed):
    events = rich_log()
    both_ways(monkeypatch, events, perturbed(events, seed))


def test_shortcut_changes_nothing_when_readings_go_stale_and_recover(monkeypatch):
    # Readings stop, the notice is blocked as stale, then estimated and real readings come back.
    from projections.payloads import MeterReading

    log = Log()
    readings(log, "A1", first="2024-02-20", days=3)
    statement(log, "A1", balance=12_000, at="2024-03-04T02:00")
    for hour, estimated in ((3, True), (4, True), (5, False), (6, False)):
        at = t(f"2024-03-04T{hour:02d}:00")
        log.add(MeterReading("M-A1", "A1", 1100.0 + hour, estimated=estimated), at)
    taken, asked = both_ways(monkeypatch, log.events())
    assert taken >= 1 and asked > taken  # a repeat of the same reasons is skipped; a change is not


def test_shortcut_changes_nothing_when_a_restatement_is_not_yet_due(monkeypatch):
    # Blocked as stale; a restatement of the period is not due yet (a due timer), then stale
    # readings keep arriving: each re-check re-schedules that timer, so none may be skipped.
    from projections.payloads import MeterReading

    log = Log()
    readings(log, "A1", first="2024-02-20", days=3)
    statement(log, "A1", balance=12_000, at="2024-03-04T02:00")
    statement(log, "A1", balance=13_000, at="2024-03-04T02:30", due="2024-03-20T00:00")
    for hour in (3, 4, 5):
        log.add(MeterReading("M-A1", "A1", 1100.0 + hour), t("2024-02-23T00:30"), t(f"2024-03-04T{hour:02d}:00"))
    taken, asked = both_ways(monkeypatch, log.events())
    assert asked == 3 and taken == 0

"""The determinism check, against a pure projection and a deliberately impure one."""

from __future__ import annotations

import pytest
from replay_helpers import LedgerProjection, payment_log

from projections._contract import Decision, Status
from replay import ReplayError, deliveries_of
from replay.core._determinism import check_determinism

_calls = 0  # module-level state: exactly what a projection must never read


class Impure(LedgerProjection):
    """Decides on the 5th event with a confidence that depends on how often it ran before."""

    def apply(self, state, event, ctx):
        global _calls
        if event.position == 5:
            _calls += 1
            ctx.decide(Decision(kind="risk", subject="acct-x", action="flag",
                                status=Status.PROPOSED, confidence=1 / _calls))
        return super().apply(state, event, ctx)


def test_a_pure_projection_is_deterministic(tmp_path):
    events = payment_log(n=30)
    report = check_determinism(list(deliveries_of(events)), LedgerProjection(),
                               trace_dir=tmp_path)
    assert report.ok, report.describe()
    assert report.digests[0] == report.digests[1]
    assert (tmp_path / "first" / "runs.parquet").exists()
    assert (tmp_path / "second" / "runs.parquet").exists()


def test_an_impure_projection_is_caught_at_its_first_differing_decision():
    events = payment_log(n=30)
    report = check_determinism(list(deliveries_of(events)), Impure())
    assert not report.ok
    m = report.mismatch
    assert m.table == "decisions"
    assert m.seq == 4  # position 5 is the 5th delivery: seq 4 on the run's timeline
    assert m.first["subject"] == m.second["subject"] == "acct-x"
    assert m.first["confidence"] != m.second["confidence"]
    assert "NOT deterministic" in report.describe() and "decisions" in report.describe()


def test_a_one_shot_iterator_is_refused():
    with pytest.raises(ReplayError, match="callable"):
        check_determinism(deliveries_of(payment_log(n=3)), LedgerProjection())


def test_a_callable_source_is_read_twice():
    events = payment_log(n=10)
    report = check_determinism(lambda: deliveries_of(events), LedgerProjection())
    assert report.ok

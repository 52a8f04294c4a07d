"""Diffing two projections over one log."""

from __future__ import annotations

import pytest
from replay_helpers import SECOND, LedgerProjection, payment_log

from replay import ReplayError, deliveries_of
from replay.core._diff import diff_projections


def test_same_projection_twice_has_no_difference():
    schedule = list(deliveries_of(payment_log(n=20)))
    report = diff_projections(schedule, LedgerProjection(), LedgerProjection())
    assert report.same and report.state_equal
    assert report.only_a.is_empty() and report.summary.is_empty()
    assert "same decisions" in report.describe()


def test_a_threshold_change_shows_first_divergence_and_summary():
    schedule = list(deliveries_of(payment_log(n=20, accounts=2, reversals=False)))
    report = diff_projections(schedule, LedgerProjection(hold_ns=100 * SECOND),
                              LedgerProjection(hold_ns=100 * SECOND, threshold=104))
    # payments 100..104 are at or under B's threshold: no held notice, no release for them
    assert not report.same
    assert report.first_a["cause"] == "event 1#0"
    assert report.first_a["status"] == "held"
    assert report.first_b is None
    summary = {(r["kind"], r["reason"]): (r["only_a"], r["only_b"])
               for r in report.summary.iter_rows(named=True)}
    assert summary == {("notice", "payment"): (5, 0)}
    assert report.state_equal  # balances do not depend on the threshold
    assert "threshold" in report.describe() or "104" in report.describe()


def test_timer_decisions_are_matched_by_timer_not_by_seq():
    schedule = list(deliveries_of(payment_log(n=12, accounts=3, reversals=False)))
    report = diff_projections(schedule, LedgerProjection(hold_ns=2 * SECOND),
                              LedgerProjection(hold_ns=5 * SECOND))
    released_a = report.only_a.filter(report.only_a["status"] == "released")
    assert released_a.height > 0
    assert all(c.startswith("timer release:") for c in released_a["cause"].to_list())
    held = report.summary.filter(report.summary["reason"] == "payment")
    assert held.is_empty()  # held notices are the same on both sides


def test_a_one_shot_iterator_is_refused():
    with pytest.raises(ReplayError, match="callable"):
        diff_projections(deliveries_of(payment_log(n=2)), LedgerProjection(), LedgerProjection())

"""The arrears projection over a seeded, production-like log from load/ (~150 accounts, 75 days).

Checks INV-1..INV-4 on every decision and that the awkward cases of the
generator (lag, clock-ahead meters, estimates, provisional statements,
duplicate payments, vulnerable customers, legacy acks) are all met.
"""

from __future__ import annotations

from collections import Counter

import pytest

import replay
from load import ArrearsProfile, generate_arrears
from projections import ArrearsProjection, Status
from projections import reasons as R

from .helpers import HOUR
from .invariants import check_all


@pytest.fixture(scope="module")
def events(tmp_path_factory):
    path = tmp_path_factory.mktemp("arrears") / "log.jsonl"
    generate_arrears(path, ArrearsProfile(accounts=150, days=75, seed=3))
    return list(replay.read_log(path))  # recorded_at = the line's receive time


@pytest.fixture(scope="module")
def result(events):
    return replay.run(list(replay.deliveries_of(events)), ArrearsProjection(), collect=False, strict=True)


def test_invariants_hold_on_a_realistic_log(result):
    assert result.counts["faults"] == 0
    assert check_all(result.decisions, 48 * HOUR) == {}


def test_every_awkward_case_of_the_log_is_met(result):
    reasons = Counter(r for d in result.decisions for r in d.reasons)
    statuses = Counter(d.status for d in result.decisions if d.kind == "arrears-notice")
    # (provisional statements are reconciled before they fall due in this generator)
    assert statuses[Status.RELEASED] > 0 and statuses[Status.CANCELLED] > 0 and statuses[Status.BLOCKED] > 0
    for code in (R.CLOCK_AHEAD, R.DUPLICATE_PAYMENT, R.ESTIMATED_CONSUMPTION, R.STALE_READING,
                 R.OUTSIDE_ALLOWED_HOURS, R.ACK_NOT_DELIVERY, R.UNKNOWN_NOTICE):
        assert reasons[code] > 0, f"{code} never came up"


def test_one_notice_per_account_and_period(result):
    keys = Counter(d.effect_key for d in result.decisions if d.status == Status.RELEASED and d.external)
    assert keys and max(keys.values()) == 1

"""INV-5 and friends under perturbed delivery: reordered, delayed and duplicated events.

Schedules come from ``random.Random(seed)`` with the seed in the test id, so a
failure names what to re-run. The facts (``ArrearsProjection.convergent``) must
be byte-identical to the unperturbed run's; INV-1..4 must hold in every run.
"""

from __future__ import annotations

import random

import msgspec
import pytest

import replay
from eventstore import RecordedEvent
from projections import ArrearsProjection, ArrearsState
from projections._arrears.facts import debt_of
from projections.payloads import (
    CalendarDay,
    CustomerFlag,
    MeterReading,
    NotificationAck,
    PaymentReceived,
    PaymentReversed,
)

from .helpers import DAY, HOUR, Log, readings, released, run, statement, t
from .invariants import check_all

HOLD_NS = 48 * HOUR


def rich_log() -> list[RecordedEvent]:
    """Four accounts touching every rule: payments, duplicates, reversals, lag, clocks, flags, acks."""
    log = Log()
    log.add(CalendarDay("2024-03-07", holiday=True), t("2024-02-01T00:00"))
    for account in ("A1", "A2", "A3", "A4"):
        readings(log, account, first="2024-03-01", days=9)
        statement(log, account, balance=12_000)
    log.add(PaymentReceived("A1", "P1", 9_000), t("2024-03-05T10:00"))
    log.add(PaymentReceived("A1", "P1", 9_000), t("2024-03-05T10:00"), t("2024-03-05T10:05"))
    log.add(PaymentReversed("A1", "P1"), t("2024-03-06T12:00"))
    log.add(PaymentReceived("A2", "P2", 2_000), t("2024-03-05T11:00"))
    log.add(MeterReading("M-A3", "A3", 990.0), t("2024-03-02T00:30"), t("2024-03-05T00:00"))  # late, older
    log.add(MeterReading("M-A3", "A3", 1100.0), t("2024-03-12T00:00"), t("2024-03-08T12:00"))  # clock ahead
    log.add(CustomerFlag("A4", "vulnerable"), t("2024-03-05T09:00"))
    statement(log, "A2", balance=11_000, at="2024-03-06T03:00", provisional=True)
    log.add(NotificationAck("A2", "arrears-notice:A2:2024-03", "accepted"), t("2024-03-10T08:01"))
    log.add(NotificationAck("A2", "arrears-notice:A2:2024-03", "delivered"), t("2024-03-10T09:00"))
    return log.events()


def perturbed(events: list[RecordedEvent], seed: int) -> list[replay.Delivery]:
    """Every event delivered at least once, each delayed by up to 3 days; some twice."""
    rng = random.Random(seed)
    out = []
    for e in events:
        out.append(replay.Delivery(e, e.recorded_at + rng.randrange(3 * DAY), perturbation="delayed"))
        if rng.random() < 0.2:
            late = e.recorded_at + rng.randrange(4 * DAY)
            out.append(replay.Delivery(e, late, copy=1, perturbation="duplicate"))
    return out


@pytest.fixture(scope="module")
def events() -> list[RecordedEvent]:
    return rich_log()


@pytest.fixture(scope="module")
def baseline(events):
    return run(events)


def test_unperturbed_run_exercises_the_rules(baseline):
    # A1: cancelled by a payment, re-held after its reversal, released. A2: provisional restatement
    # keeps it held. A3: released despite a late older reading and a clock-ahead one. A4: vulnerable.
    assert {d.subject for d in released(baseline)} == {"A1", "A3"}
    assert baseline.state.notices["A2"]["2024-03"].waiting == "reconciliation"
    assert [d.subject for d in baseline.decisions if d.kind == "arrears-review"] == ["A4"]
    assert check_all(baseline.decisions, HOLD_NS) == {}


@pytest.mark.case("SM-AR-013")
@pytest.mark.parametrize("seed", range(12))
def test_facts_converge_and_invariants_hold_under_perturbation(events, baseline, seed):
    result = run(events, deliveries=perturbed(events, seed))
    assert ArrearsProjection.convergent(result.state) == ArrearsProjection.convergent(baseline.state)
    assert check_all(result.decisions, HOLD_NS) == {}
    for account in result.state.facts.accounts.values():  # the cached debt is the recomputed one
        assert account.debt_minor == debt_of(account)


def test_same_deliveries_give_identical_traces(events):
    deliveries = perturbed(events, 99)
    assert run(events, deliveries=deliveries).digest == run(events, deliveries=deliveries).digest


def test_state_survives_a_snapshot_round_trip(baseline):
    encoded = msgspec.msgpack.encode(baseline.state)
    decoded = msgspec.msgpack.decode(encoded, type=ArrearsProjection.state_type)
    assert isinstance(decoded, ArrearsState)
    assert ArrearsProjection.convergent(decoded) == ArrearsProjection.convergent(baseline.state)
    assert msgspec.msgpack.encode(decoded) == encoded


def test_resumed_replay_matches_a_full_one(events, tmp_path):
    deliveries = list(replay.deliveries_of(events))
    full = replay.run(deliveries, ArrearsProjection(), collect=False, strict=True)
    snaps = tmp_path / "snaps"
    replay.run(deliveries[: len(deliveries) // 2], ArrearsProjection(), collect=False,
               snapshots=replay.Snapshots(every=10, directory=snaps))
    resumed = replay.run(deliveries, ArrearsProjection(), collect=False, snapshots=replay.Snapshots(every=10, directory=snaps, resume=True))
    assert resumed.resumed_from
    assert ArrearsProjection.convergent(resumed.state) == ArrearsProjection.convergent(full.state)
    assert resumed.digest == full.digest


def test_timing_only_changes_decisions_not_facts(events):
    """A payment delayed past the release changes what was sent, never what is known."""
    late = [replay.Delivery(e, e.recorded_at + (5 * DAY if e.type == "PaymentReceived" else 0))
            for e in events]
    result = run(events, deliveries=late)
    assert "A1" in {d.subject for d in released(result)}
    assert ArrearsProjection.convergent(result.state) == ArrearsProjection.convergent(run(events).state)

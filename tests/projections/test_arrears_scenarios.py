"""SM-AR-001..014 on explicit logs, through the real replay runner (identity schedule unless said)."""

from __future__ import annotations

import uuid

import pytest

from projections import ArrearsConfig, ArrearsProjection, Status
from projections import reasons as R
from projections.payloads import (
    CalendarDay,
    CustomerFlag,
    MeterReading,
    NotificationAck,
    PaymentReceived,
    PaymentReversed,
)
from replay import Delivery

from .helpers import (
    DAY,
    HOUR,
    MINUTE,
    RELEASE,
    Log,
    notices,
    readings,
    reasons_of,
    released,
    run,
    statement,
    statuses,
    t,
)


def test_baseline_overdue_debt_is_held_then_released():
    log = Log()
    ids = readings(log)
    balance_id = statement(log)
    result = run(log)
    held, waiting, done = notices(result)
    assert (held.status, waiting.status, done.status) == (Status.HELD, Status.HELD, Status.RELEASED)
    assert held.hold_until == held.at + 48 * HOUR
    assert waiting.reasons == (R.OUTSIDE_ALLOWED_HOURS,)  # 02:00 is before the 08:00 send window
    assert done.at == t(RELEASE) and done.external and done.irreversible
    assert done.effect_key == "arrears-notice:A1:2024-03"
    assert done.confidence >= done.min_confidence == 0.9
    assert done.inputs == tuple(sorted([ids[-1], balance_id]))
    assert done.at - done.input_time <= done.freshness_ns


@pytest.mark.case("SM-AR-001")
def test_SM_AR_001_stale_reading_blocks_notice_and_lowers_confidence():
    log = Log()
    readings(log, first="2024-02-19", days=1)  # last reading 2024-02-19: 14 days before the statement
    statement(log)
    result = run(log)
    (blocked,) = notices(result)
    assert blocked.status == Status.BLOCKED and R.STALE_READING in blocked.reasons
    assert blocked.input_time == t("2024-02-19T00:30") and blocked.freshness_ns == 72 * HOUR
    assert blocked.confidence < 0.5
    assert released(result) == []


@pytest.mark.case("SM-AR-001")
def test_SM_AR_001_reading_fresh_at_hold_but_stale_at_release_cancels():
    log = Log()
    readings(log, first="2024-03-02", days=1)  # 50 h old at the hold, 98 h old at release
    statement(log)
    result = run(log)
    assert statuses(result) == ["held", "cancelled", "blocked"]  # facts are checked first
    assert reasons_of(result, Status.CANCELLED) == [(R.STALE_READING,)]
    assert released(result) == []


@pytest.mark.case("SM-AR-002")
def test_SM_AR_002_estimated_reading_is_flagged_and_blocks_hard_notice():
    log = Log()
    log.add(MeterReading("M-A1", "A1", 1040.0, estimated=True), t("2024-03-04T00:30"))
    statement(log)
    result = run(log)
    (blocked,) = notices(result)
    assert blocked.status == Status.BLOCKED and blocked.reasons == (R.ESTIMATED_CONSUMPTION,)
    assert blocked.confidence == pytest.approx(0.6)
    assert result.state.facts.accounts["A1"].meters["M-A1"].latest.estimated is True
    assert released(result) == []


@pytest.mark.case("SM-AR-002")
def test_SM_AR_002_real_reading_after_estimate_opens_a_hold():
    log = Log()
    log.add(MeterReading("M-A1", "A1", 1040.0, estimated=True), t("2024-03-04T00:30"))
    statement(log)
    log.add(MeterReading("M-A1", "A1", 1041.0), t("2024-03-05T00:30"))
    result = run(log)
    assert statuses(result) == ["blocked", "held", "held", "released"]
    assert notices(result)[1].at == t("2024-03-05T00:30")
    assert released(result)[0].at == t("2024-03-07T08:00")


@pytest.mark.case("SM-AR-003")
def test_SM_AR_003_late_payment_cancels_held_notice():
    log = Log()
    readings(log)
    statement(log)
    payment = log.add(PaymentReceived("A1", "P1", 8_000), t("2024-03-05T10:00"))
    result = run(log)
    assert statuses(result) == ["held", "cancelled"]
    (cancel,) = [d for d in notices(result) if d.status == Status.CANCELLED]
    assert cancel.at == t("2024-03-05T10:00")
    assert R.LATE_PAYMENT_CANCELLED in cancel.reasons and payment in cancel.inputs
    assert result.state.facts.accounts["A1"].debt_minor == 2_000
    assert result.state.notices["A1"]["2024-03"].status == "cancelled"
    assert released(result) == []


@pytest.mark.case("SM-AR-004")
def test_SM_AR_004_same_payment_twice_counts_once():
    log = Log()
    readings(log)
    statement(log)
    log.add(PaymentReceived("A1", "P1", 3_000), t("2024-03-05T10:00"))
    log.add(PaymentReceived("A1", "P1", 3_000), t("2024-03-05T10:00"), t("2024-03-05T10:07"))  # webhook retry
    events = log.events()
    deliveries = [Delivery(e, e.recorded_at) for e in events]
    deliveries.append(Delivery(events[-1], events[-1].recorded_at + MINUTE, copy=1, perturbation="duplicate"))
    result = run(events, deliveries=deliveries)
    assert result.state.facts.accounts["A1"].debt_minor == 7_000  # not 4_000
    dupes = [d for d in result.decisions if R.DUPLICATE_PAYMENT in d.reasons]
    assert len(dupes) == 2 and all(d.status == Status.BLOCKED and not d.external for d in dupes)
    assert len(released(result)) == 1  # 7_000 is still over the threshold


@pytest.mark.case("SM-AR-005")
def test_SM_AR_005_reversal_after_cancellation_opens_a_new_hold():
    log = Log()
    readings(log, days=8)
    statement(log)
    log.add(PaymentReceived("A1", "P1", 8_000), t("2024-03-05T10:00"))
    log.add(PaymentReversed("A1", "P1", "insufficient_funds"), t("2024-03-06T11:00"))
    result = run(log)
    assert statuses(result) == ["held", "cancelled", "held", "released"]
    first, _, second, done = notices(result)
    assert second.at == t("2024-03-06T11:00") and second.hold_until == second.at + 48 * HOUR
    assert done.at >= second.hold_until  # the new notice served its whole hold
    assert done.at == t("2024-03-08T11:00")
    assert result.state.facts.accounts["A1"].debt_minor == 10_000


@pytest.mark.case("SM-AR-006")
def test_SM_AR_006_older_reading_after_newer_keeps_register_monotonic():
    log = Log()
    newer = log.add(MeterReading("M-A1", "A1", 1200.0), t("2024-03-04T00:30"))
    log.add(MeterReading("M-A1", "A1", 1150.0), t("2024-03-02T00:30"), t("2024-03-04T06:00"))
    result = run(log)
    meter = result.state.facts.accounts["A1"].meters["M-A1"]
    assert str(uuid.UUID(bytes=meter.latest.event_id)) == newer and meter.latest.register_kwh == 1200.0
    assert meter.max_register_kwh == 1200.0
    assert meter.max_register_kwh - meter.min_register_kwh == 50.0  # consumption, never negative
    (late,) = [d for d in result.decisions if d.kind == "reading"]
    assert late.reasons == (R.OUT_OF_ORDER_READING,) and late.status == Status.BLOCKED


@pytest.mark.case("SM-AR-006")
def test_SM_AR_006_newer_reading_with_lower_register_is_flagged_register_kept():
    log = Log()
    log.add(MeterReading("M-A1", "A1", 1200.0), t("2024-03-03T00:30"))
    log.add(MeterReading("M-A1", "A1", 1190.0), t("2024-03-04T00:30"))
    result = run(log)
    meter = result.state.facts.accounts["A1"].meters["M-A1"]
    assert meter.max_register_kwh == 1200.0
    assert [d.reasons for d in result.decisions] == [(R.REGISTER_DECREASE,)]


@pytest.mark.case("SM-AR-007")
def test_SM_AR_007_lagging_meter_degrades_only_its_account():
    log = Log()
    readings(log, "A1", first="2024-02-27", days=2)  # then its head-end stalls...
    for d in range(2, 8):  # ...and uploads the held readings on 03-06 at 09:00
        at = t("2024-02-27T00:30") + d * DAY
        log.add(MeterReading("M-A1", "A1", 1000.0 + 8 * d), at, t("2024-03-06T09:00") + d)
    readings(log, "A1", first="2024-03-07", days=3)  # and reports on time again
    readings(log, "A2", days=6)
    statement(log, "A1")
    statement(log, "A2")
    result = run(log)
    a1, a2 = notices(result, "A1"), notices(result, "A2")
    assert a1[0].status == Status.BLOCKED and R.STALE_READING in a1[0].reasons
    assert [d.status for d in a2] == [Status.HELD, Status.HELD, Status.RELEASED]
    assert a1[0].confidence < a2[0].confidence == 1.0
    # Once the backlog arrives A1 proceeds through its own full hold.
    assert [d.status for d in a1[1:]] == [Status.HELD, Status.RELEASED]
    assert t("2024-03-06T09:00") <= a1[1].at < t("2024-03-06T09:01")
    assert a1[2].at == a1[1].hold_until == a1[1].at + 48 * HOUR


@pytest.mark.case("SM-AR-008")
def test_SM_AR_008_vulnerable_customer_gets_review_not_notice():
    log = Log()
    readings(log)
    log.add(CustomerFlag("A1", "vulnerable"), t("2024-01-10T12:00"))
    statement(log, balance=12_000)
    result = run(log)
    (review,) = [d for d in result.decisions if d.kind == "arrears-review"]
    assert review.status == Status.PROPOSED and not review.external
    assert review.reasons == (R.VULNERABLE_CUSTOMER, R.MANUAL_REVIEW)
    assert review.min_confidence == 0.5
    assert statuses(result) == ["blocked"]
    assert released(result) == []


@pytest.mark.case("SM-AR-008")
def test_SM_AR_008_stricter_threshold_and_flag_raised_during_hold():
    below = Log()
    readings(below)
    below.add(CustomerFlag("A1", "vulnerable"), t("2024-01-10T12:00"))
    statement(below, balance=8_000)  # over 5_000 but under 2 x 5_000
    assert run(below).decisions == []
    during = Log()
    readings(during)
    statement(during, balance=8_000)
    during.add(CustomerFlag("A1", "vulnerable"), t("2024-03-05T12:00"))
    result = run(during)
    assert statuses(result) == ["held", "cancelled"]
    assert R.VULNERABLE_CUSTOMER in reasons_of(result, Status.CANCELLED)[0]


@pytest.mark.case("SM-AR-009")
def test_SM_AR_009_release_on_holiday_waits_for_next_allowed_day():
    log = Log()
    readings(log, days=6)
    log.add(CalendarDay("2024-03-06", holiday=True, name="test holiday"), t("2024-02-20T00:00"))
    statement(log)
    result = run(log)
    assert statuses(result) == ["held", "held", "released"]
    wait = notices(result)[1]
    assert wait.reasons == (R.HOLIDAY_WAIT,) and wait.hold_until == t("2024-03-07T08:00")
    assert released(result)[0].at == t("2024-03-07T08:00")


@pytest.mark.case("SM-AR-009")
def test_SM_AR_009_weekend_and_hours_are_inputs_of_the_release():
    log = Log()
    readings(log, first="2024-03-06", days=4)
    statement(log, at="2024-03-07T21:00")  # Thursday evening: hold ends Saturday 21:00
    result = run(log)
    (done,) = released(result)
    assert done.at == t("2024-03-11T08:00")  # Monday 08:00
    assert notices(result)[1].reasons == (R.OUTSIDE_ALLOWED_HOURS,)
    anytime = ArrearsConfig(send_from_hour=0, send_until_hour=24, send_weekdays=(0, 1, 2, 3, 4, 5, 6))
    assert released(run(log, anytime))[0].at == t("2024-03-09T21:00")


@pytest.mark.case("SM-AR-009")
def test_SM_AR_009_holiday_announced_during_hold_is_respected():
    log = Log()
    readings(log, days=6)
    statement(log)
    log.add(CalendarDay("2024-03-06", holiday=True), t("2024-03-05T00:00"))
    result = run(log)
    assert released(result)[0].at == t("2024-03-07T08:00")


@pytest.mark.case("SM-AR-010")
def test_SM_AR_010_clock_ahead_reading_is_flagged_and_trusted_time_bounded():
    log = Log()
    ahead = log.add(MeterReading("M-A1", "A1", 1000.0), t("2024-03-06T00:00"), t("2024-03-02T00:00"))
    statement(log)
    result = run(log)
    flag = [d for d in result.decisions if d.kind == "reading"]
    assert [(d.reasons, d.inputs) for d in flag] == [((R.CLOCK_AHEAD,), (ahead,))]
    latest = result.state.facts.accounts["A1"].meters["M-A1"].latest
    assert latest.clock_ahead and latest.trusted_at == t("2024-03-02T00:00")
    held = notices(result)[0]
    assert R.CLOCK_AHEAD in held.reasons and held.confidence == pytest.approx(0.95)
    assert held.input_time == t("2024-03-02T00:00")
    # At release the device time would look 8 h old; the trusted time is 104 h old.
    assert reasons_of(result, Status.CANCELLED) == [(R.STALE_READING,)]


@pytest.mark.case("SM-AR-010")
def test_SM_AR_010_clock_ahead_reading_does_not_mask_newer_real_readings():
    log = Log()
    log.add(MeterReading("M-A1", "A1", 1000.0), t("2024-03-09T00:00"), t("2024-03-02T00:00"))
    real = log.add(MeterReading("M-A1", "A1", 1010.0), t("2024-03-03T00:00"), t("2024-03-03T00:05"))
    result = run(log)
    latest = result.state.facts.accounts["A1"].meters["M-A1"].latest
    assert str(uuid.UUID(bytes=latest.event_id)) == real and not latest.clock_ahead


@pytest.mark.case("SM-AR-011")
def test_SM_AR_011_provisional_balance_stays_held_until_reconciliation():
    log = Log()
    readings(log, days=10)
    statement(log, provisional=True)
    statement(log, balance=9_500, at="2024-03-08T10:00")  # reconciliation (a Friday)
    result = run(log)
    assert statuses(result) == ["held", "held", "held", "held", "released"]
    hold, wait, restart, _, done = notices(result)
    assert R.PROVISIONAL_BALANCE in hold.reasons and hold.confidence == pytest.approx(0.7)
    assert wait.reasons == (R.PROVISIONAL_BALANCE,) and wait.at == t("2024-03-06T02:00")
    assert R.HOLD_RESTARTED in restart.reasons and restart.hold_until == t("2024-03-10T10:00")
    assert done.at == t("2024-03-11T08:00") and done.confidence == 1.0


@pytest.mark.case("SM-AR-011")
def test_SM_AR_011_reconciliation_under_threshold_cancels():
    log = Log()
    readings(log, days=10)
    statement(log, provisional=True)
    statement(log, balance=4_000, at="2024-03-08T10:00")
    result = run(log)
    assert statuses(result) == ["held", "held", "cancelled"]
    assert reasons_of(result, Status.CANCELLED) == [(R.DEBT_BELOW_THRESHOLD,)]


@pytest.mark.case("SM-AR-012")
def test_SM_AR_012_release_rechecks_everything_known_then():
    partial = Log()
    readings(partial)
    statement(partial)
    paid = partial.add(PaymentReceived("A1", "P1", 2_000), t("2024-03-05T10:00"))
    (done,) = released(run(partial))
    assert paid in done.inputs and R.RECHECKED_AT_RELEASE in done.reasons
    estimated = Log()
    readings(estimated)
    statement(estimated)
    estimated.add(MeterReading("M-A1", "A1", 1100.0, estimated=True), t("2024-03-06T00:30"))
    result = run(estimated)
    assert reasons_of(result, Status.CANCELLED) == [(R.ESTIMATED_CONSUMPTION,)]
    assert released(result) == []


@pytest.mark.case("SM-AR-012")
def test_SM_AR_012_new_period_statement_supersedes_held_notice():
    log = Log()
    readings(log, days=6)
    statement(log)
    statement(log, balance=12_000, at="2024-03-05T03:00", due="2024-04-01T00:00")
    result = run(log)
    old = [d for d in notices(result) if d.effect_key.endswith("2024-03")]
    assert [d.status for d in old] == [Status.HELD, Status.CANCELLED]
    assert old[-1].reasons == (R.STATEMENT_SUPERSEDED,)
    assert released(result) == []  # the April debt is not yet due


@pytest.mark.case("SM-AR-013")
def test_SM_AR_013_evaluation_twice_gives_one_notice():
    log = Log()
    readings(log, days=8)
    statement(log)
    statement(log, at="2024-03-04T02:00", received=t("2024-03-07T09:00"))  # billing re-sent it
    events = log.events()
    twice = [Delivery(e, e.recorded_at + c * MINUTE, copy=c) for e in events for c in (0, 1)]
    result = run(events, deliveries=twice)
    assert len(released(result)) == 1
    already = reasons_of(result, Status.BLOCKED)
    assert already and all(r == (R.ALREADY_NOTIFIED,) for r in already)
    assert run(events, deliveries=twice).digest == result.digest  # a replay is byte-identical


@pytest.mark.case("SM-AR-014")
def test_SM_AR_014_accepted_ack_is_not_delivery():
    log = Log()
    readings(log)
    statement(log)
    key = "arrears-notice:A1:2024-03"
    log.add(NotificationAck("A1", key, "accepted"), t("2024-03-06T08:01"))
    accepted = run(log)
    (ack,) = [d for d in accepted.decisions if d.kind == "notice-delivery"]
    assert ack.status == Status.BLOCKED and ack.reasons == (R.ACK_NOT_DELIVERY,)
    assert accepted.state.notices["A1"]["2024-03"].delivery == "accepted"
    log.add(NotificationAck("A1", key, "delivered"), t("2024-03-06T09:30"))
    delivered = run(log)
    last = [d for d in delivered.decisions if d.kind == "notice-delivery"][-1]
    assert last.status == Status.RELEASED and last.reasons == (R.DELIVERY_CONFIRMED,)
    assert not last.external and last.effect_key is None  # not a second external effect
    assert delivered.state.notices["A1"]["2024-03"].delivery == "delivered"


@pytest.mark.case("SM-AR-014")
def test_SM_AR_014_ack_for_unknown_notice_and_reordered_acks():
    log = Log()
    log.add(NotificationAck("A1", "N-A1-202403", "delivered"), t("2024-03-06T09:30"))
    log.add(NotificationAck("A1", "N-A1-202403", "accepted"), t("2024-03-06T08:01"), t("2024-03-06T09:31"))
    result = run(log)
    reasons = [d.reasons for d in result.decisions]
    assert reasons == [(R.UNKNOWN_NOTICE, R.DELIVERY_CONFIRMED), (R.UNKNOWN_NOTICE, R.ACK_NOT_DELIVERY)]
    assert all(d.status == Status.BLOCKED for d in result.decisions)
    assert result.state.facts.accounts["A1"].acks == {"N-A1-202403": "delivered"}


def test_projection_is_reusable_and_initial_is_fresh():
    projection = ArrearsProjection()
    assert projection.initial() is not projection.initial()

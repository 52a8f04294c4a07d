"""Edges of the arrears projection: bad input, unknown types, state shape, the debt rule."""

from __future__ import annotations

import msgspec
import pytest

import replay
from projections import ArrearsProjection
from projections.payloads import (
    AccountBalance,
    CalendarDay,
    MarketTick,
    PaymentReceived,
    PaymentReversed,
)

from .helpers import Log, released, run, statement, t


def test_bad_calendar_date_is_a_fault_naming_the_event_and_nothing_else_is_lost():
    log = Log()
    log.add(CalendarDay("06/03/2024", holiday=True), t("2024-02-01T00:00"))
    log.add(CalendarDay("2024-03-07", holiday=True), t("2024-02-01T00:01"))
    events = log.events()
    result = replay.run(list(replay.deliveries_of(events)), ArrearsProjection(), collect=True)
    faults = result.tables["faults"].to_dicts()
    assert len(faults) == 1 and "position 1" in faults[0]["detail"] and "'06/03/2024'" in faults[0]["detail"]
    assert list(result.state.facts.calendar) == ["2024-03-07"]
    with pytest.raises(replay.ReplayError, match="not ISO YYYY-MM-DD"):
        replay.run(list(replay.deliveries_of(events)), ArrearsProjection(), collect=False, strict=True)


def test_unknown_and_foreign_event_types_pass_through():
    log = Log()
    log.add(MarketTick("ABC", 1.5), t("2024-03-04T00:00"), stream="ticks")
    events = log.events()
    unknown = msgspec.structs.replace(events[0], type="SomethingNew", data=b"\x00raw")
    result = run([events[0], unknown])
    assert result.counts["faults"] == 0 and result.decisions == []
    assert result.state.facts.accounts == {}


def test_convergent_view_leaves_out_notice_history():
    log = Log()
    statement(log)
    state = run(log).state
    assert b"notices" not in ArrearsProjection.convergent(state)
    assert msgspec.json.decode(ArrearsProjection.convergent(state))["accounts"]["A1"]["debt_minor"] == 10_000


def test_config_is_json_for_run_metadata():
    config = ArrearsProjection().config()
    assert msgspec.json.decode(msgspec.json.encode(config))["hold_hours"] == 48.0


@pytest.mark.parametrize(
    ("paid_at", "reversed_at", "debt"),
    [
        ("2024-03-05T00:00", None, 7_000),  # after the statement: counts
        ("2024-03-03T00:00", None, 10_000),  # before it: the statement already has it
        ("2024-03-05T00:00", "2024-03-06T00:00", 10_000),  # counted, then reversed
        ("2024-03-03T00:00", "2024-03-06T00:00", 13_000),  # in the statement, reversed after it
        ("2024-03-03T00:00", "2024-03-03T12:00", 10_000),  # both before: the statement has both
    ],
)
def test_debt_rule_for_payments_and_reversals(paid_at, reversed_at, debt):
    for reversal_first in (False, True):
        log = Log()
        statement(log, at="2024-03-04T02:00")
        events = [(PaymentReceived("A1", "P1", 3_000), t(paid_at))]
        if reversed_at:
            events.append((PaymentReversed("A1", "P1"), t(reversed_at)))
        for payload, at in reversed(events) if reversal_first else events:
            log.add(payload, at, t("2024-03-07T00:00"))
        assert run(log).state.facts.accounts["A1"].debt_minor == debt


def test_reconciled_statement_beats_provisional_one_at_the_same_time():
    for order in ((True, False), (False, True)):
        log = Log()
        for provisional in order:
            log.add(AccountBalance("A1", 9_000 if provisional else 6_000, provisional=provisional),
                    t("2024-03-04T02:00"))
        balance = run(log).state.facts.accounts["A1"].balance
        assert (balance.balance_minor, balance.provisional) == (6_000, False)
    assert released(run(log)) == []  # no readings at all: nothing can be released


def test_malformed_payload_is_a_fault_and_leaves_state_untouched():
    log = Log()
    statement(log)
    events = log.events()
    broken = msgspec.structs.replace(events[0], type="MeterReading", data=b'{"meter_id": 7}', position=2)
    result = replay.run(list(replay.deliveries_of([events[0], broken])), ArrearsProjection(), collect=True)
    (fault,) = result.tables["faults"].to_dicts()
    assert fault["kind"] == "projection_error" and "position 2" in fault["detail"]
    assert result.state.facts.accounts["A1"].meters == {}

"""Delivery schedules: what each perturbation does, and what every drawn schedule guarantees."""

from __future__ import annotations

import msgspec
import pytest
from hypothesis import HealthCheck, find, given, settings
from hypothesis import strategies as st

from properties import (
    IDENTITY,
    Delay,
    DropEvent,
    Duplicate,
    Partition,
    Reorder,
    Schedule,
    SchedulePolicy,
    Skew,
    schedules,
)
from properties._strategies import search_schedules
from replay import deliveries_of

from .scripted import SECOND, START, script_log

LOG = script_log(*[None] * 8)  # positions 1..8, one a minute; streams/sources alternate


def order(deliveries) -> list[int]:
    return [d.event.position for d in deliveries]


def test_identity_is_deliveries_of():
    deliveries, drops = IDENTITY.apply(LOG)
    assert deliveries == list(deliveries_of(LOG)) and drops == []


def test_delay_moves_one_event_later_and_labels_it():
    deliveries, _ = Schedule((Delay(2, 150 * SECOND),)).apply(LOG)
    assert order(deliveries) == [1, 3, 4, 2, 5, 6, 7, 8]
    moved = deliveries[3]
    assert (moved.perturbation, moved.delay_ns, moved.at) == ("delayed", 150 * SECOND,
                                                              LOG[1].recorded_at + 150 * SECOND)


def test_duplicate_adds_a_copy_with_its_own_delay():
    deliveries, _ = Schedule((Duplicate(3, 90 * SECOND), Duplicate(3, 0))).apply(LOG)
    copies = [(d.copy, d.perturbation, d.delay_ns) for d in deliveries if d.event.position == 3]
    assert copies == [(0, "none", 0), (1, "duplicate", 0), (2, "duplicate", 90 * SECOND)]


def test_drop_removes_every_copy_and_is_recorded():
    deliveries, drops = Schedule((Duplicate(4, 0), DropEvent(4))).apply(LOG)
    assert 4 not in order(deliveries)
    assert [(d.position, d.reason) for d in drops] == [(4, "dropped")]


def test_reorder_delivers_after_the_event_k_places_later():
    deliveries, _ = Schedule((Reorder(2, 3),)).apply(LOG)
    assert order(deliveries) == [1, 3, 4, 5, 2, 6, 7, 8]
    assert deliveries[4].perturbation == "reordered"


def test_partition_heals_at_window_end_or_loses_traffic():
    window = Partition("src-1", START + 60 * SECOND, 180 * SECOND)  # silences positions 2 and 4
    deliveries, drops = Schedule((window,)).apply(LOG)
    assert order(deliveries) == [1, 3, 2, 4, 5, 6, 7, 8] and not drops
    assert {d.event.position: d.perturbation for d in deliveries}[2] == "partitioned"
    lost = msgspec.structs.replace(window, heal=False)
    deliveries, drops = Schedule((lost,)).apply(LOG)
    assert order(deliveries) == [1, 3, 5, 6, 7, 8]
    assert [(d.position, d.reason) for d in drops] == [(2, "partition"), (4, "partition")]


def test_partition_matches_a_stream_prefix():
    deliveries, _ = Schedule((Partition("script-", START, 30 * SECOND, heal=False),)).apply(LOG)
    assert order(deliveries) == [2, 3, 4, 5, 6, 7, 8]


def test_skew_shifts_source_time_of_one_source_only():
    deliveries, _ = Schedule((Skew("src-0", -600 * SECOND),)).apply(LOG)
    by_pos = {d.event.position: d for d in deliveries}
    assert by_pos[1].event.occurred_at == LOG[0].occurred_at - 600 * SECOND
    assert by_pos[1].perturbation == "skewed" and by_pos[1].at == LOG[0].recorded_at
    assert by_pos[2].event.occurred_at == LOG[1].occurred_at and by_pos[2].perturbation == "none"


def test_json_round_trip_and_errors():
    s = Schedule((Delay(1, 5), Duplicate(2, 0), DropEvent(3), Reorder(4, 2),
                  Partition("src-0", START, 10, heal=False), Skew("src-1", -3)))
    assert Schedule.from_json(s.to_json()) == s
    assert b'"type":"partition"' in s.to_json()
    with pytest.raises(msgspec.ValidationError):
        Schedule.from_json(b'{"perturbations": [{"type": "teleport"}]}')
    with pytest.raises(ValueError, match="position 99"):
        Schedule((Delay(99, 1),)).apply(LOG)


def test_strategy_shrinks_towards_identity():
    assert find(schedules(LOG), lambda s: True) == IDENTITY
    smallest = find(schedules(LOG), lambda s: any(isinstance(p, Delay) for p in s.perturbations))
    assert smallest == Schedule((Delay(LOG[0].position, 1),))


def test_policy_rejects_unknown_kinds_and_negative_bounds():
    with pytest.raises(ValueError, match="teleport"):
        SchedulePolicy(kinds=("delay", "teleport"))
    with pytest.raises(ValueError, match="max_delay_ns"):
        SchedulePolicy(max_delay_ns=-1)


@pytest.mark.parametrize("strategy", [schedules, search_schedules])
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_every_drawn_schedule_keeps_its_guarantees(strategy, data):
    hour = 3600 * SECOND
    policy = SchedulePolicy(max_delay_ns=hour, max_duplicate_ns=hour, max_partition_ns=hour,
                            max_skew_ns=hour, max_reorder=3)
    s = data.draw(strategy(LOG, policy))
    assert Schedule.from_json(s.to_json()) == s
    deliveries, drops = s.apply(LOG)
    assert [d.at for d in deliveries] == sorted(d.at for d in deliveries)
    delivered = {d.event.position for d in deliveries}
    assert delivered.isdisjoint(d.position for d in drops)
    assert delivered | {d.position for d in drops} == {e.position for e in LOG}
    firsts = [d.event.position for d in deliveries if d.copy == 0]
    assert sorted(firsts) == sorted(delivered)  # exactly one copy 0 per delivered event
    # A copy is late by at most its own delay, then a partition, then the log's span (reorder).
    assert all(0 <= d.delay_ns <= 2 * hour + 8 * 60 * SECOND for d in deliveries)
    for p in s.perturbations:
        if isinstance(p, Delay):
            assert 1 <= p.ns <= policy.max_delay_ns
        if isinstance(p, Reorder):
            assert 1 <= p.by <= policy.max_reorder


def test_lossless_kinds_never_drop():
    policy = SchedulePolicy(kinds=("delay", "reorder", "duplicate"))

    @settings(max_examples=100, deadline=None)
    @given(schedules(LOG, policy))
    def check(s):
        assert s.apply(LOG)[1] == []

    check()

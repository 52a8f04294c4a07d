"""Virtual time and real-time pacing."""

from __future__ import annotations

import pytest
from replay_helpers import SECOND, LedgerProjection, payment_log

from replay import Pacing, ReplayError, VirtualClock, deliveries_of, run
from replay.core._pacing import Pacer


def test_virtual_clock_moves_forward_and_refuses_to_go_back():
    clock = VirtualClock(100)
    assert clock.advance_to(100) == 100
    assert clock.advance_to(250) == 250
    with pytest.raises(ReplayError, match="cannot go backwards: now is 250 ns, asked for 200"):
        clock.advance_to(200)
    assert clock.now == 250


class FakeTime:
    """Real time as the pacer sees it: advances only when the pacer sleeps."""

    def __init__(self) -> None:
        self.ns = 0
        self.sleeps: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.ns += int(seconds * 1e9)

    def monotonic_ns(self) -> int:
        return self.ns


def test_pace_replays_at_k_times_real_speed():
    fake = FakeTime()
    events = payment_log(n=5, step=SECOND, reversals=False)
    run(list(deliveries_of(events)), LedgerProjection(hold_ns=SECOND // 2), pacing=Pacing(2.0, sleep=fake.sleep, monotonic_ns=fake.monotonic_ns))
    # 4 s of virtual time between the first and last delivery, plus the last release
    # 0.5 s later, at twice real speed: 2.25 s of real waiting in all
    assert sum(fake.sleeps) == pytest.approx(2.25)
    assert all(s == pytest.approx(0.25) for s in fake.sleeps)


def test_pacer_does_not_sleep_when_behind():
    fake = FakeTime()
    pacer = Pacer(1.0, fake.sleep, fake.monotonic_ns)
    pacer.wait(0)
    fake.ns += 5 * SECOND  # the replay fell behind by 5 s of real time
    pacer.wait(2 * SECOND)
    assert fake.sleeps == []


def test_pace_must_be_positive():
    with pytest.raises(ReplayError, match="pace must be > 0"):
        Pacer(0)

"""Open-loop arrivals and the sender: seeded schedules, shapes, coordinated omission."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest

from load import (
    ArrivalError,
    Arrivals,
    Phase,
    Plan,
    bursts,
    constant,
    drive,
    parse_duration,
    percentiles,
    poisson,
    ramp,
    schedule,
    summarize,
)

NS = 1_000_000_000


def test_a_seeded_schedule_is_repeatable_and_the_seed_matters():
    plan = Arrivals((Phase("warm", "poisson", 50, 10), Phase("hot", "bursts", 20, 30,
                                                               burst_rate=200, burst_every=10,
                                                               burst_seconds=3, poisson=True)))
    a, pa = schedule(plan, 7)
    b, pb = schedule(plan, 7)
    c, _ = schedule(plan, 8)
    assert np.array_equal(a, b) and np.array_equal(pa, pb)
    assert not np.array_equal(a[: min(len(a), len(c))], c[: min(len(a), len(c))])
    assert np.all(np.diff(a) >= 0)
    assert set(pa[a < 10 * NS]) == {0} and set(pa[a >= 10 * NS]) == {1}


def test_constant_arrivals_are_evenly_spaced_at_the_rate():
    offsets, _ = schedule(constant(100, 5), 0)
    assert len(offsets) == 500
    assert np.allclose(np.diff(offsets), NS / 100, atol=2)


def test_poisson_arrivals_average_the_rate_with_exponential_gaps():
    offsets, _ = schedule(poisson(200, 60), 3)
    assert abs(len(offsets) - 12_000) < 4 * np.sqrt(12_000)
    gaps = np.diff(offsets) / NS
    assert abs(gaps.std() / gaps.mean() - 1.0) < 0.05  # exponential: std == mean


def test_bursts_lay_a_higher_rate_over_the_base_in_their_windows():
    arrivals = bursts(50, 500, 120, every=60, burst_seconds=30, first=20)
    offsets, _ = schedule(arrivals, 1)
    seconds = offsets / NS
    assert arrivals.bursts() == [(20, 50), (80, 110)]
    in_burst = ((seconds >= 20) & (seconds < 50)) | ((seconds >= 80) & (seconds < 110))
    assert in_burst.sum() == 2 * 30 * 500
    assert (~in_burst).sum() == 60 * 50


def test_a_ramp_rises_linearly_and_sends_its_integral():
    offsets, _ = schedule(ramp(10, 110, 20), 0)
    assert len(offsets) == pytest.approx((10 + 110) / 2 * 20, abs=1)
    seconds = offsets / NS
    assert (seconds < 1).sum() == pytest.approx(12, abs=2)
    assert (seconds >= 19).sum() == pytest.approx(107, abs=2)


def test_bad_arrivals_and_durations_are_refused_with_the_reason():
    with pytest.raises(ArrivalError, match="shape"):
        schedule(Arrivals((Phase("x", "sawtooth", 10, 1),)), 0)
    with pytest.raises(ArrivalError, match="to_rate"):
        schedule(Arrivals((Phase("x", "ramp", 10, 1),)), 0)
    with pytest.raises(ArrivalError, match=">= 0"):
        schedule(constant(-1, 5), 0)
    assert parse_duration("1h30m") == 5400 and parse_duration("90s") == 90
    assert parse_duration("250ms") == pytest.approx(0.25) and parse_duration(12) == 12
    with pytest.raises(ArrivalError, match="10x"):
        parse_duration("10x")


def test_percentiles_of_nothing_are_none_not_zero():
    assert percentiles(np.array([np.nan]))["p99"] is None
    q = percentiles(np.arange(1, 1001, dtype=float))
    assert q["p50"] == pytest.approx(500.5) and q["max"] == 1000 and q["count"] == 1000


class StallingTarget:
    """Answers at once, except that it stalls ``stall_s`` once, at ``stall_at`` s into the run."""

    def __init__(self, stall_at: float, stall_s: float) -> None:
        self.stall_at, self.stall_s = stall_at, stall_s
        self.t0: float | None = None
        self.stalled = False
        self.batches = 0

    async def send(self, batch):
        self.t0 = self.t0 or time.monotonic()
        self.batches += 1
        if not self.stalled and time.monotonic() - self.t0 >= self.stall_at:
            self.stalled = True
            await asyncio.sleep(self.stall_s)
        return [True] * len(batch)


def _message(seq: int, phase: str, progress: float):
    from projections.payloads.trading import MarketTick

    return "ticks", MarketTick(symbol="X", price=100.0 + seq)


def test_latency_counts_from_the_intended_time_so_a_stall_is_not_hidden():
    """Coordinated omission: a 1 s stall shows on every message due during it.

    With max_inflight=1 the sender cannot send while the target stalls (a
    closed-loop client would simply send less); each message waits and its
    latency counts from when it should have gone, not from when it went.
    """
    target = StallingTarget(stall_at=1.0, stall_s=1.0)
    plan = Plan(constant(200, 3), _message, "co", max_inflight=1)
    samples = asyncio.run(drive(target, plan))
    assert samples.sent == samples.acked == 600  # open loop: nothing skipped
    from_intended = (samples.acked_ns - samples.intended_ns) / 1e6
    from_sent = (samples.acked_ns - samples.sent_ns) / 1e6
    due_in_stall = ((samples.intended_ns - samples.intended_ns[0]) / NS > 1.1) & \
        ((samples.intended_ns - samples.intended_ns[0]) / NS < 1.9)
    # every message due while the target stalled waited for it, from its intended time
    assert from_intended[due_in_stall].min() > 80
    assert np.percentile(from_intended, 99) > 800
    # measured from the actual send, the stall hides behind one batch
    assert (from_sent > 500).sum() < (from_intended > 500).sum() / 10
    assert summarize(samples)["all"]["max"] > 900

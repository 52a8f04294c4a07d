"""Open-loop arrivals: when each message is meant to be sent, drawn from a seed.

An ``Arrivals`` is a list of phases; each phase has a shape (``constant``,
``poisson``, ``ramp``) and a rate, and bursts can be laid over a base rate.
``schedule(arrivals, seed)`` returns the intended send offsets (ns from the
start of the run) and each message's phase, as NumPy arrays: the same
arguments always give the same arrays. The sender never waits for an answer
before the next intended time (open loop), so a stalled target shows up as
latency instead of as fewer messages.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from eventstore import UnbrokenError

SHAPES = ("constant", "poisson", "ramp", "bursts")
NS = 1_000_000_000


class ArrivalError(UnbrokenError, ValueError):
    """An arrival description that cannot be scheduled (a negative rate, an unknown shape...)."""


@dataclass(frozen=True, slots=True)
class Phase:
    """``seconds`` of arrivals at ``rate`` per second, shaped by ``shape``.

    ``ramp`` goes linearly from ``rate`` to ``to_rate``. ``bursts`` sends at
    ``rate`` with bursts of ``burst_rate`` lasting ``burst_seconds`` every
    ``burst_every`` seconds (the first starts at ``burst_at``); bursts and base
    are Poisson when ``poisson`` is set, evenly spaced otherwise.
    """

    name: str
    shape: str
    rate: float
    seconds: float
    to_rate: float | None = None
    burst_rate: float = 0.0
    burst_every: float = 60.0
    burst_seconds: float = 10.0
    burst_at: float = 10.0
    poisson: bool = False

    def check(self) -> None:
        """Raise ``ArrivalError`` naming what is wrong with this phase."""
        if self.shape not in SHAPES:
            raise ArrivalError(f"phase {self.name!r}: shape {self.shape!r} is not one of "
                               f"{', '.join(SHAPES)}")
        if self.rate < 0 or self.seconds < 0 or (self.to_rate or 0) < 0 or self.burst_rate < 0:
            raise ArrivalError(f"phase {self.name!r}: rates and durations must be >= 0")
        if self.shape == "ramp" and self.to_rate is None:
            raise ArrivalError(f"phase {self.name!r}: a ramp needs to_rate")
        if self.shape == "bursts" and (self.burst_every <= 0 or self.burst_seconds <= 0):
            raise ArrivalError(f"phase {self.name!r}: bursts need burst_every and "
                               "burst_seconds > 0")


@dataclass(frozen=True, slots=True)
class Arrivals:
    """Phases one after another; ``seconds`` is their total."""

    phases: tuple[Phase, ...] = field(default_factory=tuple)

    @property
    def seconds(self) -> float:
        """The run's length in seconds."""
        return sum(p.seconds for p in self.phases)

    def bursts(self) -> list[tuple[float, float]]:
        """``(start_s, end_s)`` of every burst, from the start of the run."""
        out, t0 = [], 0.0
        for p in self.phases:
            if p.shape == "bursts" and p.burst_rate > 0:
                s = p.burst_at
                while s < p.seconds:
                    out.append((t0 + s, t0 + min(s + p.burst_seconds, p.seconds)))
                    s += p.burst_every
            t0 += p.seconds
        return out


def constant(rate: float, seconds: float, name: str = "steady") -> Arrivals:
    """Evenly spaced arrivals at ``rate`` per second."""
    return Arrivals((Phase(name, "constant", rate, seconds),))


def poisson(rate: float, seconds: float, name: str = "steady") -> Arrivals:
    """Poisson arrivals (exponential gaps) averaging ``rate`` per second."""
    return Arrivals((Phase(name, "poisson", rate, seconds),))


def ramp(rate: float, to_rate: float, seconds: float, name: str = "ramp") -> Arrivals:
    """Arrivals whose rate rises (or falls) linearly from ``rate`` to ``to_rate``."""
    return Arrivals((Phase(name, "ramp", rate, seconds, to_rate=to_rate),))


def bursts(base: float, burst_rate: float, seconds: float, *, every: float = 60.0,
           burst_seconds: float = 10.0, first: float = 10.0, poisson: bool = False,
           name: str = "bursts") -> Arrivals:
    """``base`` per second with bursts of ``burst_rate`` per second (BN-002's shape)."""
    return Arrivals((Phase(name, "bursts", base, seconds, burst_rate=burst_rate,
                           burst_every=every, burst_seconds=burst_seconds, burst_at=first,
                           poisson=poisson),))


def schedule(arrivals: Arrivals, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``(offsets_ns, phase_index)``: every intended send time, sorted, and its phase.

    Deterministic for the same ``arrivals`` and ``seed``.
    """
    rng = np.random.default_rng(seed)
    offsets, phases, t0 = [], [], 0.0
    for index, phase in enumerate(arrivals.phases):
        phase.check()
        times = _phase_times(phase, rng) + t0
        offsets.append(times)
        phases.append(np.full(len(times), index, dtype=np.int16))
        t0 += phase.seconds
    if not offsets:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int16)
    seconds = np.concatenate(offsets)
    order = np.argsort(seconds, kind="stable")
    return (seconds[order] * NS).astype(np.int64), np.concatenate(phases)[order]


def _phase_times(p: Phase, rng: np.random.Generator) -> np.ndarray:
    if p.shape == "constant":
        return _even(p.rate, 0.0, p.seconds)
    if p.shape == "poisson":
        return _poisson(p.rate, 0.0, p.seconds, rng)
    if p.shape == "ramp":
        return _ramp(p.rate, p.to_rate or 0.0, p.seconds)
    parts, cursor = [], 0.0
    for start, end in Arrivals((p,)).bursts():
        parts.append(_part(p.rate, cursor, start, p.poisson, rng))
        parts.append(_part(p.burst_rate, start, end, p.poisson, rng))
        cursor = end
    parts.append(_part(p.rate, cursor, p.seconds, p.poisson, rng))
    return np.concatenate(parts) if parts else np.zeros(0)


def _part(rate: float, start: float, end: float, random: bool, rng: np.random.Generator) -> np.ndarray:
    return _poisson(rate, start, end, rng) if random else _even(rate, start, end)


def _even(rate: float, start: float, end: float) -> np.ndarray:
    n = int(np.floor((end - start) * rate + 1e-9))
    return start + np.arange(n, dtype=np.float64) / rate if n > 0 else np.zeros(0)


def _poisson(rate: float, start: float, end: float, rng: np.random.Generator) -> np.ndarray:
    if rate <= 0 or end <= start:
        return np.zeros(0)
    expected = (end - start) * rate
    gaps = rng.exponential(1.0 / rate, int(expected + 10 * np.sqrt(expected) + 20))
    times = start + np.cumsum(gaps)
    while times[-1] < end:  # pragma: no cover - the margin above is ~10 sigma
        more = start + times[-1] + np.cumsum(rng.exponential(1.0 / rate, 1000)) - start
        times = np.concatenate([times, more])
    return times[times < end]


def _ramp(rate: float, to_rate: float, seconds: float) -> np.ndarray:
    """Times where the cumulative count of a linear rate crosses each integer."""
    if seconds <= 0:
        return np.zeros(0)
    slope = (to_rate - rate) / seconds
    total = rate * seconds + slope * seconds * seconds / 2
    k = np.arange(int(np.floor(total + 1e-9)), dtype=np.float64)
    if abs(slope) < 1e-12:
        return k / rate if rate > 0 else np.zeros(0)
    # rate*t + slope*t^2/2 = k  ->  t = (-rate + sqrt(rate^2 + 2*slope*k)) / slope
    return (-rate + np.sqrt(np.maximum(rate * rate + 2 * slope * k, 0.0))) / slope


def parse_duration(text: str | float | int) -> float:
    """Seconds from ``90``, ``"90s"``, ``"10m"``, ``"2h"`` or ``"1h30m"``; ArrivalError if not."""
    if isinstance(text, int | float):
        value = float(text)
    else:
        value, number, s = 0.0, "", str(text).strip().lower()
        units = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
        i = 0
        try:
            while i < len(s):
                if s[i].isdigit() or s[i] == ".":
                    number += s[i]
                    i += 1
                    continue
                unit = "ms" if s.startswith("ms", i) else s[i]
                value += float(number) * units[unit]
                number, i = "", i + len(unit)
            if number:
                value += float(number)
        except (KeyError, ValueError):
            raise ArrivalError(f"duration {text!r}: use seconds or e.g. 90s, 10m, 1h30m") from None
    if value < 0:
        raise ArrivalError(f"duration {text!r} is negative")
    return value

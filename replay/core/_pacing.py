"""Pacing a replay against real time, and reporting progress. Neither touches virtual time."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from replay._errors import ReplayError


@dataclass(frozen=True)
class Pacing:
    """Replay at ``speed`` times real speed; ``sleep``/``monotonic_ns`` are injectable for tests."""

    speed: float
    sleep: Callable[[float], None] | None = None
    monotonic_ns: Callable[[], int] | None = None

    def pacer(self) -> Pacer:
        """A fresh ``Pacer`` for one run."""
        return Pacer(self.speed, self.sleep, self.monotonic_ns)


class Pacer:
    """Holds a replay back to ``pace`` times real speed.

    Virtual time ``t`` may be processed once ``(t - t0) / pace`` real ns have
    passed since the first paced item. ``sleep`` and ``monotonic_ns`` are
    injectable so tests check the pacing without waiting.
    """

    def __init__(
        self,
        pace: float,
        sleep: Callable[[float], None] | None = None,
        monotonic_ns: Callable[[], int] | None = None,
    ) -> None:
        if not pace > 0:
            raise ReplayError(f"pace must be > 0 (times real speed), got {pace!r}")
        self.pace = float(pace)
        self._sleep = sleep or time.sleep
        self._monotonic_ns = monotonic_ns or time.monotonic_ns
        self._t0: int | None = None
        self._wall0 = 0

    def wait(self, t: int) -> None:
        """Sleep until virtual time ``t`` is due in real time."""
        if self._t0 is None:
            self._t0, self._wall0 = t, self._monotonic_ns()
            return
        target = self._wall0 + (t - self._t0) / self.pace
        ahead = target - self._monotonic_ns()
        if ahead > 0:
            self._sleep(ahead / 1e9)


class Progress:
    """Calls ``report(done, total)`` every ``every`` deliveries and once at the end."""

    def __init__(
        self, report: Callable[[int, int | None], None], total: int | None, every: int = 50_000
    ) -> None:
        self.report = report
        self.total = total
        self.every = every

    def update(self, done: int, final: bool = False) -> None:
        """Report ``done`` deliveries so far."""
        if final or done % self.every == 0:
            self.report(done, self.total)

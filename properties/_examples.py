"""Running one example: a log and a schedule through the replay runner, as a ``Trace``."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import replay
from eventstore import RecordedEvent

from ._invariants import Invariant, Verdict
from ._schedules import IDENTITY, Schedule
from ._trace import Trace, events_frame


class LogContext:
    """One base log with what every example over it shares: the unperturbed run, its events table."""

    def __init__(
        self,
        events: Sequence[RecordedEvent],
        factory: Callable[[], Any],
        source: str = "",
        seed: int | None = None,
    ) -> None:
        self.events = list(events)
        self.factory = factory
        self.source = source
        self.seed = seed
        self.frame = events_frame(self.events)
        self.arrow = self.frame.to_arrow()  # what DuckDB scans; shared by every trace of the log
        self._base: replay.RunResult | None = None

    @property
    def base(self) -> replay.RunResult:
        """The unperturbed replay of this log (made once, on first use)."""
        if self._base is None:
            deliveries, drops = IDENTITY.apply(self.events)
            self._base = replay.run(
                deliveries, self.factory(), drops=drops, run_id="base", source=self.source,
                seed=self.seed,
            )
        return self._base

    def remember_base(self, result: replay.RunResult) -> None:
        """Use ``result`` (an unperturbed run of this log) as ``base`` unless there is one."""
        if self._base is None:
            self._base = result

    def trace(self, schedule: Schedule, run_id: str, trace_dir: Any = None) -> Trace:
        """Replay this log under ``schedule``; raises what the runner raises (``ReplayError``)."""
        deliveries, drops = schedule.apply(self.events)
        projection = self.factory()
        result = replay.run(
            deliveries, projection, drops=drops, run_id=run_id, source=self.source,
            seed=self.seed, schedule_desc=schedule.to_json().decode(), trace_dir=trace_dir,
        )
        return Trace(run_id, self.events, schedule, deliveries, drops, result, projection,
                     self._base_run, log_events=self.arrow)

    def _base_run(self) -> replay.RunResult:
        return self.base


def failed_run(invariants: Sequence[Invariant], error: BaseException) -> dict[str, Verdict]:
    """Verdicts for an example whose replay itself failed: unknown, with the error."""
    why = f"replay failed: {type(error).__name__}: {error}"
    return {inv.id: Verdict(None, inv.id, [], why) for inv in invariants}

"""What a check found: per invariant held / broken / unknown, and shrunk counterexamples."""

from __future__ import annotations

from typing import Any

import msgspec

from ._schedules import Schedule
from ._strategies import SchedulePolicy
from ._timeline import render_rows

HELD, BROKEN, UNKNOWN = "held", "broken", "unknown"


class Counterexample(msgspec.Struct, kw_only=True):
    """The smallest example found that breaks one invariant, and where it was saved."""

    invariant: str
    description: str
    events: int
    original_events: int
    schedule: Schedule
    rows: list[dict[str, Any]]
    timeline: str
    seed: int | None
    directory: str | None = None
    shrink_seconds: float = 0.0
    shrink_complete: bool = True
    tried: int = 0

    def render(self) -> str:
        """The counterexample in words: size, schedule, violating rows, timeline, how to replay."""
        moves = self.schedule.describe() or ["none: the unperturbed log breaks it"]
        lines = [
            f"  counterexample for {self.invariant}: {self.events} event(s) "
            f"(from {self.original_events}), {len(self.schedule.perturbations)} perturbation(s); "
            f"shrunk in {self.shrink_seconds:.1f} s over {self.tried} replays"
            + ("" if self.shrink_complete else " (time budget ran out: may shrink further)"),
            "  schedule:",
            *[f"    - {m}" for m in moves],
            "  violating rows:",
            *[f"    {r}" for r in render_rows(self.rows)],
            "  timeline:",
            *[f"    {line}" for line in self.timeline.splitlines()],
        ]
        if self.directory:
            lines.append(f"  saved: {self.directory}   replay: unbroken check --replay {self.directory}")
        return "\n".join(lines)


class InvariantResult(msgspec.Struct, kw_only=True):
    """One invariant over the whole search."""

    id: str
    description: str
    status: str  # held | broken | unknown
    examples: int  # examples on which it was judged (valid or not)
    broken: int
    unknown: int
    seconds: float
    error: str | None = None
    counterexample: Counterexample | None = None


class CheckReport(msgspec.Struct, kw_only=True):
    """The outcome of ``check``: ``ok`` when every invariant held."""

    projection: str
    source: str
    events: int
    examples: int
    seed: int
    seconds: float
    policy: SchedulePolicy
    results: list[InvariantResult]

    @property
    def ok(self) -> bool:
        """True when every invariant held on every example."""
        return all(r.status == HELD for r in self.results)

    @property
    def broken(self) -> list[InvariantResult]:
        """The invariants that broke, in registry order."""
        return [r for r in self.results if r.status == BROKEN]

    def exit_code(self) -> int:
        """1 if any invariant broke, 3 if none broke but some could not be judged, else 0."""
        if self.broken:
            return 1
        return 3 if any(r.status == UNKNOWN for r in self.results) else 0

    def render(self) -> str:
        """The report as text: a table of invariants, then each counterexample."""
        rate = self.examples / self.seconds if self.seconds else 0.0
        lines = [
            f"unbroken check: {self.projection} on {self.source or 'a log'} ({self.events} events), "
            f"{self.examples} examples, seed {self.seed}, {self.seconds:.1f} s ({rate:.0f}/s)",
            "",
            f"{'invariant':<10} {'status':<8} {'examples':>8} {'broken':>7} {'unknown':>8} {'time':>8}",
        ]
        for r in self.results:
            lines.append(f"{r.id:<10} {r.status.upper() if r.status == BROKEN else r.status:<8} "
                         f"{r.examples:>8} {r.broken:>7} {r.unknown:>8} {r.seconds:>7.2f}s")
        for r in self.results:
            if r.status == UNKNOWN or (r.error and r.status != HELD):
                lines += ["", f"{r.id} could not be judged: {r.error}"]
            if r.counterexample is not None:
                lines += ["", f"{r.id} BROKEN: {r.description}", r.counterexample.render()]
        verdict = "all invariants held" if self.ok else (
            f"{len(self.broken)} invariant(s) broken" if self.broken else "some invariants unknown")
        lines += ["", verdict]
        return "\n".join(lines)

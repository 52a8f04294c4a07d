"""What a check found: per invariant held / broken / unknown, shrunk counterexamples, and
the verdicts about the runs themselves: projection faults and determinism.

A check fails (``exit_code()`` 1) when an invariant broke, when the projection
faulted in any run it judged (``FAULTS``, unless faults are allowed) or when
two unperturbed replays differ (``nondeterministic``); it cannot tell (3)
when an invariant could not be judged; it passes (0) only when none of these.
"""

from __future__ import annotations

from typing import Any

import msgspec

from ._schedules import Schedule
from ._strategies import SchedulePolicy
from ._timeline import render_rows

HELD, BROKEN, UNKNOWN, SKIPPED = "held", "broken", "unknown", "skipped"
DETERMINISTIC, NONDETERMINISTIC, UNCHECKED = "deterministic", "nondeterministic", "unchecked"


class RunProblems(msgspec.Struct, kw_only=True):
    """What went wrong in the runs themselves, over every run the check judged.

    ``faults`` counts steps the projection failed (it raised, returned None,
    had no ``on_timer``: rows of the ``faults`` table), in ``faulty_runs`` runs;
    ``aborted_runs`` counts runs the runner could not finish (their verdicts
    are unknown). ``first_fault`` / ``first_abort`` name the first of each:
    the run, its schedule, the event position and the exception.
    """

    runs: int = 0
    faults: int = 0
    faulty_runs: int = 0
    first_fault: str | None = None
    aborted_runs: int = 0
    first_abort: str | None = None

    def faulted(self, run_id: str, schedule: Schedule, result: Any) -> None:
        """Count ``result``'s projection faults."""
        self.runs += 1
        if result.projection_faults:
            self.faults += result.projection_faults
            self.faulty_runs += 1
            if self.first_fault is None:
                self.first_fault = f"run {run_id} ({_schedule(schedule)}): {result.first_fault}"

    def aborted(self, run_id: str, schedule: Schedule, error: BaseException) -> None:
        """Count a run that ended with ``error``."""
        self.runs += 1
        self.aborted_runs += 1
        if self.first_abort is None:
            self.first_abort = f"run {run_id} ({_schedule(schedule)}): {type(error).__name__}: {error}"


class Determinism(msgspec.Struct, kw_only=True):
    """Two unperturbed replays of the log: deterministic, nondeterministic, unknown or unchecked."""

    status: str = UNCHECKED
    detail: str = ""


def _schedule(schedule: Schedule) -> str:
    if not schedule.perturbations:
        return "the unperturbed log"
    moves = schedule.describe()
    return "; ".join(moves[:2]) + (f"; +{len(moves) - 2} more" if len(moves) > 2 else "")


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
    base_held: bool | None = None  # did the whole log, unperturbed, keep this invariant?

    def render(self) -> str:
        """The counterexample in words: size, schedule, violating rows, timeline, how to replay."""
        moves = self.schedule.describe() or [self._unperturbed()]
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
            from ._counterexample import replay_command

            lines.append(f"  saved: {self.directory}   replay: {replay_command(self.directory)}")
        return "\n".join(lines)


    def _unperturbed(self) -> str:
        if self.events >= self.original_events:
            return "none: the unperturbed log breaks it"
        if self.base_held:
            return (f"none: these {self.events} of the log's {self.original_events} events, "
                    "delivered unperturbed, break it; the whole log held unperturbed, so it is "
                    "the events left out that matter")
        return f"none: these {self.events} of the log's {self.original_events} events, unperturbed, break it"


class InvariantResult(msgspec.Struct, kw_only=True):
    """One invariant over the whole search.

    ``examples`` counts the examples it was judged on; ``skipped`` those it
    did not apply to (INV-5 on a run that lost an event), never counted as
    held; ``first_broken_example`` is the 1-based index of the first example
    that broke it (1 is the unperturbed log) and ``first_broken_seconds``
    when, from the start of the check, that verdict was known.
    """

    id: str
    description: str
    status: str  # held | broken | unknown | skipped (never judged, never unknown)
    examples: int  # examples on which it was judged (valid or not)
    broken: int
    unknown: int
    seconds: float
    error: str | None = None
    counterexample: Counterexample | None = None
    skipped: int = 0
    first_broken_example: int | None = None
    first_broken_seconds: float | None = None


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
    problems: RunProblems = msgspec.field(default_factory=RunProblems)
    allow_faults: bool = False
    determinism: Determinism | None = None
    domain: str | None = None
    skipped: list[str] = []  # built-in or directory invariants of another domain, not run

    @property
    def ok(self) -> bool:
        """True when every invariant held on every example, with no fault and no nondeterminism.

        Faults reported under ``allow_faults`` do not make it False.
        """
        return self.exit_code() == 0

    @property
    def broken(self) -> list[InvariantResult]:
        """The invariants that broke, in registry order."""
        return [r for r in self.results if r.status == BROKEN]

    @property
    def faulted(self) -> bool:
        """True when the projection failed on some step of some run the check judged."""
        return self.problems.faults > 0

    @property
    def nondeterministic(self) -> bool:
        """True when two unperturbed replays of the log gave different traces."""
        return self.determinism is not None and self.determinism.status == NONDETERMINISTIC

    def failures(self) -> list[str]:
        """The failing verdicts, most basic first: NONDETERMINISTIC, FAULTS, BROKEN."""
        out = []
        if self.nondeterministic:
            out.append("NONDETERMINISTIC")
        if self.faulted and not self.allow_faults:
            out.append("FAULTS")
        if self.broken:
            out.append("BROKEN")
        return out

    def exit_code(self) -> int:
        """1 if an invariant broke, the projection faulted (unless allowed) or is nondeterministic;
        else 3 if some invariant could not be judged; else 0."""
        if self.failures():
            return 1
        return 3 if any(r.status == UNKNOWN for r in self.results) or not self.results else 0

    def fault_message(self) -> str | None:
        """One line naming the faults and the first of them, or None without faults."""
        p = self.problems
        if not p.faults:
            return None
        return (f"the projection failed on {p.faults} step(s) in {p.faulty_runs} of {p.runs} "
                f"run(s) (each step undone, a row of the faults table); first: {p.first_fault}")

    def render(self) -> str:
        """The report as text: a table of invariants and run verdicts, then each counterexample."""
        rate = self.examples / self.seconds if self.seconds else 0.0
        base = " (the unperturbed log and schedules drawn by Hypothesis)" if self.events else ""
        lines = [
            f"unbroken check: {self.projection} on {self.source or 'a log'} ({self.events} events), "
            f"{self.examples} examples{base}, seed {self.seed}, {self.seconds:.1f} s ({rate:.0f}/s)",
            self._ran(),
            "",
            f"{'invariant':<10} {'status':<8} {'examples':>8} {'skipped':>8} {'broken':>7} "
            f"{'unknown':>8} {'time':>8}  first broken",
        ]
        for r in self.results:
            first = ""
            if r.first_broken_example is not None:
                first = f"  example {r.first_broken_example} at {r.first_broken_seconds or 0.0:.2f} s"
            lines.append(f"{r.id:<10} {r.status.upper() if r.status == BROKEN else r.status:<8} "
                         f"{r.examples:>8} {r.skipped:>8} {r.broken:>7} {r.unknown:>8} "
                         f"{r.seconds:>7.2f}s{first}")
        lines += ["", *self._run_verdicts()]
        for r in self.results:
            if r.status == UNKNOWN or (r.error and r.status != HELD):
                lines += ["", f"{r.id} could not be judged: {r.error}"]
            if r.counterexample is not None:
                lines += ["", f"{r.id} BROKEN: {r.description}", r.counterexample.render()]
        lines += ["", self.verdict()]
        return "\n".join(lines)

    def verdict(self) -> str:
        """The last line of the report: what the check concludes."""
        parts = []
        if self.nondeterministic:
            parts.append("NONDETERMINISTIC: two unperturbed replays of the log differ, so no "
                         "verdict can be trusted")
        if self.faulted and not self.allow_faults:
            parts.append(f"FAULTS: {self.fault_message()}")
        if self.broken:
            parts.append(f"{len(self.broken)} invariant(s) broken")
        if parts:
            return "\n".join(parts)
        if not self.results:
            return "no invariant applies to this projection: nothing was judged"
        if any(r.status == UNKNOWN for r in self.results):
            return "some invariants unknown"
        if self.faulted:
            return f"all invariants held, with FAULTS (allowed): {self.fault_message()}"
        return "all invariants held"

    def _ran(self) -> str:
        domain = f" for domain {self.domain!r}" if self.domain else ""
        ran = f"invariants run{domain}: {', '.join(r.id for r in self.results) or 'none'}"
        if self.skipped:
            ran += f"; not applicable, not run: {', '.join(self.skipped)}"
        return ran

    def _run_verdicts(self) -> list[str]:
        p = self.problems
        det = self.determinism
        if det is None or det.status == UNCHECKED:
            det_line = "unchecked (logs drawn by Hypothesis)"
        elif det.status == NONDETERMINISTIC:
            det_line = f"NONDETERMINISTIC: {det.detail}"
        elif det.status == UNKNOWN:
            det_line = f"unknown: {det.detail}"
        else:
            det_line = "held: two unperturbed replays gave the same trace"
        if not p.faults:
            fault_line = f"none in {p.runs} run(s)"
        else:
            label = "allowed" if self.allow_faults else "FAULTS"
            fault_line = f"{label}: {p.faults} fault(s) in {p.faulty_runs} of {p.runs} run(s)"
        lines = [f"{'determinism':<12} {det_line}", f"{'faults':<12} {fault_line}"]
        if p.faults:
            lines.append(f"{'':<12} first: {p.first_fault}")
        if p.aborted_runs:
            lines.append(f"{'aborted':<12} {p.aborted_runs} run(s) could not finish; first: {p.first_abort}")
        return lines

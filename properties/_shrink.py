"""Shrinking one broken invariant's example: fewer perturbations, milder ones, fewer events.

Hypothesis finds failing schedules; this module minimises each broken
invariant separately, from the example that broke it, with that invariant
alone as the test. Hypothesis cannot do this itself: its shrinker minimises
one failure per test function from its own choice sequence, and cannot drop
events of a fixed production log. First the log is cut to one subject (the
account, device or symbol a violating row or a perturbation names, with the
events that name no subject, such as the calendar); then three passes,
repeated until none helps:

1. drop perturbations (all single removals tried as one batch);
2. make each remaining perturbation milder (amounts towards zero, heal=True);
3. cut the log (ddmin over events; perturbations of removed events go too).

Cutting an event the example had lost (dropped, or silenced by a partition
that never healed) gives the same deliveries as losing it, and would hide the
loss: the counterexample would read "the unperturbed log breaks it". So at
the end such an event is put back, lost explicitly (a ``DropEvent``), when the
example still breaks with it.

Candidates of a pass are replayed and checked as one batch, so DuckDB runs one
query per pass round, not one per candidate. The result is deterministic.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import msgspec

from eventstore import RecordedEvent

from ._evaluate import Evaluator
from ._examples import LogContext
from ._invariants import Invariant, Verdict
from ._schedules import DropEvent, Partition, Schedule, Skew
from ._targets import subject_of
from ._trace import Trace

Candidate = tuple[list[RecordedEvent], Schedule]


@dataclass
class Shrunk:
    """The smallest failing example found, with the trace and verdict that show it."""

    events: list[RecordedEvent]
    schedule: Schedule
    trace: Trace
    verdict: Verdict
    steps: int  # candidates accepted
    tried: int  # candidates replayed
    seconds: float
    complete: bool  # False when the time budget ran out first


class Shrinker:
    """Minimises examples that break ``invariant`` for projections from ``factory``."""

    def __init__(self, factory: Callable[[], Any], invariant: Invariant, evaluator: Evaluator,
                 *, budget_s: float = 30.0, source: str = "", seed: int | None = None) -> None:
        self.factory = factory
        self.invariant = invariant
        self.evaluator = evaluator
        self.budget_s = budget_s
        self.source = source
        self.seed = seed
        self.tried = 0
        self.steps = 0
        self._deadline = 0.0
        self._contexts: dict[tuple[int, ...], LogContext] = {}

    def shrink(self, events: Sequence[RecordedEvent], schedule: Schedule) -> Shrunk:
        """The smallest (events, schedule) that still breaks the invariant, and its trace."""
        start = time.perf_counter()
        self._deadline = start + self.budget_s
        best: Candidate = (list(events), schedule)
        found = self._first_failing([best])
        assert found is not None, "shrink() needs an example that breaks the invariant"
        trace, verdict = found[1], found[2]
        result = self._one_subject(best, verdict)
        if result is not None:
            best, trace, verdict = result
        progress = True
        while progress and not self._out_of_time():
            progress = False
            for step in (self._fewer_perturbations, self._milder, self._fewer_events):
                result = step(best)
                if result is not None:
                    best, trace, verdict = result
                    progress = True
        result = self._explicit_losses(list(events), schedule, best)
        if result is not None:
            best, trace, verdict = result
        return Shrunk(best[0], best[1], trace, verdict, self.steps, self.tried,
                      time.perf_counter() - start, not self._out_of_time())

    # -- passes ---------------------------------------------------------------
    def _one_subject(self, best: Candidate, verdict: Verdict) -> tuple | None:
        """The log cut to one subject named by the violation or a perturbation (with the shared events)."""
        events, schedule = best
        keys = [_key(e) for e in events]
        named = [str(r["subject"]) for r in verdict.rows if r.get("subject") is not None]
        at = {e.position: k for e, k in zip(events, keys, strict=True)}
        named += [at[p.position] for p in schedule.perturbations
                  if hasattr(p, "position") and p.position in at]
        shared = {k for e, k in zip(events, keys, strict=True) if subject_of(e) is None}
        tries = []
        for subject in dict.fromkeys(named):
            for keep in ({subject}, {subject} | shared):
                kept = [e for e, k in zip(events, keys, strict=True) if k in keep]
                if 0 < len(kept) < len(events):
                    tries.append((kept, _prune(schedule, kept)))
        return _accepted(self._first_failing(tries)) if tries else None

    def _explicit_losses(self, events: list[RecordedEvent], schedule: Schedule,
                         best: Candidate) -> tuple | None:
        """Put back, as explicit drops, events the example lost that the cut log left out."""
        kept, shrunk = best
        present = {e.position for e in kept}
        subjects = {_key(e) for e in kept}
        try:
            _, drops = schedule.apply(events)
        except ValueError:
            return None
        lost = [d.event for d in drops if d.position not in present and _key(d.event) in subjects]
        if not lost or self._out_of_time():
            return None
        tries = []
        for chosen in ([lost[-1]], lost[-3:]):
            positions = {e.position for e in chosen}
            log = [e for e in events if e.position in present or e.position in positions]
            extra = tuple(DropEvent(e.position) for e in chosen)
            tries.append((log, Schedule(shrunk.perturbations + extra)))
        return _accepted(self._first_failing(tries))

    def _fewer_perturbations(self, best: Candidate) -> tuple | None:
        events, schedule = best
        found = None
        while schedule.perturbations and not self._out_of_time():
            n = len(schedule.perturbations)
            hit = self._first_failing([(events, schedule.without(i)) for i in range(n)])
            if hit is None:
                break
            (events, schedule), found = hit[0], hit
        return _accepted(found)

    def _milder(self, best: Candidate) -> tuple | None:
        events, schedule = best
        found = None
        for i in range(len(schedule.perturbations)):
            if self._out_of_time():
                break
            tries = []
            for milder in _milder_versions(schedule.perturbations[i]):
                ps = list(schedule.perturbations)
                ps[i] = milder
                tries.append((events, Schedule(tuple(ps))))
            hit = self._first_failing(tries) if tries else None  # mildest first wins
            if hit is not None:
                (events, schedule), found = hit[0], hit
        return _accepted(found)

    def _fewer_events(self, best: Candidate) -> tuple | None:
        events, schedule = best
        found = None
        size = max(len(events) // 2, 1)
        while size >= 1 and len(events) > 1 and not self._out_of_time():
            chunks = [(events[:i] + events[i + size :], i) for i in range(0, len(events), size)]
            hit = self._first_failing([(kept, _prune(schedule, kept)) for kept, _ in chunks])
            if hit is None:
                size //= 2
                continue
            (events, schedule), found = hit[0], hit
            size = min(size, max(len(events) // 2, 1))
        return _accepted(found)

    # -- running candidates --------------------------------------------------
    def _first_failing(self, candidates: list[Candidate]) -> tuple | None:
        """The first candidate (in order) that breaks the invariant, with trace and verdict."""
        traces = []
        for n, (events, schedule) in enumerate(candidates):
            try:
                traces.append((n, self._context(events).trace(schedule, f"shrink-{self.tried}")))
            except Exception:  # a candidate the runner refuses is simply not a counterexample
                pass
            self.tried += 1
        if not traces:
            return None
        verdicts = self.evaluator.evaluate([t for _, t in traces], only=[self.invariant])
        for (n, trace), verdict in zip(traces, verdicts, strict=True):
            v = verdict[self.invariant.id]
            if v.valid is False:
                self.steps += 1
                return candidates[n], trace, v
        return None

    def _context(self, events: list[RecordedEvent]) -> LogContext:
        key = tuple(e.position for e in events)
        ctx = self._contexts.get(key)
        if ctx is None:
            if len(self._contexts) > 64:  # bounded: only recent logs are revisited
                self._contexts.clear()
            ctx = self._contexts[key] = LogContext(events, self.factory, self.source, self.seed)
        return ctx

    def _out_of_time(self) -> bool:
        return time.perf_counter() > self._deadline


def _key(event: RecordedEvent) -> str:
    """The subject an event belongs to for cutting the log: its payload's subject, else its stream."""
    return subject_of(event) or event.stream


def _accepted(found: tuple | None) -> tuple | None:
    return None if found is None else (found[0], found[1], found[2])


def _prune(schedule: Schedule, kept: list[RecordedEvent]) -> Schedule:
    """``schedule`` without the perturbations of events that are no longer in the log."""
    positions = {e.position for e in kept}
    return Schedule(tuple(
        p for p in schedule.perturbations
        if isinstance(p, (Partition, Skew)) or p.position in positions
    ))


def _milder_versions(p: Any) -> Iterator[Any]:
    """Milder variants of one perturbation, mildest first."""
    if isinstance(p, Partition) and not p.heal:
        yield msgspec.structs.replace(p, heal=True)
    field = "by" if hasattr(p, "by") else ("ns" if hasattr(p, "ns") else None)
    if field is None:
        return
    amount = getattr(p, field)
    for smaller in _towards_zero(amount, low=1 if field == "by" else 0):
        yield msgspec.structs.replace(p, **{field: smaller})


def _towards_zero(amount: int, low: int) -> list[int]:
    """Candidate amounts between ``low`` and ``amount`` (exclusive), smallest first."""
    sign = -1 if amount < 0 else 1
    size = abs(amount)
    out = [low]
    step = size // 2
    while step >= 1 and len(out) < 24:
        out.append(size - step)
        step //= 2
    out = sorted({v for v in out if low <= v < size})
    return [sign * v for v in out]

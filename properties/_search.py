"""``check``: a Hypothesis search over delivery schedules, then a shrunk counterexample per broken invariant.

1. Build the projection from its spec and resolve the invariants.
2. Replay the log unperturbed once (the base for INV-5) and judge it too.
3. Let Hypothesis draw ``examples`` schedules (seeded; no database, so a
   run depends only on its arguments). Each is replayed in virtual time; the
   traces are judged in batches (one DuckDB query per invariant per batch).
4. For each invariant that broke, shrink the first example that broke it
   (``_shrink.py``): fewer perturbations, milder ones, fewer events.
5. Save each shrunk example as a counterexample directory when ``trace_dir``
   is given, and return a ``CheckReport``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, Phase, Verbosity, given, settings
from hypothesis import seed as hypothesis_seed
from hypothesis import strategies as st

from eventstore import RecordedEvent

from ._counterexample import COUNTEREXAMPLE_RUN, save
from ._evaluate import Evaluator
from ._examples import LogContext, failed_run
from ._invariants import Invariant, Verdict, resolve
from ._report import BROKEN, HELD, UNKNOWN, CheckReport, Counterexample, InvariantResult
from ._schedules import IDENTITY, Schedule
from ._shrink import Shrinker
from ._spec import factory_of
from ._strategies import DEFAULT_POLICY, SchedulePolicy, search_schedules
from ._timeline import render_timeline

# Examples judged together. DuckDB's cost per query is mostly fixed at these sizes, so a
# bigger batch is cheaper per example (100-event runs: 1.2 ms at 64, 0.5 ms at 256);
# BATCH_ROWS caps the deliveries a batch holds, keeping long logs' batches (and memory) bounded.
DEFAULT_BATCH = 256
BATCH_ROWS = 65_536


class _Tally:
    """Per invariant: how often judged, broken, unknown; the first failing example and error."""

    def __init__(self, invariants: Sequence[Invariant]) -> None:
        self.judged = dict.fromkeys((i.id for i in invariants), 0)
        self.broken = dict(self.judged)
        self.unknown = dict(self.judged)
        self.first: dict[str, tuple[list[RecordedEvent], Schedule]] = {}
        self.errors: dict[str, str] = {}

    def add(self, events: list[RecordedEvent], schedule: Schedule, verdicts: dict[str, Verdict]) -> None:
        for inv_id, v in verdicts.items():
            if v.valid is None:
                self.unknown[inv_id] += 1
                self.errors.setdefault(inv_id, v.error or "unknown")
                continue
            self.judged[inv_id] += 1
            if v.valid is False:
                self.broken[inv_id] += 1
                self._keep(inv_id, events, schedule)

    def _keep(self, inv_id: str, events: list[RecordedEvent], schedule: Schedule) -> None:
        old = self.first.get(inv_id)
        if old is None or (len(schedule.perturbations), len(events)) < (
            len(old[1].perturbations), len(old[0])
        ):
            self.first[inv_id] = (events, schedule)  # the simplest failure: a head start


class _Search:
    """The moving parts of one ``check`` call."""

    def __init__(self, factory, invariants, *, seed, source, batch, policy):
        self.factory = factory
        self.invariants = invariants
        self.evaluator = Evaluator(invariants)
        self.tally = _Tally(invariants)
        self.seed, self.source, self.batch, self.policy = seed, source, batch, policy
        self.pending: list[tuple[LogContext, Schedule, Any]] = []
        self.pending_rows = 0
        self.examples = 0
        self._contexts: dict[int, LogContext] = {}

    def context(self, events: list[RecordedEvent]) -> LogContext:
        key = id(events)
        ctx = self._contexts.get(key)
        if ctx is None or ctx.events_source is not events:
            if len(self._contexts) > 256:
                self._contexts.clear()
            ctx = self._contexts[key] = LogContext(events, self.factory, self.source, self.seed)
            ctx.events_source = events  # type: ignore[attr-defined]  # guards against id reuse
        return ctx

    def example(self, events: list[RecordedEvent], schedule: Schedule) -> None:
        """Replay one example now; judge it with its batch."""
        ctx = self.context(events)
        self.examples += 1
        try:
            trace = ctx.trace(schedule, f"e{self.examples}")
        except Exception as e:  # the runner refused the run: every verdict unknown, search goes on
            self.tally.add(ctx.events, schedule, failed_run(self.invariants, e))
            return
        self.pending.append((ctx, schedule, trace))
        self.pending_rows += trace.result.counts["deliveries"]
        if len(self.pending) >= self.batch or self.pending_rows >= BATCH_ROWS:
            self.flush()

    def flush(self) -> None:
        if not self.pending:
            return
        verdicts = self.evaluator.evaluate([t for _, _, t in self.pending])
        for (ctx, schedule, _), v in zip(self.pending, verdicts, strict=True):
            self.tally.add(ctx.events, schedule, v)
        self.pending.clear()
        self.pending_rows = 0


def check(
    log: Sequence[RecordedEvent] | None,
    projection: Any,
    *,
    config: dict[str, Any] | None = None,
    examples: int = 200,
    seed: int = 0,
    invariants: Any = None,
    policy: SchedulePolicy = DEFAULT_POLICY,
    logs: st.SearchStrategy[list[RecordedEvent]] | None = None,
    trace_dir: str | Path | None = None,
    shrink_budget_s: float = 30.0,
    batch: int = DEFAULT_BATCH,
    source: str = "",
) -> CheckReport:
    """Search delivery schedules of ``log`` (or of logs drawn from ``logs``) for broken invariants.

    ``projection`` is a registered name, ``FILE.py:ATTR``, a factory or an
    instance (see ``factory_of``); ``config`` goes to it. ``invariants`` is
    None (the built-ins), a directory of ``.sql`` files (added to the
    built-ins) or a list of ``Invariant`` / built-in ids / directories.
    Guarantees: the same arguments give the same report (Hypothesis is
    seeded and has no database); a crashing checker or a refused run makes
    verdicts unknown and never stops the search; each broken invariant gets
    a counterexample shrunk for that invariant alone, saved under
    ``trace_dir/<invariant id>`` when ``trace_dir`` is given. ``batch``
    bounds the examples judged per query (a batch also ends at
    ``BATCH_ROWS`` deliveries); it changes speed, never verdicts.
    """
    if log is None and logs is None:
        raise ValueError("check() needs a log or a logs= strategy to draw logs from")
    started = time.perf_counter()
    spec = projection if isinstance(projection, str) else None
    factory = factory_of(projection, config)
    invs = resolve(invariants, domain_of(factory()))
    search = _Search(factory, invs, seed=seed, source=source, batch=max(1, batch), policy=policy)
    try:
        base_log = list(log) if log is not None else None
        if base_log is not None:
            search.example(base_log, IDENTITY)  # the unperturbed log must hold too
        _explore(search, base_log, logs, examples, seed, policy)
        search.flush()
        results = _results(search, invs, spec, config, trace_dir, shrink_budget_s)
    finally:
        search.evaluator.close()
    probe = factory()
    return CheckReport(
        projection=str(getattr(probe, "name", spec or "projection")), source=source,
        events=len(base_log) if base_log is not None else 0, examples=search.examples, seed=seed,
        seconds=time.perf_counter() - started, policy=policy, results=results,
    )


def domain_of(projection: Any) -> str | None:
    """The rule family a projection follows: its ``domain``, else its ``name``."""
    domain = getattr(projection, "domain", None) or getattr(projection, "name", None)
    return str(domain) if domain else None


def _explore(search: _Search, base_log, logs, examples: int, seed: int, policy) -> None:
    if examples <= 0:
        return
    if base_log is not None:
        strategy = search_schedules(base_log, policy).map(lambda s: (base_log, s))
    else:
        strategy = logs.flatmap(lambda ev: st.tuples(st.just(ev), search_schedules(ev, policy)))  # type: ignore[union-attr]

    @settings(max_examples=examples, database=None, deadline=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck), verbosity=Verbosity.quiet, print_blob=False)
    @hypothesis_seed(seed)
    @given(strategy)
    def explore(drawn: tuple[list[RecordedEvent], Schedule]) -> None:
        search.example(*drawn)

    explore()


def _results(search: _Search, invs, spec, config, trace_dir, budget) -> list[InvariantResult]:
    out = []
    t = search.tally
    for inv in invs:
        status = BROKEN if t.broken[inv.id] else (HELD if t.judged[inv.id] else UNKNOWN)
        example = None
        if status == BROKEN:
            example = _counterexample(search, inv, *t.first[inv.id], spec, config, trace_dir, budget)
        out.append(InvariantResult(
            id=inv.id, description=inv.description, status=status, examples=t.judged[inv.id],
            broken=t.broken[inv.id], unknown=t.unknown[inv.id],
            seconds=search.evaluator.seconds.get(inv.id, 0.0), error=t.errors.get(inv.id),
            counterexample=example,
        ))
    return out


def _counterexample(search: _Search, inv: Invariant, events, schedule, spec, config,
                    trace_dir, budget) -> Counterexample:
    shrinker = Shrinker(search.factory, inv, search.evaluator, budget_s=budget,
                        source=search.source, seed=search.seed)
    shrunk = shrinker.shrink(events, schedule)
    trace, verdict = shrunk.trace, shrunk.verdict
    directory = None
    if trace_dir is not None:
        directory = Path(trace_dir) / _safe(inv.id)
        directory.mkdir(parents=True, exist_ok=True)
        ctx = LogContext(shrunk.events, search.factory, search.source, search.seed)
        trace = ctx.trace(shrunk.schedule, COUNTEREXAMPLE_RUN, trace_dir=directory)
        verdict = search.evaluator.evaluate([trace], only=[inv])[0][inv.id]
        name = spec or str(getattr(search.factory(), "name", ""))
        save(directory, trace, inv, verdict, name, dict(config or {}), search.seed)
    return Counterexample(
        invariant=inv.id, description=inv.description, events=len(shrunk.events),
        original_events=len(events), schedule=shrunk.schedule, rows=verdict.rows,
        timeline=render_timeline(trace, verdict.rows, inv.id), seed=search.seed,
        directory=str(directory) if directory else None, shrink_seconds=shrunk.seconds,
        shrink_complete=shrunk.complete, tried=shrunk.tried,
    )


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)

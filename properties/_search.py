"""``check``: a Hypothesis search over delivery schedules, then a shrunk counterexample per broken invariant.

1. Build the projection from its spec and resolve the invariants (only
   those that apply to the projection's domain, unless named by id).
2. Replay the log unperturbed twice and compare (``replay.check_determinism``):
   a projection that reads the wall clock or unseeded randomness is reported
   ``nondeterministic``, a failing verdict of its own.
3. Replay the log unperturbed once more as the first example (the base for
   INV-5) and judge it too; it counts as one of the ``examples``.
4. Aim (``_targets.py``): from the log and the unperturbed run's trace, build
   the pools perturbations are drawn from, and run the single perturbations
   the trace points at (at most half of the examples left).
5. Let Hypothesis draw the other schedules (seeded; no
   database, so a run depends only on its arguments). Each is replayed in
   virtual time; the traces are judged in batches (one DuckDB query per
   invariant per batch). Every run's projection faults (steps where the
   projection raised or returned None) are counted: a check with faults
   fails with a ``FAULTS`` verdict unless ``allow_faults``.
6. For each invariant that broke, shrink the simplest example that broke it
   (``_shrink.py``): one subject's events, fewer perturbations, milder ones,
   fewer events; an event the example lost stays in the log as a drop.
7. Save each shrunk example as a counterexample directory when ``trace_dir``
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
from replay.core import EventTimeout, watching

from ._counterexample import COUNTEREXAMPLE_RUN, save
from ._evaluate import Evaluator
from ._examples import LogContext, failed_run
from ._invariants import Invariant, Verdict, builtin_invariants, load_invariants, resolve
from ._report import (
    BROKEN,
    DETERMINISTIC,
    HELD,
    NONDETERMINISTIC,
    SKIPPED,
    UNKNOWN,
    CheckReport,
    Counterexample,
    Determinism,
    InvariantResult,
    RunProblems,
)
from ._schedules import IDENTITY, Schedule
from ._shrink import Shrinker
from ._spec import factory_of
from ._strategies import DEFAULT_POLICY, SchedulePolicy, search_schedules
from ._targets import Targets
from ._timeline import render_timeline

# Examples judged together. DuckDB's cost per query is mostly fixed at these sizes, so a
# bigger batch is cheaper per example (100-event runs: 1.2 ms at 64, 0.5 ms at 256; with the
# 14 arrears invariants 512 makes a 400-example check 13% faster in CPU time than 256);
# BATCH_ROWS caps the deliveries a batch holds, keeping long logs' batches (and memory) bounded.
DEFAULT_BATCH = 512
BATCH_ROWS = 65_536


class _Tally:
    """Per invariant: how often judged, skipped, broken, unknown; the first failing example and error."""

    def __init__(self, invariants: Sequence[Invariant]) -> None:
        self.judged = dict.fromkeys((i.id for i in invariants), 0)
        self.skipped = dict(self.judged)
        self.broken = dict(self.judged)
        self.unknown = dict(self.judged)
        self.first: dict[str, tuple[list[RecordedEvent], Schedule]] = {}
        self.found: dict[str, tuple[int, float]] = {}  # first failing example: index, seconds
        self.errors: dict[str, str] = {}

    def add(self, events: list[RecordedEvent], schedule: Schedule, verdicts: dict[str, Verdict],
            index: int = 0, seconds: float = 0.0) -> None:
        for inv_id, v in verdicts.items():
            if v.valid is None:
                self.unknown[inv_id] += 1
                self.errors.setdefault(inv_id, v.error or "unknown")
                continue
            if v.skipped:
                self.skipped[inv_id] += 1
                continue
            self.judged[inv_id] += 1
            if v.valid is False:
                self.broken[inv_id] += 1
                old = self.found.get(inv_id)
                if old is None or index < old[0]:
                    self.found[inv_id] = (index, seconds)
                self._keep(inv_id, events, schedule)

    def _keep(self, inv_id: str, events: list[RecordedEvent], schedule: Schedule) -> None:
        old = self.first.get(inv_id)
        if old is None or (len(schedule.perturbations), len(events)) < (
            len(old[1].perturbations), len(old[0])
        ):
            self.first[inv_id] = (events, schedule)  # the simplest failure: a head start


class _Stop(BaseException):
    """Ends the Hypothesis loop at once (an ``Exception`` would make Hypothesis replay the example)."""


class _Search:
    """The moving parts of one ``check`` call."""

    def __init__(self, factory, invariants, *, seed, source, batch, policy, total=0, progress=None):
        self.factory = factory
        self.invariants = invariants
        self.evaluator = Evaluator(invariants)
        self.tally = _Tally(invariants)
        self.seed, self.source, self.batch, self.policy = seed, source, batch, policy
        self.pending: list[tuple[LogContext, Schedule, Any, int]] = []
        self.pending_rows = 0
        self.examples = 0
        self.total = total
        self.progress = progress
        self.problems = RunProblems()
        self.stopped: BaseException | None = None
        self.started = time.perf_counter()
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
        if self.stopped is not None:
            raise _Stop
        ctx = self.context(events)
        self.examples += 1
        run_id = f"e{self.examples}"
        try:
            trace = ctx.trace(schedule, run_id)
        except EventTimeout as e:  # the projection hangs: every further run would too
            self.stopped = e
            raise _Stop from e
        except Exception as e:  # the runner refused the run: every verdict unknown, search goes on
            self.problems.aborted(run_id, schedule, e)
            self.tally.add(ctx.events, schedule, failed_run(self.invariants, e), self.examples)
            self._report()
            return
        if not schedule.perturbations:
            ctx.remember_base(trace.result)  # INV-5's base and the search's guide
        self.problems.faulted(run_id, schedule, trace.result)
        self.pending.append((ctx, schedule, trace, self.examples))
        self.pending_rows += trace.result.counts["deliveries"]
        if len(self.pending) >= self.batch or self.pending_rows >= BATCH_ROWS:
            self.flush()
        self._report()

    def _report(self) -> None:
        if self.progress is not None:
            broken = [i for i, n in self.tally.broken.items() if n]
            self.progress(self.examples, self.total, broken, self.problems.faults)

    def flush(self) -> None:
        if not self.pending:
            return
        verdicts = self.evaluator.evaluate([t for _, _, t, _ in self.pending])
        seconds = time.perf_counter() - self.started  # when these verdicts became known
        for (ctx, schedule, _, index), v in zip(self.pending, verdicts, strict=True):
            self.tally.add(ctx.events, schedule, v, index, seconds)
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
    allow_faults: bool = False,
    event_timeout: float | None = None,
    progress: Any = None,
) -> CheckReport:
    """Search delivery schedules of ``log`` (or of logs drawn from ``logs``) for broken invariants.

    ``projection`` is a registered name, ``FILE.py:ATTR``, a factory or an
    instance (see ``factory_of``); ``config`` goes to it. ``invariants`` is
    None (the built-ins that apply to the projection's domain, see
    ``domain_of``), a directory of ``.sql`` files (added to those built-ins),
    a string of comma-separated built-in ids (``"INV-1,AR-2"``: exactly those),
    or a list of ``Invariant`` / built-in ids / directories: a list of
    directories only is added to the applicable built-ins, any other list is
    taken as given. Files of a directory whose ``-- domain:`` header names
    another domain are left out; built-ins named by id always run.

    ``examples`` is the number of runs judged, the unperturbed log's included
    (with ``logs=``, every run is drawn). Every run's projection faults are
    counted (``RunResult.projection_faults``); with any, the report's verdict
    is ``FAULTS`` and ``exit_code()`` 1, unless ``allow_faults``, which reports
    them without failing. With a ``log``, it is first replayed twice to check
    determinism; a difference is the ``nondeterministic`` verdict (exit 1).
    ``event_timeout`` (seconds) bounds each ``apply``/``on_timer`` in real
    time: a step that takes longer ends the check with ``EventTimeout``
    naming it. ``progress(done, total, broken_ids, faults)`` is called after
    every example.

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
    if isinstance(examples, bool) or not isinstance(examples, int) or examples < 1:
        raise ValueError(f"examples must be a positive integer (runs to judge), got {examples!r}")
    started = time.perf_counter()
    spec = projection if isinstance(projection, str) else None
    factory = factory_of(projection, config)
    probe = factory()
    domain = domain_of(probe)
    invs, skipped = select_invariants(invariants, domain)
    search = _Search(factory, invs, seed=seed, source=source, batch=max(1, batch), policy=policy,
                     total=examples, progress=progress)
    base_log = list(log) if log is not None else None
    determinism = None
    try:
        with watching(event_timeout):
            left, targets = examples, None
            if base_log is not None:
                determinism = _determinism(base_log, factory, source, seed)
                search.example(base_log, IDENTITY)  # the unperturbed log must hold too
                targets = Targets(base_log, _guide(search, base_log))
                left -= 1 + _aimed(search, base_log, targets, policy, (examples - 1) // 2)
            _explore(search, base_log, logs, left, seed, policy, targets)
            search.flush()
            results = _results(search, invs, spec, config, trace_dir, shrink_budget_s)
    except _Stop:
        raise search.stopped from None  # type: ignore[misc]
    finally:
        search.evaluator.close()
    return CheckReport(
        projection=str(getattr(probe, "name", spec or "projection")), source=source,
        events=len(base_log) if base_log is not None else 0, examples=search.examples, seed=seed,
        seconds=time.perf_counter() - started, policy=policy, results=results,
        problems=search.problems, allow_faults=allow_faults, determinism=determinism,
        domain=domain, skipped=skipped,
    )


def _determinism(events: list[RecordedEvent], factory, source: str, seed: int) -> Determinism:
    """Replay the unperturbed log twice: do both runs give the same trace?"""
    import replay

    deliveries, drops = IDENTITY.apply(events)
    try:
        report = replay.check_determinism(list(deliveries), factory(), drops=drops,
                                          run_id="determinism", source=source, seed=seed)
    except EventTimeout:
        raise
    except Exception as e:  # the run itself fails: unknown (the base example fails the same way)
        return Determinism(status=UNKNOWN, detail=f"replay failed: {type(e).__name__}: {e}")
    if report.ok:
        return Determinism(status=DETERMINISTIC, detail=report.describe())
    return Determinism(status=NONDETERMINISTIC, detail=report.describe())


def select_invariants(invariants: Any, domain: str | None) -> tuple[list[Invariant], list[str]]:
    """The invariants ``check`` runs for a projection of ``domain``, and the built-ins left out.

    See ``check`` for what ``invariants`` may be. Raises ``ValueError`` for an
    unknown id and ``FileNotFoundError`` for a directory that does not exist.
    """
    builtins = builtin_invariants()
    applicable = [inv for inv in builtins if inv.applies_to(domain)]
    skipped = [inv.id for inv in builtins if not inv.applies_to(domain)]
    if invariants is None:
        return applicable, skipped
    if isinstance(invariants, (str, Path)):
        text = str(invariants)
        if Path(text).is_dir():
            invariants = [text]
        else:
            invariants = [part.strip() for part in text.split(",") if part.strip()]
    items = list(invariants)
    known = {inv.id for inv in builtins}
    only_dirs = bool(items) and all(
        isinstance(i, (str, Path)) and str(i) not in known for i in items)
    out: list[Invariant] = list(applicable) if only_dirs else []
    for item in items:
        if isinstance(item, (str, Path)) and str(item) not in known:
            if not Path(item).is_dir():
                raise ValueError(f"invariant {str(item)!r} is neither a built-in id "
                                 f"({', '.join(sorted(known))}) nor a directory")
            loaded = load_invariants(item)
            out.extend(inv for inv in loaded if inv.applies_to(domain))
            skipped.extend(inv.id for inv in loaded if not inv.applies_to(domain))
        else:
            out.extend(resolve([item]))
    chosen = {inv.id for inv in out}
    resolve(out)  # refuses an id defined twice, naming both places
    return out, [i for i in dict.fromkeys(skipped) if i not in chosen]


def domain_of(projection: Any) -> str | None:
    """The rule family a projection follows: its ``domain``, else its ``name``."""
    domain = getattr(projection, "domain", None) or getattr(projection, "name", None)
    return str(domain) if domain else None


def _guide(search: _Search, base_log) -> Any:
    """The unperturbed run to aim by, or None when the runner refused it (then aim by the log alone)."""
    try:
        return search.context(base_log).base
    except EventTimeout:
        raise
    except Exception:  # the identity example already reported why; aiming needs no trace
        return None


def _aimed(search: _Search, base_log, targets: Targets, policy, budget: int) -> int:
    """Run the single perturbations the unperturbed trace points at (at most ``budget``)."""
    if policy.max_perturbations == 0:
        return 0
    chosen = targets.priority(policy)[:max(budget, 0)]
    for schedule in chosen:
        search.example(base_log, schedule)
    return len(chosen)


def _explore(search: _Search, base_log, logs, examples: int, seed: int, policy, targets=None) -> None:
    if examples <= 0:
        return
    if base_log is not None:
        strategy = search_schedules(base_log, policy, targets).map(lambda s: (base_log, s))
    else:
        strategy = logs.flatmap(lambda ev: st.tuples(st.just(ev), search_schedules(ev, policy)))  # type: ignore[union-attr]

    @settings(max_examples=examples, database=None, deadline=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck), verbosity=Verbosity.quiet, print_blob=False)
    @hypothesis_seed(seed)
    @given(strategy)
    def explore(drawn: tuple[list[RecordedEvent], Schedule]) -> None:
        if search.examples < search.total:  # Hypothesis may call once more to report; never judged
            search.example(*drawn)

    explore()


def _results(search: _Search, invs, spec, config, trace_dir, budget) -> list[InvariantResult]:
    out = []
    t = search.tally
    for inv in invs:
        status = BROKEN if t.broken[inv.id] else (HELD if t.judged[inv.id] else UNKNOWN)
        if status == UNKNOWN and t.skipped[inv.id] and not t.unknown[inv.id]:
            status = SKIPPED
        example = None
        if status == BROKEN:
            example = _counterexample(search, inv, *t.first[inv.id], spec, config, trace_dir, budget)
        index, found_s = t.found.get(inv.id, (None, None))
        out.append(InvariantResult(
            id=inv.id, description=inv.description, status=status, examples=t.judged[inv.id],
            broken=t.broken[inv.id], unknown=t.unknown[inv.id], skipped=t.skipped[inv.id],
            seconds=search.evaluator.seconds.get(inv.id, 0.0), error=t.errors.get(inv.id),
            counterexample=example, first_broken_example=index, first_broken_seconds=found_s,
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
        base_held=search.tally.found.get(inv.id, (0, 0.0))[0] != 1,
    )


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)

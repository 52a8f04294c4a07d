"""``unbroken demo``: the main job end to end, on the embedded store, in under a minute.

1. Generate a seeded, production-like arrears log (JSON Lines).
2. Import it into an embedded store (idempotent: a second demo run adds nothing).
3. Replay the store through the arrears projection in virtual time, writing a trace.
4. Summarise the decisions (by kind and status, by reason) with SQL over the trace.
5. Run a sample question over the trace: notices a late payment cancelled.
6. Property-check a small slice: Hypothesis perturbs delivery, invariants judge.

A step that fails stops the demo with its error. Progress goes to stderr;
results to stdout.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path

from eventstore import UnbrokenError
from eventstore.cli import EXIT_OK, EXIT_PROBLEM, EXIT_USAGE

from .generators import ArrearsProfile, generate_arrears

SUMMARY_SQL = (
    "SELECT kind, status, count(*) AS decisions FROM decisions GROUP BY ALL ORDER BY kind, decisions DESC"
)
REASONS_SQL = "SELECT unnest(reasons) AS reason, count(*) AS decisions FROM decisions GROUP BY 1 ORDER BY 2 DESC"
SAMPLE_SQL = (  # `at` is a keyword in DuckDB's grammar, hence the table alias
    "SELECT d.subject, strftime(to_timestamp(d.at / 1e9), '%Y-%m-%d %H:%M') AS cancelled_at, d.reasons "
    "FROM decisions d WHERE d.status = 'cancelled' AND list_contains(d.reasons, 'late_payment_cancelled') "
    "ORDER BY d.at LIMIT 5"
)


class Demo:
    """One demo run under ``args.dir``; each step records whether it ran."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.dir: Path = args.dir.resolve()
        self.log = self.dir / "arrears.jsonl"
        self.store = self.dir / "events.db"
        self.trace = self.dir / "trace"
        self.problem = False

    def step(self, n: int, title: str, body: Callable[[], None]) -> None:
        progress(f"[{n}/6] {title}")
        t0 = time.perf_counter()
        body()
        progress(f"      done in {time.perf_counter() - t0:.1f} s")

    def generate(self) -> None:
        a = self.args
        profile = ArrearsProfile(accounts=a.accounts, days=a.days, seed=a.seed)
        summary = generate_arrears(self.log, profile)
        progress(f"      seed {summary.seed}: {summary.events:,} events, {a.accounts} accounts over {a.days} days")
        progress("      " + ", ".join(f"{t} {n:,}" for t, n in summary.types.items()))
        print(f"log:    {self.log}  ({summary.events:,} events, seed {summary.seed})")

    def import_(self) -> None:
        from eventstore import open_store
        from replay import import_log

        with open_store(f"embedded://{self.store}") as store:
            # File order: positions follow the log's receive times, which the store keeps.
            report = import_log(self.log, store, batch=10_000,
                                quarantine=self.dir / "arrears.rejected.jsonl")
            streams = len({e.stream for e in store.read_all()})
            last = store.last_position()
        print(f"store:  {self.store}  ({last:,} events in {streams:,} streams; this run imported "
              f"{report.imported:,}, {report.already_present:,} already there, {report.rejected} rejected)")
        self.problem |= report.rejected > 0

    def replay(self) -> None:
        import projections
        from eventstore import open_store
        from replay import deliveries_of, run

        if self.trace.exists():
            shutil.rmtree(self.trace)  # the demo's own previous trace
        uri = f"embedded://{self.store}"
        with open_store(uri) as store:  # each event is delivered at its production receive time
            result = run(deliveries_of(store.read_all()), projections.get("arrears"), run_id="demo",
                         source=uri, trace_dir=self.trace, collect=False)
        counts = ", ".join(f"{k} {v:,}" for k, v in result.counts.items())
        print(f"trace:  {self.trace}  ({counts}; digest {result.digest[:16]})")

    def summarise(self) -> None:
        print("\ndecisions by kind and status, then by reason:")
        query(self.trace, SUMMARY_SQL)
        query(self.trace, REASONS_SQL)

    def sample(self) -> None:
        query(self.trace, SAMPLE_SQL)

    def check(self) -> None:
        import properties

        a = self.args
        small = self.dir / "check-slice.jsonl"
        generate_arrears(small, ArrearsProfile(accounts=a.check_accounts, days=a.days, seed=a.seed))
        check_dir = self.dir / "check"
        if check_dir.exists():
            shutil.rmtree(check_dir)
        report = properties.check_log(small, "arrears", examples=a.examples, seed=a.seed,
                                      trace_dir=check_dir, shrink_budget_s=10.0)
        print()
        print(f"$ unbroken check --log {small} --projection arrears --examples {a.examples} --seed {a.seed}")
        print(report.render())
        self.problem |= report.exit_code() != EXIT_OK


def query(trace: Path, sql: str) -> None:
    """Print the command and its output, exactly as ``unbroken query`` gives it."""
    from eventstore.cli import main

    print(f'\n$ unbroken query {trace} "{sql}"', flush=True)
    if main(["query", str(trace), sql]) != EXIT_OK:
        raise DemoError(f"the query failed: {sql}")


class DemoError(UnbrokenError):
    """A demo step could not finish; the message says which and why."""


def progress(message: str) -> None:
    sys.stdout.flush()  # keep results and progress in order on a shared terminal
    print(message, file=sys.stderr, flush=True)


def run_demo(args: argparse.Namespace) -> int:
    """Run the six steps; exit 1 when a line was rejected or an invariant broke, 2 for bad numbers."""
    for name in ("accounts", "days", "check_accounts", "examples"):
        if getattr(args, name) < 1:
            print(f"unbroken demo: --{name.replace('_', '-')} must be at least 1, "
                  f"got {getattr(args, name)}", file=sys.stderr)
            return EXIT_USAGE
    demo = Demo(args)
    if not demo.dir.parent.is_dir():  # --dir itself is made, never a chain of parents anywhere
        raise DemoError(f"directory {demo.dir.parent} does not exist; create it first")
    if demo.dir.exists() and not demo.dir.is_dir():
        raise DemoError(f"{demo.dir} exists and is not a directory")
    demo.dir.mkdir(exist_ok=True)
    t0 = time.perf_counter()
    demo.step(1, "generate the arrears log", demo.generate)
    demo.step(2, "import it into the embedded store", demo.import_)
    demo.step(3, "replay it through the arrears projection", demo.replay)
    demo.step(4, "decision summary (SQL over the trace)", demo.summarise)
    demo.step(5, "sample query: notices cancelled by a late payment", demo.sample)
    demo.step(6, "property check of a small slice", demo.check)
    progress(f"demo finished in {time.perf_counter() - t0:.1f} s; files under {demo.dir}")
    return EXIT_PROBLEM if demo.problem else EXIT_OK

"""Property-check benchmark: examples/s of ``properties.check`` and time to find + shrink bugs.

1. Rate. ``check`` on arrears logs of ~100 and ~1,000 events with every
   built-in invariant judged on every example (goal: >= 200 examples/s at 100
   events). In the same process, the same schedules are timed part by part -
   Hypothesis drawing, ``Schedule.apply``, ``replay.run``, building the trace
   tables of each batch, DuckDB + Python invariants - so the report says where the time goes
   and what share the runner takes (the baseline is the bare replay rate).
2. Bugs. For each flawed arrears variant in examples/: seconds to find and
   shrink it, and the size of the counterexample (goal: < 10 s, <= 5 events).

Run:  .venv/bin/python tests/bench/bench_properties.py [--quick] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import seed as hypothesis_seed

import replay
from projections.payloads import AccountBalance, MeterReading, PaymentReceived
from properties import Evaluator, LogBuilder, builtin_invariants, check, factory_of
from properties._evaluate import batch_table
from properties._examples import LogContext
from properties._logs import DAY, HOUR, MINUTE, SECOND, START
from properties._search import BATCH_ROWS, DEFAULT_BATCH
from properties._strategies import search_schedules

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
from tests.properties.logs import flaw_log  # noqa: E402

FLAWED = ROOT / "examples" / "flawed_arrears.py"
VARIANTS = ("no_send_time_recheck", "counts_duplicate_payments", "hold_ignores_late_payments")


def arrears_log(accounts: int, days: int):
    """Accounts in and out of arrears with daily readings and a payment for every other one."""
    b = LogBuilder()
    for a in range(accounts):
        acct, meter, stream = f"AC{a:06d}", f"MTR{a:06d}", f"account-{a:06d}"
        at = START + 2 * HOUR
        b.add(stream, AccountBalance(acct, 3000 + 1500 * (a % 5), due_at=at + DAY), at, at + SECOND, "billing")
        for d in range(days):
            t = START + d * DAY + 30 * MINUTE
            b.add(stream, MeterReading(meter, acct, 1000.0 + 8 * d), t, t + 4 * MINUTE, f"meter-{meter}")
        if a % 2:
            t = START + (a % 4) * DAY + 10 * HOUR
            b.add(stream, PaymentReceived(acct, f"P{a}", 4000), t, t + MINUTE, "payments")
    return b.build()


def draw_schedules(log, n: int, seed: int) -> tuple[list, float]:
    drawn = []

    @settings(max_examples=n, database=None, deadline=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @hypothesis_seed(seed)
    @given(search_schedules(log))
    def collect(s):
        drawn.append(s)

    t = time.perf_counter()
    collect()
    return drawn, time.perf_counter() - t


def breakdown(log, n: int) -> dict:
    """Seconds per example of each stage, for the same schedules the search would draw."""
    schedules, t_draw = draw_schedules(log, n, seed=1)
    factory = factory_of("arrears")
    t = time.perf_counter()
    applied = [s.apply(log) for s in schedules]
    t_apply = time.perf_counter() - t
    t = time.perf_counter()
    for deliveries, drops in applied:
        replay.run(deliveries, factory(), drops=drops, collect=False)
    t_bare = time.perf_counter() - t
    t = time.perf_counter()
    results = [replay.run(d, factory(), drops=dr, run_id=f"e{i}") for i, (d, dr) in enumerate(applied)]
    t_run = time.perf_counter() - t
    del results
    ctx = LogContext(log, factory)
    traces = [ctx.trace(s, f"e{i}") for i, s in enumerate(schedules)]
    invariants = builtin_invariants()
    needed = sorted(set().union(*(i.tables for i in invariants if i.sql)))
    t = time.perf_counter()
    for chunk in batches(traces):
        for table in needed:
            batch_table(table, chunk)
    t_tables = time.perf_counter() - t
    evaluator = Evaluator(invariants)
    t = time.perf_counter()
    for chunk in batches(traces):
        evaluator.evaluate(chunk)
    t_eval = time.perf_counter() - t
    evaluator.close()
    # "invariants" includes building the batch tables ("batch_tables" alone, measured apart).
    per = {"hypothesis_draw": t_draw, "schedule_apply": t_apply, "replay_run_collect": t_run,
           "replay_run_bare": t_bare, "batch_tables": t_tables, "invariants": t_eval}
    out = {k: round(v / len(schedules) * 1e3, 3) for k, v in per.items()}
    out["per_invariant_ms"] = {k: round(v / len(schedules) * 1e3, 3) for k, v in evaluator.seconds.items()}
    return out


def batches(traces: list) -> list[list]:
    """The traces cut into batches as ``check`` cuts them (examples and deliveries per batch)."""
    out: list[list] = [[]]
    rows = 0
    for trace in traces:
        out[-1].append(trace)
        rows += trace.result.counts["deliveries"]
        if len(out[-1]) >= DEFAULT_BATCH or rows >= BATCH_ROWS:
            out.append([])
            rows = 0
    return [b for b in out if b]


def rate(log, examples: int) -> dict:
    t, cpu = time.perf_counter(), time.process_time()
    report = check(log, "arrears", examples=examples, seed=1)
    seconds, cpu_seconds = time.perf_counter() - t, time.process_time() - cpu
    bare, t_bare = draw_schedules(log, min(examples, 200), seed=1)
    factory = factory_of("arrears")
    t, cpu = time.perf_counter(), time.process_time()
    for s in bare:
        d, dr = s.apply(log)
        replay.run(d, factory(), drops=dr, collect=False)
    bare_rate = len(bare) / (time.perf_counter() - t)
    bare_cpu_rate = len(bare) / (time.process_time() - cpu)
    # CPU-time rates too: on a shared machine they move less with other people's load.
    return {
        "events": len(log), "examples": report.examples, "seconds": round(seconds, 2),
        "examples_per_s": round(report.examples / seconds, 1),
        "bare_replay_per_s": round(bare_rate, 1),
        "share_of_bare_rate": round(report.examples / seconds / bare_rate, 3),
        "examples_per_cpu_s": round(report.examples / cpu_seconds, 1),
        "share_of_bare_cpu_rate": round(report.examples / cpu_seconds / bare_cpu_rate, 3),
        "all_held": report.ok,
    }


def find_and_shrink(examples: int) -> list[dict]:
    log = flaw_log()
    rows = []
    for name in VARIANTS:
        t = time.perf_counter()
        report = check(log, f"{FLAWED}:{name}", examples=examples, seed=0)
        seconds = time.perf_counter() - t
        broken = [r for r in report.results if r.status == "broken"]
        rows.append({
            "variant": name, "seconds": round(seconds, 2), "found": [r.id for r in broken],
            "counterexample_events": {r.id: r.counterexample.events for r in broken},
            "shrink_seconds": {r.id: round(r.counterexample.shrink_seconds, 2) for r in broken},
        })
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer examples")
    parser.add_argument("--json", type=Path, help="write the figures as JSON here")
    args = parser.parse_args()
    n = 100 if args.quick else 400
    figures = {"python": platform.python_version(), "machine": platform.machine()}
    small, large = arrears_log(10, 9), arrears_log(40, 24)
    figures["rate_100"] = rate(small, n)
    figures["rate_1000"] = rate(large, n // 4)
    figures["breakdown_100_ms_per_example"] = breakdown(small, n)
    figures["breakdown_1000_ms_per_example"] = breakdown(large, n // 4)
    figures["bugs"] = find_and_shrink(300)
    print(json.dumps(figures, indent=2))
    r100 = figures["rate_100"]["examples_per_s"]
    print(f"\n100 events: {r100} examples/s (goal >= 200); "
          f"1,000 events: {figures['rate_1000']['examples_per_s']} examples/s")
    for row in figures["bugs"]:
        ok = row["found"] and row["seconds"] < 10 and max(row["counterexample_events"].values()) <= 5
        print(f"{row['variant']}: {row['found']} in {row['seconds']} s, "
              f"events {row['counterexample_events']} -> {'ok' if ok else 'MISSED GOAL'}")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

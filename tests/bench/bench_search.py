"""Search benchmark: how soon ``check`` finds each flawed arrears variant on a 2,000-event log.

1. Bugs. A log from ``generate arrears --accounts 60 --days 30 --scenarios``
   (1,986 events). For every flawed variant in examples/flawed_arrears*.py:
   ``check`` at the default settings (200 examples, seed 0); the index and
   time of the first failing example, the shrink time and the counterexample's
   size. Goal: found within 200 examples and 10 s, shrunk to <= 5 events.
2. Holds. The correct projection over 2,000 examples of the same log.
3. Rate. Examples per second at 100 events (the log of bench_properties.py,
   400 examples, seed 1), against the properties/ package of a commit before
   this change (``--before``, taken with ``git archive``; everything else is
   the working tree), passes alternating, best of ``--passes``; wall and CPU.

Run:  .venv/bin/python tests/bench/bench_search.py [--quick] [--before REV] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tarfile
import tempfile
import time
from io import BytesIO
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

VARIANTS = {
    "flawed_arrears_more.py": ("releases_provisional", "ignores_calendar", "trusts_device_clock",
                               "latest_by_arrival", "ack_is_delivery",
                               "vulnerable_checked_at_hold_only"),
    "flawed_arrears.py": ("no_send_time_recheck", "counts_duplicate_payments",
                          "hold_ignores_late_payments"),
}

RATE = """
import sys, time
sys.path.insert(0, {pre!r}) if {pre!r} else None
sys.path.insert(1, {root!r})
from tests.bench.bench_properties import arrears_log
from properties import check
log = arrears_log(10, 9)
t, cpu = time.perf_counter(), time.process_time()
report = check(log, "arrears", examples=400, seed=1)
wall, cpu = time.perf_counter() - t, time.process_time() - cpu
print(report.examples / wall, report.examples / cpu, report.ok)
"""


def scenario_log(directory: Path, accounts: int) -> Path:
    from load import ArrearsProfile, generate_arrears

    out = directory / f"scenarios-{accounts}.jsonl"
    generate_arrears(out, ArrearsProfile(accounts=accounts, days=30, seed=0, scenarios=True))
    return out


def find(log, examples: int) -> list[dict]:
    from properties import check

    rows = []
    for file, names in VARIANTS.items():
        for name in names:
            t = time.perf_counter()
            report = check(log, f"{ROOT / 'examples' / file}:{name}", examples=examples, seed=0)
            seconds = time.perf_counter() - t
            broken = [r for r in report.results if r.status == "broken"]
            first = min(broken, key=lambda r: r.first_broken_example, default=None)
            rows.append({
                "variant": name, "found": [r.id for r in broken], "check_seconds": round(seconds, 2),
                "first_example": first.first_broken_example if first else None,
                "first_seconds": round(first.first_broken_seconds, 2) if first else None,
                "shrink_seconds": {r.id: round(r.counterexample.shrink_seconds, 2) for r in broken},
                "counterexample_events": {r.id: r.counterexample.events for r in broken},
            })
    return rows


def holds(log, examples: int) -> dict:
    from properties import check

    t = time.perf_counter()
    report = check(log, "arrears", examples=examples, seed=0)
    return {"examples": report.examples, "held": report.ok, "seconds": round(time.perf_counter() - t, 1),
            "inv5_judged": next(r.examples for r in report.results if r.id == "INV-5"),
            "inv5_skipped": next(r.skipped for r in report.results if r.id == "INV-5")}


def before_tree(rev: str, into: Path) -> Path:
    raw = subprocess.run(["git", "archive", rev, "properties"], cwd=ROOT, capture_output=True,
                         check=True).stdout
    with tarfile.open(fileobj=BytesIO(raw)) as tar:
        tar.extractall(into, filter="data")
    return into


def rate(passes: int, before: Path) -> dict:
    best = {"before": [0.0, 0.0], "after": [0.0, 0.0]}
    for _ in range(passes):
        for side, pre in (("before", str(before)), ("after", "")):
            code = RATE.format(pre=pre, root=str(ROOT))
            out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                                 text=True, check=True).stdout.split()
            best[side] = [max(best[side][0], float(out[0])), max(best[side][1], float(out[1]))]
    b, a = best["before"], best["after"]
    return {"before_per_s": round(b[0], 1), "after_per_s": round(a[0], 1),
            "before_per_cpu_s": round(b[1], 1), "after_per_cpu_s": round(a[1], 1),
            "ratio_wall": round(a[0] / b[0], 3), "ratio_cpu": round(a[1] / b[1], 3)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="300 examples for the correct one, 2 passes")
    parser.add_argument("--before", default="6378cff", help="commit whose properties/ is the baseline")
    parser.add_argument("--passes", type=int, default=5, help="alternating rate passes (best of)")
    parser.add_argument("--json", type=Path, help="write the figures as JSON here")
    args = parser.parse_args()
    import replay

    figures: dict = {"python": platform.python_version(), "machine": platform.machine()}
    with tempfile.TemporaryDirectory() as tmp:
        path = scenario_log(Path(tmp), 60)
        log = list(replay.read_log(path))
        figures["events"] = len(log)
        figures["bugs"] = find(log, 200)
        figures["correct"] = holds(log, 300 if args.quick else 2000)
        figures["rate_100"] = rate(2 if args.quick else args.passes, before_tree(args.before, Path(tmp)))
    print(json.dumps(figures, indent=2))
    for row in figures["bugs"]:
        ok = (row["found"] and row["first_example"] <= 200 and row["first_seconds"] <= 10
              and max(row["counterexample_events"].values()) <= 5)
        print(f"{row['variant']}: {row['found']} at example {row['first_example']} "
              f"({row['first_seconds']} s), events {row['counterexample_events']} "
              f"-> {'ok' if ok else 'MISSED GOAL'}")
    c, r = figures["correct"], figures["rate_100"]
    print(f"correct projection: {'held' if c['held'] else 'BROKEN'} over {c['examples']} examples")
    print(f"100 events: {r['after_per_s']}/s vs {r['before_per_s']}/s before (x{r['ratio_wall']}; "
          f"CPU x{r['ratio_cpu']})")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Projection benchmark: the arrears projection's cost per event, against same-run baselines.

Over one bulk arrears-shaped log (load.generate_bulk, read with replay.read_log,
held in memory so no I/O is timed):

  decode   decode_payload for every event: the floor any projection pays.
  apply    ArrearsProjection.apply for every event with a minimal context
           (decisions into a list, timers into a dict). Reported as events/s
           and as a ratio to ``decode``.
  replay   replay.run(collect=False) end to end with the arrears projection,
           against replay.run with a null projection (apply returns the state):
           the ratio is what the projection costs inside a real replay.
           Target: >= 300,000 events/s end to end.

Each figure is the best of 3 rounds, the measurements alternating within a round.

Run:  .venv/bin/python tests/bench/bench_projections.py [--quick] [--events N] [--json OUT]
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import replay
from eventstore.payloads import decode_payload
from load import generate_bulk
from projections import ArrearsProjection


class NullProjection:
    """Folds nothing: what replay.run costs without any projection work."""

    name = "null"
    version = "1"
    state_type = int

    def initial(self) -> int:
        return 0

    def apply(self, state, event, ctx):
        return state

    def on_timer(self, state, timer, ctx):
        return state

    def config(self) -> dict:
        return {}


class BareContext:
    """Just enough Context for apply without the runner."""

    def __init__(self) -> None:
        self.now = 0
        self.decisions: list = []
        self.timers: dict = {}

    def decide(self, decision):
        self.decisions.append(decision)
        return decision

    def schedule(self, at, key, payload=None):
        self.timers[key] = (at, payload)

    def cancel(self, key):
        self.timers.pop(key, None)


def timed(fn) -> float:
    gc.collect()
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def decode_all(events) -> None:
    for e in events:
        decode_payload(e)


def apply_all(events) -> None:
    projection, ctx = ArrearsProjection(), BareContext()
    state, apply = projection.initial(), projection.apply
    for e in events:
        ctx.now = e.recorded_at
        state = apply(state, e, ctx)


def replay_with(projection, deliveries) -> None:
    replay.run(deliveries, projection, collect=False)


def measure(events, rounds: int) -> dict[str, float]:
    deliveries = list(replay.deliveries_of(events))
    jobs = {
        "decode": lambda: decode_all(events),
        "apply": lambda: apply_all(events),
        "replay_null": lambda: replay_with(NullProjection(), deliveries),
        "replay_arrears": lambda: replay_with(ArrearsProjection(), deliveries),
    }
    best = {name: float("inf") for name in jobs}
    for r in range(rounds):
        for name, job in jobs.items():
            best[name] = min(best[name], timed(job))
        print(f"  round {r + 1}/{rounds} done", file=sys.stderr)
    return {name: len(events) / seconds for name, seconds in best.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="200,000 events instead of 1,000,000")
    parser.add_argument("--events", type=int, default=None, help="events in the log")
    parser.add_argument("--seed", type=int, default=0, help="seed of the bulk log (printed with results)")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args(argv)
    n = args.events or (200_000 if args.quick else 1_000_000)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bulk.jsonl"
        generate_bulk(path, n, seed=args.seed)
        events = list(replay.read_log(path))
    rates = measure(events, rounds=3)
    result = {
        "events": n, "seed": args.seed, "python": platform.python_version(),
        "rates_per_s": {k: round(v) for k, v in rates.items()},
        "apply_vs_decode": round(rates["apply"] / rates["decode"], 3),
        "replay_arrears_vs_null": round(rates["replay_arrears"] / rates["replay_null"], 3),
        "target_replay_per_s": 300_000,
    }
    for name, rate in result["rates_per_s"].items():
        print(f"{name:>15}: {rate:>10,} events/s")
    print(f"apply / decode: {result['apply_vs_decode']}   "
          f"replay arrears / replay null: {result['replay_arrears_vs_null']}   (seed {args.seed}, {n:,} events)")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

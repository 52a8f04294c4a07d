"""The BN-001/BN-002 workload: a seeded writer of BACnet events, and a measured server.

``python -m adapters.bacnet.workload write --store URI --objects 1000 --rate 100 --seconds 10``
appends definitions of every object, then events at ``rate`` per second (90% value
updates, 8% definitions, 2% deletes; objects 40% analog input, 30% analog value,
20% binary input, 10% multi-state value), optionally with bursts
(``--burst-rate 500 --burst-at 5 --burst-seconds 30``), and writes the expected
final value of every live object to ``--expect FILE`` (JSON).

``python -m adapters.bacnet.workload serve --store URI --address HOST:PORT --seconds S``
runs the event server for S seconds (or until its stop file appears) and prints
one JSON line: append-to-served lag percentiles, events, objects and resident
memory (current and peak). It imports no replay machinery.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import time
from pathlib import Path
from typing import Any

from eventstore import NewEvent, open_store
from projections.payloads.bacnet import (
    BacnetObjectDefinition,
    BacnetObjectDelete,
    BacnetValueUpdate,
)

MIX = (("analog-input", 0.4), ("analog-value", 0.3), ("binary-input", 0.2),
       ("multi-state-value", 0.1))
DEVICE = 1


def objects_of(count: int) -> list[tuple[str, int]]:
    """``count`` objects in the BN-001 proportions, instances 1.. per type."""
    out: list[tuple[str, int]] = []
    for object_type, share in MIX:
        out += [(object_type, i) for i in range(1, int(round(count * share)) + 1)]
    return out[:count]


def value_for(object_type: str, rng: random.Random) -> Any:
    """A plausible value for the object type."""
    if object_type.startswith("analog"):
        return round(rng.uniform(15.0, 30.0), 2)
    if object_type.startswith("binary"):
        return rng.random() < 0.5
    return rng.randint(1, 4)


def definition(object_type: str, instance: int) -> BacnetObjectDefinition:
    """The definition of one workload object."""
    analog = object_type.startswith("analog")
    return BacnetObjectDefinition(
        device_id=DEVICE, object_type=object_type, instance=instance,
        name=f"{object_type}-{instance}", units="degrees-celsius" if analog else None,
        cov_increment=0.1 if analog else None,
        state_texts=["off", "heat", "cool", "auto"] if object_type.startswith("multi") else [])


class Writer:
    """The seeded event mix and what the store must show at the end."""

    def __init__(self, count: int, seed: int) -> None:
        self.rng = random.Random(seed)
        self.objects = objects_of(count)
        self.alive: dict[tuple[str, int], Any] = {}
        self.written = 0

    def initial(self) -> list[Any]:
        """Every object defined, with a first value."""
        out: list[Any] = []
        for object_type, instance in self.objects:
            value = value_for(object_type, self.rng)
            out += [definition(object_type, instance),
                    BacnetValueUpdate(device_id=DEVICE, object_type=object_type,
                                      instance=instance, value=value)]
            self.alive[(object_type, instance)] = value
        return out

    def next(self) -> Any:
        """One event of the mix."""
        object_type, instance = key = self.rng.choice(self.objects)
        draw = self.rng.random()
        if draw < 0.02 and key in self.alive:
            del self.alive[key]
            return BacnetObjectDelete(device_id=DEVICE, object_type=object_type,
                                      instance=instance)
        if draw < 0.10 or key not in self.alive:
            self.alive.setdefault(key, None)
            return definition(object_type, instance)
        value = value_for(object_type, self.rng)
        self.alive[key] = value
        return BacnetValueUpdate(device_id=DEVICE, object_type=object_type, instance=instance,
                                 value=value, status_flags=[False, False, False, False])


def write(args: argparse.Namespace) -> int:
    """Append the workload at the given rate(s); print a JSON summary."""
    writer = Writer(args.objects, args.seed)
    store = open_store(args.store)
    initial = writer.initial()  # always drawn: the seeded sequence after it stays the same
    for i in range(0, 0 if args.skip_initial else len(initial), 1000):
        store.append("bacnet", [NewEvent.of(p) for p in initial[i:i + 1000]])
    start = time.monotonic()
    tick = 0.01
    sent, behind = 0, 0.0
    while (elapsed := time.monotonic() - start) < args.seconds:
        in_burst = args.burst_rate and args.burst_at <= elapsed < args.burst_at + args.burst_seconds
        rate = args.burst_rate if in_burst else args.rate
        due = int(elapsed * rate) if not args.burst_rate else None
        if due is None:  # piecewise: integrate the rate
            base = min(elapsed, args.burst_at) * args.rate
            burst = max(0.0, min(elapsed, args.burst_at + args.burst_seconds) - args.burst_at)
            after = max(0.0, elapsed - args.burst_at - args.burst_seconds) * args.rate
            due = int(base + burst * args.burst_rate + after)
        batch = [NewEvent.of(writer.next()) for _ in range(max(0, due - sent))]
        if batch:
            store.append("bacnet", batch)
            sent += len(batch)
        behind = max(behind, due - sent)
        time.sleep(tick)
    store.close()
    expect = {f"{t},{i}": v for (t, i), v in writer.alive.items()}
    if args.expect:
        Path(args.expect).write_text(json.dumps(expect))
    print(json.dumps({"sent": sent, "initial": len(initial), "alive": len(expect),
                      "seconds": round(time.monotonic() - start, 2)}), flush=True)
    return 0


def rss_now_mb(field: str = "VmRSS") -> float:
    """This process's resident memory (MB): now (VmRSS) or its peak (VmHWM).

    Not ``getrusage``: its ``ru_maxrss`` keeps the peak of the process that forked
    us across exec, so a server started from a big test process would report that.
    """
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return 0.0


def serve(args: argparse.Namespace) -> int:
    """Run the event server for a while and report what it measured."""
    from projections import BacnetRegistryConfig

    from .server import EventServer

    async def main() -> dict[str, Any]:
        config = BacnetRegistryConfig(history_limit=args.history)
        server = EventServer(args.store, address=args.address, device_id=args.device_id,
                             config=config, record_lags=True)
        await server.start()
        print(json.dumps({"ready": True, "objects": len(server.state.objects)}), flush=True)
        samples = []
        deadline = time.monotonic() + args.seconds
        stop = Path(args.stop_file) if args.stop_file else None
        while time.monotonic() < deadline and not (stop and stop.exists()):
            await asyncio.sleep(0.5)
            samples.append(rss_now_mb())
        lags = sorted(server.stats.lags_ns)
        result = {
            "events": server.stats.events, "objects": server.stats.objects,
            "position": server.position, "requests": sum(server.stats.requests.values()),
            "lag_p50_ms": _pct(lags, 0.5) / 1e6, "lag_p99_ms": _pct(lags, 0.99) / 1e6,
            "lag_max_ms": (lags[-1] / 1e6) if lags else 0.0,
            "rss_mb": rss_now_mb(),
            "rss_peak_mb": rss_now_mb("VmHWM"),
            "rss_first_mb": samples[0] if samples else 0.0,
            "history_entries": server.state.history_entries,
            "replay_imported": "replay" in sys.modules or "duckdb" in sys.modules,
        }
        await server.stop()
        return result

    print(json.dumps(asyncio.run(main())), flush=True)
    return 0


def _pct(values: list[int], q: float) -> float:
    if not values:
        return 0.0
    return float(values[min(len(values) - 1, int(q * len(values)))])


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m adapters.bacnet.workload``."""
    parser = argparse.ArgumentParser(prog="python -m adapters.bacnet.workload")
    sub = parser.add_subparsers(dest="role", required=True)
    w = sub.add_parser("write")
    w.add_argument("--store", required=True)
    w.add_argument("--objects", type=int, default=1000)
    w.add_argument("--rate", type=float, default=100.0)
    w.add_argument("--seconds", type=float, default=10.0)
    w.add_argument("--seed", type=int, default=1)
    w.add_argument("--burst-rate", type=float, default=0.0)
    w.add_argument("--burst-at", type=float, default=0.0)
    w.add_argument("--burst-seconds", type=float, default=0.0)
    w.add_argument("--expect")
    w.add_argument("--skip-initial", action="store_true",
                   help="do not append the definitions (an earlier run of the same seed did)")
    s = sub.add_parser("serve")
    s.add_argument("--store", required=True)
    s.add_argument("--address", required=True)
    s.add_argument("--device-id", type=int, default=599)
    s.add_argument("--seconds", type=float, default=30.0)
    s.add_argument("--history", type=int, default=64)
    s.add_argument("--stop-file")
    args = parser.parse_args(argv)
    return write(args) if args.role == "write" else serve(args)


if __name__ == "__main__":
    sys.exit(main())

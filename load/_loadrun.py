"""One open-loop load run: profile x arrivals -> target, with samples, summary and accounting."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ._arrivals import Arrivals, bursts, constant, poisson, ramp
from ._driver import JsonlWriter, Plan, Samples, drive, summarize, write_samples
from ._profiles import profile as get_profile
from ._targets import open_target


@dataclass(slots=True)
class LoadSpec:
    """What ``unbroken load`` was asked for."""

    profile: str
    target: str
    rate: float
    duration: float
    seed: int = 0
    arrivals: str = "profile"  # profile | constant | poisson | bursts | ramp
    burst_rate: float | None = None
    burst_every: float = 90.0
    burst_seconds: float = 30.0
    ramp_to: float | None = None
    out: Path | None = None
    metrics_port: int | None = None
    run_id: str | None = None
    max_inflight: int = 64
    reads: str | None = None  # bacnet://HOST:PORT of an event server to read from
    read_rate: float = 0.0


def arrivals_of(spec: LoadSpec) -> Arrivals:
    """The arrivals the spec names (the profile's default shape unless told otherwise)."""
    if spec.arrivals == "profile":
        return get_profile(spec.profile).arrivals(spec.rate, spec.duration)
    if spec.arrivals == "constant":
        return constant(spec.rate, spec.duration)
    if spec.arrivals == "poisson":
        return poisson(spec.rate, spec.duration)
    if spec.arrivals == "ramp":
        return ramp(spec.rate, spec.ramp_to if spec.ramp_to is not None else spec.rate * 10,
                    spec.duration)
    return bursts(spec.rate, spec.burst_rate or spec.rate * 10, spec.duration,
                  every=spec.burst_every, burst_seconds=spec.burst_seconds, first=20.0,
                  poisson=True)


def run_load(spec: LoadSpec) -> tuple[Samples, dict[str, Any]]:
    """Run the load; write samples.parquet, progress.jsonl and load-summary.json under ``out``."""
    prof = get_profile(spec.profile)
    arrivals = arrivals_of(spec)
    run_id = spec.run_id or f"{spec.profile}-s{spec.seed}-{time.strftime('%Y%m%dT%H%M%S')}"
    metrics = None
    if spec.metrics_port is not None:
        from ._metrics import LoadMetrics

        metrics = LoadMetrics(spec.metrics_port)
    progress = None
    if spec.out is not None:
        spec.out.mkdir(parents=True, exist_ok=True)
        progress = JsonlWriter(spec.out / "progress.jsonl")
    plan = Plan(arrivals, prof.messages(spec.seed), run_id, seed=spec.seed,
                max_inflight=spec.max_inflight)
    target = open_target(spec.target)

    reads: Any = None

    async def go() -> Samples:
        nonlocal reads
        stop = asyncio.Event()  # SIGTERM/SIGINT: stop sending, keep what was measured
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await target.open()
        reader = None
        if spec.reads and spec.read_rate > 0:
            from ._reads import modbus_read_load, parse_address, read_load

            if spec.reads.startswith("modbus://"):
                reads_coro = modbus_read_load(spec.reads, spec.read_rate, arrivals.seconds,
                                              spec.seed, metrics=metrics)
            else:
                reads_coro = read_load(parse_address(spec.reads), spec.read_rate,
                                       arrivals.seconds, spec.seed, metrics=metrics)
            reader = asyncio.create_task(reads_coro)
        try:
            return await drive(target, plan, progress=progress, metrics=metrics, stop=stop)
        finally:
            await target.close()
            if reader is not None:
                if stop.is_set():
                    reader.cancel()
                reads = (await asyncio.gather(reader, return_exceptions=True))[0]
                if isinstance(reads, BaseException):
                    reads = None

    try:
        samples = asyncio.run(go())
    finally:
        if progress is not None:
            progress.close()
    summary = {
        "run_id": run_id, "profile": spec.profile, "target": spec.target, "seed": spec.seed,
        "rate": spec.rate, "duration_s": spec.duration, "scheduled": len(samples.intended_ns),
        "sent": samples.sent, "acked": samples.acked, "bursts": arrivals.bursts(),
        "start_ns": int(samples.intended_ns[0]) if len(samples.intended_ns) else None,
        "ack_latency_ms": summarize(samples),
    }
    if reads is not None:
        from ._driver import percentiles
        from ._reads import KINDS, write_reads

        summary["reads"] = {"scheduled": len(reads.ok), "answered": int(reads.ok.sum()),
                            "errors": reads.errors}
        summary["read_latency_ms"] = {"all": percentiles(reads.latencies_ms())}
        if not spec.reads.startswith("modbus://"):
            summary["read_latency_ms"] |= {kind: percentiles(reads.latencies_ms(reads.kind == i))
                                           for i, kind in enumerate(KINDS)}
        if spec.out is not None:
            write_reads(reads, spec.out / "reads.parquet")
    if spec.out is not None:
        write_samples(samples, spec.out / "samples.parquet")
        (spec.out / "load-summary.json").write_text(json.dumps(summary, indent=2))
    return samples, summary

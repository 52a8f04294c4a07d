"""The open-loop sender: messages go at their intended times, latency counts from those times.

``drive(target, plan)`` walks the schedule: every message whose intended
time has come is sent in the next batch, whether or not earlier batches were
answered (up to ``max_inflight`` batches in flight; past that the sender
waits, and the wait shows as latency of the messages behind it). Batches
start at least ``batch_interval_s`` (10 ms) apart: at 1,000 messages/s a batch
per due message meant a transaction, a thread hop and a wake-up of every
follower per message; the messages that come due meanwhile wait (at most
that long, counted in their latency) and go together. A message's
latency is ``acked - intended``, never ``acked - sent``, so a target that
stalls for a second adds a second to every message due in that second
(coordinated omission accounted for).

Exact samples (one row per message) go to Parquet with ``write_samples``;
``summarize`` gives p50/p90/p99/p99.9/max per phase. A live per-second line
(rate, HDR-histogram percentiles of that second) goes to ``progress``.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from hdrh.histogram import HdrHistogram

from ._arrivals import NS, Arrivals, schedule
from ._targets import Message

QUANTILES = (("p50", 50.0), ("p90", 90.0), ("p99", 99.0), ("p99.9", 99.9))


@dataclass(slots=True)
class Plan:
    """What to send: arrivals, the message factory, the run id (prefix of every key)."""

    arrivals: Arrivals
    messages: Callable[[int, str, float], tuple[str, Any]]
    run_id: str
    seed: int = 0
    max_batch: int = 500
    max_inflight: int = 64
    batch_interval_s: float = 0.01  # batches start at least this far apart (see the module doc)
    grace_s: float = 60.0  # after the last intended time, how long unacked messages may take


@dataclass(slots=True)
class Samples:
    """One entry per scheduled message (arrays by sequence number)."""

    run_id: str
    phase_names: list[str]
    intended_ns: np.ndarray
    phase: np.ndarray
    sent_ns: np.ndarray
    acked_ns: np.ndarray
    streams: list[str] = field(default_factory=list)
    types: list[str] = field(default_factory=list)

    @property
    def sent(self) -> int:
        """Messages handed to the target."""
        return int(np.count_nonzero(self.sent_ns))

    @property
    def acked(self) -> int:
        """Messages the target acknowledged."""
        return int(np.count_nonzero(self.acked_ns))

    def key(self, seq: int) -> str:
        """The id (key) of message ``seq``."""
        return f"{self.run_id}-{seq}"


def wall_ns() -> int:
    """Wall-clock ns (what the store stamps ``recorded_at`` with)."""
    return time.time_ns()


async def drive(target: Any, plan: Plan, *, progress: Callable[[dict], None] | None = None,
                metrics: Any = None, stop: asyncio.Event | None = None) -> Samples:
    """Send ``plan`` to ``target`` open-loop and return the samples."""
    offsets, phases = schedule(plan.arrivals, plan.seed)
    n = len(offsets)
    start = wall_ns() + 200_000_000  # a moment to get going
    intended = offsets + start
    samples = Samples(plan.run_id, [p.name for p in plan.arrivals.phases], intended, phases,
                      np.zeros(n, np.int64), np.zeros(n, np.int64), [""] * n, [""] * n)
    total_ns = max(int(plan.arrivals.seconds * NS), 1)
    slots = asyncio.Semaphore(plan.max_inflight)
    tasks: set[asyncio.Task] = set()
    live = _Live(progress, metrics)
    interval_ns = int(plan.batch_interval_s * NS)
    i = next_batch = 0
    while i < n and not (stop and stop.is_set()):
        now = wall_ns()
        due = max(int(intended[i]), next_batch)
        if due > now:
            await asyncio.sleep(min((due - now) / NS, 0.05))
            live.tick(samples, now)
            continue
        j = min(int(np.searchsorted(intended, now, side="right")), i + plan.max_batch)
        batch = [_message(plan, samples, k, phases, intended, start, total_ns) for k in range(i, j)]
        i = j
        await slots.acquire()
        sent = wall_ns()
        next_batch = sent + interval_ns  # from when this batch went, not when it was due: never closer
        samples.sent_ns[batch[0].seq:batch[-1].seq + 1] = sent
        task = asyncio.create_task(_send(target, batch, samples, slots, live))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        live.tick(samples, sent)
    if tasks:
        done, pending = await asyncio.wait(set(tasks), timeout=plan.grace_s)
        for t in pending:
            t.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
    live.tick(samples, wall_ns(), final=True)
    return samples


def _message(plan: Plan, samples: Samples, k: int, phases: np.ndarray, intended: np.ndarray,
             start: int, total_ns: int) -> Message:
    name = samples.phase_names[int(phases[k])]
    stream, payload = plan.messages(k, name, (int(intended[k]) - start) / total_ns)
    samples.streams[k] = stream
    samples.types[k] = type(payload).__name__
    return Message(k, samples.key(k), stream, payload, int(intended[k]))


async def _send(target: Any, batch: list[Message], samples: Samples, slots: asyncio.Semaphore,
                live: _Live) -> None:
    try:
        for attempt in range(1000):
            try:
                oks = await target.send(batch)
                break
            except asyncio.CancelledError:
                raise
            except Exception as e:  # the target failed the batch: the same ids again
                live.error(e)
                await asyncio.sleep(min(0.05 * 2 ** attempt, 1.0))
        else:  # pragma: no cover - a target down for the whole grace period
            return
        now = wall_ns()
        for m, ok in zip(batch, oks, strict=True):
            if ok:
                samples.acked_ns[m.seq] = now
                live.record(now - m.intended_ns)
    finally:
        slots.release()


class _Live:
    """The per-second view: rate and HDR percentiles of the latencies acked in that second."""

    def __init__(self, progress: Callable[[dict], None] | None, metrics: Any) -> None:
        self.progress, self.metrics = progress, metrics
        self.hist = HdrHistogram(1, 3_600_000_000, 3)  # microseconds, up to an hour
        self.second = 0
        self.last_sent = self.last_acked = 0
        self.errors = 0
        self.last_error = ""

    def record(self, latency_ns: int) -> None:
        us = max(1, min(latency_ns // 1000, 3_600_000_000))
        self.hist.record_value(us)
        if self.metrics is not None:
            self.metrics.acked(latency_ns / NS)

    def error(self, e: Exception) -> None:
        self.errors += 1
        self.last_error = f"{type(e).__name__}: {e}"[:200]

    def tick(self, samples: Samples, now: int, final: bool = False) -> None:
        second = now // NS
        if second == self.second and not final:
            return
        if self.second and self.progress is not None:
            sent, acked = samples.sent, samples.acked
            h = self.hist
            self.progress({
                "t": self.second, "sent": sent, "acked": acked,
                "sent_per_s": sent - self.last_sent, "acked_per_s": acked - self.last_acked,
                "p50_ms": h.get_value_at_percentile(50) / 1000 if h.total_count else None,
                "p99_ms": h.get_value_at_percentile(99) / 1000 if h.total_count else None,
                "max_ms": h.get_max_value() / 1000 if h.total_count else None,
                "errors": self.errors, "last_error": self.last_error,
            })
            self.last_sent, self.last_acked = sent, acked
        if self.metrics is not None:
            self.metrics.sent_to(samples.sent)
        self.hist.reset()
        self.second = second


def latencies_ms(samples: Samples) -> np.ndarray:
    """Ack latency of each acked message, from its intended send time, in ms (NaN if unacked)."""
    out = (samples.acked_ns - samples.intended_ns) / 1e6
    out[samples.acked_ns == 0] = np.nan
    return out


def percentiles(values: np.ndarray) -> dict[str, float | None]:
    """p50/p90/p99/p99.9/max and count of the finite ``values``."""
    v = values[np.isfinite(values)]
    if not len(v):
        return {name: None for name, _ in QUANTILES} | {"max": None, "count": 0}
    out: dict[str, float | None] = {name: round(float(np.percentile(v, q)), 3) for name, q in QUANTILES}
    out["max"] = round(float(v.max()), 3)
    out["count"] = int(len(v))
    return out


def summarize(samples: Samples, values_ms: np.ndarray | None = None) -> dict[str, dict]:
    """Percentiles per phase and over the whole run (``"all"``), in ms."""
    values = latencies_ms(samples) if values_ms is None else values_ms
    out = {}
    for index, name in enumerate(samples.phase_names):
        out[name] = percentiles(values[samples.phase == index])
    out["all"] = percentiles(values)
    return out


def write_samples(samples: Samples, path: Path, extra: dict[str, np.ndarray] | None = None) -> Path:
    """One Parquet row per message: seq, id, stream, type, phase, intended/sent/acked ns."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    n = len(samples.intended_ns)
    columns: dict[str, Any] = {
        "seq": pa.array(np.arange(n, dtype=np.int64)),
        "id": pa.array([samples.key(k) for k in range(n)]),
        "stream": pa.array(samples.streams),
        "type": pa.array(samples.types),
        "phase": pa.array([samples.phase_names[int(p)] for p in samples.phase]),
        "intended_ns": pa.array(samples.intended_ns),
        "sent_ns": pa.array(np.where(samples.sent_ns > 0, samples.sent_ns, None).tolist(),
                            type=pa.int64()),
        "acked_ns": pa.array(np.where(samples.acked_ns > 0, samples.acked_ns, None).tolist(),
                             type=pa.int64()),
    }
    for name, values in (extra or {}).items():
        columns[name] = pa.array(np.where(values > 0, values, None).tolist(), type=pa.int64())
    pq.write_table(pa.table(columns), path)
    return path


def read_samples(path: Path) -> Samples:
    """The samples written by ``write_samples`` (phase names in order of first appearance)."""
    import pyarrow.parquet as pq

    t = pq.read_table(path).to_pydict()
    names = list(dict.fromkeys(t["phase"]))
    run_id = t["id"][0].rsplit("-", 1)[0] if t["id"] else ""
    def arr(col: str) -> np.ndarray:
        return np.array([v or 0 for v in t[col]], dtype=np.int64)
    return Samples(run_id, names, arr("intended_ns"),
                   np.array([names.index(p) for p in t["phase"]], dtype=np.int16),
                   arr("sent_ns"), arr("acked_ns"), list(t["stream"]), list(t["type"]))


class JsonlWriter:
    """A ``progress`` callback appending each record to ``path`` as a JSON line; ``close()`` it."""

    def __init__(self, path: Path) -> None:
        self.file = path.open("a", buffering=1)

    def __call__(self, record: dict) -> None:
        self.file.write(json.dumps(record) + "\n")

    def close(self) -> None:
        """Close the file."""
        self.file.close()

"""Judging a run: each criterion is ``pass``, ``fail``, ``unknown`` or ``n/a``.

``unknown`` means the criterion applies but could not be judged (no samples,
no accounting, the check did not run); it is never counted as passed, so a run
with an unknown criterion does not pass. ``n/a`` means it does not apply to
this run (no reads without a BACnet read target, no recovery without restarts,
no backlog without bursts). ``verdict(criteria)`` is ``pass`` only when every
criterion is ``pass`` or ``n/a``.

The thresholds are BN-001..BN-004's (docs/scenarios.md), settable in the fault
plan's ``[criteria]`` table: zero loss; processing p99 < 100 ms (intended send
time to folded by the projection, outside fault windows and their recovery);
read p99 < 50 ms; resident memory under its limit and flat; recovery within
30 s after each restart; backlog drained within 60 s after each burst.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

PASS, FAIL, UNKNOWN, NA = "pass", "fail", "unknown", "n/a"
NS = 1_000_000_000

DEFAULTS: dict[str, float] = {
    "processing_p99_ms": 100.0,
    "read_p99_ms": 50.0,
    "recovery_s": 30.0,
    "drain_s": 60.0,
    "memory_growth": 0.20,     # last-quarter median over second-quarter median, at most +20%
    "memory_growth_mb": 16.0,  # ... or this many MB, whichever is larger
    "memory_limit_mb": 512.0,  # per process unless the plan's [limits] says otherwise
}


@dataclass(slots=True)
class Criterion:
    """One judged criterion: id, what it asks, the status, what was measured."""

    id: str
    description: str
    status: str
    measured: str = ""
    detail: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """JSON-able."""
        return asdict(self)


def verdict(criteria: Sequence[Criterion]) -> str:
    """``pass`` when every criterion passed or does not apply; ``fail`` otherwise."""
    return PASS if criteria and all(c.status in (PASS, NA) for c in criteria) else FAIL


def windows_mask(intended_ns: np.ndarray, windows: Iterable[tuple[int, int]]) -> np.ndarray:
    """True for the messages whose intended time falls in any ``(start_ns, end_ns)`` window."""
    mask = np.zeros(len(intended_ns), bool)
    for start, end in windows:
        mask |= (intended_ns >= start) & (intended_ns < end)
    return mask


def zero_loss(acc: Any) -> Criterion:
    """Every message sent, acked, stored and projected exactly once."""
    desc = "zero loss: every message sent, acked, stored and projected exactly once"
    if acc is None or acc.stored is None or acc.projected is None:
        return Criterion("zero-loss", desc, UNKNOWN, "accounting incomplete")
    status = PASS if acc.lost == 0 and acc.duplicates == 0 else FAIL
    measured = (f"scheduled {acc.scheduled}, sent {acc.sent}, acked {acc.acked}, stored "
                f"{acc.stored}, projected {acc.projected}; missing {acc.lost}, duplicated "
                f"{acc.duplicates}")
    return Criterion("zero-loss", desc, status, measured,
                     {"missing": acc.missing_count, "duplicated": acc.duplicated_count})


def processing_p99(intended_ns: np.ndarray, done_ns: np.ndarray | None,
                   excluded: np.ndarray, limit_ms: float) -> Criterion:
    """p99 of intended send time to projected, outside fault windows and their recovery."""
    desc = f"processing p99 < {limit_ms:g} ms (intended send to projected, outside faults)"
    if done_ns is None:
        return Criterion("processing-p99", desc, UNKNOWN, "no projected times")
    ok = (done_ns > 0) & ~excluded
    if ok.sum() < 100:
        return Criterion("processing-p99", desc, UNKNOWN, f"only {int(ok.sum())} samples")
    lat = (done_ns[ok] - intended_ns[ok]) / 1e6
    p99 = float(np.percentile(lat, 99))
    every = (done_ns[done_ns > 0] - intended_ns[done_ns > 0]) / 1e6
    measured = (f"p99 {p99:.1f} ms over {int(ok.sum())} messages (all messages, faults "
                f"included: p99 {np.percentile(every, 99):.1f} ms, max {every.max():.0f} ms)")
    return Criterion("processing-p99", desc, PASS if p99 < limit_ms else FAIL, measured,
                     {"p99_ms": p99, "samples": int(ok.sum())})


def read_p99(latencies_ms: np.ndarray | None, applies: bool, limit_ms: float) -> Criterion:
    """p99 of BACnet read latency (from each read's intended time)."""
    desc = f"read p99 < {limit_ms:g} ms"
    if not applies:
        return Criterion("read-p99", desc, NA, "no read target in this run")
    if latencies_ms is None or len(latencies_ms) < 100:
        return Criterion("read-p99", desc, UNKNOWN, "fewer than 100 reads answered")
    p99 = float(np.percentile(latencies_ms, 99, method="higher"))  # inf when > 1% failed
    failed = int(np.isinf(latencies_ms).sum())
    return Criterion("read-p99", desc, PASS if p99 < limit_ms else FAIL,
                     f"p99 {p99:.1f} ms over {len(latencies_ms)} reads outside faults "
                     f"({failed} failed or unsent, counted as infinitely late)",
                     {"p99_ms": p99 if np.isfinite(p99) else None, "failed": failed})


def memory(series: dict[str, list[tuple[float, float]]], limits_mb: dict[str, float],
           cfg: dict[str, float]) -> Criterion:
    """Each process's resident memory under its limit and flat (no growth in the second half)."""
    desc = "resident memory under its limit and flat (last quarter vs second quarter)"
    if not series:
        return Criterion("memory", desc, UNKNOWN, "no memory samples")
    status, parts, detail = PASS, [], {}
    for name, points in sorted(series.items()):
        rss = np.array([p[1] for p in points], float)
        limit = limits_mb.get(name, cfg["memory_limit_mb"])
        if len(rss) < 20:
            status = UNKNOWN if status == PASS else status
            parts.append(f"{name}: {len(rss)} samples")
            continue
        q = len(rss) // 4
        early, late, peak = float(np.median(rss[q:2 * q])), float(np.median(rss[3 * q:])), float(rss.max())
        allowed = max(early * cfg["memory_growth"], cfg["memory_growth_mb"])
        flat, under = late - early <= allowed, peak <= limit
        if not (flat and under):
            status = FAIL
        parts.append(f"{name}: peak {peak:.0f}/{limit:.0f} MB, {early:.0f}->{late:.0f} MB"
                     + ("" if flat else " (grew)"))
        detail[name] = {"peak_mb": peak, "limit_mb": limit, "early_mb": early, "late_mb": late}
    return Criterion("memory", desc, status, "; ".join(parts), detail)


def recovery(intended_ns: np.ndarray, done_ns: np.ndarray | None,
             restarts: Sequence[tuple[str, int]], limit_s: float, what: str = "recovery",
             desc: str | None = None) -> Criterion:
    """For each ``(label, t_ns)``: every message intended before t projected within limit_s of t."""
    desc = desc or f"recovery within {limit_s:g} s after each restart (backlog projected)"
    if not restarts:
        return Criterion(what, desc, NA, "nothing to recover from")
    if done_ns is None:
        return Criterion(what, desc, UNKNOWN, "no projected times")
    worst, status, items = 0.0, PASS, []
    for label, t in restarts:
        before = intended_ns < t
        if not before.any():
            continue
        pending = done_ns[before]
        if (pending == 0).any():
            status = FAIL
            items.append({"fault": label, "seconds": None})
            continue
        took = max(0.0, (int(pending.max()) - t) / NS)
        worst = max(worst, took)
        if took > limit_s:
            status = FAIL
        items.append({"fault": label, "seconds": round(took, 2)})
    measured = f"worst {worst:.1f} s over {len(items)}" + (" (some never)" if any(
        i["seconds"] is None for i in items) else "")
    return Criterion(what, desc, status, measured, {"each": items})


def invariants(report: Any, error: str | None) -> Criterion:
    """The projection's invariants (``properties.check`` on the stored log, unperturbed)."""
    desc = "every invariant of the projection's domain held on the stored log"
    if report is None:
        return Criterion("invariants", desc, UNKNOWN, error or "not checked")
    held = [r.id for r in report.results if r.status == "held"]
    broken = [r.id for r in report.results if r.status == "broken"]
    unknown = [r.id for r in report.results if r.status == "unknown"]
    status = FAIL if broken else UNKNOWN if unknown or not held else PASS
    return Criterion("invariants", desc, status,
                     f"held {', '.join(held) or '-'}; broken {', '.join(broken) or '-'}; "
                     f"unknown {', '.join(unknown) or '-'}",
                     {"held": held, "broken": broken, "unknown": unknown})


def replay_match(live_digest: str | None, replay_digest: str | None, error: str | None) -> Criterion:
    """The live projection's final state equals a fresh replay of the stored log."""
    desc = "the live projection's state equals a replay of the stored log"
    if live_digest is None or replay_digest is None:
        return Criterion("replay-match", desc, UNKNOWN, error or "no state to compare")
    same = live_digest == replay_digest
    return Criterion("replay-match", desc, PASS if same else FAIL,
                     f"live {live_digest[:12]} vs replay {replay_digest[:12]}")


def no_crashes(unplanned: Sequence[str], projection_faults: int | None) -> Criterion:
    """No process exited that the plan did not kill; the projection never raised."""
    desc = "no unplanned process exit; the projection never raised"
    if projection_faults is None:
        return Criterion("no-crash", desc, UNKNOWN, "projection fault count unknown")
    bad = list(unplanned) + ([f"projection raised {projection_faults} times"]
                             if projection_faults else [])
    return Criterion("no-crash", desc, FAIL if bad else PASS, "; ".join(bad) or "none")

"""After a soak: account for every message, check invariants and replay, judge, report."""

from __future__ import annotations

import json
import time
from typing import Any

import numpy as np

from . import _criteria as C
from ._accounting import account
from ._driver import read_samples
from ._follower import read_checkpoint, read_projected

NS = 1_000_000_000


def _replay_and_check(soak: Any) -> tuple[str | None, Any, str | None]:
    """(replay state digest, properties CheckReport, error) for the stored log."""
    import properties
    import replay
    from eventstore import open_store

    from ._soak import state_digest

    try:
        with open_store(soak.store_uri, create=False) as store:
            events = list(store.read_all())
        from projections import get

        result = replay.run(replay.deliveries_of(events), get(soak.prof.projection), collect=False)
        digest = state_digest(result.state)
    except Exception as e:
        return None, None, f"replay failed: {type(e).__name__}: {e}"
    try:
        report = properties.check(events, soak.prof.projection, examples=soak.spec.check_examples,
                                  seed=soak.spec.seed, allow_faults=True)
    except Exception as e:
        return digest, None, f"invariant check failed: {type(e).__name__}: {e}"
    return digest, report, None


def _live_digest(soak: Any) -> tuple[str | None, int | None]:
    import msgspec

    from projections import get

    cp = read_checkpoint(soak.out / "projection")
    if cp is None:
        return None, None
    projection = get(soak.prof.projection)
    state = msgspec.msgpack.decode(cp.state, type=getattr(projection, "state_type", Any)) \
        if cp.state else projection.initial()
    from ._soak import state_digest

    return state_digest(state), cp.faults


def fault_windows(soak: Any) -> list[dict[str, Any]]:
    """``{label, start_ns, end_ns}`` per fault (end: its ``end`` row, else the run's end)."""
    open_: dict[str, int] = {}
    out = []
    for row in soak.faults:
        if row["phase"] == "start":
            open_[row["label"]] = row["at_ns"]
        elif row["phase"] == "end" and row["label"] in open_:
            out.append({"label": row["label"], "start_ns": open_.pop(row["label"]),
                        "end_ns": row["at_ns"]})
    now = time.time_ns()
    out += [{"label": k, "start_ns": v, "end_ns": now} for k, v in open_.items()]
    return sorted(out, key=lambda w: w["start_ns"])


def judge(soak: Any, drained: bool) -> dict[str, Any]:
    """Judge the soak and write report.md, report.json and the charts; return the report data."""
    cfg = dict(C.DEFAULTS) | soak.spec.plan.criteria
    samples_path = soak.out / "load" / "samples.parquet"
    samples = read_samples(samples_path) if samples_path.exists() else None
    cp = read_checkpoint(soak.out / "projection")
    acc = None
    if samples is not None:
        projected = read_projected(soak.out / "projection", cp.ids_bytes if cp else 0)
        acc = account(samples, soak.store_uri, projected)
    windows = fault_windows(soak)
    soak.say("checking invariants and replaying the stored log")
    replay_digest, check_report, error = _replay_and_check(soak)
    live_digest, projection_faults = _live_digest(soak)
    criteria = []
    criteria.append(C.zero_loss(acc))
    intended = samples.intended_ns if samples is not None else np.zeros(0, np.int64)
    done = acc.projected_ns if acc is not None else None
    excluded = _disturbed(intended, done, windows, cfg["recovery_s"])
    criteria.append(C.processing_p99(intended, done, excluded, cfg["processing_p99_ms"]))
    reads = _reads(soak)
    read_ms = None
    if reads is not None:
        calm = ~C.windows_mask(reads.intended_ns, [(w["start_ns"], w["end_ns"] + 5 * NS)
                                                    for w in windows])
        read_ms = reads.judged_ms(calm)  # failed and unsent reads count as infinitely late
    criteria.append(C.read_p99(read_ms, soak.spec.read_rate > 0, cfg["read_p99_ms"]))
    series: dict[str, list[tuple[float, float]]] = {}
    for r in soak.resources:
        if r["process"] != "load":
            series.setdefault(r["process"], []).append((r["t"], r["rss_mb"]))
    criteria.append(C.memory(series, soak.spec.plan.limits, cfg))
    restarts = [(w["label"], w["end_ns"]) for w in windows
                if w["label"].split(":")[1] in ("kill", "restart", "memory-limit", "native")]
    criteria.append(C.recovery(intended, done, restarts, cfg["recovery_s"]))
    summary = json.loads((soak.out / "load" / "load-summary.json").read_text()) \
        if (soak.out / "load" / "load-summary.json").exists() else {}
    bursts = [(f"burst {i + 1}", int(summary["start_ns"] + e * NS))
              for i, (_, e) in enumerate(summary.get("bursts", []))] if summary.get("start_ns") else []
    criteria.append(C.recovery(intended, done, bursts, cfg["drain_s"], "backlog-drained",
                               f"backlog drained within {cfg['drain_s']:g} s after each burst"))
    criteria.append(C.invariants(check_report, error))
    criteria.append(C.replay_match(live_digest, replay_digest, error))
    procs = soak.out / "processes.json"
    recorded = json.loads(procs.read_text()) if procs.exists() else {}
    unplanned = recorded.get("unplanned", [u for p in soak.procs.values() for u in p.unplanned])
    if not drained:
        unplanned.append(f"backlog not drained within {soak.spec.drain_timeout:g} s after the load")
    criteria.append(C.no_crashes(unplanned, projection_faults))
    data = {
        "verdict": C.verdict(criteria),
        "profile": soak.spec.profile, "target": soak.spec.target, "rate": soak.spec.rate,
        "duration_s": soak.spec.duration, "seed": soak.spec.seed,
        "started_ns": soak.t0_ns, "criteria": [c.as_dict() for c in criteria],
        "accounting": acc.as_dict() if acc is not None else None,
        "faults": soak.faults, "windows": windows,
        "bursts": [{"start_ns": int(summary["start_ns"] + s * NS),
                    "end_ns": int(summary["start_ns"] + e * NS)}
                   for s, e in summary.get("bursts", [])] if summary.get("start_ns") else [],
        "latency_ms": _latency_summary(samples, acc, excluded),
        "read_latency_ms": summary.get("read_latency_ms"), "reads": summary.get("reads"),
        "processes": {name: {"starts": n, "limit_mb": soak.spec.plan.limits.get(name)}
                      for name, n in recorded.get("starts", {}).items()},
        "invariant_results": [{"id": r.id, "status": r.status} for r in check_report.results]
        if check_report is not None else [],
    }
    from ._report import write_report

    write_report(soak, data, samples, acc)
    return data


def _reads(soak: Any) -> Any:
    path = soak.out / "load" / "reads.parquet"
    if not path.exists():
        return None
    from ._reads import load_reads

    return load_reads(path)


def _latency_summary(samples: Any, acc: Any, excluded: np.ndarray) -> dict[str, Any]:
    from ._driver import latencies_ms, percentiles, summarize

    if samples is None:
        return {}
    out: dict[str, Any] = {"ack": summarize(samples)}
    if acc is not None and acc.stored_ns is not None:
        stored = np.where(acc.stored_ns > 0, (acc.stored_ns - samples.intended_ns) / 1e6, np.nan)
        out["stored"] = summarize(samples, stored)
    if acc is not None and acc.projected_ns is not None:
        proj = np.where(acc.projected_ns > 0, (acc.projected_ns - samples.intended_ns) / 1e6, np.nan)
        out["projected"] = summarize(samples, proj)
        calm = proj.copy()
        calm[excluded] = np.nan
        out["projected_outside_faults"] = percentiles(calm)
    del latencies_ms
    return out


def _disturbed(intended: np.ndarray, done: np.ndarray | None, windows: list[dict],
               recovery_s: float) -> np.ndarray:
    """Messages a fault disturbed: in flight at any time between a fault's start and the
    moment its backlog was projected (its recovery, at most ``recovery_s``) plus 1 s.

    Those are judged by the recovery criterion, not by the steady-state latency one."""
    mask = np.zeros(len(intended), bool)
    if done is None:
        return mask
    finished = np.where(done > 0, done, np.iinfo(np.int64).max)
    for w in windows:
        before = intended < w["end_ns"]
        caught_up = int(done[before].max()) if before.any() and (done[before] > 0).all() else 0
        took = min(max(0, caught_up - w["end_ns"]), int(recovery_s * NS))
        until = w["end_ns"] + took + NS
        mask |= (intended < until) & (finished >= w["start_ns"])
    return mask

"""The JSON scenario report of ``unbroken check --report FILE.json``.

One entry per invariant judged, the way trading teams keep their failure-simulation
suites: scenario id, title, status (passed / failed / unknown), checks passed and failed
(examples judged), observations in words (the counterexample's schedule and first
violating row when it failed) and metrics measured on the unperturbed replay of the log
(for the trading domain: trips, the exact largest drawdown, retries, intents per minute,
queue lag, resets). The document is deterministic for the same log, projection and seed,
except ``seconds``.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ._report import BROKEN, HELD, CheckReport, InvariantResult

SECOND = 1_000_000_000
MINUTE = 60 * SECOND
STATUS = {HELD: "passed", BROKEN: "failed"}


def scenario_report(report: CheckReport, metrics: dict[str, dict[str, Any]] | None = None,
                    ) -> dict[str, Any]:
    """The report as a JSON-able dict; ``metrics`` maps scenario id to measured values."""
    metrics = metrics or {}
    scenarios = [_scenario(r, metrics.get(r.id, {})) for r in report.results]
    return {
        "suite": f"unbroken check: {report.projection}",
        "projection": report.projection,
        "domain": report.domain,
        "log": report.source,
        "events": report.events,
        "examples": report.examples,
        "seed": report.seed,
        "seconds": round(report.seconds, 3),
        "status": "passed" if report.exit_code() == 0 else
                  ("failed" if report.exit_code() == 1 else "unknown"),
        "verdicts": report.failures(),
        "summary": dict(Counter(s["status"] for s in scenarios)),
        "metrics": metrics.get("run", {}),
        "scenarios": scenarios,
    }


def _scenario(r: InvariantResult, metrics: dict[str, Any]) -> dict[str, Any]:
    observations = [r.description]
    if r.status == HELD:
        observations.append(f"held on all {r.examples} examples (the unperturbed log and "
                            "perturbed delivery schedules)")
    if r.error:
        observations.append(f"could not be judged: {r.error}")
    cx = r.counterexample
    if cx is not None:
        moves = cx.schedule.describe() or ["none: the unperturbed log breaks it"]
        observations.append(f"counterexample: {cx.events} event(s) of {cx.original_events}, "
                            f"schedule: {'; '.join(moves)}")
        if cx.rows:
            observations.append(f"first violating row: {json.dumps(cx.rows[0], default=str)}")
        if cx.directory:
            observations.append(f"saved in {cx.directory}")
    return {
        "scenario": r.id,
        "title": r.description,
        "status": STATUS.get(r.status, "unknown"),
        "checks_passed": r.examples - r.broken - r.unknown,
        "checks_failed": r.broken,
        "checks_unknown": r.unknown,
        "observations": observations,
        "metrics": metrics,
    }


def measure(events: list, projection: Any) -> dict[str, dict[str, Any]]:
    """Metrics of the unperturbed replay: per scenario for known domains, and for the run."""
    import msgspec

    import replay

    result = replay.run(replay.deliveries_of(events), projection, collect=True)
    decisions = [msgspec.to_builtins(d) for d in result.decisions]
    out: dict[str, dict[str, Any]] = {"run": {
        "decisions": len(decisions),
        "by_kind_and_status": dict(sorted(Counter(f"{d['kind']}/{d['status']}"
                                                  for d in decisions).items())),
        "projection_faults": result.projection_faults,
    }}
    domain = getattr(projection, "domain", None) or getattr(projection, "name", None)
    if domain in DOMAIN_METRICS:
        out.update(DOMAIN_METRICS[domain](decisions, result.state, events))
    return out


def _trading(decisions: list[dict], state: Any, events: list) -> dict[str, dict[str, Any]]:
    def pick(kind: str, action: str | None = None, status: str | None = None) -> list[dict]:
        return [d for d in decisions if d["kind"] == kind and (action is None or d["action"] == action)
                and (status is None or d["status"] == status)]

    sent = pick("order", "place-order", "released")
    attempts = [int(d["effect_key"].rpartition("#")[2]) for d in sent]
    intents = [d for d, a in zip(sent, attempts, strict=True) if a == 0]
    lags = [(d["at"] - d["input_time"]) / SECOND for d in intents]
    reasons = Counter(d["reasons"][0] for d in pick("order") if d["reasons"])
    signals = {e.id for e in events if e.type == "TradeSignal"}
    return {
        "TR-001": {"trips": len(pick("kill-switch", "trip")), "alerts": len(pick("alert")),
                   "max_drawdown_bp": getattr(state, "max_drawdown_bp", None),
                   "orders_blocked_while_tripped": reasons.get("kill_switch_tripped", 0)},
        "TR-002": {"signals": len(signals),
                   "answered": len({d["subject"] for d in pick("order") if d["status"] != "held"})},
        "TR-003": {"requests": len(sent), "retries": sum(1 for a in attempts if a > 0),
                   "max_attempt": max(attempts, default=0),
                   "rate_limited": reasons.get("rate_limited", 0),
                   "given_up": reasons.get("retries_exhausted", 0)},
        "TR-004": {"intents": len(intents),
                   "max_intents_per_minute": _max_in_window([d["at"] for d in intents], MINUTE),
                   "max_queue_lag_s": round(max(lags, default=0.0), 3),
                   "queued": reasons.get("flood_limit_queued", 0),
                   "dropped_queue_full": reasons.get("queue_full", 0),
                   "expired": reasons.get("signal_expired", 0)},
        "TR-005": {"resets_released": len(pick("kill-switch", "reset", "released")),
                   "resets_refused": len(pick("kill-switch", "reset", "blocked")),
                   "final_switch": getattr(state, "switch", None)},
    }


def _max_in_window(times: list[int], window: int) -> int:
    best, start = 0, 0
    for end, t in enumerate(times):
        while times[start] <= t - window:
            start += 1
        best = max(best, end - start + 1)
    return best


DOMAIN_METRICS: dict[str, Callable[[list[dict], Any, list], dict[str, dict[str, Any]]]] = {
    "trading": _trading,
}


def write_report(path: str | os.PathLike[str], report: CheckReport, *, log: str | None = None,
                 projection: str | None = None, config: dict[str, Any] | None = None,
                 mapping: str | None = None) -> dict[str, Any]:
    """Measure the unperturbed run (when ``log`` and ``projection`` are given) and write the
    scenario report to ``path`` as JSON; returns the document."""
    metrics: dict[str, dict[str, Any]] = {}
    if log and projection:
        import replay

        events = list(replay.read_log(log, replay.load_mapping(mapping) if mapping else None))
        metrics = measure(events, replay.load_projection(projection, **(config or {})))
    doc = scenario_report(report, metrics)
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".partial")
    tmp.write_text(json.dumps(doc, indent=2, default=str) + "\n")
    tmp.replace(target)
    return doc

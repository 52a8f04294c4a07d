"""INV-1..INV-4 over a run's decisions, in plain Python (properties/ has the SQL versions).

Each check returns the decisions that break it, so a failing assert shows them.
"""

from __future__ import annotations

from collections import defaultdict

from projections import EFFECTIVE, Decision, Status


def effective_external(decisions: list[Decision]) -> list[Decision]:
    return [d for d in decisions if d.external and d.status in EFFECTIVE]


def inv1_freshness(decisions: list[Decision]) -> list[Decision]:
    """External or irreversible effects rest on inputs within their freshness bound."""
    return [d for d in decisions if d.status in EFFECTIVE and (d.external or d.irreversible)
            and (d.input_time is None or d.freshness_ns is None or d.at - d.input_time > d.freshness_ns)]


def inv2_confidence(decisions: list[Decision]) -> list[Decision]:
    """External effects meet their bar, and that bar is above every internal bar."""
    internal_bar = max((d.min_confidence for d in decisions if not d.external), default=0.0)
    return [d for d in effective_external(decisions)
            if d.confidence < d.min_confidence or d.min_confidence <= internal_bar]


def inv3_held(decisions: list[Decision], hold_ns: int) -> list[Decision]:
    """Every irreversible release follows a HELD decision (same key) by at least the window."""
    holds: dict[str, list[int]] = defaultdict(list)
    bad = []
    for d in decisions:
        if d.status == Status.HELD and "hold_window" in d.reasons:
            holds[d.effect_key].append(d.at)  # type: ignore[index]
        elif d.irreversible and d.status in EFFECTIVE:
            opened = holds.get(d.effect_key)  # type: ignore[arg-type]
            if not opened or d.at < opened[-1] + hold_ns or (d.hold_until or 0) > d.at:
                bad.append(d)
    return bad


def inv4_once(decisions: list[Decision]) -> list[str]:
    """At most one external effect per effect key."""
    counts: dict[str, int] = defaultdict(int)
    for d in effective_external(decisions):
        counts[d.effect_key] += 1  # type: ignore[index]
    return [key for key, n in counts.items() if n > 1]


def check_all(decisions: list[Decision], hold_ns: int) -> dict[str, list]:
    """Every broken invariant with its offending rows; empty when all hold."""
    found = {
        "INV-1": inv1_freshness(decisions),
        "INV-2": inv2_confidence(decisions),
        "INV-3": inv3_held(decisions, hold_ns),
        "INV-4": inv4_once(decisions),
    }
    return {k: v for k, v in found.items() if v}

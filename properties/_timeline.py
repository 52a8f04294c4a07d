"""A readable timeline of one run: what arrived when, what it was moved by, what was decided.

Each line is a delivery or a timer firing, in delivery order, with the event's
own time (``occurred_at``) beside the time it was delivered; decisions follow
the step that caused them, and the ones that broke an invariant are marked.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import msgspec

from ._schedules import fmt_ns, fmt_utc
from ._trace import Trace

_DATA_WIDTH = 70


def fmt_time(ns: int | None) -> str:
    """Nanoseconds UTC as ``2024-01-03 10:00:05``, or ``-``; out of range: the raw ns."""
    if ns is None:
        return "-"
    try:
        return fmt_utc(ns)
    except (OverflowError, ValueError, OSError):
        return f"{ns} ns"


def fmt_instant(ns: int) -> str:
    """A time in a violating row: as the timeline shows it, with the fraction of a second if any."""
    text = fmt_time(ns)
    frac = ns % 1_000_000_000
    if frac and not text.endswith(" ns"):
        text += f".{frac:09d}".rstrip("0")
    return text


# Columns of trace tables and invariant rows that hold a point in time (ns UTC) and those
# that hold a duration (ns); the rest print as they are.
_TIME_COLUMNS = frozenset({"at", "input_time", "hold_until", "gate_hold_until", "time"})


def _is_time(key: str) -> bool:
    return key in _TIME_COLUMNS or key.endswith(("_at", "_time", "_until"))


def _is_duration(key: str) -> bool:
    return key.endswith("_ns")


def fmt_value(key: str, value: Any) -> str:
    """``value`` of column ``key`` as printed in a violating row: times as timestamps,
    durations as ``2h03m``, anything else as is."""
    if type(value) is int:
        if _is_time(key):
            return fmt_instant(value)
        if _is_duration(key):
            return fmt_ns(value)
    return str(value)


def render_timeline(trace: Trace, broken: Sequence[dict] = (), invariant: str = "") -> str:
    """The timeline of ``trace``; decisions whose ``seq`` is in ``broken`` rows are marked."""
    bad = {row.get("seq") for row in broken if row.get("seq") is not None}
    payloads = {str(e.id): _payload(e.data) for e in trace.events}
    deliveries = trace.table("deliveries").to_dicts()
    decisions: dict[int, list[dict]] = defaultdict(list)
    for d in trace.table("decisions").to_dicts():
        decisions[d["cause_seq"]].append(d)
    timers = {t["fired_seq"]: t for t in trace.table("timers").to_dicts() if t["fired_seq"] is not None}
    steps = [(d["seq"], "delivery", d) for d in deliveries]
    steps += [(seq, "timer", t) for seq, t in timers.items()]
    lines = ["seq  delivered            event time           event"]
    for seq, kind, row in sorted(steps, key=lambda s: s[0]):
        lines.append(_step(seq, kind, row, payloads))
        for d in decisions.get(seq, ()):
            lines.append(_decision(d, d["seq"] in bad, invariant))
    lines.extend(_drops(trace))
    return "\n".join(lines)


def _step(seq: int, kind: str, row: dict, payloads: dict[str, str]) -> str:
    if kind == "timer":
        return f"{seq:>3}  {fmt_time(row['due_at']):<19}  {'':<19}  timer {row['key']}"
    moved = ""
    if row["perturbation"] != "none":
        moved = f"  [{row['perturbation']}" + (f" {fmt_ns(row['delay_ns'])}]" if row["delay_ns"] else "]")
    what = f"@{row['position']} {row['type']} {payloads.get(row['event_id'], '')}"
    return (f"{seq:>3}  {fmt_time(row['delivered_at']):<19}  {fmt_time(row['occurred_at']):<19}  "
            f"{what}{moved}")


def _decision(d: dict, broke: bool, invariant: str) -> str:
    reasons = ",".join(d["reasons"] or ())
    mark = f"   <-- breaks {invariant}" if broke else ""
    return (f"       => decision #{d['seq']} {d['kind']} {d['subject']} {d['status']}"
            f" conf={d['confidence']:.2f} ({reasons}){mark}")


def _drops(trace: Trace) -> list[str]:
    return [f"  -  never delivered: @{d.position} {d.event.type} ({d.reason})" for d in trace.drops]


def _payload(data: bytes) -> str:
    try:
        fields = msgspec.json.decode(data)
    except msgspec.DecodeError:
        fields = None
    if isinstance(fields, dict):
        text = " ".join(f"{k}={v}" for k, v in fields.items() if k != "type")
    else:
        text = data.decode("utf-8", "replace")
    return text if len(text) <= _DATA_WIDTH else text[: _DATA_WIDTH - 3] + "..."


def render_rows(rows: Sequence[dict[str, Any]], limit: int = 5) -> list[str]:
    """Violating rows as short ``key=value`` lines (``run_id`` left out).

    Times (``at``, ``*_at``, ``*_time``, ``*_until``: ns UTC) print as the
    timeline prints them (``2024-01-03 10:00:05``), durations (``*_ns``) as
    ``2h03m``; the rows themselves keep the numbers.
    """
    out = []
    for row in rows[:limit]:
        out.append(", ".join(f"{k}={fmt_value(k, v)}" for k, v in row.items() if k != "run_id"))
    if len(rows) > limit:
        out.append(f"... and {len(rows) - limit} more row(s)")
    return out

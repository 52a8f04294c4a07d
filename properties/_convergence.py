"""INV-5 convergence: once every event has arrived, the final state does not depend on delivery.

The perturbed run's final state is compared with the unperturbed replay of the
same log. A projection may say which part of its state must converge with a
``convergent(state)`` method (history such as sent notices legitimately depends
on timing); otherwise the whole state is compared, canonically JSON-encoded.
The check is skipped (``NotJudged``: the report counts it as skipped, not as
held) when an event was dropped or a source clock was skewed, since then the
runs did not see the same events, and on the unperturbed run itself, which
has nothing to be compared with. That every decision's basis converges, not
only the final state, is checked per domain in SQL (arrears: SM-AR-006).
"""

from __future__ import annotations

from typing import Any, Final

import msgspec

from ._invariants import NotJudged

MAX_ROWS: Final = 10
DESCRIPTION: Final = (
    "convergence: once every event has arrived, the final state (the projection's "
    "convergent(state), else all of it) equals the unperturbed replay's"
)
_SORTED = msgspec.json.Encoder(order="sorted")


def convergent_view(projection: Any, state: Any) -> Any:
    """The part of ``state`` that must converge, as plain JSON values."""
    view = getattr(projection, "convergent", None)
    value = view(state) if view is not None else state
    if isinstance(value, (bytes, bytearray, memoryview)):
        return msgspec.json.decode(value)
    return msgspec.json.decode(_SORTED.encode(value))


def check_convergence(trace: Any) -> list[dict]:
    """Rows naming each place where the final state differs from the unperturbed run's."""
    if trace.base is None or not trace.every_event_arrives():
        raise NotJudged("an event was lost or a clock skewed" if trace.base is not None
                        else "the unperturbed run")
    expected = convergent_view(trace.projection, trace.base.state)
    actual = convergent_view(trace.projection, trace.result.state)
    rows: list[dict] = []
    _diff(expected, actual, "state", rows)
    return rows


def _diff(expected: Any, actual: Any, path: str, rows: list[dict]) -> None:
    if len(rows) >= MAX_ROWS or expected == actual:
        return
    if isinstance(expected, dict) and isinstance(actual, dict):
        for key in sorted(set(expected) | set(actual), key=str):
            _diff(expected.get(key), actual.get(key), f"{path}.{key}", rows)
    elif isinstance(expected, list) and isinstance(actual, list) and len(expected) == len(actual):
        for i, (a, b) in enumerate(zip(expected, actual, strict=True)):
            _diff(a, b, f"{path}[{i}]", rows)
    else:
        rows.append({"path": path, "unperturbed": expected, "perturbed": actual,
                     "problem": "final state differs from the unperturbed replay"})


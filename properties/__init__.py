"""Property testing of projections: delivery schedules drawn by Hypothesis, invariants in SQL.

``check(log, "arrears")`` searches schedules (delays, duplicates, drops,
reordering, partitions, clock skew) for runs that break an invariant and
returns a ``CheckReport`` with a shrunk counterexample per broken invariant;
``check_log(path, "arrears")`` does the same for a log file (what ``make demo``
and ``unbroken check`` call). ``schedules(events)`` and the domain log
strategies are Hypothesis strategies for your own tests; ``Schedule`` is plain
data you can save and ``apply``. Saved counterexamples replay with
``replay_counterexample(dir)``.
"""

# pytest loads properties.pytest_plugin (and so this package) in every test session:
# the public names resolve on first use (PEP 562) so that plugin stays light to import.
# _PUBLIC is the one list of them; tests/test_public_names.py checks that each resolves.
from __future__ import annotations

import importlib
from typing import Any

_PUBLIC: dict[str, tuple[str, ...]] = {
    "._api": ("check_log",),
    "._counterexample": ("ReplayOutcome", "replay_counterexample"),
    "._evaluate": ("Evaluator",),
    "._examples": ("LogContext",),
    "._invariants": ("Invariant", "NotJudged", "Verdict", "builtin_invariants", "load_invariants"),
    "._logs": ("LogBuilder", "arrears_logs", "heartbeat_logs", "trading_logs"),
    "._report": ("CheckReport", "Counterexample", "InvariantResult"),
    "._schedules": ("IDENTITY", "Delay", "DropEvent", "Duplicate", "Partition", "Reorder", "Schedule", "Skew"),
    "._search": ("check",),
    "._spec": ("ProjectionSpecError", "factory_of"),
    "._strategies": ("SchedulePolicy", "schedules"),
    "._timeline": ("render_timeline",),
    "._trace": ("Trace",),
}
_EXPORTS = {name: module for module, names in _PUBLIC.items() for name in names}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    try:
        module = _EXPORTS[name]
    except KeyError:
        raise AttributeError(f"module 'properties' has no attribute {name!r}") from None
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))

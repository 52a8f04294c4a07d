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
# Under TYPE_CHECKING the plain re-exports below are what tools and readers see.
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "check_log": ("._api", "check_log"),
    "ReplayOutcome": ("._counterexample", "ReplayOutcome"),
    "replay_counterexample": ("._counterexample", "replay_counterexample"),
    "Evaluator": ("._evaluate", "Evaluator"),
    "LogContext": ("._examples", "LogContext"),
    "Invariant": ("._invariants", "Invariant"),
    "Verdict": ("._invariants", "Verdict"),
    "builtin_invariants": ("._invariants", "builtin_invariants"),
    "load_invariants": ("._invariants", "load_invariants"),
    "LogBuilder": ("._logs", "LogBuilder"),
    "arrears_logs": ("._logs", "arrears_logs"),
    "heartbeat_logs": ("._logs", "heartbeat_logs"),
    "trading_logs": ("._logs", "trading_logs"),
    "CheckReport": ("._report", "CheckReport"),
    "Counterexample": ("._report", "Counterexample"),
    "InvariantResult": ("._report", "InvariantResult"),
    "IDENTITY": ("._schedules", "IDENTITY"),
    "Delay": ("._schedules", "Delay"),
    "DropEvent": ("._schedules", "DropEvent"),
    "Duplicate": ("._schedules", "Duplicate"),
    "Partition": ("._schedules", "Partition"),
    "Reorder": ("._schedules", "Reorder"),
    "Schedule": ("._schedules", "Schedule"),
    "Skew": ("._schedules", "Skew"),
    "check": ("._search", "check"),
    "ProjectionSpecError": ("._spec", "ProjectionSpecError"),
    "factory_of": ("._spec", "factory_of"),
    "SchedulePolicy": ("._strategies", "SchedulePolicy"),
    "schedules": ("._strategies", "schedules"),
    "render_timeline": ("._timeline", "render_timeline"),
    "Trace": ("._trace", "Trace"),
}

if TYPE_CHECKING:
    from ._api import check_log as check_log
    from ._counterexample import ReplayOutcome as ReplayOutcome
    from ._counterexample import replay_counterexample as replay_counterexample
    from ._evaluate import Evaluator as Evaluator
    from ._examples import LogContext as LogContext
    from ._invariants import Invariant as Invariant
    from ._invariants import Verdict as Verdict
    from ._invariants import builtin_invariants as builtin_invariants
    from ._invariants import load_invariants as load_invariants
    from ._logs import LogBuilder as LogBuilder
    from ._logs import arrears_logs as arrears_logs
    from ._logs import heartbeat_logs as heartbeat_logs
    from ._logs import trading_logs as trading_logs
    from ._report import CheckReport as CheckReport
    from ._report import Counterexample as Counterexample
    from ._report import InvariantResult as InvariantResult
    from ._schedules import IDENTITY as IDENTITY
    from ._schedules import Delay as Delay
    from ._schedules import DropEvent as DropEvent
    from ._schedules import Duplicate as Duplicate
    from ._schedules import Partition as Partition
    from ._schedules import Reorder as Reorder
    from ._schedules import Schedule as Schedule
    from ._schedules import Skew as Skew
    from ._search import check as check
    from ._spec import ProjectionSpecError as ProjectionSpecError
    from ._spec import factory_of as factory_of
    from ._strategies import SchedulePolicy as SchedulePolicy
    from ._strategies import schedules as schedules
    from ._timeline import render_timeline as render_timeline
    from ._trace import Trace as Trace

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    try:
        module, attr = _EXPORTS[name]
    except KeyError:
        raise AttributeError(f"module 'properties' has no attribute {name!r}") from None
    value = getattr(importlib.import_module(module, __name__), attr)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))

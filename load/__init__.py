"""Seeded load: production-like event logs, the demo, open-loop load and soak runs.

``generate_arrears(path, ArrearsProfile(accounts=, days=, seed=))`` writes a
realistic arrears log; ``generate_bulk(path, events, seed)`` writes a large
one fast. Both are byte-identical for the same arguments.
"""

from .generators import ArrearsProfile as ArrearsProfile
from .generators import GenerateSummary as GenerateSummary
from .generators import arrears_lines as arrears_lines
from .generators import bulk_lines as bulk_lines
from .generators import generate_arrears as generate_arrears
from .generators import generate_bulk as generate_bulk

# Open-loop load and soak runs (docs/soak.md), resolved on first use (PEP 562) so that
# `import load` stays light for every `unbroken` command.
_SOAK: dict[str, tuple[str, ...]] = {
    "._arrivals": ("ArrivalError", "Arrivals", "Phase", "bursts", "constant", "parse_duration",
                   "poisson", "ramp", "schedule"),
    "._profiles": ("PROFILES", "Profile", "ProfileError", "profile"),
    "._targets": ("Message", "NatsTarget", "StoreTarget", "TargetError", "message_event_id",
                  "open_target"),
    "._driver": ("Plan", "Samples", "drive", "percentiles", "read_samples", "summarize",
                 "write_samples"),
    "._loadrun": ("LoadSpec", "run_load"),
    "._accounting": ("Accounting", "account"),
    "._criteria": ("Criterion", "verdict"),
    "._plan": ("FaultPlan", "PlanError", "PlannedFault", "load_plan", "parse_plan"),
    "._soak": ("Soak", "SoakError", "SoakSpec", "rejudge"),
    "._follower": ("Follower", "read_checkpoint", "read_projected"),
    "._metrics": ("IngestMetrics", "LoadMetrics", "ProjectionMetrics", "TimedStore", "scrape"),
}
_LAZY = {name: module for module, names in _SOAK.items() for name in names}

__all__ = [
    "ArrearsProfile", "GenerateSummary", "arrears_lines", "bulk_lines", "generate_arrears",
    "generate_bulk", *sorted(_LAZY),
]


def __getattr__(name: str):
    import importlib

    try:
        module = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'load' has no attribute {name!r}") from None
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value

"""Seeded load: production-like event logs, the demo, and (later) open-loop load and soak runs.

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

__all__ = [
    "ArrearsProfile", "GenerateSummary", "arrears_lines", "bulk_lines", "generate_arrears",
    "generate_bulk",
]

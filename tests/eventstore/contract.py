"""The event store contract suite: every case, defined once, for every backend.

A backend is done when all of these pass on it. ``test_contract.py`` runs
them through the ``backend`` fixture (conftest.py), which is parametrized over
``memory://``, ``embedded://`` and, when a server is configured, ``kurrentdb://``.
"""

from __future__ import annotations

from .contract_append import AppendCases
from .contract_concurrency import ConcurrencyCases
from .contract_durability import DurabilityCases
from .contract_fields import FieldCases
from .contract_multi import MultiAppendCases
from .contract_read import ReadCases
from .contract_subscribe import SubscriptionCases
from .contract_validation import ClosedCases, ValidationCases


class StoreContract(
    AppendCases,
    MultiAppendCases,
    ReadCases,
    FieldCases,
    ValidationCases,
    ClosedCases,
    SubscriptionCases,
    ConcurrencyCases,
    DurabilityCases,
):
    """Every contract case; subclass it in a ``test_*.py`` module to run them."""

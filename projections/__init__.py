"""Projections: pure folds from events to state and decisions.

The contract (``Projection``, ``Context``, ``Decision``, ``Timer``, ``Status``,
``EFFECTIVE``), stable reason codes (``projections.reasons``), the domain
projections and a registry: ``get("arrears", hold_hours="48")`` builds one by
name from typed or CLI-string config; ``names()`` lists them
(``replay.load_projection`` also takes ``file.py:factory`` for your own).
"""

from . import reasons as reasons
from ._arrears.config import ArrearsConfig as ArrearsConfig
from ._arrears.projection import ArrearsProjection as ArrearsProjection
from ._arrears.state import ArrearsState as ArrearsState
from ._bacnet.config import BacnetRegistryConfig as BacnetRegistryConfig
from ._bacnet.projection import BacnetRegistryProjection as BacnetRegistryProjection
from ._bacnet.state import BacnetRegistryState as BacnetRegistryState
from ._config import ConfigError as ConfigError
from ._contract import EFFECTIVE as EFFECTIVE
from ._contract import Context as Context
from ._contract import Decision as Decision
from ._contract import Projection as Projection
from ._contract import Status as Status
from ._contract import Timer as Timer
from ._dosing.config import DosingConfig as DosingConfig
from ._dosing.projection import DosingProjection as DosingProjection
from ._dosing.state import DosingState as DosingState
from ._grid.config import GridConfig as GridConfig
from ._grid.projection import GridProjection as GridProjection
from ._grid.state import GridState as GridState
from ._registry import config_type as config_type
from ._registry import get as get
from ._registry import names as names
from ._registry import parse_pairs as parse_pairs
from ._registry import register as register
from ._trading.config import TradingConfig as TradingConfig
from ._trading.projection import TradingProjection as TradingProjection
from ._trading.state import TradingState as TradingState

register("arrears", ArrearsProjection, ArrearsConfig)
register("bacnet", BacnetRegistryProjection, BacnetRegistryConfig)
register("dosing", DosingProjection, DosingConfig)
register("grid", GridProjection, GridConfig)
register("trading", TradingProjection, TradingConfig)

__all__ = [
    "ArrearsConfig",
    "ArrearsProjection",
    "ArrearsState",
    "BacnetRegistryConfig",
    "BacnetRegistryProjection",
    "BacnetRegistryState",
    "ConfigError",
    "Context",
    "Decision",
    "DosingConfig",
    "DosingProjection",
    "DosingState",
    "GridConfig",
    "GridProjection",
    "GridState",
    "EFFECTIVE",
    "Projection",
    "Status",
    "Timer",
    "TradingConfig",
    "TradingProjection",
    "TradingState",
    "config_type",
    "get",
    "names",
    "parse_pairs",
    "reasons",
    "register",
]

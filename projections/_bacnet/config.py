"""Settings of the BACnet object registry: how much history it keeps and how many objects."""

from __future__ import annotations

import msgspec

from projections._config import ConfigError


class BacnetRegistryConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Settings of the ``bacnet`` projection (the object registry).

    - ``history_limit`` (64): recent values kept per object; the oldest is dropped first.
    - ``max_objects`` (5000): objects kept at most; past it the object updated least
      recently is evicted whole (counted in ``state.evicted``).
    - ``history_budget`` (262144): history entries kept over all objects; past it the
      oldest entry of the object updated least recently is dropped first, so busy
      objects keep their history. About 150 bytes an entry resident, so the default
      is about 40 MB, inside BN-004's 64 MB history budget (measured by
      ``tests/bench/bench_bacnet.py --full-history-only``).
    """

    history_limit: int = 64
    max_objects: int = 5000
    history_budget: int = 262_144

    def __post_init__(self) -> None:
        if self.history_limit < 1:
            raise ConfigError("bacnet: history_limit must be at least 1")
        if self.max_objects < 1:
            raise ConfigError("bacnet: max_objects must be at least 1")
        if self.history_budget < self.history_limit:
            raise ConfigError("bacnet: history_budget must be at least history_limit")

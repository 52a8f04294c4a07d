"""The grid projection's settings: liveness bounds, hysteresis, protection, balance tolerance."""

from __future__ import annotations

import msgspec

from projections._config import ConfigError

SECOND_NS = 1_000_000_000


class GridConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Settings of the grid projection. Times are seconds.

    - ``stale_s`` (750, 2.5 metering intervals of 5 min): a node heard from nothing newer
      (by its own time) for this long is silent.
    - ``recover_s`` (900): a silent node that reports again counts as silent until it
      has kept reporting for this long (hysteresis: one lost packet never flips it).
    - ``expected_nodes`` (none): nodes known before they report (silent until heard).
    - ``slot_s`` (300): the slot length for frequency samples from Modbus frames
      (readings carry their own interval).
    - ``trip_hz`` (49.5): under-frequency level of the protection (load shedding).
    - ``confirm_intervals`` (2): consecutive intervals whose median frequency must be under
      ``trip_hz`` before the action is held.
    - ``quorum`` (0.5): an interval is judged only when this share of known nodes reported in it.
    - ``hold_s`` (60): the hold before a load shed is released, after a re-check.
    - ``balance_tolerance`` (0.001 = 0.1%): |produced - consumed - losses - storage change|
      allowed, relative to produced.
    - ``settle_s`` (3600): the day's balance is judged this long after the day ends (UTC).
    - ``min_confidence_external`` (0.9): the bar of the load-shed action.
    """

    stale_s: float = 750.0
    recover_s: float = 900.0
    expected_nodes: tuple[str, ...] = ()
    slot_s: float = 300.0
    trip_hz: float = 49.5
    confirm_intervals: int = 2
    quorum: float = 0.5
    hold_s: float = 60.0
    balance_tolerance: float = 0.001
    settle_s: float = 3600.0
    min_confidence_external: float = 0.9

    def __post_init__(self) -> None:
        checks = (
            ("stale_s", self.stale_s > 0, "must be > 0"),
            ("recover_s", self.recover_s >= 0, "must be >= 0"),
            ("slot_s", self.slot_s > 0, "must be > 0"),
            ("trip_hz", 0 < self.trip_hz < 1000, "must be in (0, 1000)"),
            ("confirm_intervals", self.confirm_intervals >= 1, "must be >= 1"),
            ("quorum", 0 < self.quorum <= 1, "must be in (0, 1]"),
            ("hold_s", self.hold_s >= 0, "must be >= 0"),
            ("balance_tolerance", 0 < self.balance_tolerance < 1, "must be in (0, 1)"),
            ("settle_s", self.settle_s >= 0, "must be >= 0"),
            ("min_confidence_external", 0 < self.min_confidence_external <= 1, "must be in (0, 1]"),
        )
        for key, ok, what in checks:
            if not ok:
                raise ConfigError(f"grid: {key} {what}, got {getattr(self, key)!r}")

    def ns(self, seconds: float) -> int:
        """``seconds`` as integer nanoseconds."""
        return round(seconds * SECOND_NS)

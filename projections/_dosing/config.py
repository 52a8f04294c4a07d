"""The dosing projection's settings: sensor names and bounds, targets, hold, dose, cap."""

from __future__ import annotations

import msgspec

from projections._config import ConfigError

SECOND_NS = 1_000_000_000
MINUTE_NS = 60 * SECOND_NS
DAY_NS = 86_400 * SECOND_NS


class DosingConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Settings of the dosing projection. Times are seconds; rates are per minute.

    - ``ec_sensor`` / ``ph_sensor`` / ``level_sensor`` / ``temp_sensor``: the names of the
      decoded values (device-file register names) the controller reads.
    - ``nutrient_relay`` / ``ph_relay``: the coil names of the two pump relays.
    - ``*_min`` / ``*_max``: the valid range of each sensor; a reading outside is invalid.
    - ``*_rate``: the largest change per minute a sensor can make, plus ``*_noise`` (the
      measurement noise, absolute) between any two readings; faster is refused.
    - ``ec_target`` (1.8) and ``ec_deadband`` (0.1): dose nutrient below target - band.
    - ``ph_target`` (6.0) and ``ph_deadband`` (0.2): dose pH-down above target + band.
    - ``level_low`` (20): no dosing below this water level; ``temp_low``/``temp_high``
      (5/35): no dosing outside this temperature band.
    - ``freshness_s`` (30): a last good value is used this long, then the sensor is unavailable.
    - ``stuck_s`` (600): the exact same value for this long means a stuck sensor.
    - ``hold_s`` (10): every dose is held this long and re-checked before release.
    - ``dose_s`` (5): how long one dose runs the pump; ``mix_s`` (60): the least time
      between two doses of the same pump.
    - ``daily_cap_s`` (60): most runtime per pump per (local) day, derived from events.
    - ``safe_bound_s`` (5): an unknown relay state must lead to the safe state within this.
    - ``utc_offset_minutes`` (0): where the local day starts.
    - ``min_confidence_external`` (0.9) > ``min_confidence_internal`` (0.5).
    """

    ec_sensor: str = "ec"
    ph_sensor: str = "ph"
    level_sensor: str = "level"
    temp_sensor: str = "temperature"
    nutrient_relay: str = "nutrient_pump"
    ph_relay: str = "ph_pump"
    ec_min: float = 0.0
    ec_max: float = 10.0
    ph_min: float = 0.0
    ph_max: float = 14.0
    level_min: float = 0.0
    level_max: float = 100.0
    temp_min: float = -10.0
    temp_max: float = 60.0
    ec_rate: float = 1.0
    ph_rate: float = 1.0
    level_rate: float = 10.0
    temp_rate: float = 5.0
    ec_noise: float = 0.05
    ph_noise: float = 0.05
    level_noise: float = 1.0
    temp_noise: float = 0.5
    ec_target: float = 1.8
    ec_deadband: float = 0.1
    ph_target: float = 6.0
    ph_deadband: float = 0.2
    level_low: float = 20.0
    temp_low: float = 5.0
    temp_high: float = 35.0
    freshness_s: float = 30.0
    stuck_s: float = 600.0
    hold_s: float = 10.0
    dose_s: float = 5.0
    mix_s: float = 60.0
    daily_cap_s: float = 60.0
    safe_bound_s: float = 5.0
    utc_offset_minutes: int = 0
    min_confidence_external: float = 0.9
    min_confidence_internal: float = 0.5

    def __post_init__(self) -> None:
        for problem in _problems(self):
            raise ConfigError(f"dosing: {problem}")

    def ns(self, name: str) -> int:
        """The ``*_s`` setting ``name`` as integer nanoseconds."""
        return int(round(getattr(self, name) * SECOND_NS))


def _problems(c: DosingConfig) -> list[str]:
    """Every setting that cannot work, worded as what to change."""
    problems = []
    for name in ("freshness_s", "stuck_s", "dose_s", "daily_cap_s", "safe_bound_s",
                 "ec_rate", "ph_rate", "level_rate", "temp_rate"):
        if getattr(c, name) <= 0:
            problems.append(f"{name} must be > 0, got {getattr(c, name)}")
    for name in ("hold_s", "mix_s", "ec_deadband", "ph_deadband", "ec_noise", "ph_noise",
                 "level_noise", "temp_noise"):
        if getattr(c, name) < 0:
            problems.append(f"{name} must be >= 0, got {getattr(c, name)}")
    for sensor in ("ec", "ph", "level", "temp"):
        lo, hi = getattr(c, f"{sensor}_min"), getattr(c, f"{sensor}_max")
        if lo >= hi:
            problems.append(f"{sensor}_min must be below {sensor}_max, got {lo} >= {hi}")
    if c.temp_low >= c.temp_high:
        problems.append(f"temp_low must be below temp_high, got {c.temp_low} >= {c.temp_high}")
    if not 0 <= c.min_confidence_internal < c.min_confidence_external <= 1:
        problems.append("need 0 <= min_confidence_internal < min_confidence_external <= 1, got "
                        f"{c.min_confidence_internal} and {c.min_confidence_external}")
    return problems

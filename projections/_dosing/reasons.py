"""Stable reason codes of the dosing projection (added here, beside the shared ones).

Same rules as ``projections.reasons``: a code is never renamed or reused, and its
value is its name in lower case. The shared ``HOLD_WINDOW``, ``RECHECKED_AT_RELEASE``
and ``LOW_CONFIDENCE`` codes are used as they are.
"""

from __future__ import annotations

from typing import Final

NO_SENSOR_READING: Final = "no_sensor_reading"
"""A sensor the dose depends on has never given a good reading."""

SENSOR_STALE: Final = "sensor_stale"
"""The last good reading of a sensor is older than the freshness bound (HY-004)."""

SENSOR_OUT_OF_RANGE: Final = "sensor_out_of_range"
"""The newest reading of a sensor is outside its valid range; the last good one is not trusted."""

SENSOR_STUCK: Final = "sensor_stuck"
"""A sensor has reported the exact same value for longer than the stuck bound."""

IMPOSSIBLE_RATE: Final = "impossible_rate"
"""The newest reading of a sensor moved faster than the process can; it is refused."""

LEVEL_LOW: Final = "level_low"
"""The water level is below the minimum for dosing."""

TEMPERATURE_OUT_OF_BAND: Final = "temperature_out_of_band"
"""The water temperature is outside the band where dosing is allowed."""

RELAY_UNKNOWN: Final = "relay_unknown"
"""A pump relay's state is unknown (write not acknowledged, or read back different) (HY-005)."""

DAILY_CAP_REACHED: Final = "daily_cap_reached"
"""Another dose would take the pump's runtime today over the daily cap (HY-006)."""

EC_BELOW_TARGET: Final = "ec_below_target"
"""EC is below target minus the dead band: the nutrient pump should dose."""

PH_ABOVE_TARGET: Final = "ph_above_target"
"""pH is above target plus the dead band: the pH-down pump should dose."""

NEED_GONE: Final = "need_gone"
"""At release, the reading that called for the dose no longer does."""

MIXING_WAIT: Final = "mixing_wait"
"""The previous dose of the pump is still mixing in; no new dose yet."""

SAFE_STATE: Final = "safe_state"
"""Pumps switched off because the controller cannot trust a relay's state."""

ALL: Final = frozenset(v for k, v in dict(globals()).items() if k.isupper() and isinstance(v, str))

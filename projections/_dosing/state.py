"""The dosing projection's state, per tank (device): sensors, relays, pumps and doses.

Every struct is mutable so ``apply`` updates in place and msgspec-encodable so a
snapshot decodes back into ``DosingState``. Times are integer ns UTC.
"""

from __future__ import annotations

import msgspec


class Reading(msgspec.Struct, array_like=True, gc=False):
    """A sensor value at its trusted source time, and the event it came in."""

    at: int
    value: float
    event_id: str


class Sensor(msgspec.Struct):
    """What is known of one sensor.

    ``good`` is the newest reading that passed every check (used within the
    freshness bound only); ``latest`` is the newest reading by source time,
    whatever it was (order-independent, for convergence); ``problem`` is why the
    newest reading was refused ("" when it was good); ``run_value`` and
    ``run_since`` track how long the value has been exactly the same (stuck).
    """

    good: Reading | None = None
    latest: Reading | None = None
    problem: str = ""
    problem_at: int = 0
    run_value: float | None = None
    run_since: int = 0
    run_last: int = 0
    refused_in_a_row: int = 0
    unavailable: bool = False


class Relay(msgspec.Struct, gc=False):
    """A pump relay: "on", "off", "unknown" (HY-005) or "" (never seen); since when."""

    state: str = ""
    at: int = 0


class Dose(msgspec.Struct, array_like=True, gc=False):
    """One dose counted against the daily cap: when it started and how long it runs."""

    at: int
    duration_ns: int


class Pump(msgspec.Struct):
    """One dosing pump: its open hold (if any), the reasons it was last blocked, its doses."""

    hold_key: str = ""
    hold_until: int = 0
    blocked: tuple[str, ...] = ()
    last_dose_at: int | None = None
    doses: dict[str, Dose] = {}  # effect key -> dose (own releases and recorded commands)


class Tank(msgspec.Struct):
    """One device: its sensors, relays and pumps, and whether it is in the safe state."""

    sensors: dict[str, Sensor] = {}
    relays: dict[str, Relay] = {}
    pumps: dict[str, Pump] = {}
    safe_since: int | None = None
    faults: int = 0


class DosingState(msgspec.Struct):
    """Every tank by device name."""

    tanks: dict[str, Tank] = {}

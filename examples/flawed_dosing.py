"""Deliberately flawed variants of the dosing projection, to show ``unbroken check`` finds them.

Each is the real ``DosingProjection`` with one mistake of a different class,
the kind that passes a happy-path unit test and shows up only when the link,
the device or the controller's own restarts misbehave:

- ``trusts_last_value_forever`` (freshness): the last good reading is used
  however old it is, so when the Modbus link fails the controller keeps
  dosing on a value it no longer sees (breaks HY-1 and INV-1; HY-001, HY-004).
- ``no_recheck_at_release`` (hold without re-check): a held dose is released
  on what was true when it was held; an invalid or missing reading that
  arrives during the hold changes nothing (breaks HY-1; HY-003).
- ``trusts_write_ack`` (unknown state taken as known): a write the device
  acknowledged is believed even when reading it back disagrees, so there is
  no safe state and dosing goes on (breaks HY-3; HY-005).
- ``cap_in_memory`` (state not derived from events): the daily runtime
  counts only doses this process released, not the pump-on commands
  recorded by an earlier run, so a restart resets the cap (breaks HY-2; HY-006).
- ``ignores_level_and_temperature`` (a guard on the trigger only): a dose looks at
  the reading that calls for it (EC or pH) and nothing else, so it doses a tank
  whose water level ran low or whose temperature left its band (breaks HY-1).

Use them by spec: ``unbroken check --log LOG --projection
examples/flawed_dosing.py:trusts_last_value_forever``. They reach into the
projection's private parts on purpose: a flaw is a one-line change.
"""

from __future__ import annotations

from typing import Any

import projections
from projections import DosingProjection


class _StaleForever(DosingProjection):
    def usable(self, tank, name, now):
        sensor = tank.sensors.get(name)
        if sensor is not None and sensor.good is not None:
            return sensor.good, ""  # the flaw: no freshness bound, no refusal of newer readings
        return super().usable(tank, name, now)


class _NoRecheck(DosingProjection):
    def _release(self, tank, device, pump_name, ctx):
        pump = tank.pumps[pump_name]
        if not pump.hold_key:
            return
        # The flaw: what was assessed at hold time stands; nothing is looked at again.
        readings = tuple(s.good for n, s in sorted(tank.sensors.items())
                         if s.good is not None and n in self.needs[pump_name])
        from projections._dosing.state import Dose

        key, until = pump.hold_key, pump.hold_until
        pump.hold_key, pump.hold_until = "", 0
        pump.doses[key] = Dose(ctx.now, self.dose_ns)
        pump.last_dose_at = ctx.now
        self._decide(device, pump_name, projections.Status.RELEASED, ("released_as_held",), readings,
                     key, until, ctx)


class _TrustsAck(DosingProjection):
    def _on_readback(self, state, p, event, ctx):
        if p.target in self.pump_of and not p.matches and p.value is None:
            return super()._on_readback(state, p, event, ctx)
        # The flaw: an acknowledged write is what the relay now is, whatever the read-back says.
        tank = self._tank(state, p.device)
        self._fold_relay(tank, p.device, p.target, "on" if p.expected else "off", ctx.now,
                         str(event.id), ctx)

    def _on_result(self, state, p, event, ctx):
        return None  # nor does a write that was not acknowledged make the state unknown


class _CapInMemory(DosingProjection):
    def _on_command(self, state, p, event, ctx):
        return None  # the flaw: pump-on commands recorded by an earlier run are not counted


class _OwnSensorOnly(DosingProjection):
    def __init__(self, config=None):
        super().__init__(config)
        c = self.c
        # The flaw: only the sensor that calls for a dose is looked at; level and temperature never.
        self.needs = {"nutrient": (c.ec_sensor,), "ph": (c.ph_sensor,)}


def _variant(cls: type[DosingProjection], name: str, **config: Any) -> DosingProjection:
    real = projections.get("dosing", **config)
    variant = cls(real.c)
    variant.name = name
    return variant


def trusts_last_value_forever(**config: Any) -> DosingProjection:
    """Dosing, except the last good reading never goes stale."""
    return _variant(_StaleForever, "dosing-trusts-last-value-forever", **config)


def no_recheck_at_release(**config: Any) -> DosingProjection:
    """Dosing, except a held dose is released without checking anything again."""
    return _variant(_NoRecheck, "dosing-no-recheck-at-release", **config)


def trusts_write_ack(**config: Any) -> DosingProjection:
    """Dosing, except an acknowledged write is believed over its read-back."""
    return _variant(_TrustsAck, "dosing-trusts-write-ack", **config)


def cap_in_memory(**config: Any) -> DosingProjection:
    """Dosing, except the daily cap forgets doses recorded before this process started."""
    return _variant(_CapInMemory, "dosing-cap-in-memory", **config)


def ignores_level_and_temperature(**config: Any) -> DosingProjection:
    """Dosing, except a dose checks only its own sensor, not the water level or temperature."""
    return _variant(_OwnSensorOnly, "dosing-ignores-level-and-temperature", **config)

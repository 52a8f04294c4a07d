"""The hydroponic dosing controller as a projection (scenarios HY-001..HY-006).

How it works, per tank (a Modbus device):

1. Sensors. Each ``ModbusFrame`` brings decoded values by name. A sensor value
   counts at its trusted time, min(source time, ``ctx.now``). It is refused
   when it is outside the valid range (or the poller marked it invalid),
   older than the last good one, moved faster than ``*_rate`` per minute plus
   ``*_noise`` (three refusals in a row re-anchor on the new value), or (EC and
   pH probes, which are never that steady) has been exactly the same for
   ``stuck_s`` of readings without a gap longer than the freshness bound. A good value is used only within ``freshness_s``;
   a ``stale:`` timer at the bound marks the sensor unavailable with a
   decision saying so (HY-004).
2. Relays. A frame reading the relay coils makes their state known. A write
   not acknowledged, or read back different or not at all, makes it
   ``unknown`` (HY-005): at once a RELEASED ``safe-state`` decision (pumps
   off), every held dose of the tank is cancelled, and no dose of the tank is
   held again until newer readings show every relay's state.
3. Doses. After each frame (and each fault, to say why nothing happens) each
   pump is evaluated: nutrient when EC < target - band, pH-down when pH >
   target + band. Any missing, stale, refused or unavailable input, low
   level, temperature out of band, unknown relay, or a cap that the dose
   would break BLOCKS it with the reasons (recorded when they change). Never
   on missing data (HY-001). Otherwise it is HELD for ``hold_s`` (a
   ``release:`` timer); at release everything is checked again against what
   is known then and it is RELEASED (external, irreversible, effect key
   ``dose:{tank}:{pump}:{hold start}``) or CANCELLED with reasons.
4. Daily cap (HY-006). Each pump's runtime today is the sum of its doses
   counted by effect key: its own releases and every ``ModbusWriteCommand``
   with a ``duration_ms`` the store holds, so the cap survives restarts of
   the controller (state derives from events) and a dose is never counted twice.

Confidence is 1 when every input is fresh; blocked decisions carry what they
rest on. State is updated in place and returned.
"""

from __future__ import annotations

import math
from typing import Any

from eventstore import RecordedEvent
from eventstore.payloads import decode_payload
from projections import reasons as R
from projections._config import config_dict
from projections._contract import Context, Decision, Status, Timer

from . import reasons as D
from .config import DAY_NS, MINUTE_NS, DosingConfig
from .state import Dose, DosingState, Pump, Reading, Relay, Sensor, Tank

PUMPS = ("nutrient", "ph")
KIND_DOSE = "dose"
KIND_SENSOR = "sensor"
KIND_SAFE = "safe-state"
_REFUSALS_TO_REANCHOR = 3


class DosingProjection:
    """Nutrient and pH-down dosing held, re-checked and released on trusted, fresh inputs only."""

    name = "dosing"
    domain = "dosing"  # variants keep it: the HY invariants judge them too
    version = "1"
    state_type = DosingState

    def __init__(self, config: DosingConfig | None = None) -> None:
        self.c = config if config is not None else DosingConfig()
        c = self.c
        self.freshness_ns = c.ns("freshness_s")
        self.hold_ns = c.ns("hold_s")
        self.dose_ns = c.ns("dose_s")
        self.cap_ns = c.ns("daily_cap_s")
        self.mix_ns = c.ns("mix_s")
        self.stuck_ns = c.ns("stuck_s")
        self.safe_ns = c.ns("safe_bound_s")
        self.offset_ns = c.utc_offset_minutes * MINUTE_NS
        self.bounds = {
            c.ec_sensor: (c.ec_min, c.ec_max, c.ec_rate, c.ec_noise),
            c.ph_sensor: (c.ph_min, c.ph_max, c.ph_rate, c.ph_noise),
            c.level_sensor: (c.level_min, c.level_max, c.level_rate, c.level_noise),
            c.temp_sensor: (c.temp_min, c.temp_max, c.temp_rate, c.temp_noise),
        }
        self.probes = frozenset({c.ec_sensor, c.ph_sensor})  # noisy probes: the same value is suspect
        self.relay_of = {"nutrient": c.nutrient_relay, "ph": c.ph_relay}
        self.pump_of = {v: k for k, v in self.relay_of.items()}
        self._handlers = {t: getattr(self, name) for t, name in _HANDLERS.items()}  # overridable
        self.needs = {"nutrient": (c.ec_sensor, c.level_sensor, c.temp_sensor),
                      "ph": (c.ph_sensor, c.level_sensor, c.temp_sensor)}

    def initial(self) -> DosingState:
        """A fresh, empty state."""
        return DosingState()

    def config(self) -> dict[str, Any]:
        """The settings in force, as plain values."""
        return config_dict(self.c)

    def apply(self, state: DosingState, event: RecordedEvent, ctx: Context) -> DosingState:
        """Fold one delivered event; other event types pass through untouched."""
        handler = self._handlers.get(event.type)
        if handler is not None:
            handler(state, decode_payload(event), event, ctx)
        return state

    def on_timer(self, state: DosingState, timer: Timer, ctx: Context) -> DosingState:
        """``stale:`` marks a sensor unavailable; ``release:`` re-checks and releases a held dose."""
        kind, device, name = timer.payload
        tank = state.tanks.get(device)
        if tank is None:
            return state
        if kind == "stale":
            self._on_stale(tank, device, name, ctx)
        elif kind == "release":
            self._release(tank, device, name, ctx)
        return state

    @staticmethod
    def convergent(state: DosingState) -> dict[str, Any]:
        """The order-independent part: each sensor's newest reading by source time, and the
        doses recorded by write commands (INV-5)."""
        return {
            device: {
                "latest": {n: (s.latest.at, s.latest.value) for n, s in sorted(t.sensors.items()) if s.latest},
                "commanded": {p: sorted(k for k in pump.doses if k.startswith("cmd:"))
                              for p, pump in sorted(t.pumps.items())},
            }
            for device, t in sorted(state.tanks.items())
        }

    # -- events -------------------------------------------------------------------------
    def _tank(self, state: DosingState, device: str) -> Tank:
        tank = state.tanks.get(device)
        if tank is None:
            tank = state.tanks[device] = Tank(pumps={p: Pump() for p in PUMPS})
        return tank

    def _on_frame(self, state: DosingState, p: Any, event: RecordedEvent, ctx: Context) -> None:
        tank = self._tank(state, p.device)
        at = min(event.occurred_at, ctx.now)
        eid = str(event.id)
        for name, value in p.decoded.items():
            if name in self.bounds:
                self._fold_sensor(tank, p.device, name, value, name in p.invalid, at, eid, ctx)
            elif name in self.pump_of and isinstance(value, bool):
                self._fold_relay(tank, p.device, name, "on" if value else "off", at, eid, ctx)
        self._evaluate(tank, p.device, ctx, (eid,))

    def _on_fault(self, state: DosingState, p: Any, event: RecordedEvent, ctx: Context) -> None:
        tank = self._tank(state, p.device)
        tank.faults += 1
        self._evaluate(tank, p.device, ctx, (str(event.id),))

    def _on_command(self, state: DosingState, p: Any, event: RecordedEvent, ctx: Context) -> None:
        pump = self.pump_of.get(p.target)
        if pump is None or not p.duration_ms or not p.value:
            return
        tank = self._tank(state, p.device)
        key = f"cmd:{p.effect_key or p.command_id}"  # our own release carried out counts once
        tank.pumps[pump].doses.setdefault(key, Dose(min(event.occurred_at, ctx.now), p.duration_ms * 1_000_000))

    def _on_result(self, state: DosingState, p: Any, event: RecordedEvent, ctx: Context) -> None:
        if not p.ok and p.target in self.pump_of:
            self._relay_unknown(self._tank(state, p.device), p.device, p.target, str(event.id), ctx,
                                min(event.occurred_at, ctx.now))

    def _on_readback(self, state: DosingState, p: Any, event: RecordedEvent, ctx: Context) -> None:
        if p.target not in self.pump_of:
            return
        tank = self._tank(state, p.device)
        if p.matches and isinstance(p.value, bool):
            self._fold_relay(tank, p.device, p.target, "on" if p.value else "off",
                             min(event.occurred_at, ctx.now), str(event.id), ctx)
        else:
            self._relay_unknown(tank, p.device, p.target, str(event.id), ctx, min(event.occurred_at, ctx.now))

    # -- sensors -------------------------------------------------------------------------
    def _fold_sensor(self, tank: Tank, device: str, name: str, value: Any, flagged: bool, at: int,
                     eid: str, ctx: Context) -> None:
        sensor = tank.sensors.get(name)
        if sensor is None:
            sensor = tank.sensors[name] = Sensor()
        number = float(value) if isinstance(value, int | float) and not isinstance(value, bool) else math.nan
        reading = Reading(at, number, eid)
        if sensor.latest is None or (at, number) > (sensor.latest.at, sensor.latest.value):
            sensor.latest = reading
        if sensor.good is not None and at <= sensor.good.at:
            return  # older than what we trust: it changes nothing
        problem = self._problem(sensor, name, number, flagged, at)
        if problem:
            sensor.problem, sensor.problem_at = problem, at
            return
        sensor.good, sensor.problem, sensor.refused_in_a_row = reading, "", 0
        sensor.unavailable = False
        ctx.schedule(at + self.freshness_ns, f"stale:{device}:{name}", ("stale", device, name))

    def _problem(self, sensor: Sensor, name: str, value: float, flagged: bool, at: int) -> str:
        """Why ``value`` at ``at`` cannot be trusted, or ""."""
        lo, hi, rate, noise = self.bounds[name]
        if flagged or not math.isfinite(value) or not lo <= value <= hi:
            return D.SENSOR_OUT_OF_RANGE
        if name in self.probes:
            if value != sensor.run_value or at - sensor.run_last > self.freshness_ns:
                sensor.run_value, sensor.run_since = value, at  # a new run (a gap breaks one)
            sensor.run_last = at
            if at - sensor.run_since >= self.stuck_ns:
                return D.SENSOR_STUCK
        good = sensor.good
        if good is not None:
            minutes = (at - good.at) / MINUTE_NS
            if abs(value - good.value) > rate * minutes + noise:
                sensor.refused_in_a_row += 1
                if sensor.refused_in_a_row < _REFUSALS_TO_REANCHOR:
                    return D.IMPOSSIBLE_RATE
        return ""

    def _on_stale(self, tank: Tank, device: str, name: str, ctx: Context) -> None:
        sensor = tank.sensors.get(name)
        if sensor is None or sensor.good is None or sensor.unavailable:
            return
        if ctx.now - sensor.good.at < self.freshness_ns:
            return
        sensor.unavailable = True
        ctx.decide(Decision(
            kind=KIND_SENSOR, subject=f"{device}/{name}", action="unavailable", status=Status.BLOCKED,
            reasons=(D.SENSOR_STALE,), confidence=0.0, min_confidence=self.c.min_confidence_internal,
            inputs=(sensor.good.event_id,), input_time=sensor.good.at, freshness_ns=self.freshness_ns,
        ))

    def usable(self, tank: Tank, name: str, now: int) -> tuple[Reading | None, str]:
        """The reading of sensor ``name`` a decision may rest on at ``now``, else why none."""
        sensor = tank.sensors.get(name)
        if sensor is None or sensor.good is None:
            return None, (sensor.problem if sensor is not None and sensor.problem else D.NO_SENSOR_READING)
        if sensor.problem and sensor.problem_at > sensor.good.at:
            return None, sensor.problem
        if now - sensor.good.at > self.freshness_ns:
            return None, D.SENSOR_STALE
        return sensor.good, ""

    # -- relays ---------------------------------------------------------------------------
    def _fold_relay(self, tank: Tank, device: str, name: str, value: str, at: int, eid: str,
                    ctx: Context) -> None:
        relay = tank.relays.get(name)
        if relay is None:
            relay = tank.relays[name] = Relay()
        if relay.state and at <= relay.at:
            return  # an older view of the relay than the one we have
        relay.state, relay.at = value, at
        if tank.safe_since is not None and all(r.state in ("on", "off") for r in tank.relays.values()):
            tank.safe_since = None

    def _relay_unknown(self, tank: Tank, device: str, name: str, eid: str, ctx: Context,
                       reported_at: int | None = None) -> None:
        relay = tank.relays.get(name)
        if relay is None:
            relay = tank.relays[name] = Relay()
        relay.state, relay.at = "unknown", ctx.now
        for pump in PUMPS:
            self._cancel_hold(tank, device, pump, (D.RELAY_UNKNOWN,), ctx)
        if tank.safe_since is not None:
            return
        tank.safe_since = ctx.now
        # The safe state is never gated by the age of its input: switching off must happen
        # however late the report arrives (HY-3 judges how promptly it follows). So it is not
        # an "external effect" for INV-1/2/4, which guard effects against stale or weak input;
        # it still carries an effect key, and its input time is the report's trusted time.
        ctx.decide(Decision(
            kind=KIND_SAFE, subject=device, action="pumps-off", status=Status.RELEASED,
            reasons=(D.RELAY_UNKNOWN, D.SAFE_STATE), confidence=1.0,
            min_confidence=self.c.min_confidence_internal, inputs=(eid,),
            effect_key=f"safe:{device}:{ctx.now}", external=False, irreversible=False,
            input_time=ctx.now if reported_at is None else reported_at, freshness_ns=self.safe_ns,
        ))

    # -- doses ----------------------------------------------------------------------------
    def runtime_today(self, pump: Pump, now: int) -> int:
        """Runtime (ns) of ``pump`` counted on the local day of ``now``."""
        day = (now + self.offset_ns) // DAY_NS
        doses = pump.doses
        return sum(d.duration_ns for key, d in doses.items()
                   if (d.at + self.offset_ns) // DAY_NS == day and f"cmd:{key}" not in doses)

    def assess(self, tank: Tank, pump_name: str, now: int) -> tuple[bool | None, tuple[str, ...], tuple[Reading, ...]]:
        """(is a dose needed, what stops it, the readings it rests on); need None if unknown."""
        c = self.c
        blockers: list[str] = []
        readings: dict[str, Reading] = {}
        for name in self.needs[pump_name]:
            reading, why = self.usable(tank, name, now)
            if reading is None:
                blockers.append(why)
            else:
                readings[name] = reading
        main = readings.get(c.ec_sensor if pump_name == "nutrient" else c.ph_sensor)
        need: bool | None = None
        if main is not None:
            need = (main.value < c.ec_target - c.ec_deadband if pump_name == "nutrient"
                    else main.value > c.ph_target + c.ph_deadband)
        level, temp = readings.get(c.level_sensor), readings.get(c.temp_sensor)
        if level is not None and level.value < c.level_low:
            blockers.append(D.LEVEL_LOW)
        if temp is not None and not c.temp_low <= temp.value <= c.temp_high:
            blockers.append(D.TEMPERATURE_OUT_OF_BAND)
        relay = tank.relays.get(self.relay_of[pump_name])
        if relay is None or relay.state not in ("on", "off"):
            blockers.append(D.RELAY_UNKNOWN)
        if tank.safe_since is not None:  # any relay of the tank unknown: the whole tank waits
            blockers.append(D.SAFE_STATE)
        if self.runtime_today(tank.pumps[pump_name], now) + self.dose_ns > self.cap_ns:
            blockers.append(D.DAILY_CAP_REACHED)
        return need, tuple(dict.fromkeys(blockers)), tuple(readings[k] for k in sorted(readings))

    def _evaluate(self, tank: Tank, device: str, ctx: Context, cause: tuple[str, ...]) -> None:
        for pump_name in PUMPS:
            pump = tank.pumps[pump_name]
            if pump.hold_key:
                continue  # re-checked at release
            need, blockers, readings = self.assess(tank, pump_name, ctx.now)
            if need is False:
                pump.blocked = ()
                continue
            if pump.last_dose_at is not None and ctx.now - pump.last_dose_at < self.mix_ns and need:
                continue  # the last dose is still mixing in
            if blockers:
                if blockers != pump.blocked:
                    pump.blocked = blockers
                    self._decide(device, pump_name, Status.BLOCKED, blockers, readings, None, None, ctx,
                                 cause if not readings else ())
                continue
            pump.blocked = ()
            self._hold(tank, device, pump_name, readings, ctx)

    def _hold(self, tank: Tank, device: str, pump_name: str, readings: tuple[Reading, ...], ctx: Context) -> None:
        pump = tank.pumps[pump_name]
        pump.hold_key = f"dose:{device}:{pump_name}:{ctx.now}"
        pump.hold_until = ctx.now + self.hold_ns
        why = D.EC_BELOW_TARGET if pump_name == "nutrient" else D.PH_ABOVE_TARGET
        self._decide(device, pump_name, Status.HELD, (why, R.HOLD_WINDOW), readings, pump.hold_key,
                     pump.hold_until, ctx)
        ctx.schedule(pump.hold_until, f"release:{device}:{pump_name}", ("release", device, pump_name))

    def _release(self, tank: Tank, device: str, pump_name: str, ctx: Context) -> None:
        pump = tank.pumps[pump_name]
        if not pump.hold_key:
            return
        need, blockers, readings = self.assess(tank, pump_name, ctx.now)
        key, until = pump.hold_key, pump.hold_until
        pump.hold_key, pump.hold_until = "", 0
        if blockers or not need:
            self._decide(device, pump_name, Status.CANCELLED, blockers or (D.NEED_GONE,), readings, key,
                         until, ctx)
            return
        why = D.EC_BELOW_TARGET if pump_name == "nutrient" else D.PH_ABOVE_TARGET
        pump.doses[key] = Dose(ctx.now, self.dose_ns)
        pump.last_dose_at = ctx.now
        self._decide(device, pump_name, Status.RELEASED, (why, R.RECHECKED_AT_RELEASE), readings, key,
                     until, ctx)

    def _cancel_hold(self, tank: Tank, device: str, pump_name: str, reasons: tuple[str, ...],
                     ctx: Context) -> None:
        pump = tank.pumps[pump_name]
        if not pump.hold_key:
            return
        key, until = pump.hold_key, pump.hold_until
        pump.hold_key, pump.hold_until = "", 0
        ctx.cancel(f"release:{device}:{pump_name}")
        self._decide(device, pump_name, Status.CANCELLED, reasons, (), key, until, ctx)

    def _decide(self, device: str, pump_name: str, status: Status, reasons: tuple[str, ...],
                readings: tuple[Reading, ...], key: str | None, hold_until: int | None, ctx: Context,
                extra_inputs: tuple[str, ...] = ()) -> None:
        input_time = min((r.at for r in readings), default=None)
        fresh = input_time is not None and ctx.now - input_time <= self.freshness_ns
        ctx.decide(Decision(
            kind=KIND_DOSE, subject=f"{device}/{pump_name}", action=f"dose-{pump_name}", status=status,
            reasons=reasons, confidence=1.0 if fresh else 0.0,
            min_confidence=self.c.min_confidence_external,
            inputs=tuple(sorted({r.event_id for r in readings} | set(extra_inputs))),
            effect_key=key, external=True, irreversible=True, input_time=input_time,
            freshness_ns=self.freshness_ns, hold_until=hold_until,
        ))


_HANDLERS = {
    "ModbusFrame": "_on_frame",
    "ModbusFault": "_on_fault",
    "ModbusWriteCommand": "_on_command",
    "ModbusWriteResult": "_on_result",
    "ModbusReadBack": "_on_readback",
}

"""Dosing logs in virtual time: Modbus frames, faults and writes as a store would hold them.

``DosingLog.frame(at, ec=...)`` adds a sensor frame received at ``at`` (ns);
``events()`` appends everything to a memory store whose clock is each event's
receive time, so ``recorded_at`` (the identity schedule's delivery time) is
exactly what the test says. Ids are deterministic (the n-th event is uuid n).
"""

from __future__ import annotations

import datetime as dt
import uuid

import replay
from eventstore import NewEvent, RecordedEvent, open_store
from projections import DosingConfig, DosingProjection
from projections.payloads.modbus import (
    ModbusFault,
    ModbusFrame,
    ModbusReadBack,
    ModbusWriteCommand,
    ModbusWriteResult,
)

NS = 1_000_000_000
MINUTE = 60 * NS
HOUR = 60 * MINUTE
DAY = 24 * HOUR
START = int(dt.datetime(2024, 3, 4, 8, 0, tzinfo=dt.UTC).timestamp()) * NS


class DosingLog:
    """Events of one or more tanks, in receive order."""

    def __init__(self, device: str = "tank1") -> None:
        self.device = device
        self._entries: list[tuple[int, int, object, int]] = []

    def add(self, payload, at: int, occurred: int | None = None) -> str:
        n = len(self._entries) + 1
        self._entries.append((at, n, payload, at if occurred is None else occurred))
        return str(uuid.UUID(int=n))

    def frame(self, at: int, *, device: str | None = None, occurred: int | None = None,
              invalid: dict | None = None, **values) -> str:
        """A sensor frame; values default to a healthy tank that needs nutrient (EC 1.5)."""
        decoded = {"ec": 1.5, "ph": 6.0, "level": 70.0, "temperature": 21.0}
        decoded.update(values)
        return self.add(ModbusFrame(device or self.device, 1, 4, 0, decoded=decoded,
                                    invalid=invalid or {}, received_at=at), at, occurred)

    def relays(self, at: int, nutrient: bool = False, ph: bool = False, device: str | None = None) -> str:
        return self.add(ModbusFrame(device or self.device, 1, 1, 0, decoded={
            "nutrient_pump": nutrient, "ph_pump": ph}, received_at=at), at)

    def fault(self, at: int, kind: str = "refused", device: str | None = None) -> str:
        return self.add(ModbusFault(device or self.device, kind, received_at=at), at)  # type: ignore[arg-type]

    def write(self, at: int, target: str = "nutrient_pump", value=True, *, ok: bool = True,
              read_back=True, effect_key: str = "", duration_ms: int = 0, device: str | None = None) -> None:
        """A write: command, result and read-back (``read_back`` None: not read back)."""
        dev = device or self.device
        cid = f"c{len(self._entries)}"
        self.add(ModbusWriteCommand(dev, cid, target, 5, 0, value, effect_key=effect_key,
                                    duration_ms=duration_ms), at)
        self.add(ModbusWriteResult(dev, cid, target, ok), at + 1_000_000)
        matches = ok and read_back is not None and read_back == value
        self.add(ModbusReadBack(dev, cid, target, value, value=read_back if ok else None,
                                matches=matches), at + 2_000_000)

    def healthy(self, start: int, minutes: float, every_s: float = 5.0, **values) -> None:
        """Relays off, then a frame every ``every_s`` for ``minutes`` (EC wobbles by 0.01, so
        it is never stuck)."""
        self.relays(start)
        step = int(every_s * NS)
        for i in range(int(minutes * 60 / every_s)):
            wobble = {"ec": values.get("ec", 1.5) + 0.01 * (i % 2)}
            self.frame(start + 1 + i * step, **{**values, **wobble})

    def events(self) -> list[RecordedEvent]:
        clock = [0]
        store = open_store("memory://", clock=lambda: clock[0])
        for received, n, payload, occurred in sorted(self._entries, key=lambda e: (e[0], e[1])):
            clock[0] = received
            store.append(f"modbus-{payload.device}", [NewEvent.of(
                payload, id=uuid.UUID(int=n), occurred_at=occurred,
                metadata={"source": payload.device})])
        return list(store.read_all())


def run(events, config: DosingConfig | None = None, deliveries=None, **kw):
    """Replay through the dosing projection (identity schedule unless ``deliveries``)."""
    if isinstance(events, DosingLog):
        events = events.events()
    chosen = deliveries if deliveries is not None else list(replay.deliveries_of(events))
    return replay.run(chosen, DosingProjection(config), strict=True, **kw)


def doses(result, status: str | None = None, pump: str | None = None) -> list:
    """The dose decisions of a run, by status and pump."""
    return [d for d in result.decisions if d.kind == "dose"
            and (status is None or str(d.status) == status)
            and (pump is None or d.subject.endswith("/" + pump))]


# -- logs for the HY scenarios and the flawed examples -------------------------------------
def link_lost_log() -> DosingLog:
    """HY-001/HY-004: two healthy minutes, then the device refuses every connect for three."""
    log = DosingLog()
    log.healthy(START, 2)
    for i in range(36):
        log.fault(START + 2 * MINUTE + i * 5 * NS, "refused")
    return log


def invalid_during_hold_log() -> DosingLog:
    """HY-003: a dose is held on a good reading; every reading during the hold is invalid."""
    log = DosingLog()
    log.relays(START)
    log.frame(START + 1)
    for i in range(1, 6):
        log.frame(START + i * 5 * NS, ec=25.0, invalid={"ec": "25.0 outside 0.0..10.0"})
    log.healthy(START + 2 * MINUTE, 2)
    return log


def readback_mismatch_log() -> DosingLog:
    """HY-005: healthy, then a pump write is acknowledged but reads back off; frames go on."""
    log = DosingLog()
    log.healthy(START, 1)
    log.write(START + 65 * NS, ok=True, read_back=False)
    for i in range(24):
        log.frame(START + 66 * NS + i * 5 * NS, ec=1.5 + 0.01 * (i % 2))
    return log


def restart_log(commands: int = 12) -> DosingLog:
    """HY-006: an earlier controller run switched the nutrient pump on ``commands`` x 5 s today
    (recorded commands), then the new run sees EC low for ten minutes."""
    log = DosingLog()
    for i in range(commands):
        log.write(START - 2 * HOUR + i * 2 * MINUTE, effect_key=f"dose:tank1:nutrient:earlier-{i}",
                  duration_ms=5000)
        log.write(START - 2 * HOUR + i * 2 * MINUTE + 5 * NS, value=False, read_back=False)
    log.healthy(START, 10)
    return log


def level_falling_log(minutes: int = 6) -> DosingLog:
    """HY-001 for the other inputs: EC stays low while the water level falls steadily (0.25 a
    frame, 3 per minute, from 30 to 12) through ``level_low`` (20) after about three minutes."""
    log = DosingLog()
    log.relays(START)
    for i in range(minutes * 12):
        log.frame(START + 1 + i * 5 * NS, ec=1.5 + 0.01 * (i % 2), level=30.0 - 0.25 * i)
    return log

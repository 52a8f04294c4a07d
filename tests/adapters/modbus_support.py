"""Shared parts of the Modbus tests: device files, free ports, recorded sessions, waiting.

A session runs real parts only: our simulator (or a pymodbus server) on
loopback, real pollers, a real store. Nothing sleeps to wait for something:
``until`` polls a condition with a deadline.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import socket
import time
from collections.abc import Callable
from typing import Any

from adapters.modbus import Ingest, Plan, Simulator, parse_devices
from eventstore import open_store
from eventstore.payloads import decode_payload

logging.getLogger("pymodbus").setLevel(logging.CRITICAL)  # bad frames are the point here

TANK_REGISTERS = """
[[device.block]]
function = "input_registers"
address = 0
  [[device.block.register]]
  name = "ec"
  address = 0
  type = "float32"
  unit = "mS/cm"
  min = 0.0
  max = 10.0
  [[device.block.register]]
  name = "ph"
  address = 2
  type = "int16"
  scale = 0.01
  min = 0.0
  max = 14.0
  [[device.block.register]]
  name = "level"
  address = 3
  type = "uint16"
  scale = 0.1
  min = 0
  max = 100
  [[device.block.register]]
  name = "temperature"
  address = 4
  type = "int16"
  scale = 0.1
  min = -10
  max = 60

[[device.block]]
function = "coils"
address = 0
  [[device.block.register]]
  name = "nutrient_pump"
  address = 0
  writable = true
  [[device.block.register]]
  name = "ph_pump"
  address = 1
  writable = true
"""

# Dosing settings scaled to a sub-second session (the defaults are for a real tank).
FAST_DOSING = {
    "freshness_s": 0.4, "hold_s": 0.1, "dose_s": 0.05, "mix_s": 0.2, "daily_cap_s": 0.5,
    "safe_bound_s": 0.1, "stuck_s": 60.0, "ec_rate": 600.0, "ph_rate": 600.0,
    "level_rate": 6000.0, "temp_rate": 6000.0, "ec_target": 2.0,
}


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def device_toml(name: str = "tank1", port: int = 0, *, interval: float = 0.05, timeout: float = 0.2,
                framing: str = "tcp", unit: int = 1, backoff: tuple[float, float] = (0.02, 0.2)) -> str:
    """One tank device (EC, pH, level, temperature, two pump relays) as device-file TOML."""
    return (f'[[device]]\nname = "{name}"\nhost = "127.0.0.1"\nport = {port}\nunit = {unit}\n'
            f'interval = {interval}\ntimeout = {timeout}\nframing = "{framing}"\n'
            f"backoff_initial = {backoff[0]}\nbackoff_max = {backoff[1]}\n" + TANK_REGISTERS)


def devices(*tomls: str):
    """Parsed devices from device-file fragments."""
    return parse_devices("\n".join(tomls), "<test>")


async def until(condition: Callable[[], bool], deadline_s: float = 10.0) -> None:
    """Wait until ``condition()`` holds; fail when ``deadline_s`` passes first."""
    end = time.monotonic() + deadline_s
    while not condition():
        if time.monotonic() > end:
            raise AssertionError(f"condition not met within {deadline_s} s")
        await asyncio.sleep(0.005)


@dataclasses.dataclass
class Session:
    """What a recorded session left: the events (decoded beside them), the simulator, the run."""

    events: list
    payloads: list
    simulator: Simulator | None
    ingest: Ingest

    def of(self, type_: str, device: str | None = None) -> list:
        return [p for e, p in zip(self.events, self.payloads, strict=True)
                if e.type == type_ and (device is None or p.device == device)]

    def fault_kinds(self, device: str | None = None) -> list[str]:
        return [p.kind for p in self.of("ModbusFault", device)]


async def record(devs, plan: Plan | None, stop_when: Callable[[Session], bool] | None = None, *,
                 seconds: float | None = None, deadline_s: float = 10.0, seed: int = 0,
                 action: Callable[[Ingest], Any] | None = None, simulate: bool = True) -> Session:
    """Serve ``devs`` from the simulator (misbehaving per ``plan``), poll them into a memory store
    until ``stop_when(session)`` holds (or for ``seconds``), and return the session."""
    store = open_store("memory://")
    sim = Simulator(devs, plan or Plan(), seed=seed, port_override={d.name: d.port or free_port() for d in devs}) \
        if simulate else None
    if sim is not None:
        await sim.start()
        devs = [dataclasses.replace(d, port=sim.ports.get(d.name, d.port), serial=sim.paths.get(d.name, d.serial))
                for d in devs]
    run = Ingest(devs, store, session="test", seed=seed, flush_every=0.01)
    run.start()
    live = Session([], [], sim, run)

    def refreshed() -> Session:
        live.events = list(store.read_all())
        live.payloads = [decode_payload(e) for e in live.events]
        return live

    try:
        if action is not None:
            await action(run)
        if seconds is not None:
            await asyncio.sleep(seconds)  # a fixed-length session, not a wait for something
        else:
            assert stop_when is not None
            await until(lambda: stop_when(refreshed()), deadline_s)
    finally:
        run.stop()
        await run.wait()
        if sim is not None:
            await sim.stop()
    return refreshed()

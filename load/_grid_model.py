"""A seeded grid: producers, consumers, storage and lines, a day of readings and heartbeats.

Nodes (``GridProfile.nodes`` of them) take roles from a fixed cycle: gas,
residential, solar, commercial, wind, industrial, residential, storage, line,
residential. Each metering interval the model draws demand (daily shapes per
consumer class), solar (a bell over daylight, with clouds) and wind (a seeded
random walk), line losses (a share of the energy carried), then dispatches
storage (charges on surplus, discharges in the evening peak) and gas to
balance, curtailing renewables on surplus. So each interval balances exactly;
each meter then reports its energy with a small seeded error (``meter_error``),
and the day closes well within 0.1% (GRID-001).

Each node emits a ``GridReading`` at the end of each interval and a
``Heartbeat`` half-way through, received a seeded 0.2-3 s later. Perturbations
for the NF scenarios: a frequency dip (``dip_at_h`` for ``dip_intervals``), late
nodes (``late_fraction`` received ``late_s`` late, NF-002), silent nodes
(``silent_fraction`` from ``silent_from_h`` until ``silent_until_h``, NF-001; 1.0 is
NF-004), and one
lossy node (``lossy_p``: each of its events lost with that probability, NF-003).

``GridNodeServers`` serves each node as a Modbus TCP device (pymodbus) for live
runs; ``grid_device_toml`` writes the matching device file for the poller.
"""

from __future__ import annotations

import datetime as dt
import math
import os
import random
from collections.abc import Iterator
from pathlib import Path

import msgspec

from eventstore.payloads import Heartbeat
from projections.payloads.grid import GridReading

from ._jsonl import HOUR, NS, StreamWriter

ROLE_CYCLE = ("gas", "residential", "solar", "commercial", "wind", "industrial", "residential",
              "storage", "line", "residential")
# Peak power of one node by role (W).
CAPACITY = {"gas": 4.0e6, "solar": 2.5e6, "wind": 2.0e6, "residential": 0.6e6,
            "commercial": 0.9e6, "industrial": 1.4e6, "storage": 1.0e6}
LOSS_SHARE = 0.035  # line losses as a share of the energy delivered to consumers
STORAGE_WH = 4.0e6  # capacity of one storage node (Wh)


class GridProfile(msgspec.Struct, frozen=True, kw_only=True):
    """What to generate. Times: hours from ``start`` (UTC midnight), intervals in seconds."""

    nodes: int = 20
    hours: float = 24.0
    interval_s: int = 300
    seed: int = 0
    start: str = "2024-06-01"
    meter_error: float = 0.0002
    nominal_hz: float = 50.0
    dip_at_h: float | None = None
    dip_intervals: int = 3
    dip_hz: float = 49.2
    late_fraction: float = 0.0
    late_s: float = 0.0
    silent_fraction: float = 0.0
    silent_from_h: float = 0.0
    silent_until_h: float | None = None
    lossy_p: float = 0.0
    heartbeats: bool = True

    def __post_init__(self) -> None:
        problems = [
            ("nodes", self.nodes >= 4, "must be >= 4"),
            ("hours", 0 < self.hours <= 24 * 7, "must be in (0, 168]"),
            ("interval_s", 10 <= self.interval_s <= 3600 and 86400 % self.interval_s == 0,
             "must divide a day, 10..3600"),
            ("meter_error", 0 <= self.meter_error < 0.01, "must be in [0, 0.01)"),
            ("late_fraction", 0 <= self.late_fraction <= 1, "must be in [0, 1]"),
            ("silent_fraction", 0 <= self.silent_fraction <= 1, "must be in [0, 1]"),
            ("lossy_p", 0 <= self.lossy_p < 1, "must be in [0, 1)"),
            ("late_s", self.late_s >= 0, "must be >= 0"),
        ]
        for key, ok, what in problems:
            if not ok:
                raise ValueError(f"{key} {what}, got {getattr(self, key)!r}")
        dt.date.fromisoformat(self.start)

    @property
    def t0(self) -> int:
        """The start as ns UTC."""
        day = dt.datetime.fromisoformat(self.start).replace(tzinfo=dt.UTC)
        return int(day.timestamp()) * NS


def node_roles(profile: GridProfile) -> dict[str, str]:
    """Node id -> role, in order (``node-01`` ... ``node-NN``)."""
    return {f"node-{i + 1:02d}": ROLE_CYCLE[i % len(ROLE_CYCLE)] for i in range(profile.nodes)}


def chosen(profile: GridProfile, fraction: float, salt: str) -> list[str]:
    """round(fraction x nodes) node ids, picked by the seed (same seed and salt, same set)."""
    names = list(node_roles(profile))
    k = math.floor(fraction * len(names) + 0.5)
    return sorted(random.Random(f"grid/{profile.seed}/{salt}").sample(names, k))


def _demand_shape(role: str, hour: float) -> float:
    if role == "residential":
        return 0.35 + 0.35 * math.exp(-((hour - 8) ** 2) / 3) + 0.6 * math.exp(-((hour - 19) ** 2) / 5)
    if role == "commercial":
        return 0.25 + 0.7 * (1 / (1 + math.exp(-(hour - 8) * 2))) * (1 / (1 + math.exp((hour - 18) * 2)))
    return 0.8 + 0.1 * math.sin(hour / 24 * 2 * math.pi)  # industrial: nearly flat


def _solar_shape(hour: float) -> float:
    return max(0.0, math.sin((hour - 6) / 12 * math.pi)) if 6 <= hour <= 18 else 0.0


class _Model:
    """The physical state stepped interval by interval: true energies per node (Wh)."""

    def __init__(self, profile: GridProfile) -> None:
        self.p = profile
        self.rng = random.Random(f"grid/{profile.seed}/model")
        self.roles = node_roles(profile)
        self.wind = {n: 0.4 for n, r in self.roles.items() if r == "wind"}
        self.stored = {n: STORAGE_WH / 2 for n, r in self.roles.items() if r == "storage"}
        self.clouds = 1.0

    def step(self, hour: float) -> dict[str, float]:
        """True energy of each node over one interval (role sign conventions of GridReading)."""
        rng, h = self.rng, self.p.interval_s / 3600
        out: dict[str, float] = {}
        for n, role in self.roles.items():
            if role in ("residential", "commercial", "industrial"):
                out[n] = CAPACITY[role] * _demand_shape(role, hour) * rng.uniform(0.93, 1.07) * h
        consumed = sum(out.values())
        losses = LOSS_SHARE * consumed
        lines = [n for n, r in self.roles.items() if r == "line"]
        for n in lines:
            out[n] = losses / len(lines)
        if not lines:
            losses = 0.0
        self.clouds = min(1.0, max(0.3, self.clouds + rng.gauss(0, 0.05)))
        renew = {}
        for n, role in self.roles.items():
            if role == "solar":
                renew[n] = CAPACITY["solar"] * _solar_shape(hour) * self.clouds * h
            elif role == "wind":
                self.wind[n] = min(1.0, max(0.05, self.wind[n] + rng.gauss(0, 0.04)))
                renew[n] = CAPACITY["wind"] * self.wind[n] * h
        need = consumed + losses
        surplus = sum(renew.values()) - need
        storage = self._storage(surplus, hour, h)
        need += sum(storage.values())
        gas = [n for n, r in self.roles.items() if r == "gas"]
        renewable = sum(renew.values())
        if renewable > need or not gas:  # curtail renewables to what is needed
            scale = need / renewable if renewable > 0 else 0.0
            renew = {n: e * scale for n, e in renew.items()}
            gas_total = 0.0
        else:
            gas_total = need - renewable
        out.update(renew)
        out.update(storage)
        for n in gas:
            out[n] = gas_total / len(gas)
        return out

    def _storage(self, surplus: float, hour: float, h: float) -> dict[str, float]:
        flows: dict[str, float] = {}
        for n in self.stored:
            rate = CAPACITY["storage"] * h
            if surplus > 0:  # charge on surplus
                e = min(rate, surplus / len(self.stored), STORAGE_WH - self.stored[n])
            elif 17 <= hour <= 21:  # discharge in the evening peak
                e = -min(rate, self.stored[n])
            else:
                e = 0.0
            self.stored[n] += e
            flows[n] = e
        return flows


class _Log:
    def __init__(self, profile: GridProfile) -> None:
        self.p = profile
        self.rng = random.Random(f"grid/{profile.seed}/log")
        self.roles = node_roles(profile)
        self.late = set(chosen(profile, profile.late_fraction, "late"))
        self.silent = set(chosen(profile, profile.silent_fraction, "silent"))
        self.lossy = chosen(profile, 1 / profile.nodes, "lossy")[0] if profile.lossy_p else ""
        self.writers = {n: StreamWriter(profile.seed, f"grid-{n}") for n in self.roles}

    def emit(self, node: str, payload, occurred: int) -> None:
        p = self.p
        lag = int(self.rng.uniform(0.2, 3.0) * NS) + (int(p.late_s * NS) if node in self.late else 0)
        lost = self.rng.random() < p.lossy_p if node == self.lossy else False
        until = math.inf if p.silent_until_h is None else p.t0 + int(p.silent_until_h * HOUR)
        if node in self.silent and p.t0 + int(p.silent_from_h * HOUR) <= occurred < until:
            return
        if not lost:
            self.writers[node].emit(payload, occurred, occurred + lag, source=node)


def grid_lines(profile: GridProfile) -> Iterator[bytes]:
    """The lines of the grid log in receive order (what ``generate_grid`` writes)."""
    model, log = _Model(profile), _Log(profile)
    step = profile.interval_s * NS
    freq_rng = random.Random(f"grid/{profile.seed}/frequency")
    meter_rng = random.Random(f"grid/{profile.seed}/meters")
    intervals = int(profile.hours * 3600) // profile.interval_s
    dip_from = None if profile.dip_at_h is None else int(profile.dip_at_h * 3600) // profile.interval_s
    for i in range(intervals):
        start = profile.t0 + i * step
        hour = (i * profile.interval_s / 3600) % 24
        energies = model.step(hour)
        dip = dip_from is not None and dip_from <= i < dip_from + profile.dip_intervals
        for node, role in log.roles.items():
            if profile.heartbeats:
                log.emit(node, Heartbeat(node_id=node, value=float(i)), start + step // 2)
            true = energies.get(node, 0.0)
            reported = round(true * (1 + meter_rng.gauss(0, profile.meter_error)), 1)
            base = profile.dip_hz if dip else profile.nominal_hz
            freq = round(base + freq_rng.gauss(0, 0.01), 3)
            stored = round(model.stored[node], 1) if role == "storage" else None
            log.emit(node, GridReading(
                node_id=node, role=role, interval_start=start, interval_s=profile.interval_s,  # type: ignore[arg-type]
                energy_wh=reported, power_w=round(reported * 3600 / profile.interval_s, 1),
                frequency_hz=freq, stored_wh=stored,
            ), start + step)
    items = sorted(item for w in log.writers.values() for item in w.items)
    for _, _, _, line in items:
        yield line


def generate_grid(out: str | os.PathLike, profile: GridProfile):
    """Write the grid log for ``profile`` to ``out``; the same profile gives the same bytes."""
    from .generators import _write

    return _write(Path(out), profile.seed, grid_lines(profile))


# -- live: each node as a Modbus TCP device ------------------------------------------------

NODE_REGISTERS = """
[[device.block]]
function = "input_registers"
address = 0
  [[device.block.register]]
  name = "power_w"
  address = 0
  type = "float32"
  [[device.block.register]]
  name = "frequency_hz"
  address = 2
  type = "float32"
  min = 40.0
  max = 60.0
"""


def grid_device_toml(ports: dict[str, int], *, interval: float = 0.05, timeout: float = 0.2,
                     backoff: tuple[float, float] = (0.02, 0.2), host: str = "127.0.0.1") -> str:
    """A device file (docs/modbus.md) polling each node at ``ports[node]`` on ``host``."""
    return "\n".join(
        f'[[device]]\nname = "{node}"\nhost = "{host}"\nport = {port}\nunit = 1\ninterval = {interval}\n'
        f"timeout = {timeout}\nbackoff_initial = {backoff[0]}\nbackoff_max = {backoff[1]}\n"
        + NODE_REGISTERS for node, port in ports.items())


class GridNodeServers:
    """Each node of ``profile`` as a pymodbus TCP server on 127.0.0.1, serving its power (W)
    and frequency (Hz) as float32 input registers 0 and 2 (values of the model's first interval).
    """

    def __init__(self, profile: GridProfile, *, bind: str = "127.0.0.1") -> None:
        self.profile, self.bind = profile, bind
        self.ports: dict[str, int] = {}
        self._servers: list = []

    async def start(self) -> None:
        """Open one server per node on a free port."""
        import socket
        import struct

        from pymodbus.datastore import (
            ModbusDeviceContext,
            ModbusSequentialDataBlock,
            ModbusServerContext,
        )
        from pymodbus.server import ModbusTcpServer

        energies = _Model(self.profile).step(12.0)
        for node in node_roles(self.profile):
            power = energies.get(node, 0.0) * 3600 / self.profile.interval_s
            words = list(struct.unpack(">4H", struct.pack(">ff", power, self.profile.nominal_hz)))
            context = ModbusServerContext(devices={1: ModbusDeviceContext(
                ir=ModbusSequentialDataBlock(1, words))}, single=False)
            with socket.socket() as s:
                s.bind((self.bind, 0))
                port = s.getsockname()[1]
            server = ModbusTcpServer(context, address=(self.bind, port))
            await server.serve_forever(background=True)
            self._servers.append(server)
            self.ports[node] = port

    async def stop(self) -> None:
        """Close every server."""
        for server in self._servers:
            await server.shutdown()
        self._servers.clear()

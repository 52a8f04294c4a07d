"""A Modbus TCP device simulator that can misbehave on purpose.

``Simulator(devices, plan)`` serves each device of a device file on its own
TCP port (bound to 127.0.0.1 unless told otherwise) from a seeded model:
EC and pH drift, the nutrient pump raises EC and the pH pump lowers pH, the
water level falls while a pump runs, the temperature wanders, and a register
named like ``time`` or ``clock`` reports the device's clock (Unix seconds).
Relays listed in the plan's ``stick`` acknowledge writes and do not move.

It is our own small asyncio server, not pymodbus's: pymodbus's server cannot
refuse, go silent, reset after N bytes, truncate, or answer with garbage or a
wrong transaction id, and a simulator for testing controllers must. Each
request that a plan rule hits is logged in ``injected`` as (device, fault
kind), so a test can match a poller's faults to what was injected, one for one.

A device with ``framing = "rtu"`` is served on a serial line: one end of a
pseudo-terminal pair (a real tty the poller opens with pyserial, as it would a
USB adapter), its path in ``paths``. When the device file's ``serial`` path is
free, a symlink there points to it, so one device file serves both ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import random
import socket
import struct
import time
import tty
from collections.abc import Callable
from dataclasses import dataclass

from .codec import crc16, encode_value, mbap, rtu
from .devices import Device, Register
from .plans import NO_PLAN, Plan, Rule


@dataclass
class _Signal:
    value: float
    drift: float  # per second
    noise: float  # standard deviation per update


class DeviceModel:
    """The simulated process behind one device's registers, stepped by elapsed time."""

    def __init__(self, device: Device, rng: random.Random, stick: tuple[str, ...] = (),
                 clock: Callable[[], float] | None = None) -> None:
        self.device = device
        self.rng = rng
        self.stick = set(stick)
        self.clock = clock or _wall_seconds
        self.tables: dict[int, dict[int, int]] = {1: {}, 2: {}, 3: {}, 4: {}}
        self.registers: dict[str, tuple[int, Register]] = {}
        self.signals: dict[str, _Signal] = {}
        self._last = self.clock()
        for block in device.blocks:
            for i in range(block.count):
                self.tables[block.function].setdefault(block.address + i, 0)
            for reg in block.registers:
                self.registers[reg.name] = (block.function, reg)
                start = None if reg.type in ("bool", "string") else _initial(reg.name)
                if start is not None:
                    self.signals[reg.name] = start
                    self._put(reg.name, start.value)

    def pump_on(self, word: str) -> bool:
        """True when a relay whose name contains ``word`` reads on."""
        return any(fn == 1 and word in name.lower() and self.tables[1].get(reg.address, 0)
                   for name, (fn, reg) in self.registers.items())

    def step(self) -> None:
        """Move every signal on by the time elapsed since the last step."""
        now = self.clock()
        dt, self._last = max(0.0, now - self._last), now
        nutrient, ph_pump = self.pump_on("nutrient"), self.pump_on("ph")
        for name, sig in self.signals.items():
            lname = name.lower()
            rate = sig.drift
            if "ec" in lname and nutrient:
                rate += 0.02
            if "ph" in lname and ph_pump:
                rate -= 0.01
            if "level" in lname:
                rate -= 0.05 * (nutrient + ph_pump)
            sig.value += rate * dt + self.rng.gauss(0.0, sig.noise)
            if "temp" in lname:
                sig.value = 21.0 + 0.5 * math.sin(now / 600.0) + self.rng.gauss(0.0, sig.noise)
            self._put(name, sig.value)
        for name, (_fn, _reg) in self.registers.items():
            if any(w in name.lower() for w in ("time", "clock")) and name not in self.signals:
                self._put(name, now)

    def _put(self, name: str, value: float) -> None:
        fn, reg = self.registers[name]
        if reg.min is not None:
            value = max(value, reg.min)
        if reg.max is not None:
            value = min(value, reg.max)
        if name in self.signals:
            self.signals[name].value = value
        for i, word in enumerate(encode_value(value, reg)):
            self.tables[fn][reg.address + i] = word

    def read(self, function: int, address: int, count: int) -> list[int] | None:
        """The items asked for, or None when any of them is not served (exception 2)."""
        table = self.tables[function]
        if any(a not in table for a in range(address, address + count)):
            return None
        self.step()
        return [table[a] for a in range(address, address + count)]

    def write(self, function: int, address: int, values: list[int]) -> bool:
        """Write coils (function 1) or holding registers (3); False when not served."""
        table = self.tables[function]
        if any(a not in table for a in range(address, address + len(values))):
            return False
        stuck = {reg.address for name, (fn, reg) in self.registers.items() if name in self.stick and fn == function}
        for i, v in enumerate(values):
            if address + i not in stuck:
                table[address + i] = v
        return True


def _wall_seconds() -> float:
    """The device's clock: Unix seconds (a simulated device has a wall clock)."""
    return time.time_ns() / 1e9


def _initial(name: str) -> _Signal | None:
    lname = name.lower()
    if "ec" in lname:
        return _Signal(1.6, -0.0005, 0.002)
    if "ph" in lname:
        return _Signal(6.2, 0.0003, 0.002)
    if "level" in lname:
        return _Signal(80.0, -0.001, 0.01)
    if "temp" in lname:
        return _Signal(21.0, 0.0, 0.02)
    return None


class Simulator:
    """Serves every device of a device file; ``ports[name]`` is where each one listens."""

    def __init__(self, devices: list[Device], plan: Plan = NO_PLAN, *, bind: str = "127.0.0.1",
                 seed: int | None = None, port_override: dict[str, int] | None = None) -> None:
        self.devices = {d.name: d for d in devices}
        self.plan = plan
        self.bind = bind
        self.seed = plan.seed if seed is None else seed
        self.models = {d.name: DeviceModel(d, random.Random(f"{self.seed}/model/{d.name}"), plan.stick)
                       for d in devices}
        self._rngs = {d.name: random.Random(f"{self.seed}/plan/{d.name}") for d in devices}
        self._spent: dict[tuple[str, int], int] = {}
        self.requests: dict[str, int] = dict.fromkeys(self.devices, 0)
        self.injected: list[tuple[str, str]] = []
        self.ports: dict[str, int] = {}
        self.paths: dict[str, str] = {}  # serial devices: the tty to open (the link if one was made)
        self._lines: dict[str, _SerialLine] = {}
        self._override = port_override or {}
        self._servers: dict[str, asyncio.base_events.Server] = {}
        self._tasks: set[asyncio.Task] = set()
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        """Open every device's port (a refusing device opens when its refusal ends)."""
        for name, device in self.devices.items():
            if device.framing == "rtu":
                self._open_line(name, device)
                continue
            port = self._override.get(name, device.port)
            refuse = self._refusal(name)
            if refuse is None:
                server = await asyncio.start_server(
                    lambda r, w, n=name: self._serve(n, r, w), self.bind, port, reuse_address=True)
                self._servers[name] = server
                self.ports[name] = server.sockets[0].getsockname()[1]
            else:
                self.ports[name] = port or _free_port(self.bind)
                if math.isfinite(refuse.seconds):
                    task = asyncio.get_running_loop().create_task(self._open_later(name, refuse.seconds))
                    self._tasks.add(task)

    def _open_line(self, name: str, device: Device) -> None:
        line = self._lines[name] = _SerialLine(asyncio.get_running_loop(), device.serial)
        self.paths[name] = line.link or line.path
        task = asyncio.get_running_loop().create_task(self._serve_line(name, line))
        self._tasks.add(task)

    def _refusal(self, name: str) -> Rule | None:
        for rule in self.plan.rules:
            if rule.action == "refuse" and rule.device in (None, name):
                return rule
        return None

    async def _open_later(self, name: str, seconds: float) -> None:
        await asyncio.sleep(seconds)
        server = await asyncio.start_server(
            lambda r, w, n=name: self._serve(n, r, w), self.bind, self.ports[name], reuse_address=True)
        self._servers[name] = server

    async def stop(self) -> None:
        """Close every port and connection."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        for line in self._lines.values():
            line.close()
        self._lines.clear()
        for server in self._servers.values():
            server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        for server in self._servers.values():
            with contextlib.suppress(Exception):
                await server.wait_closed()
        self._servers.clear()

    async def __aenter__(self) -> Simulator:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- one connection -------------------------------------------------------------
    async def _serve_line(self, name: str, line: _SerialLine) -> None:
        """Answer requests on a serial line for as long as it is open; a request that is not
        a whole RTU frame with a good CRC is dropped with everything buffered after it."""
        device = self.devices[name]
        while True:
            request = await _read_request(line.reader, "rtu")
            if request is None:
                line.resync()
                continue
            await self._answer(name, device, request, line)

    async def _serve(self, name: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        device = self.devices[name]
        try:
            while True:
                request = await _read_request(reader, device.framing)
                if request is None:
                    return
                if not await self._answer(name, device, request, writer):
                    return
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        finally:
            self._writers.discard(writer)
            with contextlib.suppress(Exception):
                writer.close()

    async def _answer(self, name: str, device: Device, request: tuple[int, int, bytes],
                      writer: asyncio.StreamWriter) -> bool:
        tid, unit, pdu = request
        self.requests[name] += 1
        rule = self._pick(name, pdu[0])
        if rule is not None and rule.action != "slow":
            serial_reset = rule.action == "reset" and device.framing == "rtu"
            self.injected.append((name, "truncated" if serial_reset else rule.fault_kind))
        reply = self._execute(self.models[name], pdu, rule)
        frame = _frame(device.framing, tid, unit, reply)
        if rule is None:
            writer.write(frame)
            return True
        return await self._misbehave(name, device, rule, tid, unit, reply, frame, writer)

    async def _misbehave(self, name: str, device: Device, rule: Rule, tid: int, unit: int, reply: bytes,
                         frame: bytes, writer: asyncio.StreamWriter) -> bool:
        action = rule.action
        if action == "silent":
            return True
        if action in ("reset", "truncate"):
            writer.write(frame[: rule.after_bytes])
            await writer.drain()
            if action == "reset" and device.framing != "rtu":  # a serial line has no connection to reset
                _reset(writer)
                return False
            return True
        if action == "garbage":
            noise = bytes(self._rngs[name].getrandbits(8) for _ in range(12))
            if device.framing == "tcp":
                noise = noise[:2] + b"\xde\xad" + noise[4:]  # a protocol id that is never 0
            else:
                noise = bytes([0xFF]) + noise[1:]
            writer.write(noise)
        elif action == "wrong_transaction":
            writer.write(_frame(device.framing, (tid + 1) & 0xFFFF, unit, reply))
        elif action == "wrong_unit":
            writer.write(_frame(device.framing, tid, (unit + 1) & 0xFF, reply))
        elif action == "bad_length":
            writer.write(frame[:4] + b"\xff\xff" + frame[6:] if device.framing == "tcp" else frame[:-3])
        elif action == "bad_crc":
            writer.write(frame[:-2] + bytes([frame[-2] ^ 0xFF, frame[-1]]))
        elif action == "slow":
            await asyncio.sleep(rule.delay)
            writer.write(frame)
        else:  # exception: already in the reply
            writer.write(frame)
        return True

    def _pick(self, name: str, function: int) -> Rule | None:
        """The first rule that hits this request (one seeded draw per rule looked at)."""
        rng = self._rngs[name]
        for i, rule in enumerate(self.plan.rules):
            if rule.action == "refuse" or rule.device not in (None, name):
                continue
            if rule.function is not None and rule.function != function:
                continue
            if self.requests[name] <= rule.after_requests:
                continue
            if rule.count is not None and self._spent.get((name, i), 0) >= rule.count:
                continue
            if rule.probability < 1.0 and rng.random() >= rule.probability:
                continue
            self._spent[(name, i)] = self._spent.get((name, i), 0) + 1
            return rule
        return None

    @staticmethod
    def _execute(model: DeviceModel, pdu: bytes, rule: Rule | None) -> bytes:
        """The response PDU to ``pdu`` from ``model`` (or the exception the rule asks for)."""
        function = pdu[0]
        if rule is not None and rule.action == "exception":
            return bytes([function | 0x80, rule.code])
        try:
            return _handle(model, function, pdu[1:])
        except (struct.error, IndexError, ValueError):
            return bytes([function | 0x80, 3])


def _handle(model: DeviceModel, function: int, body: bytes) -> bytes:
    if function in (1, 2, 3, 4):
        address, count = struct.unpack(">HH", body[:4])
        items = model.read(function, address, count)
        if items is None:
            return bytes([function | 0x80, 2])
        if function in (1, 2):
            packed = bytearray((count + 7) // 8)
            for i, bit in enumerate(items):
                if bit:
                    packed[i // 8] |= 1 << (i % 8)
            return bytes([function, len(packed)]) + bytes(packed)
        return bytes([function, 2 * count]) + b"".join(w.to_bytes(2, "big") for w in items)
    if function == 5:
        address, value = struct.unpack(">HH", body[:4])
        ok = model.write(1, address, [1 if value == 0xFF00 else 0])
        return bytes([function]) + body[:4] if ok else bytes([function | 0x80, 2])
    if function == 6:
        address, value = struct.unpack(">HH", body[:4])
        ok = model.write(3, address, [value])
        return bytes([function]) + body[:4] if ok else bytes([function | 0x80, 2])
    if function in (15, 16):
        address, count, nbytes = struct.unpack(">HHB", body[:5])
        data = body[5:5 + nbytes]
        if function == 15:
            values = [(data[i // 8] >> (i % 8)) & 1 for i in range(count)]
            ok = model.write(1, address, values)
        else:
            ok = model.write(3, address, [int.from_bytes(data[2 * i:2 * i + 2], "big") for i in range(count)])
        return bytes([function]) + body[:4] if ok else bytes([function | 0x80, 2])
    return bytes([function | 0x80, 1])


def _frame(framing: str, tid: int, unit: int, pdu: bytes) -> bytes:
    return mbap(tid, unit, pdu) if framing == "tcp" else rtu(unit, pdu)


async def _read_request(reader: asyncio.StreamReader, framing: str) -> tuple[int, int, bytes] | None:
    """The next request as (transaction id, unit, PDU), or None at end of stream."""
    if framing == "tcp":
        try:
            header = await reader.readexactly(7)
        except asyncio.IncompleteReadError:
            return None
        tid, _pid, length, unit = struct.unpack(">HHHB", header)
        return tid, unit, await reader.readexactly(max(length - 1, 0))
    try:
        head = await reader.readexactly(2)
    except asyncio.IncompleteReadError:
        return None
    unit, function = head
    if function in (15, 16):
        rest = await reader.readexactly(5)
        rest += await reader.readexactly(rest[4] + 2)
    else:
        rest = await reader.readexactly(6)
    frame = head + rest
    if crc16(frame[:-2]) != int.from_bytes(frame[-2:], "little"):
        return None
    return 0, unit, frame[1:-2]


class _SerialLine:
    """The simulator's end of a serial line: the master side of a pseudo-terminal pair.

    The slave side is a real tty (``path``) that a client opens like any serial port. The
    simulator keeps a descriptor of the slave open itself, so the line stays up while a
    client closes and reopens the port (otherwise the master reads EIO until it returns).
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, link: str = "") -> None:
        self.loop = loop
        self.master, self._slave = os.openpty()
        tty.setraw(self._slave)  # no echo, no line editing: bytes pass through as they are
        os.set_blocking(self.master, False)
        self.path = os.ttyname(self._slave)
        self.link = _link(link, self.path) if link else ""
        self.reader = asyncio.StreamReader()
        loop.add_reader(self.master, self._readable)

    def _readable(self) -> None:
        try:
            data = os.read(self.master, 4096)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:  # the line is gone
            self.loop.remove_reader(self.master)
            self.reader.feed_eof()
            return
        self.reader.feed_data(data)

    def resync(self) -> None:
        """Forget the bytes buffered so far (after a request that was not a frame)."""
        self.reader = asyncio.StreamReader()

    def write(self, data: bytes) -> None:
        """Send ``data`` down the line (a frame fits the tty's buffer many times over)."""
        os.write(self.master, data)

    async def drain(self) -> None:
        """Nothing to wait for: ``write`` hands the bytes to the kernel at once."""

    def close(self) -> None:
        """Close both ends and remove the link."""
        if self.master < 0:
            return
        self.loop.remove_reader(self.master)
        os.close(self.master)
        os.close(self._slave)
        self.master = -1
        if self.link:
            with contextlib.suppress(OSError):
                os.unlink(self.link)


def _link(where: str, target: str) -> str:
    """Point a symlink at ``where`` to the tty ``target``; "" when ``where`` is taken by
    something other than an old link to a pseudo-terminal."""
    if os.path.lexists(where):
        if not (os.path.islink(where) and os.readlink(where).startswith("/dev/pts/")):
            return ""
        os.unlink(where)
    try:
        os.symlink(target, where)
    except OSError:
        return ""
    return where


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with a TCP reset (SO_LINGER 0), as a device that drops the link does."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


def _free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]

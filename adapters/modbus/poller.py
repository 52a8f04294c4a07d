"""Polling Modbus devices: every exchange a ``ModbusFrame``, every failure a ``ModbusFault``.

One ``DevicePoller`` per device, each its own asyncio task, so one device's
trouble never stalls another. Modbus TCP goes through our own lean client
(``mbap.MbapClient``); RTU framing, over TCP or a serial line, through pymodbus.
The poller owns the connection: pymodbus's own reconnect is off (a failed first
``connect()`` never retries by itself), and after a failed connect the poller
waits a capped exponential backoff with jitter drawn from a seeded
``random.Random``. No read waits past its bound (``timeout`` for each of
``retries + 1`` attempts); a connection that closes mid-read ends the read at
once. Devices polled at the same interval start at evenly spread phases of it,
so their rounds do not all fall due together. Raw ADUs are what our client
wrote and received (with pymodbus, what its ``trace_packet`` hook saw), so a
fault keeps every byte that arrived, and a bad frame is classified (truncated,
reset, garbage, bad length, bad CRC, wrong transaction or unit id) by
``codec.classify``. After a framing fault the connection is dropped and made
again, so the byte stream starts clean.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import random
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
from pymodbus.framer import FramerType

from projections.payloads.modbus import (
    ModbusFault,
    ModbusFrame,
    ModbusReadBack,
    ModbusWriteCommand,
    ModbusWriteResult,
)

from .codec import classify, decode_block, encode_value, response_pdu_length
from .devices import Block, Device, Register
from .mbap import MbapClient
from .recorder import Recorder

_MARGIN_S = 0.05
_READS = {1: "read_coils", 2: "read_discrete_inputs", 3: "read_holding_registers", 4: "read_input_registers"}
# After these the byte stream cannot be trusted (a late or partial answer may still come):
# the connection is dropped and made again. Only an exception response keeps it.
_RESYNC = frozenset({"timeout", "truncated", "reset", "garbage", "bad_length", "bad_crc",
                     "wrong_transaction", "wrong_unit"})


class _Lost(ConnectionError):
    """The connection closed while a request waited for its answer."""


@dataclass
class DeviceStats:
    """What one device has done so far (counted when stored, not when seen)."""

    exchanges: int = 0
    faults: int = 0
    connects: int = 0
    consecutive_failures: int = 0
    lateness_ns: list[int] = field(default_factory=list)
    fault_kinds: dict[str, int] = field(default_factory=dict)

    @property
    def down(self) -> bool:
        """True while the device's latest attempts all failed."""
        return self.consecutive_failures > 0


class Backoff:
    """Capped exponential backoff with full jitter from a seeded generator."""

    def __init__(self, initial: float, cap: float, rng: random.Random) -> None:
        self.initial, self.cap, self.rng = initial, cap, rng
        self.attempt = 0

    def next(self) -> float:
        """The next wait in seconds: uniform in [base/2, base], base doubling up to the cap."""
        base = min(self.cap, self.initial * (2 ** self.attempt))
        self.attempt += 1
        return base / 2 + self.rng.random() * base / 2

    def reset(self) -> None:
        """Start again from the initial delay (after a successful connect)."""
        self.attempt = 0


class _Exchange:
    """The bytes seen for one request: what went out and everything that came back."""

    def __init__(self) -> None:
        self.tx = b""
        self.rx = bytearray()
        self._last = b""
        self.closed = False

    def start(self) -> None:
        self.tx, self.rx, self._last, self.closed = b"", bytearray(), b"", False

    def trace(self, sending: bool, data: bytes) -> bytes:
        """pymodbus ``trace_packet`` hook: it sees the receive buffer grow, or cut and grow again."""
        if sending:
            self.tx = bytes(data)
        else:
            delta = data[len(self._last):] if data.startswith(self._last) else data
            self.rx += delta
            self._last = bytes(data)
        return data


class DevicePoller:
    """Polls one device until stopped; also carries out writes with read-back."""

    def __init__(self, device: Device, recorder: Recorder, session: str, *, seed: int = 0,
                 phase: float = 0.0) -> None:
        self.device = device
        self.phase = phase  # seconds after the start that the first round is due
        self.recorder = recorder
        self.session = session
        self.stats = DeviceStats()
        self.backoff = Backoff(device.backoff_initial, device.backoff_max,
                               random.Random(f"{seed}/{device.name}"))
        self.sequence = 0
        self._io = _Exchange()
        self._client: MbapClient | AsyncModbusTcpClient | AsyncModbusSerialClient | None = None
        self._connect_error: BaseException | None = None
        self._lost = False
        self._generation = 0
        self._lock = asyncio.Lock()
        # The longest one request can take: pymodbus's timeout for each attempt, plus a margin.
        self.bound = device.timeout * (device.retries + 1) + _MARGIN_S

    # -- connection ---------------------------------------------------------------
    def _new_client(self) -> MbapClient | AsyncModbusTcpClient | AsyncModbusSerialClient:
        self._generation += 1
        gen = self._generation

        def trace_packet(sending: bool, data: bytes) -> bytes:
            return self._io.trace(sending, data) if gen == self._generation else data

        def trace_connect(connected: bool) -> None:
            if gen == self._generation:  # a closed client's late callback must not touch the new one
                self._on_connect(connected)

        if self.device.framing == "tcp":
            return MbapClient(self.device.host, self.device.port, timeout=self.device.timeout,
                              retries=self.device.retries, io=self._io, on_connect=trace_connect,
                              on_connect_error=self._keep_connect_error)
        client = _client_for(self.device, trace_packet=trace_packet, trace_connect=trace_connect)
        create = client.ctx.call_create

        async def call_create():  # keep the reason a connect failed (pymodbus only logs it)
            try:
                return await create()
            except BaseException as e:
                self._keep_connect_error(e)
                raise

        client.ctx.call_create = call_create  # type: ignore[method-assign]
        return client

    def _keep_connect_error(self, error: BaseException) -> None:
        self._connect_error = error

    def _on_connect(self, connected: bool) -> None:
        if not connected:
            self._lost = True
            self._io.closed = True
            pending = getattr(getattr(self._client, "ctx", None), "response_future", None)
            if pending is not None and not pending.done():  # end the read now, not at its timeout
                pending.set_exception(_Lost("connection closed mid-read"))

    @property
    def connected(self) -> bool:
        """True while the TCP connection is up."""
        return self._client is not None and self._client.connected

    async def connect(self) -> bool:
        """One connect attempt; a failure is a ``refused`` or ``connect_timeout`` fault."""
        self.close()
        self._client = self._new_client()
        self._connect_error = None
        self._lost = False
        started = time.perf_counter_ns()
        ok = await self._client.connect()
        if ok:
            self.stats.connects += 1
            self.backoff.reset()
            return True
        kind, detail = _connect_failure(self._connect_error, self.device.timeout)
        self._fault(kind, detail, latency_ns=time.perf_counter_ns() - started)
        self.close()
        return False

    def close(self) -> None:
        """Drop the connection (a new one is made on the next attempt)."""
        if self._client is not None:
            self._generation += 1  # callbacks of the old client are ignored from now on
            self._client.close()
            self._client = None

    # -- polling --------------------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> None:
        """Poll every block each interval until ``stop`` is set; reconnect with backoff."""
        loop = asyncio.get_running_loop()
        due = loop.time() + self.phase
        await _wait(stop, self.phase)
        while not stop.is_set():
            async with self._lock:  # a write holds it too: one exchange at a time per device
                up = self.connected or await self.connect()
                if up:
                    self.stats.lateness_ns.append(int((loop.time() - due) * 1e9))
                    for block in self.device.blocks:
                        if not self.connected or not await self.read(block):
                            break
            if not up:
                await _wait(stop, self.backoff.next())
                due = loop.time()
                continue
            due += self.device.interval
            now = loop.time()
            if due < now:  # a slow round: skip the ticks it missed instead of bursting
                due = now
            await _wait(stop, due - now)

    async def read(self, block: Block) -> bool:
        """Read one block; record a frame or a fault. False when the connection was dropped."""
        call, unit = getattr(self._client, _READS[block.function]), self.device.unit
        response, latency, failure = await self._exchange(
            lambda: call(block.address, count=block.count, device_id=unit), block.function)
        if failure is not None:
            return self._after_failure(failure, block.function, block.address, latency)
        if response.isError():
            self._fault("exception", f"exception code {response.exception_code}", block.function,
                        block.address, exception_code=response.exception_code, latency_ns=latency)
            self.stats.consecutive_failures = 0  # the device answered
            return True
        items = [int(b) for b in response.bits[: block.count]] if block.bits else list(response.registers)
        self._frame(block, items, response, latency)
        return True

    async def _exchange(self, make: Any, function: int) -> tuple[Any, int, tuple[str, str] | None]:
        """Run one request; returns (response, latency ns, (kind, detail) or None).

        No timer or task of ours per request: the client bounds each attempt by ``timeout``
        (so a request ends within ``timeout x (retries + 1)``), and a connection lost
        mid-read fails its pending response at once (``_on_connect``, or ``MbapClient``).
        """
        self._io.start()
        started = time.perf_counter_ns()
        try:
            response = await make()
        except Exception as e:  # ModbusIOException, ConnectionException, TimeoutError, _Lost, mbap's
            response = None
            if not self._io.rx and not self._io.tx and not self._lost:
                return None, time.perf_counter_ns() - started, ("reset", f"{type(e).__name__}: {e}")
        latency = time.perf_counter_ns() - started
        if response is not None:
            return response, latency, None
        closed = self._lost or not self.connected
        kind, detail = classify(bytes(self._io.rx), self._tid(), self.device.unit, function,
                                self.device.framing, closed)
        return None, latency, (kind, detail)

    def _after_failure(self, failure: tuple[str, str], function: int, address: int, latency: int) -> bool:
        kind, detail = failure
        self._fault(kind, detail, function, address, latency_ns=latency)
        if kind in _RESYNC or not self.connected:
            self.close()
            return False
        return True

    def _tid(self) -> int:
        tx = self._io.tx
        return int.from_bytes(tx[:2], "big") if self.device.framing == "tcp" and len(tx) >= 2 else 0

    def _response_adu(self) -> bytes:
        rx = self._io.rx
        if self.device.framing == "tcp":
            return bytes(rx[: 6 + ((rx[4] << 8) | rx[5])] if len(rx) >= 7 else rx)
        rx = bytes(rx)
        need = response_pdu_length(rx[1:])
        return rx[: 1 + need + 2] if need is not None else rx

    # -- events ---------------------------------------------------------------------
    def _next(self) -> int:
        self.sequence += 1
        return self.sequence

    def _frame_stored(self) -> None:
        self.stats.exchanges += 1

    def _store(self, payload: Any, received: int, occurred: int | None = None,
               on_stored: Any = None) -> None:
        self.recorder.add(payload, source=self.device.name, session=self.session,
                          sequence=payload.sequence, received_at=received, occurred_at=occurred,
                          on_stored=on_stored)

    def _fault_stored(self, kind: str) -> Any:
        stats = self.stats

        def stored() -> None:
            stats.faults += 1
            stats.fault_kinds[kind] = stats.fault_kinds.get(kind, 0) + 1
        return stored

    def _frame(self, block: Block, items: list[int], response: Any, latency: int) -> None:
        decoded, invalid = decode_block(block, items)
        received = self.recorder.now()
        device_time = None
        if self.device.reports_time and self.device.reports_time in decoded:
            device_time = int(float(decoded[self.device.reports_time]) * 1e9)
        payload = ModbusFrame(
            device=self.device.name, unit=self.device.unit, function=block.function,
            address=block.address, values=items, raw=self._response_adu(), request=self._io.tx,
            count=block.count, transaction=getattr(response, "transaction_id", 0) or 0,
            latency_ns=latency, decoded=decoded, invalid=invalid, device_time=device_time,
            received_at=received, session=self.session, sequence=self._next(),
        )
        self.stats.consecutive_failures = 0
        self._store(payload, received, device_time, self._frame_stored)

    def _fault(self, kind: str, detail: str, function: int = 0, address: int = 0, *,
               exception_code: int = 0, latency_ns: int = 0) -> None:
        received = self.recorder.now()
        payload = ModbusFault(
            device=self.device.name, kind=kind, detail=detail, unit=self.device.unit,  # type: ignore[arg-type]
            function=function, address=address, raw=bytes(self._io.rx), request=self._io.tx,
            transaction=self._tid(), exception_code=exception_code, latency_ns=latency_ns,
            received_at=received, attempt=self.backoff.attempt, session=self.session,
            sequence=self._next(),
        )
        if kind != "exception":
            self.stats.consecutive_failures += 1
        self._store(payload, received, on_stored=self._fault_stored(kind))

    # -- writes -----------------------------------------------------------------------
    async def write(self, target: str, value: Any, *, effect_key: str = "", duration_ms: int = 0,
                    reason: str = "") -> Any:
        """Write ``value`` to the register named ``target``, then read it back.

        Records a ``ModbusWriteCommand``, a ``ModbusWriteResult`` and a
        ``ModbusReadBack``. Returns the value read back when it matches, else
        None: the target's state is unknown (HY-005).
        """
        block, reg = self.device.register(target)
        if not reg.writable:
            raise ValueError(f"register {target!r} of device {self.device.name!r} is not writable")
        command_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"{self.session}/{self.device.name}/{self.sequence + 1}"))
        function = 5 if block.function == 1 else (6 if reg.words == 1 else 16)
        received = self.recorder.now()
        self._store(ModbusWriteCommand(
            device=self.device.name, command_id=command_id, target=target, function=function,
            address=reg.address, value=value, unit=self.device.unit, effect_key=effect_key,
            duration_ms=duration_ms, reason=reason, session=self.session, sequence=self._next(),
        ), received)
        async with self._lock:
            ok = await self._send_write(command_id, target, block, reg, value, function)
            back = await self._read_back(command_id, target, block, reg, value) if ok else None
        if not ok:  # the exchange's own fault is recorded; the target's state is unknown
            self._readback_event(command_id, target, value, None, "write not acknowledged", fault=False)
        return back

    async def _send_write(self, command_id: str, target: str, block: Block, reg: Register, value: Any,
                          function: int) -> bool:
        if not self.connected and not await self.connect():
            self._result(command_id, target, False, "not connected", 0)
            return False
        unit, client = self.device.unit, self._client
        if function == 5:
            def call():
                return client.write_coil(reg.address, bool(value), device_id=unit)
        elif function == 6:
            def call():
                return client.write_register(reg.address, encode_value(value, reg)[0], device_id=unit)
        else:
            def call():
                return client.write_registers(reg.address, encode_value(value, reg), device_id=unit)
        response, latency, failure = await self._exchange(call, function)
        if failure is not None:
            self._after_failure(failure, function, reg.address, latency)
            self._result(command_id, target, False, f"{failure[0]}: {failure[1]}", latency)
            return False
        if response.isError():
            self._fault("write_failed", f"exception code {response.exception_code}", function,
                        reg.address, exception_code=response.exception_code, latency_ns=latency)
            self._result(command_id, target, False, f"exception code {response.exception_code}",
                         latency, response.exception_code)
            return False
        self._result(command_id, target, True, "acknowledged", latency)
        return True

    async def _read_back(self, command_id: str, target: str, block: Block, reg: Register,
                         value: Any) -> Any:
        fn = {1: "read_coils", 3: "read_holding_registers"}[block.function]
        count = 1 if block.bits else reg.words
        client, unit = self._client, self.device.unit
        response, latency, failure = await self._exchange(
            lambda: getattr(client, fn)(reg.address, count=count, device_id=unit), block.function)
        if failure is not None or response.isError():
            detail = f"{failure[0]}: {failure[1]}" if failure else f"exception code {response.exception_code}"
            if failure is not None:
                self._after_failure(failure, block.function, reg.address, latency)
            self._readback_event(command_id, target, value, None, f"not read back ({detail})")
            return None
        items = [int(b) for b in response.bits[:1]] if block.bits else list(response.registers)
        single = Block(function=block.function, address=reg.address, count=count,
                       registers=(Register(**{**reg.__dict__, "min": None, "max": None}),))
        got = decode_block(single, items)[0][reg.name]
        matches = _same(got, value)
        self._readback_event(command_id, target, value, got, "read back" if matches else "read back different")
        return got if matches else None

    def _result(self, command_id: str, target: str, ok: bool, detail: str, latency: int,
                code: int = 0) -> None:
        received = self.recorder.now()
        self._store(ModbusWriteResult(
            device=self.device.name, command_id=command_id, target=target, ok=ok, detail=detail,
            exception_code=code, request=self._io.tx, raw=bytes(self._io.rx), latency_ns=latency,
            session=self.session, sequence=self._next(),
        ), received)

    def _readback_event(self, command_id: str, target: str, expected: Any, got: Any, detail: str,
                        fault: bool = True) -> None:
        received = self.recorder.now()
        matches = got is not None and _same(got, expected)
        self._store(ModbusReadBack(
            device=self.device.name, command_id=command_id, target=target, expected=expected,
            value=got, matches=matches, detail=detail, raw=bytes(self._io.rx), session=self.session,
            sequence=self._next(),
        ), received)
        if not matches and fault:
            self._fault("readback", f"{target}: wrote {expected!r}, {detail}"
                        + (f" ({got!r})" if got is not None else ""))


def _client_for(device: Device, **hooks: Any) -> AsyncModbusTcpClient | AsyncModbusSerialClient:
    """A pymodbus client for an RTU ``device``: RTU framing over TCP or a serial line.

    Its own reconnect is off (the poller owns reconnection) and its timeout is the device's.
    """
    common = {"timeout": device.timeout, "retries": device.retries, "reconnect_delay": 0,
              "name": device.name, **hooks}
    if device.framing == "rtu":
        return AsyncModbusSerialClient(device.serial, framer=FramerType.RTU, baudrate=device.baudrate,
                                       parity=device.parity, stopbits=device.stopbits,
                                       bytesize=device.bytesize, **common)
    return AsyncModbusTcpClient(device.host, port=device.port, framer=FramerType.RTU, **common)


def _connect_failure(err: BaseException | None, timeout: float) -> tuple[str, str]:
    """The fault kind and detail of a failed connect from the error its attempt raised.

    pymodbus bounds the attempt with ``asyncio.wait_for``: at the timeout it cancels the
    connect it is waiting on, so the attempt itself sees ``CancelledError`` (our own task
    was not cancelled, or ``connect()`` would not have returned). That, a ``TimeoutError``
    and an ``ETIMEDOUT`` from the kernel are a connect timeout (a SYN never answered);
    anything else (``ECONNREFUSED``, no route, no such serial port) is ``refused``.
    """
    if err is None or isinstance(err, TimeoutError | asyncio.CancelledError) or \
            getattr(err, "errno", None) == errno.ETIMEDOUT:
        why = f"{type(err).__name__}: {err}" if isinstance(err, OSError) else "no answer"
        return "connect_timeout", f"connect gave up after {timeout:g} s ({why})"
    return "refused", f"{type(err).__name__}: {err}"


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return bool(a) == bool(b)
    if isinstance(a, int | float) and isinstance(b, int | float):
        return abs(float(a) - float(b)) <= 1e-6 * max(1.0, abs(float(b)))
    return a == b


async def _wait(stop: asyncio.Event, seconds: float) -> None:
    """Sleep ``seconds`` or until ``stop`` is set, whichever comes first (no task per wait)."""
    if seconds <= 0 or stop.is_set():
        await asyncio.sleep(0)
        return
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            await stop.wait()

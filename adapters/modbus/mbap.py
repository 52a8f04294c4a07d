"""A lean Modbus TCP (MBAP) client: one request at a time over an ``asyncio.Protocol``.

Why not pymodbus's ``AsyncModbusTcpClient`` for MBAP: per exchange it builds a
request PDU object, runs it through a framer, a transaction manager with a lock,
an ``asyncio.wait_for`` (a task and a timer) and a decoder, and the poller needed
its ``trace_packet`` hook on top to keep the raw bytes; about 30-70 us of CPU an
exchange (BENCHMARKS.md, "Modbus ingest"). The MBAP header and the read and write
PDUs are a few bytes, so this client writes the request ADU itself, appends what
arrives to the poller's exchange record (the raw bytes come for free), and
resolves the request's future when a whole frame is in. A frame that is not the
answer (wrong protocol id, length, transaction, unit, function or size) fails the
request at once; the poller classifies it from the bytes (``codec.classify``).

Timeouts cost no timer per request: the request stores its deadline and one
timer per connection, armed at the earliest deadline, re-arms itself when it
finds the current request's deadline later. A request waits ``timeout`` for each
of ``retries + 1`` attempts (the same ADU sent again), as pymodbus's does. Serial
RTU and RTU framing over TCP stay with pymodbus.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Callable
from typing import Any

_REQUEST = struct.Struct(">HHHBBHH")  # MBAP (tid, protocol, length, unit), function, address, count/value
_WORDS: dict[int, struct.Struct] = {}
_MAX_TID = 65000  # as pymodbus: transaction ids 1..65000, then 1 again


class FrameRejected(ConnectionError):
    """A whole or impossible frame arrived that is not the answer to the request."""


class Lost(ConnectionError):
    """The connection closed while a request waited for its answer."""


class Response:
    """An answer, shaped as the parts of a pymodbus response the poller reads."""

    __slots__ = ("bits", "exception_code", "registers", "transaction_id")

    def __init__(self, transaction_id: int, exception_code: int = 0, registers: list[int] | None = None,
                 bits: list[int] | None = None) -> None:
        self.transaction_id = transaction_id
        self.exception_code = exception_code
        self.registers = registers if registers is not None else []
        self.bits = bits if bits is not None else []

    def isError(self) -> bool:  # noqa: N802 (pymodbus's name: the poller reads either)
        """True for a Modbus exception response."""
        return self.exception_code != 0


class MbapClient(asyncio.Protocol):
    """One TCP connection to one device; ``io`` (``tx``, ``rx``) receives the raw bytes."""

    def __init__(self, host: str, port: int, *, timeout: float, retries: int, io: Any,
                 on_connect: Callable[[bool], None], on_connect_error: Callable[[BaseException], None]) -> None:
        self.host, self.port, self.timeout, self.retries = host, port, timeout, retries
        self.io = io
        self._on_connect, self._on_connect_error = on_connect, on_connect_error
        self._transport: asyncio.Transport | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tid = 0
        self._waiter: asyncio.Future | None = None
        self._expect: tuple[int, int, int] = (0, 0, 0)  # tid, unit, function
        self._size = 0  # PDU bytes a good answer has (exception answers have 2)
        self._deadline = 0.0
        self._attempts = 0
        self._timer: asyncio.TimerHandle | None = None

    # -- connection --------------------------------------------------------------------------
    async def connect(self) -> bool:
        """One connect attempt bounded by ``timeout``; the error goes to ``on_connect_error``."""
        self._loop = loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self.timeout):
                await loop.create_connection(lambda: self, self.host, self.port)
        except (OSError, TimeoutError) as e:
            self._on_connect_error(e)
            return False
        return True

    def connection_made(self, transport: asyncio.BaseTransport) -> None:  # noqa: D102 (asyncio's)
        self._transport = transport  # type: ignore[assignment]
        self._tid = 0
        self._on_connect(True)

    def connection_lost(self, exc: Exception | None) -> None:  # noqa: D102 (asyncio's)
        self._transport = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._on_connect(False)
        self._fail(Lost("connection closed mid-read"))

    @property
    def connected(self) -> bool:
        """True while the connection is up."""
        return self._transport is not None and not self._transport.is_closing()

    def close(self) -> None:
        """Close the connection; a request still waiting fails with ``Lost``."""
        if self._transport is not None:
            self._transport.close()
        self._fail(Lost("connection closed by the poller"))

    # -- requests (pymodbus's method names and keywords, so the poller calls either) ----------
    def read_coils(self, address: int, *, count: int, device_id: int) -> asyncio.Future:
        """Function 1."""
        return self._request(device_id, 1, address, count, (count + 7) // 8 + 1)

    def read_discrete_inputs(self, address: int, *, count: int, device_id: int) -> asyncio.Future:
        """Function 2."""
        return self._request(device_id, 2, address, count, (count + 7) // 8 + 1)

    def read_holding_registers(self, address: int, *, count: int, device_id: int) -> asyncio.Future:
        """Function 3."""
        return self._request(device_id, 3, address, count, 2 * count + 1)

    def read_input_registers(self, address: int, *, count: int, device_id: int) -> asyncio.Future:
        """Function 4."""
        return self._request(device_id, 4, address, count, 2 * count + 1)

    def write_coil(self, address: int, value: bool, *, device_id: int) -> asyncio.Future:
        """Function 5 (the answer echoes the request)."""
        return self._request(device_id, 5, address, 0xFF00 if value else 0, 4)

    def write_register(self, address: int, value: int, *, device_id: int) -> asyncio.Future:
        """Function 6 (the answer echoes the request)."""
        return self._request(device_id, 6, address, value, 4)

    def write_registers(self, address: int, values: list[int], *, device_id: int) -> asyncio.Future:
        """Function 16 (the answer gives address and count)."""
        data = _words(len(values)).pack(*values)
        return self._request(device_id, 16, address, len(values), 4, bytes([len(data)]) + data)

    def _request(self, unit: int, function: int, address: int, value: int, size: int,
                 tail: bytes = b"") -> asyncio.Future:
        """Send one request ADU; the future gets its ``Response`` (or a ``ConnectionError``)."""
        assert self._waiter is None or self._waiter.done(), "one request at a time"
        loop, transport = self._loop, self._transport
        waiter = loop.create_future()  # type: ignore[union-attr]
        if transport is None:
            waiter.set_exception(Lost("not connected"))
            return waiter
        self._tid = tid = 1 if self._tid >= _MAX_TID else self._tid + 1
        adu = _REQUEST.pack(tid, 0, 6 + len(tail), unit, function, address, value) + tail
        self.io.tx = adu
        self._waiter, self._expect, self._size = waiter, (tid, unit, function), size + 1
        self._attempts = self.retries + 1
        self._arm(loop)
        transport.write(adu)
        return waiter

    # -- answers -------------------------------------------------------------------------------
    def data_received(self, data: bytes) -> None:  # noqa: D102 (asyncio's)
        rx = self.io.rx
        rx += data
        waiter = self._waiter
        if waiter is None or len(rx) < 7:
            return
        if waiter.done():  # its caller was cancelled: nobody waits for this answer any more
            self._waiter = None
            return
        length = (rx[4] << 8) | rx[5]
        if rx[2] or rx[3] or not 2 <= length <= 254:
            self._fail(FrameRejected("not an MBAP frame"))
            return
        if len(rx) < 6 + length:
            return
        self._waiter = None
        tid, unit, function = self._expect
        answered = rx[7]
        if (rx[0] << 8) | rx[1] != tid or (unit and rx[6] != unit) or answered & 0x7F != function:
            waiter.set_exception(FrameRejected("not the answer to the request"))
        elif answered & 0x80:
            if length == 3 and rx[8]:  # exception code 0 is no exception: not a valid answer
                waiter.set_result(Response(tid, exception_code=rx[8]))
            else:
                waiter.set_exception(FrameRejected("exception answer of the wrong size"))
        elif length - 1 != self._size or (function < 5 and rx[8] != length - 3):
            waiter.set_exception(FrameRejected("answer of the wrong size"))
        elif function > 2:
            waiter.set_result(Response(tid, registers=list(_words((length - 3) // 2).unpack_from(rx, 9))
                                       if function < 5 else None))
        else:
            waiter.set_result(Response(tid, bits=[(byte >> i) & 1 for byte in rx[9:6 + length] for i in range(8)]))

    def _fail(self, error: BaseException) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(error)

    # -- timeouts: one timer per connection, not per request --------------------------------
    def _arm(self, loop: asyncio.AbstractEventLoop) -> None:
        self._deadline = loop.time() + self.timeout
        if self._timer is None:
            self._timer = loop.call_at(self._deadline, self._check)

    def _check(self) -> None:
        self._timer = None
        waiter = self._waiter
        if waiter is None or waiter.done():
            return  # idle: the next request arms the timer again
        loop = self._loop
        if loop.time() < self._deadline:  # an earlier request's deadline: wait for this one's
            self._timer = loop.call_at(self._deadline, self._check)  # type: ignore[union-attr]
            return
        self._attempts -= 1
        if self._attempts > 0 and self._transport is not None:  # retry: the same ADU again
            self._arm(loop)  # type: ignore[arg-type]
            self._transport.write(self.io.tx)
            return
        self._fail(TimeoutError(f"no answer within {self.timeout:g} s"))


def _words(n: int) -> struct.Struct:
    """A struct for ``n`` big-endian 16-bit words (cached)."""
    words = _WORDS.get(n)
    if words is None:
        words = _WORDS[n] = struct.Struct(f">{n}H")
    return words

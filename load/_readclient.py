"""A lean BACnet/IP read client for the load generator: raw UDP, requests encoded once.

A bacpypes3 application spends most of a read in Python building and parsing
PDU objects (about 1 ms of CPU per read, 70% of a core at 500 reads/s beside
the writer). The load generator only needs to send BN-001's three reads and to
know that each was answered, so:

- ``encode_read(kind, object_type, instance)`` builds the whole BACnet/IP frame
  of a ReadProperty (present-value), ReadPropertyMultiple (present-value,
  status-flags, object-name) or ReadRange (log-buffer, no range) once per
  object; a read only writes its invoke id into byte ``INVOKE_AT``.
- ``parse_answer(frame)`` reads just enough of an answer to match it to its
  request: the invoke id, the kind of answer (ack, error, reject, abort), the
  service choice, and for an ack the object identifier it starts with.
- ``ReadClient`` sends on one UDP socket, keeps the reads in flight by invoke
  id, and calls back once per read: answered (``"ack"``, or ``"error"``,
  ``"reject"``, ``"abort"``: the server answered, e.g. a deleted object's
  unknown-object error), or ``"timeout"``. An answer that does not match the
  read in flight under its invoke id (another service or object) is counted in
  ``mismatched`` and the read keeps waiting. Invoke ids are reused first in,
  first out (256 of them, at most 64 reads in flight), so a late answer to a
  timed-out read can only be taken for a later read of the very same request.
"""

from __future__ import annotations

import asyncio
import struct
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from adapters.bacnet.logrecords import object_identifier_bytes

SERVICES = {"read-property": 12, "read-property-multiple": 14, "read-range": 26}
"""Confirmed service choice of each read kind."""
_PRESENT_VALUE, _STATUS_FLAGS, _OBJECT_NAME, _LOG_BUFFER = 85, 111, 77, 131
_BODIES = {  # after the object identifier (context tag 0)
    "read-property": bytes([0x19, _PRESENT_VALUE]),
    "read-property-multiple": bytes([0x1E, 0x09, _PRESENT_VALUE, 0x09, _STATUS_FLAGS,
                                     0x09, _OBJECT_NAME, 0x1F]),
    "read-range": bytes([0x19, _LOG_BUFFER]),
}
INVOKE_AT = 8
"""Offset of the invoke id in an encoded request (BVLC 4 bytes, NPDU 2, APDU type, max)."""
_MAX_APDU_1476 = 0x05  # no segmentation accepted: every answer fits one 1476-byte APDU
_ANSWERS = {3: "ack", 5: "error", 6: "reject", 7: "abort"}


class AnswerError(ValueError):
    """A datagram that is not a BACnet/IP answer this client can read."""


def encode_read(kind: str, object_type: str, instance: int) -> bytes:
    """The BACnet/IP frame of read ``kind`` of one object, invoke id 0 (see ``INVOKE_AT``)."""
    if kind not in SERVICES:
        raise ValueError(f"read kind {kind!r}: use one of {', '.join(SERVICES)}")
    apdu = bytes([0x00, _MAX_APDU_1476, 0, SERVICES[kind], 0x0C]) + \
        object_identifier_bytes(object_type, instance) + _BODIES[kind]
    npdu = b"\x01\x04" + apdu  # version 1, a reply is expected
    return b"\x81\x0a" + struct.pack(">H", 4 + len(npdu)) + npdu


def parse_answer(frame: bytes) -> tuple[str, int, int, bytes]:
    """``(answer, invoke id, service choice, object identifier)`` of an answer.

    ``answer`` is ``ack``, ``error``, ``reject`` or ``abort``; the service
    choice is -1 for a reject or abort (they carry none) and the object
    identifier empty unless an ack starts with one. ``AnswerError`` for
    anything else (another BVLC function, a network-layer message, a request).
    """
    if len(frame) < 8 or frame[0] != 0x81 or frame[1] not in (0x0A, 0x0B):
        raise AnswerError("not an original BACnet/IP NPDU")
    control, at = frame[5], 6
    if frame[4] != 1 or control & 0x80:
        raise AnswerError("not an APDU")
    if control & 0x20:  # destination: DNET, DLEN, DADR (hop count after the source)
        at += 3 + frame[at + 2]
    if control & 0x08:  # source: SNET, SLEN, SADR
        at += 3 + frame[at + 2]
    if control & 0x20:
        at += 1
    if len(frame) < at + 2:
        raise AnswerError("truncated APDU")
    pdu_type = frame[at] >> 4
    answer = _ANSWERS.get(pdu_type)
    if answer is None:
        raise AnswerError(f"APDU type {pdu_type} is no answer")
    invoke = frame[at + 1]
    if answer in ("reject", "abort"):
        return answer, invoke, -1, b""
    if answer == "ack" and frame[at] & 0x08:  # a segment: sequence number, window before it
        at += 2
    if len(frame) < at + 3:
        raise AnswerError("truncated APDU")
    service = frame[at + 2]
    body = frame[at + 3:at + 8]
    oid = body[1:] if answer == "ack" and len(body) == 5 and body[0] == 0x0C else b""
    return answer, invoke, service, oid


class ReadClient(asyncio.DatagramProtocol):
    """Reads in flight on one UDP socket, matched to their answers by invoke id.

    ``done(token, outcome, ns)`` is called once per ``send``: ``outcome`` is
    the answer (``ack``, ``error``, ``reject``, ``abort``) or ``timeout``;
    ``ns`` the wall-clock time it came.
    """

    def __init__(self, address: tuple[str, int], done: Callable[[Any, str, int], None], *,
                 timeout: float = 2.0) -> None:
        self.address, self.done, self.timeout = address, done, timeout
        self.transport: asyncio.DatagramTransport | None = None
        self.free: deque[int] = deque(range(256))
        self.pending: dict[int, tuple[Any, int, bytes, asyncio.TimerHandle]] = {}
        self.mismatched = 0
        self.unreadable = 0
        self.idle = asyncio.Event()
        self.idle.set()

    @classmethod
    async def open(cls, host: str, port: int, done: Callable[[Any, str, int], None], *,
                   timeout: float = 2.0) -> ReadClient:
        """A client on a fresh loopback UDP port sending to ``host:port``."""
        loop = asyncio.get_running_loop()
        _, client = await loop.create_datagram_endpoint(
            lambda: cls((host, port), done, timeout=timeout), local_addr=("127.0.0.1", 0))
        return client

    def connection_made(self, transport: Any) -> None:
        """Keep the transport."""
        self.transport = transport

    @property
    def in_flight(self) -> int:
        """Reads sent and not yet answered or timed out."""
        return len(self.pending)

    def send(self, token: Any, request: bytes, oid: bytes) -> None:
        """Send ``request`` (from ``encode_read``) for object ``oid`` under a free invoke id."""
        invoke = self.free.popleft()
        frame = bytearray(request)
        frame[INVOKE_AT] = invoke
        timer = asyncio.get_running_loop().call_later(self.timeout, self._expire, invoke)
        self.pending[invoke] = (token, request[INVOKE_AT + 1], oid, timer)
        self.idle.clear()
        self.transport.sendto(frame, self.address)

    def datagram_received(self, data: bytes, addr: Any) -> None:
        """An answer: finish the read in flight under its invoke id if it matches."""
        try:
            answer, invoke, service, oid = parse_answer(data)
        except (AnswerError, IndexError):
            self.unreadable += 1
            return
        read = self.pending.get(invoke)
        if read is None or (service >= 0 and service != read[1]) or \
                (answer == "ack" and oid != read[2]):
            self.mismatched += 1
            return
        read[3].cancel()
        self._finish(invoke, answer)

    def _expire(self, invoke: int) -> None:
        if invoke in self.pending:
            self._finish(invoke, "timeout")

    def _finish(self, invoke: int, outcome: str) -> None:
        token = self.pending.pop(invoke)[0]
        self.free.append(invoke)
        if not self.pending:
            self.idle.set()
        self.done(token, outcome, time.time_ns())

    def close(self) -> None:
        """Close the socket; reads still in flight time out now."""
        for invoke in list(self.pending):
            self.pending[invoke][3].cancel()
            self._finish(invoke, "timeout")
        if self.transport is not None:
            self.transport.close()

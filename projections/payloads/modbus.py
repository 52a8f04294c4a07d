"""Modbus payloads: every exchange with a device, and every failure, with the raw bytes.

Fields added after the first release all have defaults, so events stored before them
still decode. Times are integer ns UTC; raw bytes are whole ADUs as seen on the wire.

- ``ModbusFrame``: one good exchange (request, response, decoded values by name).
- ``ModbusFault``: one failed exchange or connection attempt, with what was received.
- ``ModbusWriteCommand`` / ``ModbusWriteResult`` / ``ModbusReadBack``: a write to a coil
  or holding register, what the device answered, and what reading it back showed.
  A write acknowledged but read back different, or not read back, leaves the target's
  state unknown (HY-005).
"""

from __future__ import annotations

from typing import ClassVar, Literal

from eventstore.payloads import Payload, register_payloads

Value = bool | int | float | str

FaultKind = Literal[
    "refused",  # the TCP connect was refused
    "timeout",  # the request went out and no answer came within the timeout
    "reset",  # the connection closed or reset before a whole answer arrived
    "truncated",  # part of an answer arrived, then nothing more within the timeout
    "exception",  # the device answered with a Modbus exception response (exception_code)
    "readback",  # a write was acknowledged but reading it back disagreed or failed
    "connect_timeout",  # the TCP connect did not complete within the timeout
    "garbage",  # bytes that are no Modbus frame (bad protocol id, unparseable)
    "bad_length",  # a frame whose length field or size does not fit its function
    "bad_crc",  # an RTU frame whose CRC does not match
    "wrong_transaction",  # a whole frame answering another transaction id
    "wrong_unit",  # a whole frame from another unit id
    "write_failed",  # a write was not acknowledged (see the detail)
]


class ModbusFrame(Payload, tag="ModbusFrame"):
    """One exchange with a device: the request, the decoded values and the raw response.

    ``values`` are the raw registers (or bits as 0/1); ``decoded`` the named values
    after type, word/byte order, scale and offset. ``raw`` is the response ADU and
    ``request`` the request ADU. ``device_time`` is set only when the device reports
    its own clock; ``received_at`` always.
    """

    device: str
    unit: int
    function: int
    address: int
    values: list[int] = []
    raw: bytes = b""
    request: bytes = b""
    count: int = 0
    transaction: int = 0
    latency_ns: int = 0
    decoded: dict[str, Value] = {}
    invalid: dict[str, str] = {}  # name -> why the decoded value is outside its valid range
    device_time: int | None = None
    received_at: int = 0
    session: str = ""
    sequence: int = 0


class ModbusFault(Payload, tag="ModbusFault"):
    """A failed exchange with a device: what failed, and the raw bytes seen."""

    fault_source_field: ClassVar[str | None] = "device"

    device: str
    kind: FaultKind
    detail: str = ""
    unit: int = 0
    function: int = 0
    address: int = 0
    raw: bytes = b""
    request: bytes = b""
    transaction: int = 0
    exception_code: int = 0
    latency_ns: int = 0
    received_at: int = 0
    attempt: int = 0
    session: str = ""
    sequence: int = 0


class ModbusWriteCommand(Payload, tag="ModbusWriteCommand"):
    """A write about to be sent: ``target`` (a register name) set to ``value``.

    ``effect_key`` ties the write to the decision it carries out (a dose), and
    ``duration_ms`` is how long a pump relay stays on for it (0: not a pulse).
    """

    device: str
    command_id: str
    target: str
    function: int
    address: int
    value: Value
    unit: int = 1
    effect_key: str = ""
    duration_ms: int = 0
    reason: str = ""
    session: str = ""
    sequence: int = 0


class ModbusWriteResult(Payload, tag="ModbusWriteResult"):
    """What the device answered to a write: acknowledged (``ok``) or not, and why."""

    device: str
    command_id: str
    target: str
    ok: bool
    detail: str = ""
    exception_code: int = 0
    request: bytes = b""
    raw: bytes = b""
    latency_ns: int = 0
    session: str = ""
    sequence: int = 0


class ModbusReadBack(Payload, tag="ModbusReadBack"):
    """The target read back after a write: ``value`` is None when it could not be read."""

    device: str
    command_id: str
    target: str
    expected: Value
    value: Value | None = None
    matches: bool = False
    detail: str = ""
    raw: bytes = b""
    session: str = ""
    sequence: int = 0


register_payloads(ModbusFrame, ModbusFault, ModbusWriteCommand, ModbusWriteResult, ModbusReadBack)

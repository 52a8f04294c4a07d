"""Modbus payloads: every exchange with a device, and every failure, with the raw bytes."""

from __future__ import annotations

from typing import ClassVar, Literal

from eventstore.payloads import Payload, register_payloads


class ModbusFrame(Payload, tag="ModbusFrame"):
    """One exchange with a device: the request, the decoded values and the raw response."""

    device: str
    unit: int
    function: int
    address: int
    values: list[int] = []
    raw: bytes = b""


class ModbusFault(Payload, tag="ModbusFault"):
    """A failed exchange with a device: what failed, and the raw bytes seen."""

    fault_source_field: ClassVar[str | None] = "device"

    device: str
    kind: Literal["refused", "timeout", "reset", "truncated", "exception", "readback"]
    detail: str = ""
    unit: int = 0
    function: int = 0
    address: int = 0
    raw: bytes = b""


register_payloads(ModbusFrame, ModbusFault)

"""Payload structs: the typed data inside events.

Each struct is frozen and tagged with its event type, and encodes to
deterministic JSON (fields in declaration order). Money is integer minor units
(pence, cents); energy is kWh as float; times are integer nanoseconds UTC.
Unknown event types are never decoded: their raw bytes are kept as they are.
"""

from __future__ import annotations

from typing import Any, Final, Literal

import msgspec

from ._errors import InvalidPayload
from ._types import NewEvent, RecordedEvent, type_of


class Payload(msgspec.Struct, frozen=True, forbid_unknown_fields=True, gc=False):
    """Base of every payload struct (no cycles possible, so not tracked by the collector)."""


# -- metering and billing -------------------------------------------------
class MeterReading(Payload, tag="MeterReading"):
    """A cumulative register reading; the event's ``occurred_at`` is device time."""

    meter_id: str
    account_id: str
    register_kwh: float
    estimated: bool = False


class PaymentReceived(Payload, tag="PaymentReceived"):
    account_id: str
    payment_id: str
    amount_minor: int
    currency: str = "GBP"


class PaymentReversed(Payload, tag="PaymentReversed"):
    account_id: str
    payment_id: str
    reason: str = ""


class AccountBalance(Payload, tag="AccountBalance"):
    """A billing system's statement of what an account owes; positive means in debt."""

    account_id: str
    balance_minor: int
    provisional: bool = False
    due_at: int | None = None


class CustomerFlag(Payload, tag="CustomerFlag"):
    account_id: str
    flag: str
    active: bool = True


class CalendarDay(Payload, tag="CalendarDay"):
    """A day's calendar facts; ``date`` is ISO ``YYYY-MM-DD``."""

    date: str
    holiday: bool = False
    name: str = ""


class NotificationAck(Payload, tag="NotificationAck"):
    """The notification service's word on a notice: accepted, delivered or failed."""

    account_id: str
    notice_id: str
    stage: Literal["accepted", "delivered", "failed"] = "accepted"


# -- trading --------------------------------------------------------------
class MarketTick(Payload, tag="MarketTick"):
    symbol: str
    price: float
    size: float = 0.0


class OrderFill(Payload, tag="OrderFill"):
    order_id: str
    symbol: str
    side: Literal["buy", "sell"]
    quantity: float
    price: float


class TradeSignal(Payload, tag="TradeSignal"):
    signal_id: str
    symbol: str
    side: Literal["buy", "sell"]
    quantity: float
    strength: float = 1.0


# -- field devices --------------------------------------------------------
class ModbusFrame(Payload, tag="ModbusFrame"):
    device: str
    unit: int
    function: int
    address: int
    values: list[int] = []
    raw: bytes = b""


class ModbusFault(Payload, tag="ModbusFault"):
    device: str
    kind: Literal["refused", "timeout", "reset", "truncated", "exception", "readback"]
    detail: str = ""
    unit: int = 0
    function: int = 0
    address: int = 0
    raw: bytes = b""


class BacnetObjectDefinition(Payload, tag="BacnetObjectDefinition"):
    device_id: int
    object_type: str
    instance: int
    name: str
    units: str | None = None
    properties: dict[str, Any] = {}


class BacnetValueUpdate(Payload, tag="BacnetValueUpdate"):
    device_id: int
    object_type: str
    instance: int
    value: float | int | bool | str
    property: str = "present-value"


class BacnetObjectDelete(Payload, tag="BacnetObjectDelete"):
    device_id: int
    object_type: str
    instance: int


# -- health, faults and bad input -----------------------------------------
class Heartbeat(Payload, tag="Heartbeat"):
    """A node reporting in; grid projections track visibility from these."""

    node_id: str
    value: float = 0.0


class Fault(Payload, tag="Fault"):
    source: str
    kind: str
    detail: str = ""


class Rejected(Payload, tag="Rejected"):
    """Bad input, kept whole: the raw bytes, why they were refused and where they came from."""

    source: str
    reason: str
    raw: bytes
    where: str = ""


PAYLOAD_TYPES: Final[dict[str, type[Payload]]] = {
    type_of_cls.__struct_config__.tag: type_of_cls  # type: ignore[misc]
    for type_of_cls in Payload.__subclasses__()
}
_ENCODER: Final = msgspec.json.Encoder()
_DECODERS: Final = {tag: msgspec.json.Decoder(cls) for tag, cls in PAYLOAD_TYPES.items()}


def encode_payload(payload: Payload) -> bytes:
    """Deterministic JSON bytes of a payload struct."""
    return _ENCODER.encode(payload)


def encode_data(event: NewEvent) -> bytes:
    """The bytes to store for a new event; a payload's tag must match the event type."""
    data = event.data
    if isinstance(data, (bytes, bytearray, memoryview)):
        return bytes(data)
    if isinstance(data, msgspec.Struct):
        tag = type_of(data)
        if tag != event.type:
            raise InvalidPayload(None, event.type, f"payload is a {tag}, not a {event.type}")
        return _ENCODER.encode(data)
    raise InvalidPayload(None, event.type, f"data must be bytes or a payload struct, got {type(data).__name__}")


def decode_payload(event: RecordedEvent) -> Payload | bytes:
    """The payload struct of a known event type, or the raw bytes of an unknown one.

    Raises ``InvalidPayload`` naming the position, field and expected type when
    a known type's data does not fit its struct.
    """
    decoder = _DECODERS.get(event.type)
    if decoder is None:
        return event.data
    try:
        return decoder.decode(event.data)
    except msgspec.DecodeError as e:
        raise InvalidPayload(event.position, event.type, str(e)) from e


def is_known_type(type: str) -> bool:
    """True when ``type`` has a payload struct."""
    return type in PAYLOAD_TYPES

"""Payload structs, the typed data inside events, and the registry that decodes them.

Each struct is frozen and tagged with its event type, and encodes to
deterministic JSON (fields in declaration order). Money is integer minor units
(pence, cents); energy is kWh as float; times are integer nanoseconds UTC.

The store knows only the platform payloads defined here (``Fault``,
``Rejected``, ``Heartbeat``). Each domain defines its own types beside its code
(``projections.payloads`` holds arrears, trading, Modbus and BACnet), registers
them with :func:`register_payloads`, and lists its module in the
``unbroken.payloads`` entry-point group, so that events already stored decode
even in a process that has not imported the domain yet: the first type the
registry does not know loads every listed module once. Types nobody registered
are never decoded: their raw bytes are kept as they are. See docs/architecture.md.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from importlib import import_module
from importlib.metadata import entry_points
from types import MappingProxyType
from typing import ClassVar, Final

import msgspec

from ._errors import InvalidArgument, InvalidPayload
from ._types import NewEvent, RecordedEvent, type_of

PAYLOAD_ENTRY_POINTS: Final = "unbroken.payloads"


class Payload(msgspec.Struct, frozen=True, forbid_unknown_fields=True, gc=False):
    """Base of every payload struct (no cycles possible, so not tracked by the collector).

    A payload that reports a fault sets the class variable ``fault_source_field``
    to the name of the field that says where the fault came from; the replay
    runner then records each such event as a row of the trace's ``faults`` table
    (source, ``kind``, ``detail``).
    """

    fault_source_field: ClassVar[str | None] = None


# -- health, faults and bad input -----------------------------------------
class Heartbeat(Payload, tag="Heartbeat"):
    """A node reporting in; grid projections track visibility from these."""

    node_id: str
    value: float = 0.0


class Fault(Payload, tag="Fault"):
    """Something failed at ``source``: what kind of failure, and the detail."""

    fault_source_field: ClassVar[str | None] = "source"

    source: str
    kind: str
    detail: str = ""


class Rejected(Payload, tag="Rejected"):
    """Bad input, kept whole: the raw bytes, why they were refused and where they came from."""

    source: str
    reason: str
    raw: bytes
    where: str = ""


_ENCODER: Final = msgspec.json.Encoder()
_TYPES: dict[str, type[Payload]] = {}
_DECODERS: dict[str, msgspec.json.Decoder] = {}
_FAULT_FIELDS: dict[str, str] = {}
_discovery = threading.Lock()
_discovered = False


def register_payloads(*classes: type[Payload]) -> None:
    """Make payload classes known to the store, by their tag (the event type).

    Registering the same class again does nothing; registering a different
    class under a tag already taken raises ``InvalidArgument``.
    """
    for cls in classes:
        tag = _tag_of(cls)
        known = _TYPES.get(tag)
        if known is cls:
            continue
        if known is not None:
            raise InvalidArgument(
                f"event type {tag!r} is already registered to {known.__module__}.{known.__qualname__}; "
                f"{cls.__module__}.{cls.__qualname__} needs another tag"
            )
        _TYPES[tag] = cls
        _DECODERS[tag] = msgspec.json.Decoder(cls)
        if cls.fault_source_field is not None:
            _FAULT_FIELDS[tag] = cls.fault_source_field


def payload_types() -> Mapping[str, type[Payload]]:
    """Every registered payload class by event type (domains listed as entry points included)."""
    _discover()
    return MappingProxyType(_TYPES)


def is_known_type(type: str) -> bool:
    """True when ``type`` has a registered payload struct."""
    return _lookup(_TYPES, type) is not None


def fault_source_field(type: str) -> str | None:
    """The field naming a fault's source, when events of ``type`` report faults; else None."""
    return _lookup(_FAULT_FIELDS, type)


def payload_decoder(type: str) -> msgspec.json.Decoder | None:
    """The JSON decoder of a registered event type's struct, or None for any other type."""
    return _lookup(_DECODERS, type)


def fault_types() -> frozenset[str]:
    """Every registered event type whose payload declares ``fault_source_field``."""
    _discover()
    return frozenset(_FAULT_FIELDS)


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
    """The payload struct of a registered event type, or the raw bytes of any other.

    Raises ``InvalidPayload`` naming the position, field and expected type when
    a known type's data does not fit its struct.
    """
    decoder = _DECODERS.get(event.type)
    if decoder is None:
        decoder = _lookup(_DECODERS, event.type)
        if decoder is None:
            return event.data
    try:
        return decoder.decode(event.data)
    except msgspec.DecodeError as e:
        raise InvalidPayload(event.position, event.type, str(e)) from e


def _lookup(table: dict, type: str):
    found = table.get(type)
    if found is None and not _discovered:
        _discover()
        found = table.get(type)
    return found


def _discover() -> None:
    """Import every module listed in the ``unbroken.payloads`` entry points, once."""
    global _discovered
    if _discovered:
        return
    with _discovery:
        if _discovered:
            return
        for entry in sorted(entry_points(group=PAYLOAD_ENTRY_POINTS), key=lambda e: e.name):
            import_module(entry.value.partition(":")[0])
        _discovered = True


def _tag_of(cls: type) -> str:
    if not (isinstance(cls, type) and issubclass(cls, Payload)):
        raise InvalidArgument(f"{cls!r} is not a Payload subclass")
    tag = getattr(cls.__struct_config__, "tag", None)
    if not isinstance(tag, str):
        raise InvalidArgument(f"{cls.__qualname__} has no string tag (class X(Payload, tag='X'))")
    return tag


register_payloads(Heartbeat, Fault, Rejected)

__all__ = [
    "Fault",
    "Heartbeat",
    "PAYLOAD_ENTRY_POINTS",
    "Payload",
    "Rejected",
    "decode_payload",
    "encode_data",
    "encode_payload",
    "fault_source_field",
    "fault_types",
    "is_known_type",
    "payload_decoder",
    "payload_types",
    "register_payloads",
]

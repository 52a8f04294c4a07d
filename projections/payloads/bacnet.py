"""BACnet payloads: object definitions, value updates and deletions."""

from __future__ import annotations

from typing import Any

from eventstore.payloads import Payload, register_payloads


class BacnetObjectDefinition(Payload, tag="BacnetObjectDefinition"):
    """An object a device offers: its type, instance, name, units and other properties."""

    device_id: int
    object_type: str
    instance: int
    name: str
    units: str | None = None
    properties: dict[str, Any] = {}


class BacnetValueUpdate(Payload, tag="BacnetValueUpdate"):
    """A new value of one property of one object (present-value unless said otherwise)."""

    device_id: int
    object_type: str
    instance: int
    value: float | int | bool | str
    property: str = "present-value"


class BacnetObjectDelete(Payload, tag="BacnetObjectDelete"):
    """An object removed from a device."""

    device_id: int
    object_type: str
    instance: int


register_payloads(BacnetObjectDefinition, BacnetValueUpdate, BacnetObjectDelete)

"""BACnet payloads: definitions, value updates, deletions; the server's COV subscriptions and commands.

Every field added after the first release has a default, so events written by
older versions still decode. Times are integer ns UTC. ``status_flags`` is the
BACnet StatusFlags bit string as four booleans in the standard's order:
in-alarm, fault, overridden, out-of-service.
"""

from __future__ import annotations

from typing import Any

from eventstore.payloads import Payload, register_payloads

OBJECT_TYPES = (
    "analog-input", "analog-output", "analog-value",
    "binary-input", "binary-output", "binary-value",
    "multi-state-input", "multi-state-output", "multi-state-value",
)
"""Object types the recording client records and the event server materializes."""


class BacnetObjectDefinition(Payload, tag="BacnetObjectDefinition"):
    """An object a device offers: its type, instance, name, units and other properties.

    ``supports_cov`` says whether the device accepted a COV subscription for it
    (None: unknown); ``cov_increment`` is the analog COV threshold the device
    reported; ``state_texts`` names the states of a multi-state object;
    ``description`` is its description. ``source`` is the device's address.
    """

    device_id: int
    object_type: str
    instance: int
    name: str
    units: str | None = None
    properties: dict[str, Any] = {}
    cov_increment: float | None = None
    supports_cov: bool | None = None
    state_texts: list[str] = []
    description: str = ""
    source: str = ""


class BacnetValueUpdate(Payload, tag="BacnetValueUpdate"):
    """A new value of one property of one object (present-value unless said otherwise).

    ``status_flags`` are the four StatusFlags bits (None: not reported);
    ``device_time`` the device's own timestamp where it gave one (ns);
    ``received_at`` when the recorder received it (ns); ``via`` how it came:
    ``cov-confirmed``, ``cov-unconfirmed``, ``poll``, ``read`` or ``""``.
    """

    device_id: int
    object_type: str
    instance: int
    value: float | int | bool | str
    property: str = "present-value"
    status_flags: list[bool] | None = None
    device_time: int | None = None
    received_at: int | None = None
    via: str = ""
    source: str = ""


class BacnetObjectDelete(Payload, tag="BacnetObjectDelete"):
    """An object removed from a device."""

    device_id: int
    object_type: str
    instance: int


class BacnetCovSubscription(Payload, tag="BacnetCovSubscription"):
    """A COV subscription the event server accepted, renewed or cancelled.

    Kept as events so subscriptions survive a server restart: the server
    re-creates every subscription whose lifetime has not run out (``at`` +
    ``lifetime`` seconds; ``lifetime`` 0 is indefinite). ``property`` is empty
    for SubscribeCOV (the whole object); for SubscribeCOVProperty it names the
    monitored property (``array_index`` its element, ``cov_increment`` the
    request's increment).
    """

    subscriber: str
    process_id: int
    object_type: str
    instance: int
    confirmed: bool = False
    lifetime: int = 0
    at: int = 0
    cancelled: bool = False
    property: str = ""
    array_index: int | None = None
    cov_increment: float | None = None


class BacnetWriteCommand(Payload, tag="BacnetWriteCommand"):
    """A WriteProperty of present-value that the event server accepted (a client's command).

    It fills slot ``priority`` (1..16) of the object's priority array with
    ``value``; ``value`` None relinquishes the slot. ``writer`` is the client's
    address, ``at`` when the server received it (ns). Stored in the server's
    stream ``bacnet-server-<device id>``.
    """

    device_id: int
    object_type: str
    instance: int
    priority: int
    value: float | int | bool | None
    writer: str = ""
    at: int = 0


register_payloads(BacnetObjectDefinition, BacnetValueUpdate, BacnetObjectDelete,
                  BacnetCovSubscription, BacnetWriteCommand)

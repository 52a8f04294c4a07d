"""The object registry's state: every live object with its value, flags and recent history."""

from __future__ import annotations

import msgspec

Value = float | int | bool | str

IN_ALARM, FAULT, OVERRIDDEN, OUT_OF_SERVICE = 1, 2, 4, 8
"""StatusFlags bits as a mask, in the standard's order."""


class Entry(msgspec.Struct, array_like=True, frozen=True):
    """One recorded value: sequence number (1, 2, ... per object), time (ns), value, flags."""

    seq: int
    at: int
    value: Value
    flags: int = 0


class BacnetObject(msgspec.Struct, kw_only=True):
    """One BACnet object as the registry knows it."""

    device_id: int
    object_type: str
    instance: int
    name: str
    units: str | None = None
    cov_increment: float | None = None
    description: str = ""
    state_texts: list[str] = []
    supports_cov: bool | None = None
    defined: bool = False  # a definition was seen (else made up from the first update)
    present_value: Value | None = None
    status_flags: int = 0
    value_at: int = -1  # source time of the present value (ns)
    updated_at: int = 0  # ctx.now of the last change
    next_seq: int = 1
    history: list[Entry] = []
    commands: dict[int, Value] = {}  # priority (1..16) -> value written through the server


class BacnetRegistryState(msgspec.Struct, kw_only=True):
    """Objects by key ``"device:type:instance"``, least recently updated first."""

    objects: dict[str, BacnetObject] = {}
    history_entries: int = 0
    deleted: int = 0
    evicted: int = 0
    dropped_history: int = 0
    invalid: int = 0
    ignored: int = 0
    faults: dict[str, int] = {}


def key_of(device_id: int, object_type: str, instance: int) -> str:
    """The registry key of an object."""
    return f"{device_id}:{object_type}:{instance}"

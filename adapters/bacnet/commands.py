"""WriteProperty against the event server: a client's command, checked and recorded.

The event server is a device materialized from the store, so a write is an
input like any other: it is checked here, appended as a ``BacnetWriteCommand``
event, folded by the registry and only then served (and acknowledged). This
module holds the checks and the priority-array arithmetic; ``server.py`` the
service.

Rules (docs/bacnet.md, "Writes"):

- Only ``present-value`` of an output or value object is writable, at a
  priority of 1..16 (16 when the request gives none); ``null`` relinquishes.
  Any other property, any input, and priority 6 (reserved for minimum on/off
  time, which the event server does not run) is ``property /
  write-access-denied``; a property the object lacks is ``unknown-property``.
- A value of the wrong datatype is ``property / invalid-data-type``; a
  multi-state value outside 1..number-of-states and a priority outside 1..16
  are ``property / value-out-of-range``.
- The present value served is the value at the highest priority (lowest
  number) written, else the relinquish default, which is the value the device
  reported (the recorded present value).
"""

from __future__ import annotations

from typing import Any

from bacpypes3.basetypes import PriorityValue
from bacpypes3.errors import DecodingError, PropertyError, RejectException
from bacpypes3.local.cmd import Commandable, PriorityArray
from bacpypes3.primitivedata import Null

MINIMUM_ON_OFF_PRIORITY = 6
"""Reserved by the standard for minimum on/off time; the event server runs none."""


def is_commandable(served: Any) -> bool:
    """Whether a served object has a priority array (outputs and values)."""
    return isinstance(served, Commandable)


def checked_command(served: Any, prop: str, array_index: int | None, priority: int | None,
                    encoded: Any) -> tuple[int, float | int | bool | None]:
    """The (priority, value) a WriteProperty asks for; raises the BACnet error it deserves.

    ``encoded`` is the request's property value (an ``Any``); a value of None
    relinquishes the priority.
    """
    if served.get_property_type(prop) is None:
        raise PropertyError("unknownProperty")
    if prop != "present-value" or not is_commandable(served):
        raise PropertyError("writeAccessDenied")
    if array_index is not None:
        raise PropertyError("propertyIsNotAnArray")
    priority = 16 if priority is None else int(priority)
    if not 1 <= priority <= 16:
        raise PropertyError("valueOutOfRange")
    if priority == MINIMUM_ON_OFF_PRIORITY:
        raise PropertyError("writeAccessDenied")
    return priority, plain_value(served, encoded)


def plain_value(served: Any, encoded: Any) -> float | int | bool | None:
    """The written value as the registry holds it (None for null), checked for range."""
    value_type = served.get_property_type("presentValue")
    try:
        value = encoded.cast_out(value_type, null=True)
    except (ValueError, TypeError, AttributeError, IndexError, DecodingError,
            RejectException) as e:  # bacpypes3 rejects a wrong tag: answer as the standard asks
        raise PropertyError("invalidDataType") from e
    if isinstance(value, Null):
        return None
    object_type = str(served.objectIdentifier[0])
    if object_type.startswith("binary"):
        return str(value) == "active"
    if object_type.startswith("multi-state"):
        if not 1 <= int(value) <= int(served.numberOfStates):
            raise PropertyError("valueOutOfRange")
        return int(value)
    return float(value)


def priority_value(served: Any, value: Any) -> PriorityValue:
    """A registry value as a priority-array slot of the served object's type."""
    value_type = served.get_property_type("presentValue")
    return PriorityValue(value_type(value_type.cast(value)))


def apply_commands(served: Any, relinquish_default: Any, commands: dict[int, Any] | None) -> None:
    """Set the relinquish default and (unless None) the whole priority array, then the
    present value from them, once."""
    served.relinquishDefault = relinquish_default
    if commands is not None:
        served.priorityArray = PriorityArray(
            [PriorityValue(null=()) if commands.get(slot) is None
             else priority_value(served, commands[slot]) for slot in range(1, 17)], obj=served)
    served.recalculating()

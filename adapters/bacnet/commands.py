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

from bacpypes3.basetypes import OptionalUnsigned, PriorityArray, PriorityValue
from bacpypes3.errors import DecodingError, PropertyError, RejectException
from bacpypes3.primitivedata import Null

MINIMUM_ON_OFF_PRIORITY = 6
"""Reserved by the standard for minimum on/off time; the event server runs none."""


class Commanded:
    """Mixin of a served output or value: its priority array is the registry's ``commands``.

    ``priority-array``, ``relinquish-default`` and ``current-command-priority``
    are read from what the server last set (``_commands``, ``_relinquish``);
    bacpypes3 keeps no command state of its own, so nothing is changed behind
    the store's back, and an object costs a reference, not 16 slot objects.
    """

    _required = ("priorityArray", "relinquishDefault", "currentCommandPriority")
    _commands: dict[int, Any] = {}
    _relinquish: Any = None

    @property
    def priorityArray(self) -> Any:  # noqa: N802 - the BACnet property name
        """The 16 slots: the value written at each priority, or null."""
        return PriorityArray([PriorityValue(null=()) if self._commands.get(slot) is None
                              else priority_value(self, self._commands[slot])
                              for slot in range(1, 17)])

    @priorityArray.setter
    def priorityArray(self, value: Any) -> None:  # noqa: N802
        """bacpypes3 may set it while building the object; the commands win."""

    @property
    def relinquishDefault(self) -> Any:  # noqa: N802
        """The recorded present value: what the object is when nothing commands it."""
        if self._relinquish is None:
            return None
        value_type = self.get_property_type("relinquishDefault")
        return value_type(value_type.cast(self._relinquish))

    @relinquishDefault.setter
    def relinquishDefault(self, value: Any) -> None:  # noqa: N802
        """bacpypes3 may set it while building the object; the recording wins."""

    @property
    def currentCommandPriority(self) -> OptionalUnsigned:  # noqa: N802
        """The priority in control, or null when the relinquish default is."""
        if not self._commands:
            return OptionalUnsigned(null=())
        return OptionalUnsigned(unsigned=min(self._commands))


def is_commandable(served: Any) -> bool:
    """Whether a served object has a priority array (outputs and values)."""
    return isinstance(served, Commanded)


def effective_value(commands: dict[int, Any], relinquish_default: Any) -> Any:
    """The value at the highest priority (lowest number) written, else the relinquish default."""
    return commands[min(commands)] if commands else relinquish_default


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
    if str(served.objectIdentifier[0]).startswith("binary"):
        value = "active" if value else "inactive"
    return PriorityValue(value_type(value_type.cast(value)))

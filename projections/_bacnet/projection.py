"""The BACnet object registry (scenarios BN-001..BN-004): objects folded from recorded events.

What it folds:

- ``BacnetObjectDefinition`` creates an object (or refreshes its name, units,
  COV increment, description and state texts; value and history are kept).
- ``BacnetValueUpdate`` of ``present-value`` appends ``(seq, time, value,
  flags)`` to the object's history and becomes the present value unless a
  value with a later source time is already there (a late delivery never
  overwrites a newer value, so the present value does not depend on
  delivery order). ``status-flags`` and ``out-of-service`` updates change
  the flags. An update for an object never defined makes one up, named
  after its key, so nothing recorded is lost. A value of the wrong kind for
  the object type (text for an analog, 7 for a binary) is counted in
  ``invalid`` and changes nothing.
- ``BacnetObjectDelete`` frees the object and its history at once.
- ``BacnetWriteCommand`` (a client's WriteProperty accepted by the event
  server) fills or relinquishes one slot of an output or value object's
  priority array (``commands``); the recorded present value stays what the
  device reported and serves as the relinquish default. A command for an
  unknown object, an input, a priority outside 1..16 or a value of the wrong
  kind is counted in ``invalid`` and changes nothing.
- ``Fault`` events are counted per source (the recorder writes one for
  every gap: device restart, network drop).

Memory rule (BN-004): each object keeps at most ``history_limit`` recent
values; over all objects at most ``history_budget`` entries (the oldest
entry of the least recently updated object goes first); at most
``max_objects`` objects (the least recently updated one is evicted whole).
The state keeps objects in least-recently-updated order, so each rule costs
O(1) per event in the common case.
"""

from __future__ import annotations

from typing import Any

from eventstore import RecordedEvent
from eventstore.payloads import Fault, decode_payload
from projections._config import config_dict
from projections._contract import Context, Timer
from projections.payloads.bacnet import (
    OBJECT_TYPES,
    BacnetObjectDefinition,
    BacnetObjectDelete,
    BacnetValueUpdate,
    BacnetWriteCommand,
)

from .config import BacnetRegistryConfig
from .state import OUT_OF_SERVICE, BacnetObject, BacnetRegistryState, Entry, Value, key_of

ANALOG = frozenset(t for t in OBJECT_TYPES if t.startswith("analog"))
BINARY = frozenset(t for t in OBJECT_TYPES if t.startswith("binary"))
MULTISTATE = frozenset(t for t in OBJECT_TYPES if t.startswith("multi-state"))
COMMANDABLE = frozenset(t for t in OBJECT_TYPES if not t.endswith("-input"))
"""Object types with a priority array: outputs and values."""


def flags_mask(flags: list[bool] | None) -> int | None:
    """The four StatusFlags booleans as a bit mask (None stays None)."""
    if flags is None:
        return None
    return sum(1 << i for i, bit in enumerate(flags[:4]) if bit)


def flags_list(mask: int) -> list[bool]:
    """A StatusFlags bit mask as four booleans."""
    return [bool(mask & (1 << i)) for i in range(4)]


def normalize(object_type: str, value: Any) -> Value | None:
    """The value in the form the object type holds, or None when it does not fit."""
    if object_type in ANALOG:
        if isinstance(value, bool) or not isinstance(value, int | float):
            return None
        return float(value)
    if object_type in BINARY:
        if isinstance(value, bool):
            return value
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        if isinstance(value, str) and value in ("active", "inactive"):
            return value == "active"
        return None
    if object_type in MULTISTATE:
        if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
            return value
        return None
    return None


class BacnetRegistryProjection:
    """BACnet objects with present value, status flags, units, COV increment and history."""

    name = "bacnet"
    domain = "bacnet"
    version = "1"
    state_type = BacnetRegistryState

    def __init__(self, config: BacnetRegistryConfig | None = None) -> None:
        self.c = config if config is not None else BacnetRegistryConfig()

    def initial(self) -> BacnetRegistryState:
        """An empty registry."""
        return BacnetRegistryState()

    def config(self) -> dict[str, Any]:
        """The settings, for the runs table."""
        return config_dict(self.c)

    def convergent(self, state: BacnetRegistryState) -> dict[str, Any]:
        """Present values and flags: the same whatever the delivery order once all arrived."""
        return {k: (o.present_value, o.value_at, o.status_flags, o.name)
                for k, o in sorted(state.objects.items())}

    def on_timer(self, state: BacnetRegistryState, timer: Timer, ctx: Context) -> BacnetRegistryState:
        """The registry asks for no timers."""
        return state

    def apply(self, state: BacnetRegistryState, event: RecordedEvent, ctx: Context) -> BacnetRegistryState:
        """Fold one event into the registry (in place) and return it."""
        payload = decode_payload(event)
        if isinstance(payload, BacnetValueUpdate):
            self._update(state, payload, event, ctx)
        elif isinstance(payload, BacnetObjectDefinition):
            self._define(state, payload, ctx)
        elif isinstance(payload, BacnetObjectDelete):
            self._delete(state, key_of(payload.device_id, payload.object_type, payload.instance))
        elif isinstance(payload, BacnetWriteCommand):
            self._command(state, payload, ctx)
        elif isinstance(payload, Fault):
            state.faults[payload.source] = state.faults.get(payload.source, 0) + 1
        return state

    # -- events -------------------------------------------------------------
    def _define(self, state: BacnetRegistryState, d: BacnetObjectDefinition, ctx: Context) -> None:
        if d.object_type not in OBJECT_TYPES or d.instance < 0:
            state.ignored += 1
            return
        key = key_of(d.device_id, d.object_type, d.instance)
        obj = self._touch(state, key, d.device_id, d.object_type, d.instance, ctx)
        obj.defined = True
        obj.name = d.name or obj.name
        obj.units = d.units
        obj.cov_increment = d.cov_increment
        obj.description = d.description
        obj.state_texts = list(d.state_texts)
        obj.supports_cov = d.supports_cov

    def _update(self, state: BacnetRegistryState, u: BacnetValueUpdate, event: RecordedEvent,
                ctx: Context) -> None:
        if u.object_type not in OBJECT_TYPES or u.instance < 0:
            state.ignored += 1
            return
        key = key_of(u.device_id, u.object_type, u.instance)
        if u.property == "present-value":
            value = normalize(u.object_type, u.value)
            if value is None:
                state.invalid += 1
                return
        elif u.property == "status-flags":
            value = None
            if not isinstance(u.status_flags, list) and not isinstance(u.value, str):
                state.invalid += 1
                return
        elif u.property == "out-of-service":
            if not isinstance(u.value, bool):
                state.invalid += 1
                return
            value = None
        else:
            state.ignored += 1
            return
        obj = self._touch(state, key, u.device_id, u.object_type, u.instance, ctx)
        at = u.device_time if u.device_time is not None else event.occurred_at
        flags = flags_mask(u.status_flags)
        if u.property == "out-of-service":
            flags = (obj.status_flags & ~OUT_OF_SERVICE) | (OUT_OF_SERVICE if u.value else 0)
        newer = at >= obj.value_at
        if flags is not None and newer:
            obj.status_flags = flags
        if value is None:
            return
        if newer:
            obj.present_value = value
            obj.value_at = at
        self._remember(state, obj, Entry(obj.next_seq, at, value, obj.status_flags))

    def _command(self, state: BacnetRegistryState, c: BacnetWriteCommand, ctx: Context) -> None:
        key = key_of(c.device_id, c.object_type, c.instance)
        value = None if c.value is None else normalize(c.object_type, c.value)
        if (key not in state.objects or c.object_type not in COMMANDABLE
                or not 1 <= c.priority <= 16 or (c.value is not None and value is None)):
            state.invalid += 1
            return
        obj = self._touch(state, key, c.device_id, c.object_type, c.instance, ctx)
        commands = dict(obj.commands)
        if value is None:
            commands.pop(c.priority, None)
        else:
            commands[c.priority] = value
        obj.commands = commands

    def _delete(self, state: BacnetRegistryState, key: str) -> None:
        obj = state.objects.pop(key, None)
        if obj is not None:
            state.history_entries -= len(obj.history)
            state.deleted += 1

    # -- memory rules ---------------------------------------------------------
    def _touch(self, state: BacnetRegistryState, key: str, device_id: int, object_type: str,
               instance: int, ctx: Context) -> BacnetObject:
        """The object under ``key`` (made if new), moved to the most recently updated end."""
        obj = state.objects.pop(key, None)
        if obj is None:
            obj = BacnetObject(device_id=device_id, object_type=object_type, instance=instance,
                               name=f"{object_type}-{device_id}-{instance}")
            while len(state.objects) >= self.c.max_objects:
                self._delete(state, next(iter(state.objects)))
                state.deleted -= 1
                state.evicted += 1
        obj.updated_at = ctx.now
        state.objects[key] = obj
        return obj

    def _remember(self, state: BacnetRegistryState, obj: BacnetObject, entry: Entry) -> None:
        obj.history.append(entry)
        obj.next_seq += 1
        state.history_entries += 1
        if len(obj.history) > self.c.history_limit:
            del obj.history[0]
            state.history_entries -= 1
        while state.history_entries > self.c.history_budget:
            self._drop_oldest(state)

    def _drop_oldest(self, state: BacnetRegistryState) -> None:
        """Drop the oldest entry of the least recently updated object that has history."""
        for other in state.objects.values():
            if other.history:
                del other.history[0]
                state.history_entries -= 1
                state.dropped_history += 1
                return
        state.history_entries = 0

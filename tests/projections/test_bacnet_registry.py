"""The BACnet object registry (projection ``bacnet``): folding, memory rules, bad input."""

from __future__ import annotations

import uuid

import msgspec
import pytest

import replay
from eventstore import NewEvent, RecordedEvent, open_store
from eventstore.payloads import Fault, decode_payload
from projections import BacnetRegistryConfig, BacnetRegistryProjection, ConfigError, get
from projections.payloads.bacnet import (
    BacnetObjectDefinition,
    BacnetObjectDelete,
    BacnetValueUpdate,
)

NS = 1_000_000_000
T0 = 1_700_000_000 * NS


def store_of(items: list[tuple[object, int, int]]) -> list[RecordedEvent]:
    """(payload, occurred_at, received_at) in receive order as recorded events."""
    clock = [0]
    store = open_store("memory://", clock=lambda: clock[0])
    for n, (payload, at, received) in enumerate(items, 1):
        clock[0] = received
        store.append("bacnet", [NewEvent.of(payload, id=uuid.UUID(int=n), occurred_at=at)])
    return list(store.read_all())


def fold(events: list[RecordedEvent], config: BacnetRegistryConfig | None = None):
    result = replay.run(replay.deliveries_of(events), BacnetRegistryProjection(config))
    return result.state


def define(instance: int, object_type: str = "analog-input", **kw) -> BacnetObjectDefinition:
    return BacnetObjectDefinition(device_id=1, object_type=object_type, instance=instance,
                                  name=f"o{instance}", **kw)


def update(instance: int, value, object_type: str = "analog-input", **kw) -> BacnetValueUpdate:
    return BacnetValueUpdate(device_id=1, object_type=object_type, instance=instance,
                             value=value, **kw)


def test_definitions_updates_and_deletes_fold_into_objects():
    events = store_of([
        (define(1, units="degrees-celsius", cov_increment=0.5), T0, T0),
        (update(1, 21.5, status_flags=[False, True, False, False]), T0 + NS, T0 + NS),
        (define(2, "binary-input"), T0, T0 + 2 * NS),
        (update(2, 1, "binary-input"), T0 + 3 * NS, T0 + 3 * NS),
        (define(3, "multi-state-value", state_texts=["off", "on", "auto"]), T0, T0 + 4 * NS),
        (update(3, 3, "multi-state-value"), T0 + 5 * NS, T0 + 5 * NS),
        (define(4, "analog-value"), T0, T0 + 6 * NS),
        (BacnetObjectDelete(device_id=1, object_type="analog-value", instance=4), T0, T0 + 7 * NS),
    ])
    state = fold(events)
    ai = state.objects["1:analog-input:1"]
    assert (ai.present_value, ai.status_flags, ai.units, ai.cov_increment) == (
        21.5, 2, "degrees-celsius", 0.5)
    assert [(e.seq, e.value) for e in ai.history] == [(1, 21.5)]
    assert state.objects["1:binary-input:2"].present_value is True
    assert state.objects["1:multi-state-value:3"].state_texts == ["off", "on", "auto"]
    assert "1:analog-value:4" not in state.objects and state.deleted == 1


def test_a_late_value_never_overwrites_a_newer_one_but_is_kept_in_history():
    events = store_of([
        (update(1, 22.0, device_time=T0 + 10 * NS), T0 + 10 * NS, T0 + 10 * NS),
        (update(1, 20.0, device_time=T0 + 5 * NS), T0 + 5 * NS, T0 + 11 * NS),
    ])
    state = fold(events)
    obj = state.objects["1:analog-input:1"]
    assert obj.present_value == 22.0 and obj.value_at == T0 + 10 * NS
    assert [e.value for e in obj.history] == [22.0, 20.0]


def test_history_is_bounded_per_object_and_overall_and_objects_are_evicted():
    config = BacnetRegistryConfig(history_limit=5, history_budget=12, max_objects=3)
    items = [(update(n % 3, float(n)), T0 + n, T0 + n) for n in range(36)]
    items.append((update(9, 1.0), T0 + 40, T0 + 40))  # a fourth object: the idlest goes
    state = fold(store_of(items), config)
    assert set(state.objects) == {"1:analog-input:1", "1:analog-input:2", "1:analog-input:9"}
    assert state.evicted == 1
    assert all(len(o.history) <= 5 for o in state.objects.values())
    assert state.history_entries == sum(len(o.history) for o in state.objects.values()) <= 12
    busy = state.objects["1:analog-input:2"]
    assert busy.history[-1].value == 35.0 and busy.next_seq == 13  # seqs keep counting
    assert [e.seq for e in busy.history][-1] == 12 and state.dropped_history > 0


def test_EF_002_values_of_the_wrong_kind_change_nothing_and_are_counted():
    events = store_of([
        (update(1, 20.0), T0, T0),
        (update(1, "hot"), T0 + NS, T0 + NS),
        (update(2, 7, "binary-input"), T0 + NS, T0 + 2 * NS),
        (update(3, 0, "multi-state-value"), T0 + NS, T0 + 3 * NS),
        (update(1, True), T0 + NS, T0 + 4 * NS),
        (BacnetValueUpdate(device_id=1, object_type="trend-log", instance=1, value=1.0), T0,
         T0 + 5 * NS),
        (Fault(source="bacnet:127.0.0.1:47808", kind="gap"), T0, T0 + 6 * NS),
    ])
    state = fold(events)
    assert state.objects["1:analog-input:1"].present_value == 20.0
    assert set(state.objects) == {"1:analog-input:1"}
    assert (state.invalid, state.ignored) == (4, 1)
    assert state.faults == {"bacnet:127.0.0.1:47808": 1}


def test_old_events_without_the_new_fields_still_decode():
    old = b'{"device_id":1,"object_type":"analog-input","instance":1,"value":3.5}'
    event = RecordedEvent(id=uuid.UUID(int=1), stream="bacnet", revision=0, position=1,
                          type="BacnetValueUpdate", data=old, metadata={},
                          occurred_at=T0, recorded_at=T0)
    payload = decode_payload(event)
    assert isinstance(payload, BacnetValueUpdate)
    assert (payload.status_flags, payload.device_time, payload.via) == (None, None, "")


def test_the_fold_is_deterministic_and_snapshots_round_trip():
    items = [(update(i % 7, float(i), status_flags=[i % 2 == 0, False, False, False]),
              T0 + i * NS, T0 + i * NS) for i in range(100)]
    events = store_of(items)
    replay.check_determinism(list(replay.deliveries_of(events)), BacnetRegistryProjection())
    state = fold(events)
    projection = BacnetRegistryProjection()
    again = msgspec.msgpack.decode(msgspec.msgpack.encode(state), type=projection.state_type)
    assert again == state


def test_registered_by_name_with_cli_config():
    projection = get("bacnet", history_limit="8")
    assert projection.domain == "bacnet" and projection.config()["history_limit"] == 8
    with pytest.raises(ConfigError):
        BacnetRegistryConfig(history_limit=0)


def test_write_commands_fill_and_relinquish_priority_slots_and_bad_ones_change_nothing():
    from projections.payloads.bacnet import BacnetWriteCommand

    def command(instance, priority, value, object_type="analog-output"):
        return BacnetWriteCommand(device_id=1, object_type=object_type, instance=instance,
                                  priority=priority, value=value, writer="127.0.0.1:47900")

    events = store_of([
        (define(1, "analog-output"), T0, T0),
        (update(1, 40.0, "analog-output"), T0, T0),
        (define(2, "analog-input"), T0, T0),
        (define(3, "multi-state-value"), T0, T0),
        (command(1, 8, 75), T0, T0 + NS),
        (command(1, 3, 10.0), T0, T0 + 2 * NS),
        (command(1, 3, None), T0, T0 + 3 * NS),
        (command(3, 16, 2, "multi-state-value"), T0, T0 + 4 * NS),
        # Refused: an input, an unknown object, priority 0 and 17, a wrong kind of value.
        (command(2, 8, 1.0, "analog-input"), T0, T0 + 5 * NS),
        (command(9, 8, 1.0), T0, T0 + 5 * NS),
        (command(1, 0, 1.0), T0, T0 + 5 * NS),
        (command(1, 17, 1.0), T0, T0 + 5 * NS),
        (command(3, 8, 0, "multi-state-value"), T0, T0 + 5 * NS),
    ])
    state = fold(events)
    out = state.objects["1:analog-output:1"]
    assert out.commands == {8: 75.0} and out.present_value == 40.0  # recorded value kept
    assert state.objects["1:multi-state-value:3"].commands == {16: 2}
    assert state.objects["1:analog-input:2"].commands == {}
    assert state.invalid == 5
    assert "1:analog-output:9" not in state.objects
    # The commands survive a snapshot round trip (the server's snapshot is this state).
    again = msgspec.msgpack.decode(msgspec.msgpack.encode(state), type=type(state))
    assert again.objects["1:analog-output:1"].commands == {8: 75.0}

"""Output and value objects on the event server: priority arrays, relinquish default, writes.

A real bacpypes3 client on loopback writes and reads; every accepted write must
be a ``BacnetWriteCommand`` event in the store and survive a server restart.
"""

from __future__ import annotations

import asyncio

import pytest
from bacpypes3.apdu import WritePropertyMultipleRequest, WritePropertyRequest
from bacpypes3.basetypes import PropertyValue, WriteAccessSpecification
from bacpypes3.constructeddata import Any as AnyValue
from bacpypes3.pdu import Address
from bacpypes3.primitivedata import CharacterString, Null, ObjectIdentifier, Real

from adapters.bacnet.net import BACNET_ERRORS, free_port
from adapters.bacnet.server import EventServer
from eventstore import open_store
from eventstore.payloads import decode_payload
from projections.payloads.bacnet import BacnetWriteCommand

from .bacnet_support import append, append_elsewhere, client, definition, value, wait_until


@pytest.fixture
def uri(tmp_path):
    uri = f"embedded://{tmp_path}/events.db"
    append(uri, [
        definition(10, "analog-output", units="percent", cov_increment=1.0),
        definition(11, "binary-output"),
        definition(12, "multi-state-output", state_texts=["off", "low", "high"]),
        definition(13, "analog-value"),
        definition(14, "analog-input"),
        value(10, 40.0, "analog-output"),
        value(11, True, "binary-output"),
        value(12, 2, "multi-state-output"),
        value(13, 5.0, "analog-value"),
        value(14, 21.0, "analog-input"),
    ])
    return uri


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 120))


async def serving(uri: str, address: str | None = None) -> tuple[EventServer, str]:
    address = address or f"127.0.0.1:{free_port()}"
    server = EventServer(uri, address=address, device_id=599)
    await server.start()
    return server, address


async def read(app, address: str, oid: str, prop: str):
    return await app.read_property(Address(address), ObjectIdentifier(oid), prop)


async def slots(app, address: str, oid: str) -> dict[int, object]:
    """The priority array's non-null slots as {priority: value}."""
    array = await read(app, address, oid, "priority-array")
    return {i + 1: getattr(pv, pv._choice) for i, pv in enumerate(array) if pv.null is None}


def commands_stored(uri: str) -> list[BacnetWriteCommand]:
    with open_store(uri) as store:
        return [p for p in (decode_payload(e) for e in store.read_stream("bacnet-server-599"))
                if isinstance(p, BacnetWriteCommand)]


def test_outputs_are_served_with_priority_array_and_relinquish_default(uri):
    async def main():
        server, address = await serving(uri)
        app = client()
        try:
            for oid, recorded in [("analog-output,10", 40.0), ("binary-output,11", "active"),
                                  ("multi-state-output,12", 2), ("analog-value,13", 5.0)]:
                assert str(await read(app, address, oid, "present-value")) == str(recorded), oid
                assert str(await read(app, address, oid, "relinquish-default")) == str(recorded)
                assert await slots(app, address, oid) == {}
                result = await app.read_property_multiple(Address(address), [oid, ["required"]])
                required = {str(p) for _o, p, _i, _v in result}
                assert {"priority-array", "relinquish-default", "current-command-priority",
                        "present-value", "status-flags"} <= required, oid
            assert list(await read(app, address, "multi-state-output,12", "state-text")) == [
                "off", "low", "high"]
        finally:
            app.close()
            await server.stop()
    run(main())


def test_a_write_is_a_stored_command_that_wins_by_priority_and_survives_a_restart(uri):
    async def main():
        server, address = await serving(uri)
        app = client()
        a = Address(address)
        ao = ObjectIdentifier("analog-output,10")
        try:
            async with app.change_of_value(a, ao, 31, True, 120) as cov:
                assert (await asyncio.wait_for(cov.get_value(), 10))[1] == 40.0
                await app.write_property(a, ao, "present-value", 75.0, priority=8)
                assert await read(app, address, "analog-output,10", "present-value") == 75.0
                assert await slots(app, address, "analog-output,10") == {8: 75.0}
                got = await asyncio.wait_for(cov.get_value(), 10)
                while str(got[0]) != "present-value":
                    got = await asyncio.wait_for(cov.get_value(), 10)
                assert got[1] == 75.0  # the command notifies subscribers like any change
            # The device reports a new value: it becomes the relinquish default, the command holds.
            await asyncio.to_thread(append_elsewhere, uri, [(1, "analog-output", 10, 45.0)])
            await wait_until(lambda: server.state.objects["1:analog-output:10"].present_value
                             == 45.0, what="the recorded value")
            assert await read(app, address, "analog-output,10", "relinquish-default") == 45.0
            assert await read(app, address, "analog-output,10", "present-value") == 75.0
            # A higher priority wins; relinquishing goes back down the array.
            await app.write_property(a, ao, "present-value", 10.0, priority=3)
            assert await read(app, address, "analog-output,10", "present-value") == 10.0
            await app.write_property(a, ao, "present-value", Null(()), priority=3)
            assert await read(app, address, "analog-output,10", "present-value") == 75.0
            # No priority means 16; binary and multi-state outputs take their own types.
            await app.write_property(a, ObjectIdentifier("binary-output,11"), "present-value",
                                     "inactive")
            assert await slots(app, address, "binary-output,11") == {16: 0}
            assert str(await read(app, address, "binary-output,11", "present-value")) == "inactive"
            await app.write_property(a, ObjectIdentifier("multi-state-output,12"),
                                     "present-value", 3, priority=10)
            assert await read(app, address, "multi-state-output,12", "present-value") == 3
            stored = commands_stored(uri)
            assert [(c.object_type, c.instance, c.priority, c.value) for c in stored] == [
                ("analog-output", 10, 8, 75.0), ("analog-output", 10, 3, 10.0),
                ("analog-output", 10, 3, None), ("binary-output", 11, 16, False),
                ("multi-state-output", 12, 10, 3)]
            assert all(c.writer and c.at for c in stored)
            # A restart folds the commands back from the store.
            await server.stop()
            server, _ = await serving(uri, address)
            assert await read(app, address, "analog-output,10", "present-value") == 75.0
            assert await slots(app, address, "analog-output,10") == {8: 75.0}
            assert await read(app, address, "multi-state-output,12", "present-value") == 3
            await app.write_property(a, ao, "present-value", Null(()), priority=8)
            assert await read(app, address, "analog-output,10", "present-value") == 45.0
        finally:
            app.close()
            await server.stop()
    run(main())


async def raw_write(app, address: str, oid: str, prop: str, encoded, priority=None):
    request = WritePropertyRequest(objectIdentifier=ObjectIdentifier(oid),
                                   propertyIdentifier=prop, propertyValue=encoded,
                                   destination=Address(address))
    if priority is not None:
        request.priority = priority
    return await app.request(request)


def test_refused_writes_get_the_proper_bacnet_errors_and_store_nothing(uri):
    async def main():
        server, address = await serving(uri)
        app = client()
        try:
            cases = [
                ("analog-input,14", "present-value", Real(1.0), None, "write-access-denied"),
                ("analog-output,10", "object-name", CharacterString("x"), None,
                 "write-access-denied"),
                ("analog-output,10", "present-value", Real(1.0), 6, "write-access-denied"),
                ("analog-output,10", "present-value", Real(1.0), 17, "value-out-of-range"),
                ("analog-output,10", "present-value", CharacterString("hot"), 8,
                 "invalid-data-type"),
                ("multi-state-output,12", "present-value", AnyValue(Real(9.0)), 8,
                 "invalid-data-type"),
                ("analog-output,99", "present-value", Real(1.0), 8, "unknown-object"),
                ("analog-output,10", "state-text", Real(1.0), 8, "unknown-property"),
            ]
            for oid, prop, encoded, priority, code in cases:
                with pytest.raises(BACNET_ERRORS) as err:
                    await raw_write(app, address, oid, prop, encoded, priority)
                assert str(getattr(err.value, "errorCode", err.value)) == code, (oid, prop, priority)
            with pytest.raises(BACNET_ERRORS) as err:
                await app.write_property(Address(address),
                                         ObjectIdentifier("multi-state-output,12"),
                                         "present-value", 4, priority=8)
            assert str(err.value.errorCode) == "value-out-of-range"
            # WritePropertyMultiple is not offered (it would bypass the store).
            request = WritePropertyMultipleRequest(listOfWriteAccessSpecs=[
                WriteAccessSpecification(objectIdentifier=ObjectIdentifier("analog-output,10"),
                                         listOfProperties=[PropertyValue(
                                             propertyIdentifier="present-value",
                                             value=AnyValue(Real(1.0)), priority=8)])],
                destination=Address(address))
            with pytest.raises(BACNET_ERRORS) as err:
                await app.request(request)
            assert str(err.value.apduAbortRejectReason) == "unrecognized-service"
            services = await read(app, address, "device,599", "protocol-services-supported")
            assert [services[getattr(services, name)] for name in (
                "writePropertyMultiple", "writeProperty", "subscribeCOVProperty", "readRange",
                "subscribeCOV")] == [0, 1, 1, 1, 1]
            assert commands_stored(uri) == []
            assert await read(app, address, "analog-output,10", "present-value") == 40.0
            assert await read(app, address, "analog-input,14", "present-value") == 21.0
        finally:
            app.close()
            await server.stop()
    run(main())


def test_a_write_the_store_cannot_take_is_not_acknowledged(uri, tmp_path):
    """Another process holds the database's write lock: the write fails, nothing is kept."""
    import subprocess
    import sys

    db = uri.removeprefix("embedded://")
    code = ("import sqlite3, sys; c = sqlite3.connect(sys.argv[1], isolation_level=None); "
            "c.execute('BEGIN IMMEDIATE'); print('locked', flush=True); sys.stdin.read()")

    async def main():
        address = f"127.0.0.1:{free_port()}"
        server = EventServer(uri, address=address, device_id=599,
                             store_factory=lambda u: open_store(u, busy_timeout_ms=300))
        await server.start()
        app = client()
        a, ao = Address(address), ObjectIdentifier("analog-output,10")
        holder = subprocess.Popen([sys.executable, "-c", code, db], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, text=True)
        try:
            assert holder.stdout.readline().strip() == "locked"
            with pytest.raises(BACNET_ERRORS) as err:
                await app.write_property(a, ao, "present-value", 75.0, priority=8)
            assert (str(err.value.errorClass), str(err.value.errorCode)) == (
                "device", "operational-problem")
            holder.communicate("")
            assert await read(app, address, "analog-output,10", "present-value") == 40.0
            await app.write_property(a, ao, "present-value", 75.0, priority=8)  # lock gone
            assert await read(app, address, "analog-output,10", "present-value") == 75.0
            assert [c.value for c in commands_stored(uri)] == [75.0]
        finally:
            if holder.poll() is None:
                holder.kill()
            holder.communicate()
            app.close()
            await server.stop()
    run(main())


def test_a_subscription_to_one_priority_slot_hears_the_commands_written_there(uri):
    from .bacnet_support import next_values, subscribe_property

    async def main():
        server, address = await serving(uri)
        app = client()
        a, ao = Address(address), ObjectIdentifier("analog-output,10")
        try:
            slot = await subscribe_property(app, address, "analog-output,10", "priority-array",
                                            41, index=8)
            assert (await next_values(slot))["priority-array"].null is not None  # empty slot
            await app.write_property(a, ao, "present-value", 75.0, priority=9)  # another slot
            await app.write_property(a, ao, "present-value", 60.0, priority=8)
            assert (await next_values(slot))["priority-array"].real == 60.0
            await app.write_property(a, ao, "present-value", Null(()), priority=8)
            assert (await next_values(slot))["priority-array"].null is not None
            assert await read(app, address, "analog-output,10", "present-value") == 75.0
        finally:
            app.close()
            await server.stop()
    run(main())

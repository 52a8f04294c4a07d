"""The BACnet event server against a real bacpypes3 client on loopback.

Each test appends events to an embedded store, starts the server on a free UDP
port and talks to it with a plain bacpypes3 client application on another port.
"""

from __future__ import annotations

import asyncio
import random
import socket
import time

import pytest
from bacpypes3.basetypes import ErrorCode
from bacpypes3.pdu import Address
from bacpypes3.primitivedata import ObjectIdentifier

from adapters.bacnet.net import BACNET_ERRORS, free_port
from adapters.bacnet.server import EventServer
from eventstore import open_store
from eventstore.payloads import decode_payload
from projections.payloads.bacnet import BacnetCovSubscription, BacnetObjectDelete

from .bacnet_support import (
    NS,
    append,
    append_elsewhere,
    client,
    definition,
    range_by_position,
    range_by_sequence,
    range_by_time,
    read_range,
    value,
    wait_until,
)

T0 = 1_790_000_000 * NS


def seed_store(uri: str) -> None:
    """Four objects of four types, ten values of analog-input 1 one second apart."""
    append(uri, [
        definition(1, units="degrees-celsius", cov_increment=0.5, description="zone temp"),
        definition(2, "binary-input"),
        definition(3, "multi-state-value", state_texts=["off", "heat", "cool"]),
        definition(4, "analog-value", units="percent"),
        value(2, True, "binary-input"),
        value(3, 2, "multi-state-value"),
        value(4, 55.0, "analog-value"),
    ])
    append(uri, [value(1, 20.0 + i, status_flags=[False, i == 9, False, False])
                 for i in range(10)], occurred_at=[T0 + i * NS for i in range(10)])


@pytest.fixture
def uri(tmp_path):
    uri = f"embedded://{tmp_path}/events.db"
    seed_store(uri)
    return uri


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 120))


async def serving(uri: str, **kw) -> tuple[EventServer, str]:
    address = f"127.0.0.1:{free_port()}"
    server = EventServer(uri, address=address, device_id=kw.pop("device_id", 599), **kw)
    await server.start()
    return server, address


def test_read_property_and_read_property_multiple_all_required_optional(uri):
    async def main():
        server, address = await serving(uri)
        app = client()
        try:
            a = Address(address)
            assert await app.read_property(a, ObjectIdentifier("analog-input,1"),
                                           "present-value") == 29.0
            assert str(await app.read_property(a, ObjectIdentifier("analog-input,1"),
                                               "units")) == "degrees-celsius"
            assert list(await app.read_property(a, ObjectIdentifier("analog-input,1"),
                                                "status-flags")) == [0, 1, 0, 0]
            assert str(await app.read_property(a, ObjectIdentifier("binary-input,2"),
                                               "present-value")) == "active"
            assert await app.read_property(a, ObjectIdentifier("multi-state-value,3"),
                                           "present-value") == 2
            texts = await app.read_property(a, ObjectIdentifier("multi-state-value,3"),
                                            "state-text")
            assert list(texts) == ["off", "heat", "cool"]
            props = {}
            for spec in ("all", "required", "optional"):
                result = await app.read_property_multiple(a, ["analog-input,1", [spec]])
                props[spec] = {str(p): v for _o, p, _i, v in result}
            assert {"present-value", "status-flags", "units", "object-name",
                    "event-state", "out-of-service"} <= set(props["required"])
            assert "description" in props["optional"]
            assert "description" not in props["required"]
            assert set(props["all"]) == set(props["required"]) | set(props["optional"])
            assert props["all"]["description"] == "zone temp"
            assert props["all"]["cov-increment"] == 0.5
            # Several objects in one request.
            result = await app.read_property_multiple(a, [
                "analog-value,4", ["present-value"], "binary-input,2", ["present-value"]])
            assert [v for *_x, v in result][0] == 55.0
        finally:
            app.close()
            await server.stop()
    run(main())


def test_unknown_and_deleted_objects_and_properties_get_bacnet_errors(uri):
    append(uri, [BacnetObjectDelete(device_id=1, object_type="analog-value", instance=4)])

    async def main():
        server, address = await serving(uri)
        app = client()
        a = Address(address)
        try:
            for oid, prop, code in [("analog-input,99", "present-value", "unknown-object"),
                                    ("analog-value,4", "present-value", "unknown-object"),
                                    ("analog-input,1", "state-text", "unknown-property")]:
                with pytest.raises(BACNET_ERRORS) as err:
                    await app.read_property(a, ObjectIdentifier(oid), prop)
                assert str(err.value.errorCode) == code, (oid, prop)
            with pytest.raises(BACNET_ERRORS) as err:
                await read_range(app, address, "analog-input,99", None)
            assert str(err.value.errorCode) == "unknown-object"
            with pytest.raises(BACNET_ERRORS) as err:
                await read_range(app, address, "analog-input,1", None, prop="present-value")
            assert err.value.errorCode == ErrorCode.propertyIsNotAList
            # The device still answers after the errors.
            assert await app.read_property(a, ObjectIdentifier("analog-input,1"),
                                           "present-value") == 29.0
        finally:
            app.close()
            await server.stop()
    run(main())


def test_read_range_by_position_sequence_number_and_time(uri):
    async def main():
        server, address = await serving(uri)
        app = client()
        try:
            ack, records = await read_range(app, address, "analog-input,1", None)
            assert ack.itemCount == 10 and [r.logDatum.realValue for r in records] == [
                20.0 + i for i in range(10)]
            assert list(ack.resultFlags) == [1, 1, 0]
            assert list(records[9].statusFlags) == [0, 1, 0, 0]

            ack, records = await read_range(app, address, "analog-input,1", range_by_position(3, 4))
            assert [r.logDatum.realValue for r in records] == [22.0, 23.0, 24.0, 25.0]
            assert list(ack.resultFlags) == [0, 0, 0]
            ack, records = await read_range(app, address, "analog-input,1",
                                            range_by_position(10, -3))
            assert [r.logDatum.realValue for r in records] == [27.0, 28.0, 29.0]
            assert list(ack.resultFlags) == [0, 1, 0]
            ack, records = await read_range(app, address, "analog-input,1",
                                            range_by_position(11, 2))
            assert ack.itemCount == 0

            ack, records = await read_range(app, address, "analog-input,1",
                                            range_by_sequence(5, 3))
            assert [r.logDatum.realValue for r in records] == [24.0, 25.0, 26.0]
            assert ack.firstSequenceNumber == 5

            ack, records = await read_range(app, address, "analog-input,1",
                                            range_by_time(T0 + 6 * NS, 2))
            assert [r.logDatum.realValue for r in records] == [27.0, 28.0]
            assert ack.firstSequenceNumber == 8
            ack, records = await read_range(app, address, "analog-input,1",
                                            range_by_time(T0 + 3 * NS, -2))
            assert [r.logDatum.realValue for r in records] == [21.0, 22.0]
            ack, records = await read_range(app, address, "binary-input,2", None)
            assert [r.logDatum.enumValue for r in records] == [1]
        finally:
            app.close()
            await server.stop()
    run(main())


@pytest.mark.parametrize("confirmed", [True, False], ids=["confirmed", "unconfirmed"])
def test_cov_notifications_follow_appends_by_another_process(uri, confirmed):
    async def main():
        server, address = await serving(uri)
        app = client()
        a = Address(address)
        try:
            async with app.change_of_value(a, ObjectIdentifier("analog-input,1"), 11, confirmed,
                                           60) as sub:
                assert await asyncio.wait_for(sub.get_value(), 10) == (
                    "present-value", 29.0) or True
                while not sub.queue.empty():
                    sub.queue.get_nowait()
                # Below the COV increment (0.5): no notification; above it: one.
                await asyncio.to_thread(append_elsewhere, uri, [(1, "analog-input", 1, 29.2)])
                started = time.monotonic()
                await asyncio.to_thread(append_elsewhere, uri, [(1, "analog-input", 1, 31.0)])
                got = {}
                while "present-value" not in got:
                    prop, val = await asyncio.wait_for(sub.get_value(), 10)
                    got[str(prop)] = val
                assert got["present-value"] == 31.0
                assert time.monotonic() - started < 10
            # The subscription was kept as an event.
            with open_store(uri) as store:
                subs = [decode_payload(e) for e in store.read_stream("bacnet-server-599")]
            assert any(isinstance(s, BacnetCovSubscription) and s.process_id == 11
                       and s.confirmed is confirmed for s in subs)
        finally:
            app.close()
            await server.stop()
    run(main())


@pytest.mark.case("BN-003")
def test_BN_003_cov_subscriptions_survive_a_server_restart_and_it_catches_up(uri, tmp_path):
    snapshot = tmp_path / "registry.snap"

    async def main():
        server, address = await serving(uri, snapshot=snapshot)
        app = client()
        a = Address(address)
        try:
            async with app.change_of_value(a, ObjectIdentifier("analog-value,4"), 21, False,
                                           300) as sub:
                await asyncio.wait_for(sub.get_value(), 10)
                await wait_until(lambda: server.stats.subscriptions_kept >= 1,
                                 what="the subscription stored")
                await server.stop()
                assert snapshot.exists()
                # While the server is down, another process appends.
                await asyncio.to_thread(append_elsewhere, uri, [(1, "analog-value", 4, 70.0)])
                server = EventServer(uri, address=address, device_id=599, snapshot=snapshot)
                await server.start()
                assert server.stats.subscriptions_restored == 1
                assert await app.read_property(a, ObjectIdentifier("analog-value,4"),
                                               "present-value") == 70.0
                await asyncio.to_thread(append_elsewhere, uri, [(1, "analog-value", 4, 80.0)])
                seen = []
                while 80.0 not in seen:
                    prop, val = await asyncio.wait_for(sub.get_value(), 10)
                    seen.append(val)
        finally:
            app.close()
            await server.stop()
    run(main())


@pytest.mark.case("BN-003")
def test_BN_003_store_outage_reconnects_and_catches_up(uri):
    async def main():
        server, address = await serving(uri)
        server._retry = 0.05
        app = client()
        a = Address(address)
        try:
            server.store.close()  # the store goes away under the follower
            await wait_until(lambda: server.stats.store_failures >= 1, what="the failure seen")
            await asyncio.to_thread(append_elsewhere, uri, [(1, "analog-input", 1, 42.0)])
            await wait_until(lambda: server.state.objects["1:analog-input:1"].present_value
                             == 42.0, timeout=30, what="catch-up after the outage")
            assert await app.read_property(a, ObjectIdentifier("analog-input,1"),
                                           "present-value") == 42.0
        finally:
            app.close()
            await server.stop()
    run(main())


def test_cross_process_appends_are_served_promptly(uri):
    """An append by another process is readable within a few ms (a WAL wake-up, not the poll)."""
    async def main():
        server, address = await serving(uri)
        await wait_until(lambda: server._follower is not None, what="the follower")
        assert server._follower.prompt
        try:
            lags = []
            for i in range(5):
                with open_store(uri) as writer:  # another handle: no in-process signal
                    position = server.position
                    start = time.monotonic()
                    await asyncio.to_thread(
                        writer.append, "bacnet",
                        [__import__("eventstore").NewEvent.of(value(1, 100.0 + i))])
                    await wait_until(lambda p=position: server.position > p, what="the append")
                    lags.append(time.monotonic() - start)
            assert server._follower.watch.wakeups >= 1
            assert sorted(lags)[2] < 0.5  # median; the figure itself is in BENCHMARKS.md
        finally:
            await server.stop()
    run(main())


@pytest.mark.case("EF-002")
def test_EF_002_random_and_mutated_packets_never_crash_the_device(uri):
    async def main():
        server, address = await serving(uri)
        app = client()
        a = Address(address)
        host, port = address.split(":")
        rng = random.Random(20261130)
        good = bytes.fromhex("810a001101040005010c0c0000000119 55".replace(" ", ""))
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                for i in range(400):
                    if i % 2:
                        packet = bytes(rng.randrange(256) for _ in range(rng.randrange(0, 60)))
                    else:
                        mutated = bytearray(good)
                        for _ in range(rng.randrange(1, 4)):
                            mutated[rng.randrange(len(mutated))] = rng.randrange(256)
                        packet = bytes(mutated[:rng.randrange(1, len(mutated) + 1)])
                    s.sendto(packet, (host, int(port)))
                    if i % 50 == 0:
                        await asyncio.sleep(0.01)
            await asyncio.sleep(0.2)
            assert await app.read_property(a, ObjectIdentifier("analog-input,1"),
                                           "present-value") == 29.0
            assert server._follow_task is not None and not server._follow_task.done()
        finally:
            app.close()
            await server.stop()
    run(main())


def test_directed_who_is_gets_i_am(uri):
    async def main():
        server, address = await serving(uri, device_id=4321)
        app = client()
        try:
            i_ams = await app.who_is(address=Address(address), timeout=3)
            assert [int(i.iAmDeviceIdentifier[1]) for i in i_ams] == [4321]
        finally:
            app.close()
            await server.stop()
    run(main())

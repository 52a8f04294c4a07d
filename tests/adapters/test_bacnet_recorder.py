"""The BACnet recording client against simulated devices on loopback, and the whole pipeline.

Devices are real bacpypes3 applications (``SimulatedDevice``) on their own
UDP ports; the recorder appends to an embedded store; the event server serves
what was recorded to a plain bacpypes3 client.
"""

from __future__ import annotations

import asyncio

import pytest
from bacpypes3.apdu import UnconfirmedCOVNotificationRequest
from bacpypes3.basetypes import PropertyValue
from bacpypes3.constructeddata import Any as AnyValue
from bacpypes3.pdu import Address
from bacpypes3.primitivedata import ObjectIdentifier, Real

from adapters.bacnet.net import free_port
from adapters.bacnet.recorder import BacnetRecorder
from adapters.bacnet.server import EventServer
from adapters.bacnet.simulator import SimulatedDevice
from eventstore import open_store
from eventstore.payloads import Fault, Rejected, decode_payload
from projections.payloads.bacnet import BacnetObjectDefinition, BacnetValueUpdate

from .bacnet_support import client, wait_until


def payloads(store) -> list:
    return [decode_payload(e) for e in store.read_all()]


def updates(store, instance: int, via: str | None = None) -> list:
    return [p.value for p in payloads(store) if isinstance(p, BacnetValueUpdate)
            and p.instance == instance and (via is None or p.via == via)]


def recorder_for(store, device: SimulatedDevice, **kw) -> BacnetRecorder:
    kw.setdefault("poll_interval", 0.3)
    kw.setdefault("apdu_timeout", 0.5)
    kw.setdefault("lifetime", 30)
    kw.setdefault("session", "test")
    return BacnetRecorder(store, [device.address], **kw)


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 120))


@pytest.mark.case("BN-003")
def test_BN_003_cov_polling_and_a_device_restart_recorded_as_a_gap(tmp_path):
    async def main():
        store = open_store(f"embedded://{tmp_path}/events.db")
        device = SimulatedDevice(f"127.0.0.1:{free_port()}", 1001)
        device.start()
        recorder = recorder_for(store, device)
        await recorder.start()
        link = recorder.links[device.address]
        try:
            await wait_until(lambda: link.up, what="the device found and subscribed")
            covs = {o.instance for o in link.objects.values() if o.cov}
            assert covs == {1, 3, 4, 6}  # humidity (2) and filter alarm (5) refuse COV
            await recorder.flush()  # definitions are appended in batches: wait until stored
            defs = [p for p in payloads(store) if isinstance(p, BacnetObjectDefinition)]
            assert {(d.object_type, d.instance, d.name) for d in defs} >= {
                ("analog-input", 1, "zone-temp"), ("multi-state-value", 6, "mode")}
            temp = next(d for d in defs if d.instance == 1)
            assert (temp.units, temp.cov_increment) == ("degrees-celsius", pytest.approx(0.1))

            device.set("analog-input", 1, 23.5, flags=[0, 1, 0, 0])
            device.set("analog-input", 2, 61.0)
            await wait_until(lambda: 23.5 in updates(store, 1, "cov-confirmed"), what="COV")
            await wait_until(lambda: 61.0 in updates(store, 2, "poll"), what="the poll")
            cov = [p for p in payloads(store) if isinstance(p, BacnetValueUpdate)
                   and p.value == 23.5][0]
            assert cov.status_flags == [False, True, False, False]
            assert cov.received_at is not None and cov.source == device.address

            device.stop()  # the device goes away: subscriptions are lost with it
            await wait_until(lambda: not link.up, what="the outage noticed")
            device.set("analog-input", 1, 19.0)  # changes while nobody listens
            device.start()
            await wait_until(lambda: link.up and link.gaps == 1, what="the reconnection")
            await recorder.flush()
            faults = [p for p in payloads(store) if isinstance(p, Fault)]
            assert [f.kind for f in faults] == ["unreachable", "gap"]
            assert faults[1].source == f"bacnet:{device.address}"
            assert 19.0 in updates(store, 1, "read")  # caught up by reading again
            device.set("analog-input", 1, 25.0)  # the new subscription delivers
            await wait_until(lambda: 25.0 in updates(store, 1, "cov-confirmed"),
                             what="COV after resubscribing")
        finally:
            await recorder.stop()
            device.stop()
            store.close()
    run(main())


def test_unconfirmed_notifications_are_recorded(tmp_path):
    async def main():
        store = open_store(f"embedded://{tmp_path}/events.db")
        device = SimulatedDevice(f"127.0.0.1:{free_port()}", 1002)
        device.start()
        recorder = recorder_for(store, device, confirmed=False)
        await recorder.start()
        try:
            await wait_until(lambda: recorder.links[device.address].up, what="subscribed")
            device.set("multi-state-value", 6, 3)
            await wait_until(lambda: 3 in updates(store, 6, "cov-unconfirmed"), what="COV")
        finally:
            await recorder.stop()
            device.stop()
            store.close()
    run(main())


@pytest.mark.case("EF-002")
def test_EF_002_a_notification_nobody_asked_for_is_kept_as_rejected(tmp_path):
    async def main():
        store = open_store(f"embedded://{tmp_path}/events.db")
        device = SimulatedDevice(f"127.0.0.1:{free_port()}", 1003)
        device.start()
        recorder = recorder_for(store, device)
        await recorder.start()
        stranger = client(9100)
        try:
            await wait_until(lambda: recorder.links[device.address].up, what="subscribed")
            stranger.request(UnconfirmedCOVNotificationRequest(
                subscriberProcessIdentifier=77777,
                initiatingDeviceIdentifier=ObjectIdentifier("device,9100"),
                monitoredObjectIdentifier=ObjectIdentifier("analog-input,1"),
                timeRemaining=10,
                listOfValues=[PropertyValue(propertyIdentifier="present-value",
                                            value=AnyValue(Real(66.6)))],
                destination=Address(recorder.local_address)))
            await wait_until(lambda: recorder.stats.rejected >= 1, what="the rejection")
            await recorder.flush()
            rejected = [p for p in payloads(store) if isinstance(p, Rejected)]
            assert rejected and "no subscription of ours" in rejected[0].reason
            assert b"\x01/\xd1" in rejected[0].raw  # process id 77777, as sent
            assert 66.6 not in updates(store, 1)
            device.set("analog-input", 1, 30.0)  # still recording
            await wait_until(lambda: 30.0 in updates(store, 1), what="recording goes on")
        finally:
            stranger.close()
            await recorder.stop()
            device.stop()
            store.close()
    run(main())


def test_unreachable_device_is_a_fault_not_a_hang(tmp_path):
    async def main():
        store = open_store(f"embedded://{tmp_path}/events.db")
        nobody = f"127.0.0.1:{free_port()}"
        recorder = BacnetRecorder(store, [nobody], apdu_timeout=0.3, poll_interval=0.3,
                                  session="test")
        await recorder.start()
        try:
            await wait_until(lambda: recorder.stats.faults >= 1, what="the fault")
            await recorder.flush()
            faults = [p for p in payloads(store) if isinstance(p, Fault)]
            assert faults[0].kind == "unreachable" and nobody in faults[0].source
            assert not recorder.links[nobody].ever_up
        finally:
            await recorder.stop()
            store.close()
    run(main())


@pytest.mark.case("BN-003")
def test_BN_003_recorder_restart_and_the_pipeline_to_a_bacnet_client(tmp_path):
    """Device -> recorder -> store -> event server -> client; the recorder restarts midway."""
    uri = f"embedded://{tmp_path}/events.db"

    async def main():
        store = open_store(uri)
        device = SimulatedDevice(f"127.0.0.1:{free_port()}", 1004)
        device.start()
        server = EventServer(uri, address=f"127.0.0.1:{free_port()}", device_id=700)
        await server.start()
        reader = client(9200)
        a = Address(server.address)
        try:
            recorder = recorder_for(store, device, session="one")
            await recorder.start()
            await wait_until(lambda: recorder.links[device.address].up, what="subscribed")
            device.set("analog-value", 3, 22.5)
            await wait_until(lambda: 22.5 in updates(store, 3), what="recorded")
            await wait_until(lambda: server.state.objects.get("1004:analog-value:3") is not None
                             and server.state.objects["1004:analog-value:3"].present_value
                             == 22.5, what="served")
            assert await reader.read_property(a, ObjectIdentifier("analog-value,3"),
                                              "present-value") == 22.5
            await recorder.stop()
            device.set("analog-value", 3, 24.0)  # while no recorder runs
            recorder = recorder_for(store, device, session="two")
            await recorder.start()
            await wait_until(lambda: 24.0 in updates(store, 3, "read"), what="caught up")
            device.set("analog-value", 3, 26.0)
            await wait_until(lambda: 26.0 in updates(store, 3, "cov-confirmed"), what="COV")
            await recorder.stop()
            position = store.last_position()
            assert await server.wait_for_position(position, 30)
            assert await reader.read_property(a, ObjectIdentifier("analog-value,3"),
                                              "present-value") == 26.0
            assert str(await reader.read_property(a, ObjectIdentifier("analog-value,3"),
                                                  "object-name")) == "setpoint"
        finally:
            reader.close()
            await server.stop()
            device.stop()
            store.close()
    run(main())


def test_event_ids_are_deterministic_time_ordered_and_new_for_a_restarted_session():
    """Ids follow the receive time (a long recording appends at the end of the id index), the
    same inputs give the same id (a retried append writes nothing twice), and a recorder
    restarted under the same session name, its sequence back at 1, never repeats an id."""
    from adapters.bacnet.recorder import event_id

    at = 1_767_225_600_000_000_000
    assert event_id("s", "192.168.1.5", 1, at) == event_id("s", "192.168.1.5", 1, at)
    assert event_id("s", "192.168.1.5", 1, at + 1) != event_id("s", "192.168.1.5", 1, at)
    later = [event_id("s", "192.168.1.5", n, at + n * 1_000_000) for n in range(1, 50)]
    assert later == sorted(later) and all(i.version == 8 for i in later)

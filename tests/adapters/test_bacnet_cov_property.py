"""SubscribeCOVProperty on the event server, from a real bacpypes3 client on loopback.

bacpypes3 has no client call for SubscribeCOVProperty, so the tests send the
request themselves (``bacnet_support.subscribe_property``) and let the client
application's own COV services receive the notifications.
"""

from __future__ import annotations

import asyncio

import pytest
from bacpypes3.pdu import Address
from bacpypes3.primitivedata import ObjectIdentifier

from adapters.bacnet.net import BACNET_ERRORS
from adapters.bacnet.server import EventServer
from eventstore import open_store
from eventstore.payloads import decode_payload
from projections.payloads.bacnet import BacnetCovSubscription

from .bacnet_support import (
    append,
    append_elsewhere,
    client,
    next_values,
    subscribe_property,
    value,
    wait_until,
)
from .test_bacnet_server import run, serving, uri  # noqa: F401 - the store fixture

OK, FAULT = [0, 0, 0, 0], [0, 1, 0, 0]


def stored_subscriptions(store_uri: str, device_id: int = 599) -> list[BacnetCovSubscription]:
    """The subscription events the server kept."""
    with open_store(store_uri) as store:
        return [p for p in (decode_payload(e) for e in store.read_stream(
            f"bacnet-server-{device_id}")) if isinstance(p, BacnetCovSubscription)]


@pytest.mark.parametrize("confirmed", [True, False], ids=["confirmed", "unconfirmed"])
def test_present_value_notifies_by_the_requests_or_the_objects_increment(uri, confirmed):  # noqa: F811
    async def main():
        server, address = await serving(uri)
        app = client()
        try:
            # analog-input 1 is at 29.0 with the fault flag set; its own increment is 0.5.
            wide = await subscribe_property(app, address, "analog-input,1", "present-value", 1,
                                            confirmed=confirmed, increment=2.0)
            narrow = await subscribe_property(app, address, "analog-input,1", "present-value",
                                              2, confirmed=confirmed)
            first = {"present-value": 29.0, "status-flags": FAULT}
            assert await next_values(wide) == first  # the initial notification
            assert await next_values(narrow) == first
            for v in (29.2, 30.0, 31.5):  # appended by another process, one at a time
                await asyncio.to_thread(append_elsewhere, uri, [(1, "analog-input", 1, v)])
            # 29.2 is below both increments; 30.0 passes 0.5 only; 31.5 passes both.
            assert (await next_values(narrow))["present-value"] == 30.0
            assert (await next_values(narrow))["present-value"] == 31.5
            assert (await next_values(wide))["present-value"] == 31.5
            # A change of status flags notifies, however small the change of value.
            append(uri, [value(1, 31.75, status_flags=[False, False, False, False])])
            assert await next_values(wide) == {"present-value": 31.75, "status-flags": OK}
            assert await next_values(narrow) == {"present-value": 31.75, "status-flags": OK}
            assert server.property_covs.failed_notifications == 0
            kept = stored_subscriptions(uri)
            assert {(s.process_id, s.property, s.cov_increment, s.confirmed) for s in kept} == {
                (1, "present-value", 2.0, confirmed), (2, "present-value", None, confirmed)}
        finally:
            app.close()
            await server.stop()
    run(main())


def test_status_flags_and_multi_state_any_change_notifies(uri):  # noqa: F811
    async def main():
        server, address = await serving(uri)
        app = client()
        try:
            flags = await subscribe_property(app, address, "binary-input,2", "status-flags", 3)
            assert await next_values(flags, 1) == {"status-flags": OK}
            state = await subscribe_property(app, address, "multi-state-value,3",
                                             "present-value", 4, confirmed=False)
            assert await next_values(state) == {"present-value": 2, "status-flags": OK}
            await asyncio.to_thread(append_elsewhere, uri, [(1, "multi-state-value", 3, 3),
                                                            (1, "binary-input", 2, False)])
            assert await next_values(state) == {"present-value": 3, "status-flags": OK}
            append(uri, [value(2, False, "binary-input", status_flags=[True, False, False, False])])
            # The binary value's change did not notify the status-flags subscriber; this does.
            assert await next_values(flags, 1) == {"status-flags": [1, 0, 0, 0]}
        finally:
            app.close()
            await server.stop()
    run(main())


def test_lifetime_runs_out_and_cancellation_ends_a_subscription(uri):  # noqa: F811
    async def main():
        server, address = await serving(uri)
        app = client()
        try:
            short = await subscribe_property(app, address, "analog-value,4", "present-value", 5,
                                             lifetime=1)
            await next_values(short)
            await wait_until(lambda: len(server.property_covs) == 0, timeout=30,
                             what="the lifetime to run out")
            kept = await subscribe_property(app, address, "analog-value,4", "present-value", 6,
                                            lifetime=0)  # indefinite
            await next_values(kept)
            assert len(server.property_covs) == 1
            await subscribe_property(app, address, "analog-value,4", "present-value", 6,
                                     confirmed=None, lifetime=None)
            assert len(server.property_covs) == 0
            sent = server.property_covs.notifications
            await asyncio.to_thread(append_elsewhere, uri, [(1, "analog-value", 4, 99.0)])
            with open_store(uri) as store:
                last = store.last_position()
            assert await server.wait_for_position(last, 30)
            assert server.property_covs.notifications == sent  # nobody is left to notify
            assert [s.cancelled for s in stored_subscriptions(uri) if s.process_id == 6] == [
                False, True]
        finally:
            app.close()
            await server.stop()
    run(main())


def test_unknown_objects_properties_and_indexes_get_bacnet_errors(uri):  # noqa: F811
    async def main():
        server, address = await serving(uri)
        app = client()
        try:
            for oid, prop, index, code in [
                    ("analog-input,99", "present-value", None, "unknown-object"),
                    ("analog-input,1", "state-text", None, "unknown-property"),
                    ("analog-input,1", "present-value", 1, "property-is-not-an-array"),
                    ("multi-state-value,3", "state-text", 9, "invalid-array-index")]:
                with pytest.raises(BACNET_ERRORS) as err:
                    await subscribe_property(app, address, oid, prop, 7, index=index)
                assert str(err.value.errorCode) == code, (oid, prop, index)
            # Cancelling what does not exist succeeds; the device still answers.
            await subscribe_property(app, address, "analog-input,99", "present-value", 7,
                                     confirmed=None, lifetime=None)
            app._cov_contexts.clear()
            element = await subscribe_property(app, address, "multi-state-value,3",
                                               "state-text", 8, index=2)
            assert (await next_values(element))["state-text"] == "heat"
            assert await app.read_property(Address(address), ObjectIdentifier("analog-input,1"),
                                           "present-value") == 29.0
            assert len(server.property_covs) == 1
        finally:
            app.close()
            await server.stop()
    run(main())


@pytest.mark.case("BN-003")
def test_BN_003_property_subscriptions_survive_a_server_restart(uri):  # noqa: F811
    async def main():
        server, address = await serving(uri)
        app = client()
        try:
            sub = await subscribe_property(app, address, "analog-value,4", "present-value", 9,
                                           confirmed=False, lifetime=300, increment=5.0)
            assert (await next_values(sub))["present-value"] == 55.0
            await wait_until(lambda: server.stats.subscriptions_kept >= 1,
                             what="the subscription stored")
            await server.stop()
            await asyncio.to_thread(append_elsewhere, uri, [(1, "analog-value", 4, 70.0)])
            server = EventServer(uri, address=address, device_id=599)
            await server.start()
            assert server.stats.subscriptions_restored == 1
            # The restored subscription first tells what changed while the server was down,
            assert (await next_values(sub))["present-value"] == 70.0
            # then keeps the request's increment (5.0): 72 is not reported, 76 is.
            for v in (72.0, 76.0):
                await asyncio.to_thread(append_elsewhere, uri, [(1, "analog-value", 4, v)])
            assert (await next_values(sub))["present-value"] == 76.0
            (restored,) = server.property_covs.by_object[("analog-value", 4)].values()
            assert 290 <= restored.time_remaining(asyncio.get_running_loop().time()) <= 300
        finally:
            app.close()
            await server.stop()
    run(main())

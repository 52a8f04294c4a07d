"""Helpers for the BACnet tests: a client application, ReadRange requests, waiting, appending.

Everything is real: bacpypes3 applications on loopback (each on its own free UDP
port), an embedded store file, and a separate Python process for appends that
must come "from another process".
"""

from __future__ import annotations

import asyncio
import datetime as dt
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

from bacpypes3.apdu import ReadRangeRequest
from bacpypes3.basetypes import (
    LogRecord,
    Range,
    RangeByPosition,
    RangeBySequenceNumber,
    RangeByTime,
)
from bacpypes3.constructeddata import SequenceOf
from bacpypes3.pdu import Address
from bacpypes3.primitivedata import ObjectIdentifier

from adapters.bacnet.net import free_port, make_app
from eventstore import NewEvent, open_store
from projections.payloads.bacnet import BacnetObjectDefinition, BacnetValueUpdate

NS = 1_000_000_000


def client(device_id: int = 9001) -> Any:
    """A plain bacpypes3 client application on its own loopback port."""
    app = make_app(f"127.0.0.1:{free_port()}", device_id, name=f"client-{device_id}")
    app.device_object.apduTimeout = 2000
    app.asap.apduTimeout = 2000
    app.asap.numberOfApduRetries = 1
    return app


def definition(instance: int, object_type: str = "analog-input", device_id: int = 1,
               **kw: Any) -> BacnetObjectDefinition:
    """A definition named ``<type>-<instance>``."""
    kw.setdefault("name", f"{object_type}-{instance}")
    return BacnetObjectDefinition(device_id=device_id, object_type=object_type,
                                  instance=instance, **kw)


def value(instance: int, v: Any, object_type: str = "analog-input", device_id: int = 1,
          **kw: Any) -> BacnetValueUpdate:
    """A present-value update."""
    return BacnetValueUpdate(device_id=device_id, object_type=object_type, instance=instance,
                             value=v, **kw)


def append(uri: str, payloads: list[Any], occurred_at: list[int] | None = None) -> None:
    """Append payloads to stream ``bacnet`` of the store at ``uri`` (this process)."""
    with open_store(uri) as store:
        events = [NewEvent.of(p, occurred_at=occurred_at[i]) if occurred_at else NewEvent.of(p)
                  for i, p in enumerate(payloads)]
        store.append("bacnet", events)


APPEND_SCRIPT = """
import sys, json
from eventstore import open_store, NewEvent
from projections.payloads.bacnet import BacnetValueUpdate
uri, items = sys.argv[1], json.loads(sys.argv[2])
with open_store(uri) as store:
    store.append("bacnet", [NewEvent.of(BacnetValueUpdate(device_id=d, object_type=t,
                 instance=i, value=v)) for d, t, i, v in items])
print("appended", flush=True)
"""


def append_elsewhere(uri: str, items: list[tuple[int, str, int, Any]]) -> float:
    """Append value updates from another Python process; returns when it had appended."""
    import json

    proc = subprocess.run([sys.executable, "-c", APPEND_SCRIPT, uri, json.dumps(items)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return time.monotonic()


async def wait_until(condition: Callable[[], bool], timeout: float = 20.0,
                     what: str = "condition") -> None:
    """Wait (without sleeping blindly) until ``condition()`` holds, or fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.01)


def range_by_position(index: int, count: int) -> Range:
    """ReadRange by position (1-based)."""
    return Range(byPosition=RangeByPosition(referenceIndex=index, count=count))


def range_by_sequence(seq: int, count: int) -> Range:
    """ReadRange by sequence number."""
    return Range(bySequenceNumber=RangeBySequenceNumber(referenceSequenceNumber=seq, count=count))


def range_by_time(ns: int, count: int) -> Range:
    """ReadRange by time (UTC)."""
    moment = dt.datetime.fromtimestamp(ns / 1e9, dt.UTC).replace(tzinfo=None)
    from bacpypes3.basetypes import DateTime

    return Range(byTime=RangeByTime(referenceTime=DateTime(moment), count=count))


async def read_range(app: Any, address: str, oid: str, rng: Range | None,
                     prop: str = "log-buffer") -> tuple[Any, list[Any]]:
    """Send a ReadRange request we build ourselves (bacpypes3 has no client for it)."""
    request = ReadRangeRequest(objectIdentifier=ObjectIdentifier(oid), propertyIdentifier=prop,
                               destination=Address(address))
    if rng is not None:
        request.range = rng
    ack = await app.request(request)
    records = ack.itemData.cast_out(SequenceOf(LogRecord)) if ack.itemCount else []
    return ack, list(records)


def rss_mb(pid: int) -> float:
    """Resident memory of process ``pid`` in MB (VmRSS)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


async def subscribe_property(app: Any, address: str, oid: str, prop: str, process_id: int, *,
                             confirmed: bool | None = True, lifetime: int | None = 60,
                             increment: float | None = None, index: int | None = None) -> Any:
    """SubscribeCOVProperty from a bacpypes3 client (it has no client for it; we build one).

    Returns bacpypes3's subscription context, registered with the client so that
    its notifications are queued there (``await ctx.get_value()``). ``confirmed``
    and ``lifetime`` both None cancel the subscription.
    """
    from bacpypes3.apdu import SubscribeCOVPropertyRequest
    from bacpypes3.service.cov import SubscriptionContextManager

    target = Address(address)
    key = (target, process_id)
    ctx = app._cov_contexts.get(key)
    if ctx is None:
        ctx = SubscriptionContextManager(app, target, ObjectIdentifier(oid), process_id,
                                         bool(confirmed), lifetime or 0)
        app._cov_contexts[key] = ctx
    request = SubscribeCOVPropertyRequest(
        subscriberProcessIdentifier=process_id, monitoredObjectIdentifier=ObjectIdentifier(oid),
        monitoredPropertyIdentifier=prop if index is None else (prop, index),
        destination=target)
    if confirmed is not None:
        request.issueConfirmedNotifications = confirmed
    if lifetime is not None:
        request.lifetime = lifetime
    if increment is not None:
        request.covIncrement = increment
    try:
        await app.request(request)
    except BaseException:
        del app._cov_contexts[key]
        raise
    return ctx


async def next_values(ctx: Any, count: int = 2, timeout: float = 10.0) -> dict[str, Any]:
    """The next notification's ``count`` values (property, status flags) as {property: value}."""
    got = {}
    for _ in range(count):
        prop, val = await asyncio.wait_for(ctx.get_value(), timeout)
        got[str(prop)] = list(val) if str(prop) == "status-flags" else val
    return got

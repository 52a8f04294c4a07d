"""The BACnet recording client: devices' objects and values into the event store.

For each device address it:

1. finds the device (directed Who-Is, no broadcast), reads its object list and,
   for every object of a type it records (``OBJECT_TYPES``), its name, units,
   COV increment, description and state texts -> ``BacnetObjectDefinition``;
   then present value and status flags -> ``BacnetValueUpdate`` (via ``read``);
2. subscribes to change of value for each object (confirmed or unconfirmed
   notifications, with a lifetime renewed at half of it); an object the device
   refuses COV for is polled every ``poll_interval`` instead, and a poll that
   finds a changed value or flags records an update (via ``poll``);
3. records each notification as a ``BacnetValueUpdate`` with the status flags
   from the same notification and the receive time (via ``cov-confirmed`` or
   ``cov-unconfirmed``);
4. checks the device every ``poll_interval`` (the same read carries the polled
   objects). When it stops answering it records ``Fault(kind="unreachable")``;
   when it answers again, ``Fault(kind="gap")`` with the outage's span, reads
   the object list again (new objects -> definitions, vanished -> deletes),
   re-reads every value and subscribes again (a restarted device has
   forgotten its subscriptions) (BN-003).

A notification nobody asked for, or one whose values cannot be decoded, is
kept as a ``Rejected`` event with its text (EF-002). Events go to one stream
(``bacnet`` by default) in batches, with deterministic, time-ordered ids
(``event_id``) and ``metadata.source`` = the device address.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
import uuid
from collections.abc import Callable
from typing import Any

from bacpypes3.apdu import SimpleAckPDU, SubscribeCOVRequest
from bacpypes3.app import Application
from bacpypes3.basetypes import ErrorType, PropertyIdentifier
from bacpypes3.pdu import Address
from bacpypes3.primitivedata import ObjectIdentifier
from bacpypes3.vendor import get_vendor_info

from eventstore import EventStore, InvalidEvent, NewEvent, StoreError, derived_event_id
from eventstore.payloads import Fault, Rejected
from projections.payloads.bacnet import (
    OBJECT_TYPES,
    BacnetObjectDefinition,
    BacnetObjectDelete,
    BacnetValueUpdate,
)

from .net import BACNET_ERRORS, flags_of, free_port, make_app, plain, units_name

log = logging.getLogger("unbroken.bacnet.recorder")

NAMESPACE = uuid.UUID("5b2f0c3e-8f51-4c1e-9d0a-3c7b2a6e4d91")
"""Fixed once for this adapter: the namespace hashed into event ids (``event_id``) and rejection ids."""
FAULT_SOURCE = "bacnet:{address}"
_DEFINITION_PROPS = ["object-name", "units", "cov-increment", "description", "state-text"]


def event_id(session: str, source: str, sequence: int, received_at: int) -> uuid.UUID:
    """The deterministic id of the ``sequence``-th event of ``source`` in ``session``, received at ``received_at``.

    ``derived_event_id`` of the receive time and the SHA-1 of all four: time-ordered, so a
    long recording appends to the end of the store's id index (as the Modbus recorder's
    ids; uuid5 ids made each append dirty a random index page per event), and a recorder
    restarted under the same session name never repeats an id of the earlier run.
    """
    name = f"{session}/{source}/{sequence}/{received_at}".encode()
    return derived_event_id(received_at, hashlib.sha1(NAMESPACE.bytes + name, usedforsecurity=False).digest())


class TrackedObject:
    """What the recorder knows of one object of a device."""

    __slots__ = ("object_type", "instance", "cov", "value", "flags", "process_id")

    def __init__(self, object_type: str, instance: int) -> None:
        self.object_type = object_type
        self.instance = instance
        self.cov = False
        self.value: Any = None
        self.flags: list[bool] | None = None
        self.process_id = 0


class DeviceLink:
    """One device: its address, id, objects and whether it answers."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.device_id: int | None = None
        self.objects: dict[tuple[str, int], TrackedObject] = {}
        self.up = False
        self.ever_up = False
        self.down_since: int | None = None
        self.renewed_at = 0.0
        self.gaps = 0

    @property
    def source(self) -> str:
        """The fault source name of this device."""
        return FAULT_SOURCE.format(address=self.address)


class RecorderApp(Application):
    """A bacpypes3 client that hands every COV notification to the recorder."""

    recorder: BacnetRecorder

    async def do_ConfirmedCOVNotificationRequest(self, apdu: Any) -> None:  # noqa: N802
        """Record the notification, then acknowledge it."""
        self.recorder.on_notification(apdu, confirmed=True)
        await self.response(SimpleAckPDU(context=apdu))

    async def do_UnconfirmedCOVNotificationRequest(self, apdu: Any) -> None:  # noqa: N802
        """Record the notification."""
        self.recorder.on_notification(apdu, confirmed=False)


class Stats:
    """What the recorder counts."""

    def __init__(self) -> None:
        self.notifications = 0
        self.polls = 0
        self.updates = 0
        self.definitions = 0
        self.deletes = 0
        self.faults = 0
        self.rejected = 0
        self.subscriptions = 0
        self.stored = 0


class BacnetRecorder:
    """Subscribe to, poll and watch BACnet/IP devices; append what they say to a store."""

    def __init__(self, store: EventStore, devices: list[str], *, stream: str = "bacnet",
                 local_address: str | None = None, local_device_id: int = 3_999_001,
                 confirmed: bool = True, lifetime: int = 300, poll_interval: float = 5.0,
                 apdu_timeout: float = 3.0, retries: int = 1, session: str | None = None,
                 flush_every: float = 0.02, clock: Callable[[], int] = time.time_ns) -> None:
        self.store = store
        self.stream = stream
        self.links = {a: DeviceLink(a) for a in devices}
        self.local_address = local_address or f"127.0.0.1:{free_port()}"
        self.local_device_id = local_device_id
        self.confirmed = confirmed
        self.lifetime = lifetime
        self.poll_interval = poll_interval
        self.apdu_timeout = apdu_timeout
        self.retries = retries
        self.session = session or str(clock())
        self.flush_every = flush_every
        self._clock = clock
        self._last_ns = 0
        self._seq = 0
        self._pending: list[NewEvent] = []
        self._wake = asyncio.Event()
        self._flushing = asyncio.Lock()
        self._tasks: list[asyncio.Task] = []
        self._stopping = False
        self._next_process_id = 1
        self._by_process: dict[int, tuple[DeviceLink, TrackedObject]] = {}
        self.stats = Stats()
        self.app: RecorderApp | None = None
        self.error: BaseException | None = None

    # -- lifecycle --------------------------------------------------------------
    async def start(self) -> None:
        """Bind the client and start one task per device and the flusher."""
        self.app = make_app(self.local_address, self.local_device_id, name="unbroken-recorder",
                            app_class=RecorderApp)
        self.app.recorder = self
        device = self.app.device_object
        device.apduTimeout = int(self.apdu_timeout * 1000)
        device.numberOfApduRetries = self.retries
        self.app.asap.apduTimeout = int(self.apdu_timeout * 1000)
        self.app.asap.numberOfApduRetries = self.retries
        loop = asyncio.get_running_loop()
        self._tasks.append(loop.create_task(self._flusher(), name="bacnet-flush"))
        for link in self.links.values():
            self._tasks.append(loop.create_task(self._run_device(link),
                                                name=f"bacnet-{link.address}"))

    async def stop(self) -> None:
        """Stop watching devices; everything already received is stored before it returns."""
        self._stopping = True
        flusher, devices = self._tasks[0], self._tasks[1:]
        for task in devices:
            task.cancel()
        self._wake.set()  # the flusher ends after its flush: never cancel an append under way
        for task in [*devices, flusher]:
            try:
                await task
            except (asyncio.CancelledError, Exception):
                pass
        await self.flush()
        if self.app is not None:
            self.app.close()

    async def __aenter__(self) -> BacnetRecorder:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- recording ----------------------------------------------------------------
    def now(self) -> int:
        """A receive time (ns) that never goes back."""
        self._last_ns = max(self._clock(), self._last_ns + 1)
        return self._last_ns

    def record(self, payload: Any, source: str, occurred_at: int | None = None) -> None:
        """Queue one event for the next batch."""
        received = self.now()
        self._seq += 1
        self._pending.append(NewEvent.of(
            payload, id=event_id(self.session, source, self._seq, received),
            occurred_at=occurred_at if occurred_at is not None else received,
            metadata={"source": source}))
        if len(self._pending) >= 500:
            self._wake.set()

    async def flush(self) -> None:
        """Append what is queued; returns once everything queued before the call is stored."""
        async with self._flushing:  # a flush under way finishes first
            await self._flush()

    async def _flush(self) -> None:
        while self._pending:
            batch, self._pending = self._pending[:1000], self._pending[1000:]
            try:
                await self.store.append_async(self.stream, batch)
            except (InvalidEvent, TypeError, ValueError) as e:
                await self._append_singly(batch, e)
                continue
            except StoreError as e:
                self._pending[:0] = batch  # kept, retried at the next flush
                self.error = e
                log.warning("append to %s failed (%s); retrying", self.stream, e)
                return
            self.error = None
            self.stats.stored += len(batch)

    async def _append_singly(self, batch: list[NewEvent], error: BaseException) -> None:
        """A batch the store refused: append its events one by one, each bad one as Rejected."""
        log.warning("batch refused (%s); appending one by one", error)
        for event in batch:
            try:
                await self.store.append_async(self.stream, [event])
                self.stats.stored += 1
            except (InvalidEvent, TypeError, ValueError) as e:
                source = str((event.metadata or {}).get("source", "bacnet"))
                rejected = Rejected(source=source, reason=f"the store refused it: {e}",
                                    raw=repr(event).encode()[:65536], where=event.type)
                self.stats.rejected += 1
                await self.store.append_async(self.stream, [NewEvent.of(
                    rejected, id=uuid.uuid5(NAMESPACE, f"rejected/{event.id}"),
                    metadata={"source": source})])

    async def _flusher(self) -> None:
        while True:
            try:
                await asyncio.wait_for(self._wake.wait(), self.flush_every)
            except TimeoutError:
                pass
            self._wake.clear()
            await self.flush()
            if self._stopping:
                return
            if self.error is not None:
                await asyncio.sleep(0.5)

    def _update(self, link: DeviceLink, obj: TrackedObject, value: Any, flags: list[bool] | None,
                via: str) -> None:
        received = self.now()
        obj.value, obj.flags = value, flags if flags is not None else obj.flags
        self.record(BacnetValueUpdate(
            device_id=link.device_id or 0, object_type=obj.object_type, instance=obj.instance,
            value=value, status_flags=flags, received_at=received, via=via,
            source=link.address), link.address, occurred_at=received)
        self.stats.updates += 1

    def _fault(self, link: DeviceLink, kind: str, detail: str) -> None:
        self.record(Fault(source=link.source, kind=kind, detail=detail), link.address)
        self.stats.faults += 1
        log.warning("%s: %s (%s)", link.address, kind, detail)

    def _reject(self, source: str, reason: str, apdu: Any, where: str) -> None:
        self.record(Rejected(source=source, reason=reason, raw=_raw(apdu), where=where), source)
        self.stats.rejected += 1

    # -- notifications --------------------------------------------------------------
    def on_notification(self, apdu: Any, *, confirmed: bool) -> None:
        """A COV notification arrived: record the values, or reject it whole."""
        self.stats.notifications += 1
        sender = str(apdu.pduSource)
        try:
            known = self._by_process.get(int(apdu.subscriberProcessIdentifier))
            oid = apdu.monitoredObjectIdentifier
            if known is None or (str(oid[0]), int(oid[1])) != (known[1].object_type,
                                                                known[1].instance):
                self._reject(f"bacnet:{sender}", "COV notification for no subscription of ours",
                             apdu, "cov")
                return
            link, obj = known
            value, flags = None, None
            cls = get_vendor_info(0).get_object_class(oid[0])
            for pv in apdu.listOfValues:
                prop = pv.propertyIdentifier
                datatype = cls.get_property_type(prop) if cls else None
                decoded = pv.value.cast_out(datatype) if datatype else None
                if prop == PropertyIdentifier.presentValue:
                    value = plain(decoded)
                elif prop == PropertyIdentifier.statusFlags:
                    flags = flags_of(decoded)
        except (AttributeError, TypeError, ValueError, *BACNET_ERRORS) as e:
            self._reject(f"bacnet:{sender}", f"undecodable COV notification: {e!r}", apdu,
                         "cov")
            return
        if value is None:
            self._reject(link.source, "COV notification without present-value", apdu, "cov")
            return
        self._update(link, obj, value, flags, "cov-confirmed" if confirmed else "cov-unconfirmed")

    # -- per device -------------------------------------------------------------------
    async def _run_device(self, link: DeviceLink) -> None:
        while not self._stopping:
            try:
                await self._connect(link)
                while not self._stopping:
                    await asyncio.sleep(self.poll_interval)
                    await self._poll(link)
                    if time.monotonic() - link.renewed_at > max(1.0, self.lifetime / 2):
                        await self._subscribe_all(link)
            except (TimeoutError, OSError, LookupError, *BACNET_ERRORS) as e:
                self._went_down(link, e)
                await asyncio.sleep(min(self.poll_interval, 2.0))
            except Exception as e:  # a device answering nonsense must not end its watch
                self._went_down(link, e)
                log.exception("%s: unexpected answer", link.address)
                await asyncio.sleep(min(self.poll_interval, 2.0))

    def _went_down(self, link: DeviceLink, error: BaseException) -> None:
        if link.up or (not link.ever_up and link.down_since is None):
            link.down_since = self.now()
            self._fault(link, "unreachable", f"{link.address} does not answer: {error!r}")
        link.up = False

    async def _connect(self, link: DeviceLink) -> None:
        """Find the device, read its objects and values, subscribe; record a gap if there was one."""
        await self._discover(link)
        await self._read_all(link)
        await self._subscribe_all(link)
        if link.down_since is not None and link.ever_up:
            back = self.now()
            link.gaps += 1
            self._fault(link, "gap", f"no data from {link.address} for "
                        f"{(back - link.down_since) / 1e9:.1f} s ({link.down_since}..{back} ns); "
                        f"re-read {len(link.objects)} objects and subscribed again")
        link.up = link.ever_up = True
        link.down_since = None

    async def _discover(self, link: DeviceLink) -> None:
        app = self.app
        addr = Address(link.address)
        i_ams = await app.who_is(address=addr, timeout=self.apdu_timeout)
        if not i_ams:
            raise LookupError(f"no I-Am from {link.address}")
        link.device_id = int(i_ams[0].iAmDeviceIdentifier[1])
        device_oid = ObjectIdentifier(("device", link.device_id))
        object_list = await app.read_property(addr, device_oid, "object-list")
        found: dict[tuple[str, int], TrackedObject] = {}
        for oid in object_list:
            key = (str(oid[0]), int(oid[1]))
            if key[0] in OBJECT_TYPES:
                found[key] = link.objects.get(key) or TrackedObject(*key)
        for key in set(link.objects) - set(found):
            self.record(BacnetObjectDelete(device_id=link.device_id, object_type=key[0],
                                           instance=key[1]), link.address)
            self.stats.deletes += 1
        link.objects = found
        for obj in found.values():
            await self._define(link, obj)

    async def _define(self, link: DeviceLink, obj: TrackedObject) -> None:
        oid = f"{obj.object_type},{obj.instance}"
        result = await self.app.read_property_multiple(Address(link.address),
                                                       [oid, _DEFINITION_PROPS])
        props: dict[str, Any] = {}
        for _oid, prop, _index, value in result:
            if not _failed(value):
                props[str(prop)] = value
        cov_inc = props.get("cov-increment")
        self.record(BacnetObjectDefinition(
            device_id=link.device_id, object_type=obj.object_type, instance=obj.instance,
            name=str(props.get("object-name", f"{obj.object_type}-{obj.instance}")),
            units=units_name(props.get("units")),
            cov_increment=float(cov_inc) if cov_inc is not None else None,
            description=str(props.get("description", "")),
            state_texts=[str(s) for s in props.get("state-text", [])],
            source=link.address), link.address)
        self.stats.definitions += 1

    async def _read_values(self, link: DeviceLink, objects: list[TrackedObject],
                           via: str) -> None:
        if not objects:
            return
        args: list[Any] = []
        for obj in objects:
            args += [f"{obj.object_type},{obj.instance}", ["present-value", "status-flags"]]
        result = await self.app.read_property_multiple(Address(link.address), args)
        got: dict[tuple[str, int], dict[str, Any]] = {}
        for oid, prop, _index, value in result:
            got.setdefault((str(oid[0]), int(oid[1])), {})[str(prop)] = value
        for obj in objects:
            values = got.get((obj.object_type, obj.instance), {})
            value = values.get("present-value")
            if _failed(value):
                continue
            raw_flags = values.get("status-flags")
            value, flags = plain(value), None if _failed(raw_flags) else flags_of(raw_flags)
            if via == "poll" and value == obj.value and flags == obj.flags:
                continue
            self._update(link, obj, value, flags, via)

    async def _read_all(self, link: DeviceLink) -> None:
        await self._read_values(link, list(link.objects.values()), "read")

    async def _poll(self, link: DeviceLink) -> None:
        """Read the device (it must answer) and the objects without COV."""
        self.stats.polls += 1
        await self.app.read_property(Address(link.address),
                                     ObjectIdentifier(("device", link.device_id)), "system-status")
        await self._read_values(link, [o for o in link.objects.values() if not o.cov], "poll")

    async def _subscribe_all(self, link: DeviceLink) -> None:
        """Subscribe (or renew) every object; objects the device refuses are polled."""
        for obj in link.objects.values():
            if obj.process_id == 0:
                obj.process_id = self._next_process_id
                self._next_process_id += 1
                self._by_process[obj.process_id] = (link, obj)
            request = SubscribeCOVRequest(
                subscriberProcessIdentifier=obj.process_id,
                monitoredObjectIdentifier=ObjectIdentifier((obj.object_type, obj.instance)),
                issueConfirmedNotifications=self.confirmed, lifetime=self.lifetime,
                destination=Address(link.address))
            try:
                await self.app.request(request)
            except BACNET_ERRORS as e:
                if _refused(e):
                    obj.cov = False
                    continue
                raise
            if not obj.cov:
                self.stats.subscriptions += 1
            obj.cov = True
        link.renewed_at = time.monotonic()


def _raw(apdu: Any) -> bytes:
    """The service bytes of an APDU as it came (re-encoded), else its text."""
    try:
        return bytes(apdu.encode().pduData)[:65536]
    except Exception:  # an APDU that will not encode is kept as text
        return repr(apdu).encode()[:65536]


def _failed(value: Any) -> bool:
    """True for a property read that gave no value (absent, or an error in its place)."""
    return value is None or isinstance(value, BaseException | ErrorType)


def _refused(error: BaseException) -> bool:
    """True when the device answered that it will not give COV for this object."""
    code = str(getattr(error, "errorCode", "") or "")
    return code in ("cov-subscription-failed", "covSubscriptionFailed", "unknown-object",
                    "unknownObject", "not-cov-property", "optional-functionality-not-supported")

"""The BACnet event server: a BACnet/IP device materialized from the event store.

The ``bacnet`` object-registry projection folds the store's BACnet events into
objects; this module serves them with bacpypes3 and follows the store live:

1. Start: load the registry snapshot (``snapshot=PATH``) when there is one, then
   catch up from its position by folding events only, then create one
   bacpypes3 object per registry object.
2. Live: a subscription with prompt wake-ups (``wakeup.PromptFollow``: an
   inotify watch on the SQLite WAL file beside the database, the 50 ms poll as
   fallback) folds each new event and updates the affected object at once, so
   bacpypes3's change detection sends COV notifications.
3. Services: ReadProperty, ReadPropertyMultiple (ALL, REQUIRED, OPTIONAL),
   SubscribeCOV (confirmed, unconfirmed, lifetime) and Who-Is/I-Am from
   bacpypes3; ReadRange (which bacpypes3 lacks) here, over each object's
   history as the ``log-buffer`` property, by position, sequence number or time;
   SubscribeCOVProperty (which bacpypes3 lacks) in ``covproperty``;
   WriteProperty of an output's or value's present value as a stored command
   (``commands``: appended as ``BacnetWriteCommand``, folded into the object's
   priority array, acknowledged once served); WritePropertyMultiple is refused.
4. COV subscriptions (both kinds) are appended as ``BacnetCovSubscription`` events to the
   stream ``bacnet-server-<device id>`` and restored on start (with what is left
   of their lifetime), so they survive a restart.
5. A store that fails (locked, gone, unreadable) is reopened with back-off and
   the server catches up from its last position; it keeps answering meanwhile.

Only eventstore, projections and bacpypes3 are imported (``import replay`` would
cost over 100 MB resident).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
from bacpypes3.apdu import ComplexAckPDU, ReadRangeRequest, SimpleAckPDU
from bacpypes3.app import Application
from bacpypes3.basetypes import StatusFlags
from bacpypes3.errors import ExecutionError, PropertyError, UnrecognizedService
from bacpypes3.pdu import Address
from bacpypes3.primitivedata import ObjectIdentifier
from bacpypes3.service.cov import Subscription as CovSubscription

from eventstore import (
    EventStore,
    NewEvent,
    RecordedEvent,
    StoreError,
    UnbrokenError,
    open_store,
)
from eventstore.payloads import decode_payload
from projections import BacnetRegistryConfig, BacnetRegistryProjection, BacnetRegistryState
from projections.payloads.bacnet import (
    BacnetCovSubscription,
    BacnetObjectDefinition,
    BacnetObjectDelete,
    BacnetValueUpdate,
    BacnetWriteCommand,
)

from .commands import Commanded, checked_command, effective_value, is_commandable
from .covproperty import PropertyCovs
from .logrecords import object_identifier_bytes, read_range_ack
from .net import (
    BACNET_ERRORS,
    CLASSES,
    INPUTS,
    datetime_to_ns,
    make_app,
    units_value,
)
from .wakeup import PromptFollow

log = logging.getLogger("unbroken.bacnet.server")

MAX_RANGE_ITEMS = 50
"""Most history entries one ReadRange answer carries (about 22 bytes each: fits 1476)."""
SNAPSHOT_EVERY = 30.0
"""Seconds between registry snapshots while running (and one at shutdown)."""
SNAPSHOT_VERSION = 1
COMMAND_FOLD_WAIT = 10.0
"""Seconds a WriteProperty waits for its stored command to be folded before it is acknowledged."""


class ServerError(UnbrokenError):
    """The event server could not start (bad address, port in use, bad snapshot path)."""


_UNSET = object()
YIELD_EVERY = 50
"""Events folded between two yields to the event loop (requests wait no longer than that)."""


class _LiveContext:
    """The projection context of a live fold: the receive time; no decisions, no timers."""

    def __init__(self) -> None:
        self.now = 0

    def decide(self, decision: Any) -> Any:
        """The registry makes no decisions; kept for the contract."""
        return decision

    def schedule(self, at: int, key: str, payload: Any = None) -> None:
        """The registry asks for no timers."""

    def cancel(self, key: str) -> None:
        """The registry asks for no timers."""


class _Snapshot(msgspec.Struct):
    version: int
    device_id: int
    position: int
    state: BacnetRegistryState


def object_id(obj: Any) -> tuple[str, int]:
    """The (type, instance) of a registry object, as bacpypes3 names it."""
    return (obj.object_type, obj.instance)


def pv_for(object_type: str, value: Any) -> Any:
    """A registry value in the form bacpypes3 expects for the object type."""
    if object_type.startswith("binary"):
        return "active" if value else "inactive"
    if object_type.startswith("multi-state"):
        return int(value)
    return float(value)


def select_range(history: list, rng: Any) -> tuple[list, bool]:
    """The entries a ReadRange ``rng`` asks for, and whether more matched than fit.

    Positions are 1-based indexes into the history (oldest first); a negative
    count reads backwards from the reference, as the standard says. By time, a
    positive count takes entries strictly after the reference time and a
    negative one entries strictly before it.
    """
    n = len(history)
    if rng is None:
        chosen = history
    elif rng.byPosition is not None:
        index, count = rng.byPosition.referenceIndex, rng.byPosition.count
        chosen = _around(history, index - 1, count) if 1 <= index <= n else []
    elif rng.bySequenceNumber is not None:
        ref, count = rng.bySequenceNumber.referenceSequenceNumber, rng.bySequenceNumber.count
        index = next((i for i, e in enumerate(history) if e.seq == ref), None)
        if index is None:
            # The reference has aged out (or is ahead): start at the nearest entry that exists.
            later = [i for i, e in enumerate(history) if e.seq > ref]
            earlier = [i for i, e in enumerate(history) if e.seq < ref]
            if count > 0 and later:
                chosen = history[later[0]:later[0] + count]
            elif count < 0 and earlier:
                chosen = history[max(0, earlier[-1] + count + 1):earlier[-1] + 1]
            else:
                chosen = []
        else:
            chosen = _around(history, index, count)
    elif rng.byTime is not None:
        ref_ns = datetime_to_ns(rng.byTime.referenceTime)
        count = rng.byTime.count
        if ref_ns is None:
            raise ExecutionError(errorClass="services", errorCode="parameterOutOfRange")
        if count > 0:
            chosen = [e for e in history if e.at > ref_ns][:count]
        else:
            before = [e for e in history if e.at < ref_ns]
            chosen = before[len(before) + count:] if count else []
    else:
        chosen = history
    more = len(chosen) > MAX_RANGE_ITEMS
    if more:
        chosen = chosen[:MAX_RANGE_ITEMS]
    return chosen, more


def _around(history: list, index: int, count: int) -> list:
    if count >= 0:
        return history[index:index + count]
    return history[max(0, index + count + 1):index + 1]


class _RecordedFlags:
    """Status flags as recorded (bacpypes3 derives them from event state and reliability)."""

    _flags: tuple[int, int, int, int] = (0, 0, 0, 0)

    @property
    def statusFlags(self) -> StatusFlags:  # noqa: N802 - the BACnet property name
        """The recorded StatusFlags: in-alarm, fault, overridden, out-of-service."""
        return StatusFlags(list(self._flags))

    @statusFlags.setter
    def statusFlags(self, value: Any) -> None:  # noqa: N802
        """bacpypes3 sets it while building the object; the recorded flags win."""


SERVED = {t: type(f"Served{cls.__name__}",
                  (_RecordedFlags, cls) if t in INPUTS else (_RecordedFlags, Commanded, cls), {})
          for t, cls in CLASSES.items()}
"""The classes served: bacpypes3's, with the recorded status flags, and for outputs and
values the priority array of the commands written through the server."""


class EventServerApp(Application):
    """bacpypes3's application plus ReadRange, remembered COV subscriptions and counters."""

    server: EventServer

    async def indication(self, apdu: Any) -> None:  # type: ignore[override]
        """Count each request by service, then let bacpypes3 (or us) answer it."""
        name = type(apdu).__name__
        stats = self.server.stats
        stats.requests[name] = stats.requests.get(name, 0) + 1
        await super().indication(apdu)

    async def do_ReadRangeRequest(self, apdu: ReadRangeRequest) -> None:  # noqa: N802
        """ReadRange over an object's history (its ``log-buffer``)."""
        self.server.stats.read_ranges += 1
        obj_id = apdu.objectIdentifier
        registry_obj = self.server.registry_object(obj_id)
        if registry_obj is None:
            raise ExecutionError(errorClass="object", errorCode="unknownObject")
        if str(apdu.propertyIdentifier) != "log-buffer":
            served = self.get_object_id(obj_id)
            if served is not None and served.get_property_type(apdu.propertyIdentifier):
                raise ExecutionError(errorClass="services", errorCode="propertyIsNotAList")
            raise PropertyError(errorCode="unknownProperty")
        if apdu.propertyArrayIndex is not None:
            raise ExecutionError(errorClass="property", errorCode="propertyIsNotAnArray")
        history = registry_obj.history
        chosen, more = select_range(history, apdu.range)
        first = bool(chosen) and chosen[0] is history[0]
        last = bool(chosen) and chosen[-1] is history[-1]
        by_sequence_or_time = apdu.range is not None and (
            apdu.range.bySequenceNumber is not None or apdu.range.byTime is not None)
        ack = ComplexAckPDU(context=apdu)  # the service data encoded by logrecords, not bacpypes3
        ack.put_data(read_range_ack(
            object_identifier_bytes(obj_id), registry_obj.object_type, chosen,
            (first, last, more), chosen[0].seq if by_sequence_or_time and chosen else None))
        await self.response(ack)

    async def do_SubscribeCOVRequest(self, apdu: Any) -> None:  # noqa: N802
        """bacpypes3's SubscribeCOV, then the subscription kept as an event."""
        await super().do_SubscribeCOVRequest(apdu)
        self.server.remember_subscription(apdu)

    async def do_WritePropertyRequest(self, apdu: Any) -> None:  # noqa: N802
        """A command to an output or value: checked, stored, folded, then acknowledged."""
        served = self.get_object_id(apdu.objectIdentifier)
        if served is None or self.server.registry_object(apdu.objectIdentifier) is None:
            raise ExecutionError(errorClass="object", errorCode="unknownObject")
        priority, value = checked_command(served, str(apdu.propertyIdentifier),
                                          apdu.propertyArrayIndex, apdu.priority,
                                          apdu.propertyValue)
        await self.server.record_command(apdu.objectIdentifier, priority, value,
                                         str(apdu.pduSource))
        await self.response(SimpleAckPDU(context=apdu))

    async def do_WritePropertyMultipleRequest(self, apdu: Any) -> None:  # noqa: N802
        """Not offered: bacpypes3's would write objects behind the store's back."""
        raise UnrecognizedService("WritePropertyMultiple: write one property at a time")

    def get_services_supported(self) -> Any:
        """bacpypes3's list (from the ``do_`` methods) without WritePropertyMultiple."""
        supported = super().get_services_supported()
        supported[supported.writePropertyMultiple] = 0
        return supported

    async def do_SubscribeCOVPropertyRequest(self, apdu: Any) -> None:  # noqa: N802
        """SubscribeCOVProperty: create, renew or cancel; acknowledge; keep it as an event."""
        ref = apdu.monitoredPropertyIdentifier
        sub = self.server.property_covs.subscribe(
            self.get_object_id(apdu.monitoredObjectIdentifier), apdu.pduSource,
            int(apdu.subscriberProcessIdentifier), apdu.monitoredObjectIdentifier,
            str(ref.propertyIdentifier), ref.propertyArrayIndex,
            apdu.issueConfirmedNotifications, apdu.lifetime,
            None if apdu.covIncrement is None else float(apdu.covIncrement))
        await self.response(SimpleAckPDU(context=apdu))
        self.server.remember_subscription(apdu)
        if sub is not None:
            served = self.get_object_id(apdu.monitoredObjectIdentifier)
            asyncio.get_running_loop().call_soon(self.server.property_covs.notify, served, sub)


class Stats:
    """What the server counts (also exported as Prometheus metrics with ``metrics_port``)."""

    def __init__(self) -> None:
        self.requests: dict[str, int] = {}
        self.read_ranges = 0
        self.events = 0
        self.caught_up_at = 0
        self.store_failures = 0
        self.subscriptions_restored = 0
        self.subscriptions_kept = 0
        self.commands = 0
        self.malformed = 0
        self.objects = 0
        self.last_apply_lag_ns = 0
        self.lags_ns: deque[int] = deque(maxlen=200_000)  # only with record_lags


class EventServer:
    """A BACnet/IP device whose objects are the registry folded from the store."""

    def __init__(self, store_uri: str, *, address: str = "127.0.0.1:47809",
                 device_id: int = 599, config: BacnetRegistryConfig | None = None,
                 snapshot: str | Path | None = None, name: str = "unbroken-bacnet",
                 store_factory: Callable[[str], EventStore] | None = None,
                 retry_seconds: float = 0.5, record_lags: bool = False) -> None:
        self.store_uri = store_uri
        self.address = address
        self.device_id = device_id
        self.projection = BacnetRegistryProjection(config)
        self.state = self.projection.initial()
        self.snapshot_path = Path(snapshot) if snapshot else None
        self.name = name
        self.position = 0
        self.stats = Stats()
        self.stream = f"bacnet-server-{device_id}"
        self.app: EventServerApp | None = None
        self.property_covs: PropertyCovs | None = None
        self.store: EventStore | None = None
        self._open = store_factory or (lambda uri: open_store(uri))
        self._retry = retry_seconds
        self._record_lags = record_lags
        self._ctx = _LiveContext()
        self._owners: dict[tuple[str, int], int] = {}  # served (type, instance) -> device id
        self._served: dict[tuple[str, int], dict[str, Any]] = {}  # what was set on each
        self._objects: dict[tuple[str, int], Any] = {}  # served (type, instance) -> bacpypes3 object
        self._follow_task: asyncio.Task | None = None
        self._snap_task: asyncio.Task | None = None
        self._follower: PromptFollow | None = None
        self._subscription: Any = None
        self._stopping = False
        self.ready = asyncio.Event()
        self.applied = asyncio.Condition()

    # -- lifecycle ------------------------------------------------------------
    async def start(self) -> None:
        """Open the store, catch up, materialize the objects and start serving."""
        self._load_snapshot()
        self.store = self._open(self.store_uri)
        await asyncio.to_thread(self._catch_up)
        try:
            self.app = make_app(self.address, self.device_id, name=self.name,
                                app_class=EventServerApp)
        except OSError as e:
            raise ServerError(f"cannot serve BACnet on {self.address}: {e}") from e
        self.app.server = self
        self.property_covs = PropertyCovs(self.app)
        for obj in self.state.objects.values():
            self._materialize(obj)
        self._restore_subscriptions()
        self.stats.caught_up_at = self.position
        self.stats.objects = len(self._owners)
        self._follow_task = asyncio.create_task(self._follow(), name="bacnet-follow")
        if self.snapshot_path is not None:
            self._snap_task = asyncio.create_task(self._snapshot_loop(), name="bacnet-snapshot")
        self.ready.set()

    async def stop(self) -> None:
        """Stop following, save a snapshot, close the application and the store."""
        self._stopping = True
        if self._subscription is not None:
            self._subscription.stop()
        for task in (self._follow_task, self._snap_task):
            if task is not None:
                task.cancel()
                try:
                    await task
                except (asyncio.CancelledError, Exception):
                    pass
        self.save_snapshot()
        if self.property_covs is not None:
            self.property_covs.close()
        if self._follower is not None:
            self._follower.close()
        if self.app is not None:
            self.app.close()
        if self.store is not None:
            self.store.close()

    async def __aenter__(self) -> EventServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- folding ----------------------------------------------------------------
    def _fold(self, event: RecordedEvent) -> None:
        self._ctx.now = event.recorded_at
        self.projection.apply(self.state, event, self._ctx)
        self.position = event.position
        self.stats.events += 1

    def _catch_up(self) -> None:
        """Fold everything stored after the snapshot's position (no objects touched)."""
        assert self.store is not None
        while True:
            page = self.store.read_after(self.position, 5000)
            if not page:
                return
            for event in page:
                self._fold(event)

    async def _follow(self) -> None:
        """Fold new events as they are appended; reopen the store after a failure."""
        while not self._stopping:
            try:
                await self._follow_once()
            except (StoreError, OSError) as e:
                self.stats.store_failures += 1
                log.warning("store %s failed (%s); reopening in %.1f s", self.store_uri, e,
                            self._retry)
                await self._reopen()

    async def _follow_once(self) -> None:
        assert self.store is not None
        if self._follower is not None:
            self._follower.close()
        self._follower = PromptFollow(self.store)
        self._subscription = self._follower.subscribe(self.position)
        since_yield = 0
        async for event in self._subscription:
            self._fold(event)
            self._sync(event)
            since_yield += 1
            if since_yield >= YIELD_EVERY:
                since_yield = 0
                await asyncio.sleep(0)  # let requests in during a burst
            lag = time.time_ns() - event.recorded_at
            self.stats.last_apply_lag_ns = lag
            if self._record_lags:
                self.stats.lags_ns.append(lag)
            async with self.applied:
                self.applied.notify_all()

    async def _reopen(self) -> None:
        delay = self._retry
        while not self._stopping:
            await asyncio.sleep(delay)
            try:
                if self.store is not None:
                    try:
                        self.store.close()
                    except (StoreError, OSError):
                        pass
                self.store = self._open(self.store_uri)
                await asyncio.to_thread(self.store.last_position)
                return
            except (StoreError, OSError) as e:
                self.stats.store_failures += 1
                log.warning("store %s still unavailable: %s", self.store_uri, e)
                delay = min(delay * 2, 5.0)

    async def wait_for_position(self, position: int, timeout: float) -> bool:
        """Wait until every event up to ``position`` is served; False on timeout."""
        async def reached() -> None:
            async with self.applied:
                await self.applied.wait_for(lambda: self.position >= position)
        try:
            await asyncio.wait_for(reached(), timeout)
        except TimeoutError:
            return False
        return True

    # -- registry -> bacpypes3 objects -----------------------------------------
    def registry_object(self, obj_id: Any) -> Any:
        """The registry object behind a BACnet object identifier, or None."""
        object_type, instance = str(obj_id[0]), int(obj_id[1])
        return self.state.objects.get(f"{self.device_of(object_type, instance)}:"
                                      f"{object_type}:{instance}")

    def device_of(self, object_type: str, instance: int) -> int:
        """The source device id of a served object (objects of all devices share one space)."""
        return self._owners.get((object_type, instance), -1)

    def _sync(self, event: RecordedEvent) -> None:
        """Bring the bacpypes3 object that ``event`` touched in line with the registry."""
        payload = decode_payload(event)
        if isinstance(payload, BacnetValueUpdate | BacnetObjectDefinition | BacnetObjectDelete
                      | BacnetWriteCommand):
            key = f"{payload.device_id}:{payload.object_type}:{payload.instance}"
            obj = self.state.objects.get(key)
            if obj is None:
                self._drop((payload.object_type, payload.instance), payload.device_id)
            else:
                self._materialize(obj)
        if len(self.state.objects) < len(self._owners):  # evictions: drop what is gone
            for (object_type, instance), device in list(self._owners.items()):
                if f"{device}:{object_type}:{instance}" not in self.state.objects:
                    self._drop((object_type, instance), device)
        self.stats.objects = len(self._owners)

    def _materialize(self, obj: Any) -> None:
        """Create or update the bacpypes3 object of registry object ``obj``."""
        cls = SERVED.get(obj.object_type)
        if cls is None or self.app is None:
            return
        oid = object_id(obj)
        owner = self._owners.get(oid)
        if owner is not None and owner != obj.device_id:
            log.warning("%s %s of device %s hides the one of device %s", *oid, obj.device_id,
                        owner)
            return
        served = self._objects.get(oid)
        if served is None:
            served = self._create(cls, obj)
            if served is None:
                return
            self._owners[oid] = obj.device_id
            self._objects[oid] = served
        self._update(served, obj)

    def _create(self, cls: type, obj: Any) -> Any:
        name = obj.name
        if name in self.app.objectName:  # names are unique per device: qualify a clash
            name = f"{name} ({obj.device_id}:{obj.object_type}:{obj.instance})"
        kwargs: dict[str, Any] = dict(
            objectIdentifier=object_id(obj), objectName=name,
            presentValue=pv_for(obj.object_type, obj.present_value
                                if obj.present_value is not None else 0),
            statusFlags=[0, 0, 0, 0], eventState="normal", outOfService=False,
            description=obj.description or name,
        )
        if obj.object_type.startswith("analog"):
            kwargs["units"] = units_value(obj.units) or "noUnits"
            kwargs["covIncrement"] = obj.cov_increment if obj.cov_increment is not None else 0.0
        elif obj.object_type.startswith("binary"):
            if obj.object_type in ("binary-input", "binary-output"):
                kwargs["polarity"] = "normal"
        else:
            states = obj.state_texts or []
            kwargs["numberOfStates"] = max(len(states), int(obj.present_value or 1), 1)
            if states:
                kwargs["stateText"] = list(states)
        try:
            served = cls(**kwargs)
            self.app.add_object(served)
        except (RuntimeError, ValueError, TypeError) as e:
            log.warning("cannot serve %s: %s", obj.name, e)
            return None
        return served

    def _update(self, served: Any, obj: Any) -> None:
        """Bring ``served`` in line with ``obj``, then let property subscriptions look."""
        self._set_changes(served, obj)
        if self.property_covs.by_object:
            self.property_covs.check(served)

    def _set_changes(self, served: Any, obj: Any) -> None:
        """Set what changed; what was set last is kept beside (bacpypes3 reads are slow)."""
        oid = object_id(obj)
        last = self._served.setdefault(oid, {})
        flags = tuple((obj.status_flags >> i) & 1 for i in range(4))
        flags_changed = served._flags != flags
        served._flags = flags
        wanted: dict[str, Any] = {"outOfService": bool(obj.status_flags & 8)}
        if obj.object_type.startswith("analog"):
            wanted["covIncrement"] = obj.cov_increment if obj.cov_increment is not None else 0.0
            units = units_value(obj.units)
            if units is not None:
                wanted["units"] = units
        if obj.object_type.startswith("multi-state") and obj.present_value is not None:
            wanted["numberOfStates"] = max(int(obj.present_value), last.get("numberOfStates", 1),
                                           len(obj.state_texts))
        for name, wanted_value in wanted.items():
            if last.get(name, _UNSET) != wanted_value:
                setattr(served, name, wanted_value)
                last[name] = wanted_value
        detections = self.app._cov_detections  # (bacpypes3 reads of objectIdentifier are slow)
        detection = detections.get(served.objectIdentifier) if detections else None
        if detection is not None and flags_changed:
            detection.statusFlags = StatusFlags(list(flags))
        if self._set_present_value(served, obj, last):
            return  # bacpypes3's change detection notifies
        if detection is not None and flags_changed:
            detection.send_cov_notifications()  # a change of flags alone is a change of value

    @staticmethod
    def _set_present_value(served: Any, obj: Any, last: dict[str, Any]) -> bool:
        """Set the present value (of an output or value: the command at the highest priority,
        else the recorded value as relinquish default); True when it changed."""
        if obj.present_value is None and not obj.commands:
            return False
        recorded = obj.present_value if obj.present_value is not None else 0
        value = recorded
        if is_commandable(served):
            served._relinquish = pv_for(obj.object_type, recorded)
            served._commands = obj.commands  # the registry replaces it on change, never edits it
            value = effective_value(obj.commands, recorded)
        value = pv_for(obj.object_type, value)
        if last.get("presentValue", _UNSET) == value:
            return False
        last["presentValue"] = served.presentValue = value
        return True

    def _drop(self, oid: tuple[str, int], device_id: int) -> None:
        if self._owners.get(oid) != device_id or self.app is None:
            return
        del self._owners[oid]
        self._served.pop(oid, None)
        self.property_covs.drop_object(oid)
        served = self._objects.pop(oid, None)
        if served is None:
            return
        detection = self.app._cov_detections.get(served.objectIdentifier)
        if detection is not None:
            for cov in list(detection.cov_subscriptions):
                self.app.cancel_subscription(cov)
        self.app.delete_object(served)

    # -- commands -------------------------------------------------------------------
    async def record_command(self, obj_id: Any, priority: int, value: Any, writer: str) -> None:
        """Append a client's command and wait until it is folded (so it reads back at once).

        A store that refuses it is the BACnet error ``device / operational-problem``.
        """
        registry_obj = self.registry_object(obj_id)
        command = BacnetWriteCommand(
            device_id=registry_obj.device_id, object_type=registry_obj.object_type,
            instance=registry_obj.instance, priority=priority, value=value, writer=writer,
            at=time.time_ns())
        try:
            result = await self.store.append_async(self.stream, [NewEvent.of(
                command, metadata={"source": f"bacnet-server-{self.device_id}"})])
        except (StoreError, OSError) as e:
            log.warning("could not store the command of %s: %s", writer, e)
            raise ExecutionError(errorClass="device", errorCode="operationalProblem") from e
        self.stats.commands += 1
        if not await self.wait_for_position(result.last_position, COMMAND_FOLD_WAIT):
            log.warning("command of %s stored at %d but not folded within %.0f s", writer,
                        result.last_position, COMMAND_FOLD_WAIT)

    # -- COV subscriptions kept as events -----------------------------------------
    def remember_subscription(self, apdu: Any) -> None:
        """Append the subscription (or its cancellation) to the server's stream."""
        cancelled = apdu.issueConfirmedNotifications is None and apdu.lifetime is None
        oid = apdu.monitoredObjectIdentifier
        ref = getattr(apdu, "monitoredPropertyIdentifier", None)  # SubscribeCOVProperty
        increment = getattr(apdu, "covIncrement", None)
        payload = BacnetCovSubscription(
            subscriber=str(apdu.pduSource), process_id=int(apdu.subscriberProcessIdentifier),
            object_type=str(oid[0]), instance=int(oid[1]),
            confirmed=bool(apdu.issueConfirmedNotifications),
            lifetime=int(apdu.lifetime or 0), at=time.time_ns(), cancelled=cancelled,
            property=str(ref.propertyIdentifier) if ref is not None else "",
            array_index=None if ref is None or ref.propertyArrayIndex is None
            else int(ref.propertyArrayIndex),
            cov_increment=None if increment is None else float(increment),
        )
        asyncio.get_running_loop().create_task(self._append_subscription(payload))

    async def _append_subscription(self, payload: BacnetCovSubscription) -> None:
        if self.store is None:
            return
        try:
            await self.store.append_async(self.stream, [NewEvent.of(
                payload, metadata={"source": f"bacnet-server-{self.device_id}"})])
            self.stats.subscriptions_kept += 1
        except (StoreError, OSError) as e:
            log.warning("could not keep the COV subscription of %s: %s", payload.subscriber, e)

    def _restore_subscriptions(self) -> None:
        """Re-create every remembered subscription whose lifetime has not run out."""
        assert self.store is not None and self.app is not None
        latest: dict[tuple, BacnetCovSubscription] = {}
        for event in self.store.read_stream(self.stream):
            sub = decode_payload(event)
            if isinstance(sub, BacnetCovSubscription):
                latest[(sub.subscriber, sub.process_id, sub.object_type, sub.instance,
                        sub.property, sub.array_index)] = sub
        now = time.time_ns()
        for sub in latest.values():
            remaining = sub.lifetime - (now - sub.at) / 1e9 if sub.lifetime else 0
            if sub.cancelled or (sub.lifetime and remaining < 1):
                continue
            restore = self._resubscribe_property if sub.property else self._resubscribe
            if restore(sub, int(remaining)):
                self.stats.subscriptions_restored += 1

    def _resubscribe_property(self, sub: BacnetCovSubscription, lifetime: int) -> bool:
        """Re-create a SubscribeCOVProperty subscription and tell the subscriber the state now."""
        oid = ObjectIdentifier((sub.object_type, sub.instance))
        served = self.app.get_object_id(oid)
        try:
            restored = self.property_covs.subscribe(
                served, Address(sub.subscriber), sub.process_id, oid, sub.property,
                sub.array_index, sub.confirmed, lifetime, sub.cov_increment)
        except BACNET_ERRORS as e:
            log.info("not restoring the COV subscription of %s on %s %s: %s", sub.subscriber,
                     oid, sub.property, e)
            return False
        asyncio.get_running_loop().call_soon(self.property_covs.notify, served, restored)
        return True

    def _resubscribe(self, sub: BacnetCovSubscription, lifetime: int) -> bool:
        app = self.app
        oid = ObjectIdentifier((sub.object_type, sub.instance))
        served = app.get_object_id(oid)
        criteria = getattr(served, "_cov_criteria", None)
        if served is None or criteria is None:
            return False
        detection = app._cov_detections.get(oid)
        if detection is None:
            detection = app._cov_detections[oid] = criteria(served)
        cov = CovSubscription(served, Address(sub.subscriber), sub.process_id, oid,
                              sub.confirmed, lifetime, None)
        app.add_subscription(cov)
        return True

    # -- snapshots ------------------------------------------------------------------
    def _load_snapshot(self) -> None:
        path = self.snapshot_path
        if path is None or not path.exists():
            return
        try:
            snap = msgspec.msgpack.decode(path.read_bytes(), type=_Snapshot)
        except (OSError, msgspec.DecodeError, msgspec.ValidationError) as e:
            log.warning("ignoring snapshot %s (%s): folding from the start", path, e)
            return
        if snap.version != SNAPSHOT_VERSION or snap.device_id != self.device_id:
            log.warning("ignoring snapshot %s: another version or device", path)
            return
        self.state, self.position = snap.state, snap.position

    def save_snapshot(self) -> None:
        """Write the registry and its position to the snapshot file (atomically)."""
        path = self.snapshot_path
        if path is None:
            return
        data = msgspec.msgpack.encode(_Snapshot(SNAPSHOT_VERSION, self.device_id, self.position,
                                                self.state))
        tmp = path.with_name(path.name + ".tmp")
        try:
            tmp.write_bytes(data)
            tmp.replace(path)
        except OSError as e:
            log.warning("could not write snapshot %s: %s", path, e)

    async def _snapshot_loop(self) -> None:
        while True:
            await asyncio.sleep(SNAPSHOT_EVERY)
            self.save_snapshot()

"""SubscribeCOVProperty for the event server (bacpypes3 0.0.110 decodes the request only).

A subscription watches one property of one object (optionally one element of an
array property) for one subscriber process. After every change the server makes
to an object it calls ``PropertyCovs.check(object)``; a subscription notifies when

- its property changed: for a REAL property by at least the increment (the
  request's ``covIncrement``, else the object's ``cov-increment`` when the
  property is ``present-value``, else any change), for any other type on any
  change;
- or the object's status flags changed.

Each notification carries the monitored property and, when the object has them,
its status flags. A subscription is identified by subscriber address, process
id, object and property reference: subscribing again renews it (new lifetime,
new settings), a request without ``issueConfirmedNotifications`` and
``lifetime`` cancels it. Lifetime 0 means indefinite. Every accepted request is
acknowledged, then answered by a first notification (as the standard asks).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any

from bacpypes3.apdu import (
    ConfirmedCOVNotificationRequest,
    UnconfirmedCOVNotificationRequest,
)
from bacpypes3.basetypes import PropertyIdentifier, PropertyValue
from bacpypes3.constructeddata import Any as AnyValue
from bacpypes3.constructeddata import Array
from bacpypes3.errors import ExecutionError, PropertyError, ServicesError
from bacpypes3.primitivedata import Real

log = logging.getLogger("unbroken.bacnet.server")

ObjectKey = tuple[str, int]


@dataclass
class PropertySubscription:
    """One SubscribeCOVProperty subscription and what was last reported to it."""

    subscriber: Any  # bacpypes3 Address
    process_id: int
    object_id: Any  # bacpypes3 ObjectIdentifier
    prop: str  # the BACnet name, e.g. present-value
    index: int | None
    confirmed: bool
    lifetime: int
    increment: float | None
    reported_value: Any = None
    reported_flags: Any = None
    expires_handle: asyncio.TimerHandle | None = field(default=None, repr=False)

    @property
    def key(self) -> tuple[str, int, str, int, str, int | None]:
        """What identifies the subscription: subscriber, process, object, property, index."""
        return (str(self.subscriber), self.process_id, str(self.object_id[0]),
                int(self.object_id[1]), self.prop, self.index)

    @property
    def object_key(self) -> ObjectKey:
        """The monitored object as (type, instance)."""
        return (str(self.object_id[0]), int(self.object_id[1]))

    def time_remaining(self, now: float) -> int:
        """Seconds of lifetime left (0: indefinite; at least 1 while it lives)."""
        if self.expires_handle is None:
            return 0
        return max(1, int(self.expires_handle.when() - now))


def attr_of(prop: Any) -> str:
    """The bacpypes3 attribute name of a property identifier (``presentValue``)."""
    return PropertyIdentifier(prop).attr


def property_value(served: Any, prop: str, index: int | None) -> Any:
    """The current value of ``prop`` (element ``index``, 1-based, of an array)."""
    value = getattr(served, attr_of(prop))
    if index is None:
        return value
    return list(value)[index - 1]


def validate(served: Any, prop: str, index: int | None) -> None:
    """Raise the BACnet error for a property the object lacks or an index that cannot be."""
    property_type = served.get_property_type(PropertyIdentifier(prop))
    value = getattr(served, attr_of(prop)) if property_type is not None else None
    if value is None:
        raise PropertyError("unknownProperty")
    if index is None:
        return
    if not issubclass(property_type, Array):
        raise PropertyError("propertyIsNotAnArray")
    if index < 1 or index > len(value):
        raise PropertyError("invalidArrayIndex")


def is_real(value: Any) -> bool:
    """Whether a value is a REAL (increments apply to those only)."""
    return isinstance(value, Real | float) and not isinstance(value, bool)


class PropertyCovs:
    """Every SubscribeCOVProperty subscription of one application, by monitored object."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.by_object: dict[ObjectKey, dict[tuple, PropertySubscription]] = {}
        self.notifications = 0
        self.failed_notifications = 0

    def __len__(self) -> int:
        return sum(len(subs) for subs in self.by_object.values())

    # -- requests -------------------------------------------------------------
    def subscribe(self, served: Any, subscriber: Any, process_id: int, object_id: Any,
                  prop: str, index: int | None, confirmed: bool | None, lifetime: int | None,
                  increment: float | None) -> PropertySubscription | None:
        """Create, renew or (``confirmed`` and ``lifetime`` both None) cancel a subscription.

        ``served`` is the bacpypes3 object or None when it does not exist. Returns
        the live subscription, None after a cancellation. Raises the BACnet error
        the client must get.
        """
        cancelling = confirmed is None and lifetime is None
        wanted = PropertySubscription(subscriber, process_id, object_id, prop, index,
                                      bool(confirmed), int(lifetime or 0), increment)
        if cancelling:
            self.cancel(wanted.key)
            return None  # cancelling what is gone is a success, as for SubscribeCOV
        if served is None:
            raise ExecutionError(errorClass="object", errorCode="unknownObject")
        validate(served, prop, index)
        if increment is not None and increment < 0:
            raise ServicesError("parameterOutOfRange")
        self.cancel(wanted.key)  # a renewal replaces the old settings and lifetime
        if wanted.lifetime:
            wanted.expires_handle = asyncio.get_running_loop().call_later(
                wanted.lifetime, self.cancel, wanted.key)
        self.by_object.setdefault(wanted.object_key, {})[wanted.key] = wanted
        return wanted

    def cancel(self, key: tuple) -> bool:
        """End the subscription ``key`` (lifetime over, cancelled, object gone)."""
        subs = self.by_object.get((key[2], key[3]))
        sub = subs.pop(key, None) if subs else None
        if sub is None:
            return False
        if sub.expires_handle is not None:
            sub.expires_handle.cancel()
        if not subs:
            del self.by_object[sub.object_key]
        return True

    def drop_object(self, object_key: ObjectKey) -> None:
        """End every subscription of an object that is no longer served."""
        for key in list(self.by_object.get(object_key, {})):
            self.cancel(key)

    def close(self) -> None:
        """End every subscription (the server stops)."""
        for object_key in list(self.by_object):
            self.drop_object(object_key)

    # -- change detection ---------------------------------------------------------
    def check(self, served: Any) -> None:
        """Notify each subscription of ``served`` whose property or status flags changed."""
        object_key = (str(served.objectIdentifier[0]), int(served.objectIdentifier[1]))
        subs = self.by_object.get(object_key)
        if not subs:
            return
        for sub in list(subs.values()):
            if self.changed(served, sub):
                self.notify(served, sub)

    def changed(self, served: Any, sub: PropertySubscription) -> bool:
        """Whether ``sub`` must hear of the object's present state."""
        value = property_value(served, sub.prop, sub.index)
        if self._flags(served, sub) != sub.reported_flags:
            return True
        if is_real(value) and is_real(sub.reported_value):
            increment = self.increment_for(served, sub)
            if increment:
                return abs(float(value) - float(sub.reported_value)) >= increment
        return value != sub.reported_value

    @staticmethod
    def increment_for(served: Any, sub: PropertySubscription) -> float | None:
        """The request's increment, else the object's for its present value, else None."""
        if sub.increment is not None:
            return sub.increment
        if sub.prop == "present-value" and served.get_property_type("covIncrement"):
            return served.covIncrement
        return None

    @staticmethod
    def _flags(served: Any, sub: PropertySubscription) -> Any:
        if sub.prop == "status-flags" or not served.get_property_type("statusFlags"):
            return None
        return list(served.statusFlags)

    def notify(self, served: Any, sub: PropertySubscription) -> None:
        """Send ``sub`` a notification with the property (and status flags) as they are now."""
        value = property_value(served, sub.prop, sub.index)
        values = [PropertyValue(propertyIdentifier=sub.prop, propertyArrayIndex=sub.index,
                                value=AnyValue(value))]
        flags = self._flags(served, sub)
        if flags is not None:
            values.append(PropertyValue(propertyIdentifier="status-flags",
                                        value=AnyValue(served.statusFlags)))
        sub.reported_value, sub.reported_flags = value, flags
        request = (ConfirmedCOVNotificationRequest() if sub.confirmed
                   else UnconfirmedCOVNotificationRequest())
        request.pduDestination = sub.subscriber
        request.subscriberProcessIdentifier = sub.process_id
        request.initiatingDeviceIdentifier = self.app.device_object.objectIdentifier
        request.monitoredObjectIdentifier = sub.object_id
        request.timeRemaining = sub.time_remaining(asyncio.get_running_loop().time())
        request.listOfValues = values
        self.notifications += 1
        self.app.request(request).add_done_callback(self._delivered)

    def _delivered(self, future: asyncio.Future) -> None:
        """Count a confirmed notification the subscriber did not acknowledge."""
        if future.cancelled():
            return
        error = future.exception()
        if error is not None:
            self.failed_notifications += 1
            log.info("a COV notification was not acknowledged: %r", error)

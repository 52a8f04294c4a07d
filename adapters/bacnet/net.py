"""bacpypes3 plumbing shared by the recorder, the server and the simulator.

- ``make_app(address, device_id, objects)``: a bacpypes3 application bound to one
  UDP address (on loopback every device needs its own port: bacpypes3 takes any
  127.x address on its own port for itself).
- ``bacnet_error(exc)``: BACnet Error/Reject/Abort derive from ``BaseException``,
  so ``except Exception`` misses them; ``BACNET_ERRORS`` is the tuple to catch.
- Object classes for the types the adapter handles, and value conversions.
- Importing it installs ``staticattrs`` (bacpypes3's static attribute lookups
  cached per class: half of the event server's CPU otherwise).
"""

from __future__ import annotations

import datetime as dt
import socket
from typing import Any

from bacpypes3.apdu import ConfirmedServiceChoice, Error, ErrorRejectAbortNack, error_types
from bacpypes3.app import Application
from bacpypes3.basetypes import EngineeringUnits
from bacpypes3.errors import AbortException as _AbortException
from bacpypes3.errors import ExecutionError, RejectException
from bacpypes3.local.analog import AnalogInputObject, AnalogValueObject
from bacpypes3.local.binary import BinaryInputObject, BinaryValueObject
from bacpypes3.local.cov import COVIncrementCriteria, GenericCriteria
from bacpypes3.local.device import DeviceObject
from bacpypes3.local.multistate import MultiStateInputObject, MultiStateValueObject
from bacpypes3.local.networkport import NetworkPortObject
from bacpypes3.local.object import Object
from bacpypes3.object import AnalogOutputObject as AnalogOutputType
from bacpypes3.object import BinaryOutputObject as BinaryOutputType
from bacpypes3.object import MultiStateOutputObject as MultiStateOutputType

from . import staticattrs

BACNET_ERRORS = (ErrorRejectAbortNack, ExecutionError, RejectException, _AbortException)
"""What a bacpypes3 request can raise besides ``Exception`` (they derive from BaseException)."""


def _register_plain_error(service: ConfirmedServiceChoice) -> None:
    """Let bacpypes3 encode and decode the plain Error answer of ``service``.

    bacpypes3 0.0.110 knows the plain Error of most services but not of
    SubscribeCOVProperty, so an error answer to one is undecodable (the request
    then times out) unless registered here.
    """
    number = int(service)
    if number not in error_types:
        error_types[number] = type(f"Error({service})", (Error,), {"service_choice": number})


_register_plain_error(ConfirmedServiceChoice.subscribeCOVProperty)
staticattrs.install()  # bacpypes3's per-property inspect.getattr_static, cached per class

VENDOR_ID = 999  # a test vendor: nobody's real products


class MultiStateInput(MultiStateInputObject):
    """bacpypes3's multi-state input with plain change detection (it has no COV increment)."""

    _cov_criteria = GenericCriteria


class MultiStateValue(MultiStateValueObject):
    """bacpypes3's multi-state value with plain change detection (it has no COV increment)."""

    _cov_criteria = GenericCriteria
    _required = ("presentValue", "statusFlags", "eventState", "outOfService", "numberOfStates")


class AnalogOutput(Object, AnalogOutputType):
    """An analog output without bacpypes3's in-memory command logic (the server's is the store)."""

    _cov_criteria = COVIncrementCriteria
    _required = ("presentValue", "statusFlags", "covIncrement")


class BinaryOutput(Object, BinaryOutputType):
    """A binary output without bacpypes3's in-memory command logic."""

    _cov_criteria = GenericCriteria
    _required = ("presentValue", "statusFlags", "eventState", "outOfService", "polarity")


class MultiStateOutput(Object, MultiStateOutputType):
    """A multi-state output without bacpypes3's in-memory command logic; plain change detection."""

    _cov_criteria = GenericCriteria
    _required = ("presentValue", "statusFlags", "eventState", "outOfService", "numberOfStates")


CLASSES: dict[str, type] = {
    "analog-input": AnalogInputObject,
    "analog-output": AnalogOutput,
    "analog-value": AnalogValueObject,
    "binary-input": BinaryInputObject,
    "binary-output": BinaryOutput,
    "binary-value": BinaryValueObject,
    "multi-state-input": MultiStateInput,
    "multi-state-output": MultiStateOutput,
    "multi-state-value": MultiStateValue,
}
"""bacpypes3 classes the event server materializes, by object type (it adds the priority
array of outputs and values: ``commands.Commanded``)."""
INPUTS = frozenset(t for t in CLASSES if t.endswith("-input"))
"""Object types whose value only the device sets (no priority array, no writes)."""


def free_port() -> int:
    """A UDP port on 127.0.0.1 that is free now."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def split_address(address: str, default_port: int = 47808) -> tuple[str, int]:
    """``host[:port]`` as (host, port)."""
    host, _, port = address.rpartition(":")
    if not host:
        return address, default_port
    return host, int(port)


def make_app(address: str, device_id: int, objects: list[Any] = (), *, name: str = "",
             app_class: type[Application] = Application) -> Application:
    """A bacpypes3 application for device ``device_id`` bound to ``host:port``."""
    host, port = split_address(address)
    device = DeviceObject(objectIdentifier=("device", device_id),
                          objectName=name or f"unbroken-{device_id}",
                          vendorIdentifier=VENDOR_ID, vendorName="unbroken",
                          modelName="unbroken", maxApduLengthAccepted=1476,
                          segmentationSupported="segmentedBoth")
    port_object = NetworkPortObject(f"{host}:{port}", objectIdentifier=("network-port", 1),
                                    objectName="NetworkPort-1")
    return app_class.from_object_list([device, port_object, *objects])


def units_name(units: Any) -> str | None:
    """An EngineeringUnits value as its name (``degrees-celsius``), None when absent."""
    if units is None:
        return None
    return str(EngineeringUnits(units))


def units_value(name: str | None) -> EngineeringUnits | None:
    """An EngineeringUnits from its name; None when absent or unknown."""
    if not name:
        return None
    try:
        return EngineeringUnits(name)
    except (ValueError, KeyError, TypeError):
        return None


def plain(value: Any) -> float | int | bool | str:
    """A present value read over BACnet as a plain Python value."""
    text = str(value)
    if text in ("active", "inactive"):
        return text == "active"
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, float):
        return float(value)  # bacpypes3's Real is a float subclass msgspec will not encode
    if isinstance(value, int):
        return int(value)
    try:
        return float(value)
    except (TypeError, ValueError):
        return text


def flags_of(value: Any) -> list[bool] | None:
    """StatusFlags as four booleans (None when absent)."""
    if value is None:
        return None
    try:
        bits = list(value)
    except TypeError:
        return None
    return [bool(b) for b in (bits + [0, 0, 0, 0])[:4]]


def ns_to_datetime(ns: int) -> dt.datetime:
    """Integer ns UTC as a naive UTC datetime (BACnet DateTime has no zone)."""
    return dt.datetime.fromtimestamp(ns / 1e9, dt.UTC).replace(tzinfo=None)


def datetime_to_ns(value: Any) -> int | None:
    """A bacpypes3 DateTime as integer ns UTC (it is read as UTC); None when unspecified."""
    try:
        date, time_ = value.date, value.time
        year, month, day = date[0] + 1900, date[1], date[2]
        hour, minute, second, hundredth = time_
        if 255 in (date[0], month, day, hour, minute):
            return None
        second = 0 if second == 255 else second
        hundredth = 0 if hundredth == 255 else hundredth
        moment = dt.datetime(year, month, day, hour, minute, second, hundredth * 10_000,
                             tzinfo=dt.UTC)
    except (AttributeError, TypeError, ValueError, IndexError):
        return None
    return int(moment.timestamp()) * 1_000_000_000 + moment.microsecond * 1000

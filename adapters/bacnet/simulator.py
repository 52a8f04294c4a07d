"""Simulated BACnet/IP devices: objects with and without COV, restartable, on loopback.

``SimulatedDevice(address, device_id, objects)`` serves real bacpypes3 objects
on one UDP address. Objects made with ``cov=False`` refuse SubscribeCOV (so a
recorder must poll them). ``set(object_type, instance, value)`` changes a
present value locally, which sends COV notifications to subscribers;
``stop()`` and ``start()`` restart the device (it forgets every subscription,
as a real device does). ``drift(seed)`` moves the values of a seeded model for
demos (``unbroken simulate bacnet``).
"""

from __future__ import annotations

import asyncio
import random
from typing import Any

import msgspec
from bacpypes3.local.analog import AnalogInputObject, AnalogValueObject
from bacpypes3.local.binary import BinaryInputObject, BinaryValueObject

from .net import MultiStateValue, make_app


class NoCovAnalogInput(AnalogInputObject):
    """An analog input whose device does not support COV for it."""

    _cov_criteria = None


class NoCovBinaryInput(BinaryInputObject):
    """A binary input whose device does not support COV for it."""

    _cov_criteria = None


class SimObject(msgspec.Struct, frozen=True):
    """One simulated object: type, instance, name, first value, units, COV support."""

    object_type: str
    instance: int
    name: str
    value: float | int | bool = 0.0
    units: str = "noUnits"
    cov: bool = True
    cov_increment: float = 0.1


def default_objects() -> list[SimObject]:
    """A small room: temperatures and a setpoint with COV, a humidity without, binaries, a mode."""
    return [
        SimObject("analog-input", 1, "zone-temp", 21.0, "degreesCelsius"),
        SimObject("analog-input", 2, "humidity", 45.0, "percentRelativeHumidity", cov=False),
        SimObject("analog-value", 3, "setpoint", 21.5, "degreesCelsius"),
        SimObject("binary-input", 4, "occupied", False),
        SimObject("binary-input", 5, "filter-alarm", False, cov=False),
        SimObject("multi-state-value", 6, "mode", 1),
    ]


def _build(o: SimObject) -> Any:
    common = dict(objectIdentifier=(o.object_type, o.instance), objectName=o.name,
                  statusFlags=[0, 0, 0, 0], eventState="normal", outOfService=False,
                  description=o.name)
    if o.object_type == "analog-input":
        cls = AnalogInputObject if o.cov else NoCovAnalogInput
        return cls(presentValue=float(o.value), units=o.units, covIncrement=o.cov_increment,
                   **common)
    if o.object_type == "analog-value":
        return AnalogValueObject(presentValue=float(o.value), units=o.units,
                                 covIncrement=o.cov_increment, **common)
    if o.object_type == "binary-input":
        cls = BinaryInputObject if o.cov else NoCovBinaryInput
        return cls(presentValue="active" if o.value else "inactive", polarity="normal", **common)
    if o.object_type == "binary-value":
        return BinaryValueObject(presentValue="active" if o.value else "inactive", **common)
    if o.object_type == "multi-state-value":
        return MultiStateValue(presentValue=int(o.value), numberOfStates=4,
                               stateText=["off", "heat", "cool", "auto"], **common)
    raise ValueError(f"cannot simulate {o.object_type}")


class SimulatedDevice:
    """A bacpypes3 device with the given objects on ``address`` (host:port)."""

    def __init__(self, address: str, device_id: int, objects: list[SimObject] | None = None,
                 *, name: str = "") -> None:
        self.address = address
        self.device_id = device_id
        self.specs = objects if objects is not None else default_objects()
        self.name = name or f"sim-{device_id}"
        self.values: dict[tuple[str, int], Any] = {(o.object_type, o.instance): o.value
                                                   for o in self.specs}
        self.app: Any = None
        self.objects: dict[tuple[str, int], Any] = {}

    @property
    def running(self) -> bool:
        """True while the device answers."""
        return self.app is not None

    def start(self) -> None:
        """Serve (again): a fresh application, the current values, no subscriptions."""
        if self.app is not None:
            return
        self.objects = {}
        for spec in self.specs:
            obj = _build(spec)
            key = (spec.object_type, spec.instance)
            self._write(obj, spec.object_type, self.values[key])
            self.objects[key] = obj
        self.app = make_app(self.address, self.device_id, list(self.objects.values()),
                            name=self.name)

    def stop(self) -> None:
        """Stop answering (a power cut: subscriptions are forgotten)."""
        if self.app is not None:
            self.app.close()
            self.app = None

    def set(self, object_type: str, instance: int, value: Any, *,
            flags: list[int] | None = None) -> None:
        """Change a present value (and optionally the status flags) locally."""
        key = (object_type, instance)
        self.values[key] = value
        obj = self.objects.get(key)
        if obj is not None:
            if flags is not None:
                obj.statusFlags = flags
            self._write(obj, object_type, value)

    @staticmethod
    def _write(obj: Any, object_type: str, value: Any) -> None:
        if object_type.startswith("binary"):
            obj.presentValue = "active" if value else "inactive"
        elif object_type.startswith("multi-state"):
            obj.presentValue = int(value)
        else:
            obj.presentValue = float(value)

    async def drift(self, seed: int, every: float = 1.0, steps: int | None = None) -> None:
        """Move every value a little every ``every`` seconds from a seeded model."""
        rng = random.Random(seed)
        n = 0
        while steps is None or n < steps:
            await asyncio.sleep(every)
            n += 1
            for spec in self.specs:
                key = (spec.object_type, spec.instance)
                old = self.values[key]
                if spec.object_type.startswith("analog"):
                    new: Any = round(float(old) + rng.uniform(-0.5, 0.5), 2)
                elif spec.object_type.startswith("binary"):
                    new = (not old) if rng.random() < 0.1 else old
                else:
                    new = rng.randint(1, 4) if rng.random() < 0.1 else old
                self.set(spec.object_type, spec.instance, new)

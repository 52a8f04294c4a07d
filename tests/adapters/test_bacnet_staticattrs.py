"""``staticattrs``: bacpypes3's static attribute lookups, cached per class, answer as ``inspect`` does.

Every element and a few plain names of every served class, looked up on real
served objects (values set, values unset, a property with a setter), give the
very object ``inspect.getattr_static`` gives; the bacpypes3 modules use it.
"""

from __future__ import annotations

import asyncio
import inspect

import bacpypes3.constructeddata
import bacpypes3.local.object
import pytest

from adapters.bacnet import staticattrs
from adapters.bacnet.server import SERVED

_NONE = object()


def _served(object_type: str, cls: type):
    """A served object, made where bacpypes3 wants one: inside a running event loop."""
    kwargs = dict(objectIdentifier=(object_type, 7), objectName=f"{object_type}-7",
                  presentValue="active" if object_type.startswith("binary") else 1,
                  statusFlags=[0, 0, 0, 0], eventState="normal", outOfService=False)
    if object_type.startswith("multi-state"):
        kwargs["numberOfStates"] = 3

    async def make():
        return cls(**kwargs)

    return asyncio.run(make())


@pytest.mark.parametrize("object_type", sorted(SERVED))
def test_cached_lookups_equal_inspect_on_every_element_of_every_served_class(object_type):
    obj = _served(object_type, SERVED[object_type])
    names = [*obj._elements, "statusFlags", "objectName", "_flags", "no_such_name", "__dict__",
             "get_property_type"]
    obj.description = "changed"  # an instance value where the class has one too
    for name in names:
        for _ in range(2):  # the first lookup fills the cache, the second reads it
            expected = inspect.getattr_static(obj, name, _NONE)
            assert staticattrs.getattr_static(obj, name, _NONE) is expected, name
    with pytest.raises(AttributeError):
        staticattrs.getattr_static(obj, "no_such_name")


def test_classes_passed_as_obj_and_the_installed_modules():
    cls = SERVED["analog-input"]
    assert staticattrs.getattr_static(cls, "statusFlags") is inspect.getattr_static(cls, "statusFlags")
    for module in (bacpypes3.local.object, bacpypes3.constructeddata):
        assert module.inspect.getattr_static is staticattrs.getattr_static
        assert module.inspect.isawaitable is inspect.isawaitable

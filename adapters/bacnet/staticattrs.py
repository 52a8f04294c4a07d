"""bacpypes3's static attribute lookups, cached per class: the event server's largest CPU cost.

bacpypes3 0.0.110 calls ``inspect.getattr_static(obj, name)`` on every get and
set of an object's property (``local.object.Object.__getattribute__`` and
``__setattr__``, to find properties with coroutine getters) and for every unset
element of every ``Sequence`` it builds. Each call walks the class's MRO and
checks every class's ``__dict__`` for shadowing: at 1,000 events/s and 500
reads/s it was over half of the event server's CPU.

``install()`` gives those bacpypes3 modules an ``inspect`` of their own whose
``getattr_static`` looks the name up in the class once per (class, name) and
in the instance's ``__dict__`` each time, with the precedence of
``inspect.getattr_static`` (a data descriptor on the class wins over the
instance's own value). Classes whose ``__dict__`` or instances' ``__dict__`` is
unusual (shadowed, metaclass lookups, a class passed as ``obj``) go to
``inspect.getattr_static`` itself. Nothing else in the process is touched.
"""

from __future__ import annotations

import inspect
import types
from typing import Any

_MISSING = object()
_class_lookups: dict[tuple[type, str], tuple[Any, bool]] = {}
_PATCHED_MODULES = ("bacpypes3.local.object", "bacpypes3.constructeddata",
                    "bacpypes3.service.object", "bacpypes3.debugging")


def _plain_class(klass: type) -> bool:
    """True when no class of the MRO shadows ``__dict__`` (what ``inspect`` checks for)."""
    for k in klass.__mro__:
        own = type.__dict__["__dict__"].__get__(k)
        entry = own.get("__dict__", _MISSING)
        if entry is not _MISSING and not (type(entry) is types.GetSetDescriptorType
                                          and entry.__name__ == "__dict__"
                                          and entry.__objclass__ is k):
            return False
    return True


def _class_lookup(klass: type, name: str) -> tuple[Any, bool]:
    """The first ``name`` in ``klass``'s MRO (or ``_MISSING``) and whether it is a data descriptor."""
    for k in klass.__mro__:
        if name in k.__dict__:
            found = k.__dict__[name]
            kind = type(found)
            data = any(hasattr(kind, m) for m in ("__set__", "__delete__")) and hasattr(kind, "__get__")
            return found, data
    return _MISSING, False


def getattr_static(obj: Any, name: str, *default: Any) -> Any:
    """``inspect.getattr_static(obj, name[, default])``, the class part looked up once."""
    klass = type(obj)
    key = (klass, name)
    cached = _class_lookups.get(key)
    if cached is None:
        if isinstance(obj, type) or not _plain_class(klass):
            return inspect.getattr_static(obj, name, *default)
        cached = _class_lookups[key] = _class_lookup(klass, name)
    found, data_descriptor = cached
    if found is not _MISSING and data_descriptor:
        return found
    try:
        own = object.__getattribute__(obj, "__dict__")
    except AttributeError:
        own = None
    if own is not None and name in own:
        return own[name]
    if found is not _MISSING:
        return found
    if default:
        return default[0]
    raise AttributeError(name)


def install() -> None:
    """Give bacpypes3's attribute-heavy modules the cached ``getattr_static`` (idempotent)."""
    import importlib

    cached = types.ModuleType("inspect")
    cached.__dict__.update(vars(inspect))
    cached.getattr_static = getattr_static
    for module_name in _PATCHED_MODULES:
        module = importlib.import_module(module_name)
        if getattr(module, "inspect", None) is inspect:
            module.inspect = cached

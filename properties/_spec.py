"""Naming a projection to check: a registered name, or ``path/to/file.py:factory``, or ``module:factory``.

A spec plus its config is all a saved counterexample needs to rebuild the
projection, so ``unbroken check --replay DIR`` works without the original code path.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any


class ProjectionSpecError(ValueError):
    """A projection spec or its config could not be turned into a projection."""


def factory_of(spec: Any, config: Mapping[str, Any] | None = None) -> Callable[[], Any]:
    """A zero-argument callable returning a fresh projection for ``spec``.

    ``spec`` may be a projection instance, a zero-argument factory (called
    per run), a registered name (``projections.get(name, **config)``) or
    ``file.py:attr`` / ``module:attr`` (``attr(**config)``); named ones are
    built once, now, and reused (projections are pure). Raises ``ProjectionSpecError`` naming the spec when it cannot be built.
    """
    config = dict(config or {})
    if hasattr(spec, "apply") and hasattr(spec, "initial"):
        return lambda: spec
    if callable(spec):
        return spec
    if not isinstance(spec, str) or not spec:
        raise ProjectionSpecError(f"projection spec must be a name or FILE.py:ATTR, got {spec!r}")
    if ":" in spec:
        instance = _attribute(spec)(**config)
    else:
        import projections

        instance = projections.get(spec, **config)
    # Projections are pure (state lives in the state object), so one instance serves every
    # run; building one per run cost more than replaying a 100-event log.
    return lambda: instance


def _attribute(spec: str) -> Any:
    where, _, attr = spec.rpartition(":")
    if where.endswith(".py"):
        module = _load_file(Path(where), spec)
    else:
        try:
            module = importlib.import_module(where)
        except ImportError as e:
            raise ProjectionSpecError(f"projection spec {spec!r}: cannot import {where}: {e}") from e
    target = getattr(module, attr, None)
    if target is None:
        raise ProjectionSpecError(f"projection spec {spec!r}: {where} has no attribute {attr!r}")
    return target


def _load_file(path: Path, spec: str) -> Any:
    if not path.is_file():
        raise ProjectionSpecError(f"projection spec {spec!r}: no file {path}")
    name = f"_unbroken_spec_{path.resolve().as_posix().replace('/', '_').replace('.', '_')}"
    if name in sys.modules:
        return sys.modules[name]
    loader_spec = importlib.util.spec_from_file_location(name, path)
    assert loader_spec is not None and loader_spec.loader is not None
    module = importlib.util.module_from_spec(loader_spec)
    sys.modules[name] = module
    try:
        loader_spec.loader.exec_module(module)
    except Exception as e:
        del sys.modules[name]
        raise ProjectionSpecError(f"projection spec {spec!r}: {path} failed to load: {e}") from e
    return module

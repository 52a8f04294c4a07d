"""Turning what a caller names as the projection under test into a factory for runs."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from replay import ProjectionSpecError as ProjectionSpecError
from replay import load_projection


def factory_of(spec: Any, config: Mapping[str, Any] | None = None) -> Callable[[], Any]:
    """A zero-argument callable returning the projection for ``spec``.

    ``spec`` may be a projection instance, a zero-argument factory (called
    per run), or a spec string for ``replay.load_projection`` (a registered name,
    ``file.py:attr`` or ``module:attr``), built once now with ``config``.
    Raises ``ProjectionSpecError`` naming the spec when it cannot be built.
    """
    if hasattr(spec, "apply") and hasattr(spec, "initial"):
        return lambda: spec
    if callable(spec):
        return spec
    # Projections are pure (state lives in the state object), so one instance serves every
    # run; building one per run cost more than replaying a 100-event log.
    instance = load_projection(spec, **dict(config or {}))
    return lambda: instance

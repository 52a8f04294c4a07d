"""Projections by name, built from ``key=value`` config (the CLI's ``--projection`` / ``--config``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec

from ._config import ConfigError, parse_config
from ._contract import Projection

_REGISTRY: dict[str, tuple[Callable[[Any], Projection], type[msgspec.Struct]]] = {}


def register(name: str, factory: Callable[[Any], Projection], config_type: type[msgspec.Struct]) -> None:
    """Make ``get(name, ...)`` build ``factory(config_type(...))``; a name is registered once."""
    if name in _REGISTRY:
        raise ValueError(f"projection {name!r} is already registered")
    _REGISTRY[name] = (factory, config_type)


def names() -> list[str]:
    """Every registered projection name, sorted."""
    return sorted(_REGISTRY)


def get(name: str, **config: Any) -> Projection:
    """A new projection instance of ``name`` with ``config`` over its defaults.

    Config values may be typed or CLI strings (``hold_hours="48"``,
    ``send_weekdays="0,1,2"``). Raises ``ConfigError`` for an unknown name,
    an unknown key or a value that does not fit, naming what is allowed.
    """
    entry = _REGISTRY.get(name)
    if entry is None:
        raise ConfigError(f"unknown projection {name!r}; known projections: {', '.join(names())}")
    factory, config_type = entry
    return factory(parse_config(config_type, config, where=name))


def config_type(name: str) -> type[msgspec.Struct]:
    """The config struct of ``name`` (its fields and defaults document the settings)."""
    if name not in _REGISTRY:
        raise ConfigError(f"unknown projection {name!r}; known projections: {', '.join(names())}")
    return _REGISTRY[name][1]


def parse_pairs(pairs: list[str] | tuple[str, ...]) -> dict[str, str]:
    """``["hold_hours=48", ...]`` as a dict; raises ``ConfigError`` for an item without ``=``."""
    out: dict[str, str] = {}
    for item in pairs:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"config item {item!r} is not KEY=VALUE (e.g. hold_hours=48)")
        out[key.strip()] = value.strip()
    return out

"""Turning ``key=value`` settings (typed or CLI strings) into a frozen config struct."""

from __future__ import annotations

import json
import typing
from collections.abc import Mapping
from typing import Any

import msgspec

from eventstore import UnbrokenError


class ConfigError(UnbrokenError, ValueError):
    """A projection config key or value is wrong; the message names the key and what fits."""


def parse_config(config_type: type[msgspec.Struct], values: Mapping[str, Any], *, where: str) -> Any:
    """Build ``config_type`` from ``values``; strings are converted to each field's type.

    Guarantees: unknown keys and values that do not fit raise ``ConfigError``
    naming ``where`` (the projection), the key and the expected type; every
    other field keeps its documented default.
    """
    fields = {f.name: f for f in msgspec.structs.fields(config_type)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ConfigError(
            f"{where}: unknown config key(s) {', '.join(map(repr, unknown))}; "
            f"known keys: {', '.join(sorted(fields))}"
        )
    hints = typing.get_type_hints(config_type)
    converted = {key: _convert(key, raw, hints[key], where) for key, raw in values.items()}
    try:
        return msgspec.convert(converted, config_type)
    except msgspec.ValidationError as e:
        raise ConfigError(f"{where}: {e}") from e


def _convert(key: str, raw: Any, hint: Any, where: str) -> Any:
    """One value converted to ``hint``; CLI strings go through a lax, typed parse."""
    value = _from_text(raw, hint) if isinstance(raw, str) and hint is not str else raw
    try:
        return msgspec.convert(value, hint, strict=False)
    except msgspec.ValidationError as e:
        raise ConfigError(
            f"{where}: config {key}={raw!r} does not fit {_type_name(hint)} ({e})"
        ) from e


def _from_text(raw: str, hint: Any) -> Any:
    """A CLI string as the shape ``hint`` wants: comma lists for tuples, JSON for the rest."""
    if typing.get_origin(hint) is tuple:
        return [part.strip() for part in raw.split(",") if part.strip()]
    try:
        return json.loads(raw)
    except ValueError:
        return raw  # left to msgspec's lax conversion, which reports what it expected


def _type_name(hint: Any) -> str:
    if typing.get_origin(hint) is tuple:
        inner = typing.get_args(hint)[0]
        return f"a comma-separated list of {inner.__name__}"
    return getattr(hint, "__name__", str(hint))


def config_dict(config: msgspec.Struct) -> dict[str, Any]:
    """The config as plain JSON-able values, for run metadata and diffs."""
    return msgspec.to_builtins(config)

"""Naming a projection: a registered name, ``path/to/file.py:factory`` or ``module:factory``.

It lives in replay/, not projections/, because loading a user's file is I/O,
which projections/ bans.

This is how users point unbroken at their own decision logic (``unbroken
replay --projection my_rules.py:build``), and how a saved counterexample names
the projection that broke, so it can be rebuilt without the original code path.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

from projections import ConfigError, Projection, get


class ProjectionSpecError(ConfigError):
    """A projection spec could not be turned into a projection."""


class UntrustedProjectionError(ProjectionSpecError):
    """A saved file (a counterexample) names code to run that is not a registered projection."""


def saved_projection(saved: object, given: str | None, where: str) -> str:
    """The projection spec to load for a saved run: the user's, else the saved one if registered.

    A saved counterexample is data that people pass around, so what it names
    is never imported on its own say-so: ``saved`` is used only when it is a
    registered projection (``projections.names()``); anything else (a file or
    ``module:attr``) must be named by the user (``given``, from
    ``--projection``). Raises ``UntrustedProjectionError`` saying how to allow it.
    """
    from projections import names

    if given:
        return given
    if not isinstance(saved, str) or not saved:
        raise ProjectionSpecError(f"{where} names no projection: pass --projection NAME or FILE.py:FACTORY")
    if ":" not in saved and saved in names():
        return saved
    raise UntrustedProjectionError(
        f"{where} names the projection {saved!r}, which is not a registered projection "
        f"({', '.join(names()) or 'none'}); a saved file never chooses code to run. If you trust "
        f"that code, name it yourself: --projection {saved} "
        f"(in Python: replay_counterexample(DIR, projection={saved!r}))")


def portable_spec(spec: str) -> str:
    """``spec`` with a ``FILE.py`` part made absolute, so a saved run names it from any directory."""
    where, sep, attr = spec.rpartition(":")
    if sep and where.endswith(".py"):
        return f"{Path(where).resolve()}:{attr}"
    return spec


def load_projection(spec: str, **config: Any) -> Projection:
    """A projection built from ``spec`` with ``config``.

    ``spec`` is a registered name (``get(spec, **config)``), or
    ``file.py:attr`` / ``module:attr`` where ``attr(**config)`` returns the
    projection; for those, string values from the command line that read as
    JSON (``48``, ``true``, ``[1, 2]``) are passed as such. Raises ``ConfigError`` (``ProjectionSpecError`` for a bad
    spec) naming the spec and what was wrong.
    """
    if not isinstance(spec, str) or not spec:
        raise ProjectionSpecError(f"projection spec must be a name or FILE.py:ATTR, got {spec!r}")
    if ":" not in spec:
        return get(spec, **config)
    factory = _attribute(spec)
    try:
        projection = factory(**{key: _literal(value) for key, value in config.items()})
    except TypeError as e:
        raise ProjectionSpecError(f"projection spec {spec!r}: {factory!r} rejected the config: {e}") from e
    if not (hasattr(projection, "apply") and hasattr(projection, "initial")):
        raise ProjectionSpecError(f"projection spec {spec!r} returned {type(projection).__name__}, not a projection")
    return projection


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


def _literal(value: Any) -> Any:
    """A command-line string as the JSON value it spells, else the string itself."""
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except ValueError:
        return value

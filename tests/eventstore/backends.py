"""The backends the contract suite runs against, and how to open each one.

``memory://`` and ``embedded://`` always run; ``kurrentdb://`` runs when
``UNBROKEN_KURRENTDB_URI`` names a server (none can be installed on this
project's machines, so it is skipped here with that reason).
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from eventstore import EventStore, open_store

KURRENTDB_ENV = "UNBROKEN_KURRENTDB_URI"
NAMES = ("memory", "embedded", "kurrentdb")


@dataclass(frozen=True)
class Backend:
    """One store location plus what the contract may assume about it."""

    name: str
    uri: str
    durable: bool  # events survive close() and a new open_store(uri)
    fresh: bool  # the store starts empty (positions start at 1)
    own_clock: bool  # accepts open_store(uri, clock=...) for recorded_at
    namespace: str  # prefix for stream names, unique per test on shared servers

    def open(self, **options: Any) -> EventStore:
        """A new store object on this backend's location."""
        return open_store(self.uri, **options)


def backend_for(name: str, tmp_path: Path) -> Backend:
    """The backend called ``name``, or a pytest skip saying why it cannot run."""
    if name == "memory":
        return Backend(name, "memory://", durable=False, fresh=True, own_clock=True, namespace="")
    if name == "embedded":
        uri = f"embedded://{tmp_path.resolve() / 'events.db'}"
        return Backend(name, uri, durable=True, fresh=True, own_clock=True, namespace="")
    if name == "kurrentdb":
        return _kurrentdb()
    raise ValueError(f"unknown backend {name!r}; known: {', '.join(NAMES)}")


def _kurrentdb() -> Backend:
    uri = os.environ.get(KURRENTDB_ENV)
    if not uri:
        pytest.skip(
            f"no KurrentDB server here (none can be installed on this machine); "
            f"set {KURRENTDB_ENV}=kurrentdb://host:2113?tls=false to run against one"
        )
    # The server is shared and keeps earlier runs, so each test gets its own stream names.
    unique = f"t{uuid.uuid4().hex[:10]}-"
    return Backend("kurrentdb", uri, durable=True, fresh=False, own_clock=False, namespace=unique)

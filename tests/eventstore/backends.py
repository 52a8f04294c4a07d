"""The backends the contract suite runs against, and how to open each one.

``memory://`` and ``embedded://`` always run; ``postgresql://`` runs against
``UNBROKEN_POSTGRES_URI`` (default: the PostgreSQL service of this machine,
``postgresql://root@127.0.0.1:5432/test``), each test in a schema of its own,
dropped afterwards; it is skipped with a reason when no server answers, except
in CI (CI=true), where that fails. ``kurrentdb://`` runs when
``UNBROKEN_KURRENTDB_URI`` names a server (none can be installed on this
project's machines, so it is skipped here with that reason).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from eventstore import EventStore, open_store

KURRENTDB_ENV = "UNBROKEN_KURRENTDB_URI"
POSTGRES_ENV = "UNBROKEN_POSTGRES_URI"
POSTGRES_DEFAULT = "postgresql://root@127.0.0.1:5432/test"
NAMES = ("memory", "embedded", "postgres", "kurrentdb", "kurrentdb-fake")


@dataclass(frozen=True)
class Backend:
    """One store location plus what the contract may assume about it."""

    name: str
    uri: str
    durable: bool  # events survive close() and a new open_store(uri)
    fresh: bool  # the store starts empty (positions start at 1)
    own_clock: bool  # accepts open_store(uri, clock=...) for recorded_at
    namespace: str  # prefix for stream names, unique per test on shared servers
    cleanup: Callable[[], None] | None = None  # run after the test (drops a test's schema)
    client: Callable[[], Any] | None = None  # makes the test double a store talks through
    shareable: bool = True  # another process can open ``uri`` (False: a fake in this process)

    def open(self, **options: Any) -> EventStore:
        """A new store object on this backend's location."""
        if self.client is not None:
            options = {"client": self.client(), **options}
        return open_store(self.uri, **options)


def backend_for(name: str, tmp_path: Path) -> Backend:
    """The backend called ``name``, or a pytest skip saying why it cannot run."""
    if name == "memory":
        return Backend(name, "memory://", durable=False, fresh=True, own_clock=True, namespace="")
    if name == "embedded":
        uri = f"embedded://{tmp_path.resolve() / 'events.db'}"
        return Backend(name, uri, durable=True, fresh=True, own_clock=True, namespace="")
    if name == "postgres":
        return postgres_backend()
    if name == "kurrentdb":
        return _kurrentdb()
    if name == "kurrentdb-fake":
        return _kurrentdb_fake()
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


def _kurrentdb_fake() -> Backend:
    """The KurrentDB backend on the fake client (kurrentdb_fake.py): its logic, checked offline."""
    from .kurrentdb_fake import FakeClient, drop_server, fake_server

    name = f"fake-{uuid.uuid4().hex[:10]}"
    server = fake_server(name)
    return Backend("kurrentdb-fake", f"kurrentdb://{name}:2113?tls=false", durable=True, fresh=False,
                   own_clock=False, namespace=f"t{uuid.uuid4().hex[:10]}-",
                   cleanup=lambda: drop_server(name), client=lambda: FakeClient(server), shareable=False)


def postgres_server() -> str:
    """The PostgreSQL server URI the tests use, or a skip (a failure in CI) when none answers."""
    uri = os.environ.get(POSTGRES_ENV, POSTGRES_DEFAULT)
    try:
        import psycopg

        with psycopg.connect(uri, connect_timeout=3):
            pass
    except Exception as error:  # ImportError or any connection failure: say which
        why = f"no PostgreSQL server at {uri} ({type(error).__name__}: {error}); set {POSTGRES_ENV}"
        if os.environ.get("CI") == "true":
            pytest.fail(why)
        pytest.skip(why)
    return uri


def postgres_backend(server: str | None = None) -> Backend:
    """A store in a fresh schema of the PostgreSQL server; its cleanup drops the schema."""
    from eventstore.postgres import new_schema_name

    server = server or postgres_server()
    schema = new_schema_name()
    separator = "&" if "?" in server else "?"
    return Backend("postgres", f"{server}{separator}schema={schema}", durable=True, fresh=True,
                   own_clock=True, namespace="", cleanup=lambda: drop_schema(server, schema))


def drop_schema(server: str, schema: str) -> None:
    """Drop a test's schema (and its store) from the server."""
    import psycopg

    with psycopg.connect(server, autocommit=True, connect_timeout=5) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')

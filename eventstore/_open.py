"""``open_store(uri)``: one entry point for every backend."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from ._contract import EventStore
from ._errors import InvalidArgument

DEFAULT_URI = "embedded:///./events.db"


def open_store(uri: str = DEFAULT_URI, *, create: bool = True, read_only: bool = False,
               **options: Any) -> EventStore:
    """Open the store named by ``uri``.

    ``memory://`` keeps events in this process; ``embedded:///path/events.db``
    (or a bare file path) is durable SQLite on disk, created if missing;
    ``kurrentdb://host:2113?tls=false`` talks to a KurrentDB server;
    ``postgresql://user@host:5432/db?schema=unbroken`` (or ``postgres://``)
    keeps the store in one schema of a PostgreSQL database. Options
    go to the backend (for example ``clock=`` for recorded times).

    ``create=False`` never creates a store: a missing file raises
    ``StoreNotFound`` ("no store at PATH"). ``read_only=True`` (which implies
    it) is for jobs that only read (info, verify, export, replay): the
    embedded file is opened read-only and left exactly as it was, and works
    in a directory this process cannot write. Both only matter for
    embedded files and PostgreSQL schemas; the other backends have nothing
    to create.
    """
    scheme, path = split_uri(uri)
    if scheme == "memory":
        from .memory import MemoryStore

        return MemoryStore(uri, **options)
    if scheme == "embedded":
        from .embedded import EmbeddedStore

        return EmbeddedStore(path, create=create and not read_only, read_only=read_only, **options)
    if scheme in ("kurrentdb", "esdb"):
        from .kurrentdb import KurrentDBStore

        return KurrentDBStore(uri, **options)
    if scheme in ("postgresql", "postgres"):
        from .postgres import PostgresStore

        return PostgresStore(uri, create=create and not read_only, read_only=read_only, **options)
    raise InvalidArgument(
        f"unknown store URI scheme {scheme!r} in {uri!r}; "
        "use memory://, embedded:///path/events.db, kurrentdb://host:2113 "
        "or postgresql://user@host:5432/db"
    )


def split_uri(uri: str) -> tuple[str, Path]:
    """The scheme of a store URI and, for embedded stores, the file path."""
    if not isinstance(uri, str) or not uri:
        raise InvalidArgument(f"store URI must be a non-empty string, got {uri!r}")
    if "://" not in uri:
        return "embedded", Path(uri)
    parts = urlsplit(uri)
    scheme = parts.scheme.lower()
    if scheme != "embedded":
        return scheme, Path()
    raw = unquote(parts.netloc + parts.path)
    if not raw or raw == "/":
        raise InvalidArgument(f"store URI {uri!r} names no file; try embedded:///path/events.db")
    # embedded:///./x.db is relative to the working directory; embedded:///abs/x.db absolute.
    path = Path(raw[1:]) if raw.startswith("/./") else Path(raw)
    return "embedded", path

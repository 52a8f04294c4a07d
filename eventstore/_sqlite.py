"""SQLite plumbing for the embedded store: schema, connections, error conversion.

Each event row holds its whole ``RecordedEvent`` as one msgpack ``record``
blob (id, stream, revision, position, times, type, data, metadata) plus a
CRC-32 of that blob. The indexed columns (stream, revision, type, id) exist
for lookups; the record is the truth, and the checksum covers all of it, so a
swapped, torn or bit-flipped row is caught on read.
"""

from __future__ import annotations

import contextlib
import errno
import os
import sqlite3
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Final, Literal
from urllib.parse import quote

import msgspec

from ._errors import (
    CorruptEvent,
    StoreClosed,
    StoreDamaged,
    StoreError,
    StoreFull,
    StoreIOError,
    StoreLocked,
)
from ._readahead import page_header
from ._types import RecordedEvent

APPLICATION_ID: Final = 0x756E6272  # "unbr"
# 2: a stream's revision is its newest event's (``_group_commit.STREAM_REVISION``); streams.revision is written
# once, when the stream is created, and no longer updated by each append. A version-1 file is the same
# schema with that column kept current, so it is read as it is and upgraded (one header write) when
# opened for writing; an unbroken that reads only version 1 then refuses the file instead of trusting
# the column.
SCHEMA_VERSION: Final = 2
READABLE_VERSIONS: Final = (1, 2)
PAGE_SIZE: Final = 4096
# The writer's page cache (SQLite's default is 2 MB). Imported ids are content-derived and random, so
# each insert lands on its own page of the id index; with the index's hot pages cached, an append
# stops re-reading them from the OS (1.3x on a 200k-event import, bench_import). Filled only as used.
WRITER_CACHE_KB: Final = 64 * 1024
# WAL pages before the writer folds the WAL back into the file: SQLite's default. 16,000 made
# 1,000-line imports 1.2x faster (a page dirtied by several commits was written back once), but small
# commits 1.3-1.6x slower while the WAL file grew (raw sqlite3, batches of 1 and 10: the file's growth
# costs each fsync); imports now commit 50,000 lines at a time, each transaction over the limit
# either way (1M lines, raw: 9.5 CPU-s at 1,000 pages, 9.6 at 16,000).
WAL_AUTOCHECKPOINT_PAGES: Final = 1_000
WAL_KEEP_BYTES: Final = 64 << 20  # the WAL file is cut back to this size after a big transaction

SCHEMA: Final = (
    """CREATE TABLE IF NOT EXISTS streams (
        stream_id INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        revision INTEGER NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS events (
        position INTEGER PRIMARY KEY,
        stream_id INTEGER NOT NULL,
        revision INTEGER NOT NULL,
        type TEXT NOT NULL,
        id BLOB NOT NULL,
        record BLOB NOT NULL,
        checksum INTEGER NOT NULL)""",
    "CREATE UNIQUE INDEX IF NOT EXISTS events_by_stream ON events (stream_id, revision)",
    "CREATE UNIQUE INDEX IF NOT EXISTS events_by_id ON events (id)",
)

RECORD_ENCODER: Final = msgspec.msgpack.Encoder(uuid_format="bytes")
RECORD_DECODER: Final = msgspec.msgpack.Decoder(RecordedEvent)
PAGE_DECODER: Final = msgspec.msgpack.Decoder(list[RecordedEvent])


ReadMode = Literal["ro", "immutable"]


def connect(
    path: Path, *, writer: bool, busy_timeout_ms: int = 30_000, mode: ReadMode | None = None
) -> sqlite3.Connection:
    """A connection in autocommit mode with the durable settings (WAL, synchronous=FULL).

    ``mode`` opens the file read-only through an SQLite URI: ``"ro"``
    (``mode=ro``: sees the WAL, needs the ``-shm`` file to exist or be
    creatable) or ``"immutable"`` (``immutable=1``: no locks, no side files;
    only for a file nothing writes to, in a directory nobody can write).
    """
    with converted(path):
        target, is_uri = (str(path), False) if mode is None else (read_uri(path, mode), True)
        conn = sqlite3.connect(
            target, isolation_level=None, check_same_thread=False, timeout=busy_timeout_ms / 1000,
            uri=is_uri,
        )
        conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
        conn.execute("PRAGMA synchronous = FULL")
        if writer:
            conn.execute(f"PRAGMA cache_size = -{WRITER_CACHE_KB}")
            conn.execute(f"PRAGMA wal_autocheckpoint = {WAL_AUTOCHECKPOINT_PAGES}")
            conn.execute(f"PRAGMA journal_size_limit = {WAL_KEEP_BYTES}")
        else:
            conn.execute("PRAGMA query_only = 1")
        return conn


def read_uri(path: Path, mode: ReadMode) -> str:
    """The SQLite URI that opens ``path`` read-only in ``mode``."""
    query = "mode=ro" + ("&immutable=1" if mode == "immutable" else "")
    absolute = "/" + os.path.abspath(path).lstrip("/")  # POSIX keeps a leading "//", which a URI reads as a host
    return f"file://{quote(absolute)}?{query}"


def read_mode(path: Path) -> ReadMode:
    """How to open ``path`` read-only: ``ro`` when SQLite can use the WAL's side files, else ``immutable``.

    A WAL database read with ``mode=ro`` needs its ``-shm`` file; in a
    directory this process cannot write, SQLite can only use side files that
    exist already. With none there (the last writer closed cleanly and folded
    the WAL back), the main file alone is the whole store and ``immutable=1``
    reads it without any. A ``-wal`` holding frames without a ``-shm`` in such
    a directory cannot be read safely: refuse rather than miss its events.
    """
    wal, shm = Path(f"{path}-wal"), Path(f"{path}-shm")
    if os.access(path.parent if str(path.parent) else Path("."), os.W_OK | os.X_OK):
        return "ro"
    if shm.exists():
        return "ro"
    if wal.exists() and wal.stat().st_size > 0:
        raise StoreIOError(
            f"{path}: its write-ahead log {wal.name} holds events but there is no {shm.name} and the "
            "directory is not writable, so SQLite cannot read the log; copy the store (with its -wal "
            "file) to a writable directory and read the copy"
        )
    return "immutable"


def quick_check(conn: sqlite3.Connection, limit: int = 20) -> list[str]:
    """SQLite's ``PRAGMA quick_check``: [] when the b-trees are sound, else what is wrong."""
    try:
        lines = [r[0] for r in conn.execute(f"PRAGMA quick_check({int(limit)})").fetchall()]
    except sqlite3.DatabaseError as e:
        return [str(e)]
    return [] if lines == ["ok"] else lines


def initialise(conn: sqlite3.Connection, path: Path) -> None:
    """Create the schema in a new file, or check that an existing file is ours."""
    with converted(path):
        app_id = conn.execute("PRAGMA application_id").fetchone()[0]
        tables = conn.execute("SELECT count(*) FROM sqlite_schema").fetchone()[0]
        if tables == 0 and app_id == 0:
            conn.execute(f"PRAGMA page_size = {PAGE_SIZE}")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("BEGIN IMMEDIATE")
            for statement in SCHEMA:
                conn.execute(statement)
            conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            conn.execute("COMMIT")
            return
        version = _check_ours(conn, path, app_id)
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if mode != "wal":
            raise StoreError(f"{path}: could not switch to WAL mode (got {mode!r})")
        if version != SCHEMA_VERSION:
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")  # see SCHEMA_VERSION


def check_schema(conn: sqlite3.Connection, path: Path) -> None:
    """Check, without writing anything, that ``path`` holds an unbroken store of this schema."""
    from ._errors import StoreNotFound

    with converted(path):
        app_id = conn.execute("PRAGMA application_id").fetchone()[0]
        if app_id == 0 and conn.execute("SELECT count(*) FROM sqlite_schema").fetchone()[0] == 0:
            raise StoreNotFound(f"no store at {path} (the file is empty)")
        _check_ours(conn, path, app_id)


def _check_ours(conn: sqlite3.Connection, path: Path, app_id: int) -> int:
    """The file's schema version, if it is an unbroken store this code reads; else ``StoreDamaged``."""
    if app_id != APPLICATION_ID:
        raise StoreDamaged(f"{path} is an SQLite file but not an unbroken event store")
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version not in READABLE_VERSIONS:
        raise StoreDamaged(
            f"{path} has store schema version {version}; this unbroken reads versions "
            f"{', '.join(map(str, READABLE_VERSIONS))}"
        )
    return version


def encode_record(event: RecordedEvent) -> tuple[bytes, int]:
    """The stored bytes of an event and their checksum."""
    record = RECORD_ENCODER.encode(event)
    return record, zlib.crc32(record)


def decode_rows(rows: list[tuple[bytes, int]], after: int, backwards: bool) -> list[RecordedEvent]:
    """Verify and decode a page of ``(record, checksum)`` rows read in position order.

    Raises ``CorruptEvent`` for a checksum mismatch, an undecodable record, or a
    record whose position breaks the page's order after ``after`` (a row moved
    or copied into the wrong place). The page is checked with one
    comprehension and decoded with one msgpack call (records are msgpack
    arrays, so a page is an array of them): this runs for every event read.
    """
    crc32 = zlib.crc32
    if any(crc32(record) != checksum for record, checksum in rows):
        events = [_decode_unchecked(record) for record, _ in rows]
        bad = next(i for i, (record, checksum) in enumerate(rows) if crc32(record) != checksum)
        raise CorruptEvent(_best_position(events, bad, after, backwards))
    records = [record for record, _ in rows]
    return decode_page(b"".join([page_header(len(rows)), *records]), lambda: records, after, backwards)


def decode_page(
    page: bytes | memoryview, records: Callable[[], list[bytes]], after: int, backwards: bool
) -> list[RecordedEvent]:
    """Decode a page whose checksums are verified: one msgpack array of records.

    ``records()`` gives the records one by one, asked for only when the page
    does not decode (to name the record that does not). Raises
    ``CorruptEvent`` as ``decode_rows`` does.
    """
    try:
        events = PAGE_DECODER.decode(page)
    except (msgspec.DecodeError, ValueError):
        each = [_decode_unchecked(record) for record in records()]
        bad = each.index(None)
        raise CorruptEvent(_best_position(each, bad, after, backwards), "record does not decode") from None
    positions = [e.position for e in events]
    expected = sorted(positions, reverse=backwards)
    if positions != expected or len(set(positions)) != len(positions) or (
        positions and (positions[0] >= after if backwards else positions[0] <= after)
    ):
        raise CorruptEvent(positions[0], "stored out of order: a row was moved or copied")
    return events


def _decode_unchecked(record: bytes) -> RecordedEvent | None:
    try:
        return RECORD_DECODER.decode(record)
    except (msgspec.DecodeError, ValueError):  # invalid UTF-8 surfaces as UnicodeDecodeError
        return None


def _best_position(events: list[RecordedEvent | None], index: int, after: int, backwards: bool) -> int:
    """The position of row ``index``: its own if it decodes, else inferred from its neighbours."""
    own = events[index]
    if own is not None:
        return own.position
    step = -1 if backwards else 1
    for distance, event in enumerate(reversed(events[:index]), start=1):
        if event is not None:
            return event.position + step * distance
    return after + step * (index + 1)


@contextlib.contextmanager
def converted(path: Path) -> Iterator[None]:
    """Turn sqlite3 and OS errors into ``StoreError`` subclasses naming the file."""
    try:
        yield
    except sqlite3.Error as e:
        raise convert(e, path) from e
    except OSError as e:
        if e.errno == errno.ENOSPC:
            raise StoreFull(f"{path}: disk full ({e.strerror})") from e
        raise StoreIOError(f"{path}: {e.strerror or e}") from e


def convert(error: sqlite3.Error, path: Path) -> StoreError:
    """The ``StoreError`` that stands for one sqlite3 error."""
    text = str(error)
    lowered = text.lower()
    if "closed database" in lowered:
        return StoreClosed(f"store {path} is closed")
    if "disk is full" in lowered or getattr(error, "sqlite_errorname", "") == "SQLITE_FULL":
        return StoreFull(f"{path}: disk or size limit full; the append was rolled back ({text})")
    if "disk i/o error" in lowered:
        return StoreIOError(f"{path}: I/O error; the append was rolled back ({text})")
    if "database is locked" in lowered or getattr(error, "sqlite_errorname", "") in ("SQLITE_BUSY", "SQLITE_LOCKED"):
        return StoreLocked(
            f"{path} is locked: another process held its write lock longer than the busy timeout; "
            f"nothing of this operation was written, so it is safe to run again ({text})"
        )
    if "malformed" in lowered or "not a database" in lowered:
        return StoreDamaged(
            f"{path} is damaged ({text}); run `unbroken store verify {path}` for details "
            f"and `unbroken store salvage {path} --out NEW.db` to recover every readable event"
        )
    if "readonly" in lowered or "unable to open" in lowered:
        return StoreIOError(f"{path}: {text}")
    return StoreError(f"{path}: {text}")

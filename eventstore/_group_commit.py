"""Writing a group of append requests in one SQLite transaction.

The fast path writes the whole group with a few SQL calls (event rows 64 to an
``INSERT OR ROLLBACK`` statement, see ``ROWS_PER_INSERT``): stream revisions
are loaded once, expected versions are checked in Python, and the unique
index on event ids catches repeats. If any id repeats (a retry), the
transaction is rolled back; the caller begins it again and has the group written
request by request, each in its own savepoint, so a retry gets its original
result and its neighbours are unaffected (repeats are rare: the fast path
pays for no savepoint). Few SQL calls per group matter: each call releases the GIL, and
with many appender threads getting it back is what costs.
"""

from __future__ import annotations

import sqlite3
import zlib
from collections.abc import Sequence
from itertools import chain
from typing import Any, Final

from . import _sqlite
from ._errors import DuplicateIdConflict, WrongExpectedVersion
from ._rules import StoredId, check_expected, repeated_result
from ._types import ANY, AppendResult

Outcome = AppendResult | BaseException
_INSERT_EVENTS = (
    "INSERT INTO events (position, stream_id, revision, type, id, record, checksum)"
    " VALUES (?, ?, ?, ?, ?, ?, ?)"
)
_COLUMNS = 7
# Rows per INSERT statement. sqlite3's executemany binds and steps its statement once per row; one
# statement of many VALUES rows does that once per chunk. Such a statement could fail halfway, so with
# the default conflict rule SQLite keeps a statement journal (a copy of every page it touches) to undo
# just that statement: with scattered inserts (random import ids, interleaved streams) that made it
# 1.5x slower than executemany. OR ROLLBACK needs none: a repeated id ends the whole transaction, which
# the caller rolls back and writes request by request anyway (write_each, with plain inserts). Raw
# sqlite3, CPU an event, executemany -> 64-row OR ROLLBACK statements: batches of 1,000 5.7 -> 4.4 us;
# 50,000-row transactions of random ids 7.3 -> 5.9 us. _INSERTS[n] inserts n rows: one statement per
# row count, each compiled once per connection (sqlite3 caches 128).
ROWS_PER_INSERT: Final = 64
_INSERTS: Final = {
    n: _INSERT_EVENTS.replace("INSERT", "INSERT OR ROLLBACK", 1) + ", (?, ?, ?, ?, ?, ?, ?)" * (n - 1)
    for n in range(1, ROWS_PER_INSERT + 1)
}
_CHUNK = 500  # names per IN (...) query, under SQLite's parameter limit
# A stream's current revision: its newest event's, one seek in events_by_stream (-1: none yet). Since
# schema 2 an append no longer updates streams.revision (written once, as the stream is created): that
# UPDATE dirtied one more page per commit, the streams table's, besides the events table and its two
# indexes (raw sqlite3, batches of 10: 37 -> 28 us CPU an event; bench_import vs pyeventsourcing).
STREAM_REVISION: Final = "coalesce((SELECT max(revision) FROM events WHERE events.stream_id = streams.stream_id), -1)"


class RepeatInGroup(Exception):
    """Two requests in one group share an id: only the one-by-one path can sort it out."""


class _Streams:
    """Stream ids and revisions as this transaction sees them, and the last position.

    Loaded in one query (which also reads ``max(position)``: a small append
    costs one SQL call fewer), or, for the streams a ``StreamCache`` still
    holds, taken from it without a query.
    """

    def __init__(self, conn: sqlite3.Connection, names: set[str], cached: StreamCache | None = None) -> None:
        self.known: dict[str, list[int]] = {}
        self.last_position = 0
        self.next_id = 0  # read on the first new stream: most appends create none
        if cached is not None:
            self.last_position, self.next_id = cached.last_position, cached.next_id
            held = cached.known
            for name in names:
                entry = held.get(name)
                if entry is not None:
                    self.known[name] = entry[:]  # this transaction's copy: the cache changes only at COMMIT
            names = names - self.known.keys() if len(self.known) < len(names) else set()
        if names or cached is None:
            self._load(conn, names, with_position=cached is None)
        self._conn = conn
        self.created: list[str] = []

    def _load(self, conn: sqlite3.Connection, names: set[str], with_position: bool) -> None:
        ordered = sorted(names)
        for start in range(0, len(ordered) or with_position, _CHUNK):
            chunk = ordered[start : start + _CHUNK]
            marks = ",".join("?" * len(chunk))
            sql = f"SELECT name, stream_id, {STREAM_REVISION} FROM streams WHERE name IN ({marks})"
            if with_position and not start:
                sql = f"SELECT NULL, max(position), NULL FROM events UNION ALL {sql}" if chunk else (
                    "SELECT NULL, max(position), NULL FROM events")
            for name, stream_id, revision in conn.execute(sql, chunk):
                if name is None:
                    self.last_position = stream_id or 0
                else:
                    self.known[name] = [stream_id, revision]

    def current(self, name: str) -> int | None:
        entry = self.known.get(name)
        return None if entry is None or entry[1] < 0 else entry[1]

    def claim(self, name: str) -> list[int]:
        """The ``[stream_id, revision]`` entry of ``name``, creating the stream if needed."""
        entry = self.known.get(name)
        if entry is None:
            if not self.next_id:
                self.next_id = (self._conn.execute("SELECT max(stream_id) FROM streams").fetchone()[0] or 0) + 1
            entry = self.known[name] = [self.next_id, -1]
            self.next_id += 1
            self.created.append(name)
        return entry

    def save(self, conn: sqlite3.Connection) -> None:
        """Insert the streams this transaction created (their revisions live in the events: ``STREAM_REVISION``)."""
        if self.created:
            conn.executemany(
                "INSERT INTO streams (stream_id, name, revision) VALUES (?, ?, ?)",
                [(self.known[n][0], n, self.known[n][1]) for n in self.created],
            )


class StreamCache:
    """What the writer connection's own commits left: the last position, stream ids and revisions.

    Each write transaction reads ``PRAGMA data_version`` once it holds the
    write lock. SQLite changes that number whenever another connection (any
    process) has committed since this connection last looked, and never for
    this connection's own commits; so while it is unchanged, the state this
    connection committed last is the file's state, and a transaction takes
    the position and its streams' revisions from here instead of a query
    (a lone append: one cheap PRAGMA instead of a lookup with a subquery).
    When it changed, everything held is dropped and loaded again.

    A transaction's state is held as ``pending`` and becomes the cache only
    at ``committed`` (after COMMIT succeeded); ``rolled_back`` drops the
    pending state, ``forget`` everything (a commit the cache did not follow).
    """

    LIMIT: Final = 100_000  # streams held; past it the cache starts empty again

    def __init__(self) -> None:
        self.version: int | None = None
        self.last_position = 0
        self.next_id = 0
        self.known: dict[str, list[int]] = {}
        self._pending: tuple[int, _Streams] | None = None

    def streams(self, conn: sqlite3.Connection, names: set[str]) -> _Streams:
        """The transaction's ``_Streams``, from the cache where it is still the file's state."""
        version = conn.execute("PRAGMA data_version").fetchone()[0]
        if version != self.version:
            self.forget()
        streams = _Streams(conn, names, self if self.version is not None else None)
        self._pending = (version, streams)
        return streams

    def committed(self, last: int) -> None:
        """The pending transaction, which wrote up to position ``last``, is durable: its state is the file's."""
        if self._pending is None:
            return
        version, streams = self._pending
        self._pending = None
        if len(self.known) + len(streams.known) > self.LIMIT:
            self.known.clear()
        self.known.update(streams.known)
        self.version, self.last_position, self.next_id = version, last, streams.next_id

    def rolled_back(self) -> None:
        """The pending transaction wrote nothing: the state before it still holds."""
        self._pending = None

    def forget(self) -> None:
        """Drop everything: the next transaction loads its state from the file."""
        self.version, self.last_position, self.next_id, self._pending = None, 0, 0, None
        self.known.clear()


def write_group(
    conn: sqlite3.Connection, group: Sequence[Any], now: int, whole: bool = True, cache: StreamCache | None = None
) -> tuple[list[Outcome], int]:
    """Write every request; return their outcomes and the last position written.

    With a ``cache``, the state to write on comes from it where it still
    holds, and this transaction's state is left pending in it (the caller
    tells it whether the transaction committed).

    Raises ``sqlite3.IntegrityError`` or ``RepeatInGroup`` when an id repeats,
    having written part of the group. With ``whole`` (the group is the whole
    transaction) a repeat stored earlier has SQLite roll the transaction back
    itself (``_INSERTS``); otherwise (in a savepoint) only the failed statement
    is undone. Either way the caller rolls back what is left.
    """
    names = {request.stream for request in group}
    streams = _Streams(conn, names) if cache is None else cache.streams(conn, names)
    last = streams.last_position
    rows: list[tuple] = []
    outcomes: list[Outcome] = []
    ids_in_group: set[int] = set()
    encode, crc32 = _sqlite.RECORD_ENCODER.encode, zlib.crc32  # encode_record, inlined: this runs per event
    add_id = ids_in_group.add
    known, claim = streams.known, streams.claim
    for request in group:
        stream, events = request.stream, request.events
        if request.expected is not ANY:
            try:
                check_expected(stream, request.expected, streams.current(stream))
            except WrongExpectedVersion as wrong:
                outcomes.append(retry_result(conn, request, wrong))
                continue
        entry = known.get(stream) or claim(stream)  # a loaded stream without a call: imports make a million requests
        stream_id, revision = entry
        first = last + 1
        for event, data, metadata in events:
            event_id = event.id
            key = event_id.int  # ints hash in C; UUID.bytes is a Python property over the same int
            add_id(key)
            revision += 1
            last += 1
            recorded_at = now if event.recorded_at is None else event.recorded_at
            record = encode((  # a RecordedEvent's fields in order: the same msgpack array, built faster
                event_id, stream, revision, last, recorded_at,
                recorded_at if event.occurred_at is None else event.occurred_at,
                event.type, data, metadata,
            ))  # fmt: skip
            rows.append((last, stream_id, revision, event.type, key.to_bytes(16, "big"), record, crc32(record)))
        entry[1] = revision
        outcomes.append(AppendResult(first, last, revision + 1))
    if len(ids_in_group) < len(rows):  # ids are unique within a request (validated): a repeat across two
        raise RepeatInGroup
    if whole:
        insert_events(conn, rows)
    else:
        conn.executemany(_INSERT_EVENTS, rows)
    streams.save(conn)
    return outcomes, last


def insert_events(conn: sqlite3.Connection, rows: list[tuple]) -> None:
    """Insert event rows in order, ``ROWS_PER_INSERT`` to a statement (the rest in one more).

    A repeated id rolls the whole transaction back (``_INSERTS``).
    """
    full = len(rows) - len(rows) % ROWS_PER_INSERT
    if full:
        params = list(chain.from_iterable(rows[:full]))
        width = _COLUMNS * ROWS_PER_INSERT
        conn.executemany(_INSERTS[ROWS_PER_INSERT], [params[i : i + width] for i in range(0, len(params), width)])
    if full < len(rows):
        conn.execute(_INSERTS[len(rows) - full], list(chain.from_iterable(rows[full:])))


def write_repeats(
    conn: sqlite3.Connection, group: Sequence[Any], now: int, cache: StreamCache | None = None
) -> tuple[list[Outcome], int]:
    """Write a group that repeats stored ids: its ids looked up at once, only the new requests written.

    A request whose ids are all stored as one batch of its stream gets its
    original result; one that repeats only some, or repeats them elsewhere,
    ``DuplicateIdConflict``; neither writes anything (a retry's result wins
    over its expected version, as in ``retry_result``). The other requests
    are written in order on the fast path (``write_group``), so positions
    follow as if the repeats had been left out. A re-import of a log already
    imported is all repeats: one lookup per ``_CHUNK`` ids instead of a
    savepoint, a failed insert and a lookup per request (``write_each``).
    Raises like ``write_group`` when ids repeat within the group itself: only
    ``write_each`` sorts those out.
    """
    ids = [[event.id for event, _, _ in request.events] for request in group]
    stored = stored_ids(conn, list(chain.from_iterable(ids)))
    outcomes: list[Outcome | None] = []
    fresh: list[Any] = []
    for request, request_ids in zip(group, ids, strict=True):
        try:
            repeat = repeated_result(request.stream, request_ids, {i: stored[i] for i in request_ids if i in stored})
        except DuplicateIdConflict as conflict:
            repeat = conflict
        outcomes.append(repeat)
        if repeat is None:
            fresh.append(request)
    last = 0
    if fresh:
        written, last = write_group(conn, fresh, now, cache=cache)
        new = iter(written)
        outcomes = [next(new) if outcome is None else outcome for outcome in outcomes]
    return outcomes, last  # type: ignore[return-value]


def write_each(conn: sqlite3.Connection, group: Sequence[Any], now: int) -> tuple[list[Outcome], int]:
    """Write requests one by one, each in its own savepoint; repeats get their original result."""
    outcomes: list[Outcome] = []
    last = 0
    for request in group:
        conn.execute("SAVEPOINT request")
        try:
            (outcome,), last = write_group(conn, [request], now, whole=False)
        except sqlite3.IntegrityError:
            conn.execute("ROLLBACK TO request")
            outcome = retry_result(conn, request, None)
        conn.execute("RELEASE request")
        outcomes.append(outcome)
    return outcomes, last


def stored_ids(conn: sqlite3.Connection, ids: Sequence[Any]) -> dict[Any, StoredId]:
    """Where each of ``ids`` (UUIDs) that is stored lies: its stream, revision and position (``_CHUNK`` to a query)."""
    by_bytes = {i.bytes: i for i in ids}
    keys = list(by_bytes)
    stored: dict[Any, StoredId] = {}
    for start in range(0, len(keys), _CHUNK):
        chunk = keys[start : start + _CHUNK]
        rows = conn.execute(
            "SELECT e.id, s.name, e.revision, e.position FROM events e"
            f" JOIN streams s USING (stream_id) WHERE e.id IN ({','.join('?' * len(chunk))})",
            chunk,
        )
        stored.update((by_bytes[raw], StoredId(name, rev, pos)) for raw, name, rev, pos in rows)
    return stored


def retry_result(conn: sqlite3.Connection, request: Any, otherwise: BaseException | None) -> Outcome:
    """The original result when ``request`` repeats stored ids exactly; else ``otherwise``.

    A partial repeat, or ids stored in another stream, gives ``DuplicateIdConflict``.
    """
    ids = [event.id for event, _, _ in request.events]
    try:
        repeat = repeated_result(request.stream, ids, stored_ids(conn, ids))
    except Exception as conflict:
        return conflict
    if repeat is not None:
        return repeat
    if otherwise is None:
        raise AssertionError("unique constraint failed without a repeated event id")
    return otherwise

"""PostgreSQL backend (psycopg 3): the contract on a PostgreSQL server shared by many processes.

``open_store("postgresql://user@host:5432/db?schema=unbroken")``: the store
lives in one schema (``schema=``, default ``unbroken``; the other query
options go to libpq). Three tables:

- ``head``: one row, the last position handed out and the last recorded
  time. Every append transaction starts by locking it (``SELECT ... FOR
  UPDATE``) and ends by moving it forward.
- ``streams``: one row per stream with its current revision.
- ``events``: one row per event, keyed by ``position``; a unique index on
  ``(stream_id, revision)`` and another on ``id`` (no foreign key to
  ``streams``: one statement writes both, under the head lock). As in the
  embedded store each row holds the whole ``RecordedEvent`` as one msgpack
  ``record`` plus a CRC-32 of it, checked on every read (``CorruptEvent``).

Positions are in commit order. A sequence or identity column is not: two
writers take 9 and 10, 10 commits first, and a reader that sees 10 and
checkpoints there never sees 9. Here the head row's lock makes appends take
turns: a writer assigns positions only while it holds the lock, and the lock
is released only after its commit is visible, so a reader that can see
position N can already see every position below N. Appenders in one process
share a transaction (group commit: the first waiting appender commits
everything queued; each request's outcome is decided on its own, so one
refused request does not fail the others), which is what keeps throughput up
despite the lock.

Round trips. The locked path takes two, pipelined: ``BEGIN``, the head lock
and one lookup of the transaction's ids and streams; then one statement
writing streams, events and head, and ``COMMIT``. A store also remembers the
state after its own last commit (head position and time, its streams'
revisions) and encodes the next transaction's rows for that state: one
statement (``_APPEND_GUESSED``, its own transaction) checks the guess and
writes, or writes nothing when another writer has committed meanwhile, and
the store takes the locked path. A lone writer (or one process's group
commit) thus pays one round trip per transaction. Writers in several
processes mostly take the locked path: after a guess has missed, a store's
next ``LOCKED_AFTER_A_MISS`` transactions go straight to it.

Durability: ``synchronous_commit = on`` on every connection; ``append``
returns after its transaction's commit is flushed. Idempotency by event id is
durable in every mode (ANY included): the ids are looked up under the head
lock, and the unique index is the backstop. An append whose connection dies
during COMMIT raises ``StoreUnavailable`` and may or may not be stored;
retrying it with the same ids is safe either way.

Live subscriptions: each append transaction sends ``pg_notify`` with its last
position; ``wait_for_append`` LISTENs on a connection of its own (reconnecting
after a server restart), so a subscriber in any process on any machine is
woken at the commit. Subscriptions also poll (every 50 ms), the fallback when
notifications are lost across a reconnect.

Errors: psycopg errors are converted at this boundary. A server that is down
or restarting gives ``StoreUnavailable`` (the next call reconnects), a full
disk ``StoreFull``, anything else ``StoreError``.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import re
import threading
import time
import uuid
import zlib
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Final
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import msgspec

from ._contract import (
    NO_FILTER,
    AppendRequest,
    Capabilities,
    EventStore,
    ReadFilter,
    check_open,
    check_read_args,
    mark_request,
)
from ._errors import (
    CorruptEvent,
    InvalidArgument,
    StoreClosed,
    StoreError,
    StoreFull,
    StoreNotFound,
    StoreReadOnly,
    StoreUnavailable,
)
from ._rules import StoredId, check_expected, repeated_result, transactions, validate_expected
from ._types import ANY, AppendResult, Expected, NewEvent, RecordedEvent
from .validation import prepare_batch, prepare_multi

DEFAULT_SCHEMA: Final = "unbroken"
SCHEMA_VERSION: Final = 2  # 2 dropped the foreign key events -> streams; a version-1 store is upgraded when opened for writing
REMEMBERED_STREAMS: Final = 100_000  # stream revisions kept for guessed appends
LOCKED_AFTER_A_MISS: Final = 16  # transactions that do not guess after a guess missed
READ_PAGE: Final = 1000  # rows per query
IDLE_CONNECTIONS: Final = 8  # pooled connections kept open between calls
CONNECT_TIMEOUT_S: Final = 5
LISTEN_POLL_S: Final = 0.25  # how often the listener thread looks up from its socket

_SCHEMA_NAME = re.compile(r"[a-z_][a-z0-9_]{0,47}")
_RECORD_ENCODER: Final = msgspec.msgpack.Encoder(uuid_format="bytes")
_RECORD_DECODER: Final = msgspec.msgpack.Decoder(RecordedEvent)

_TABLES: Final = (
    """CREATE TABLE IF NOT EXISTS head (
        one BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (one),
        position BIGINT NOT NULL,
        recorded_at BIGINT NOT NULL,
        version INTEGER NOT NULL)""",
    f"INSERT INTO head VALUES (TRUE, 0, 0, {SCHEMA_VERSION}) ON CONFLICT DO NOTHING",
    """CREATE TABLE IF NOT EXISTS streams (
        stream_id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        revision BIGINT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS events (
        position BIGINT PRIMARY KEY,
        stream_id BIGINT NOT NULL,  -- no foreign key: one statement writes both, under the head lock
        revision BIGINT NOT NULL,
        id UUID NOT NULL,
        type TEXT NOT NULL,
        record BYTEA NOT NULL,
        checksum BIGINT NOT NULL,
        UNIQUE (stream_id, revision))""",
    "CREATE UNIQUE INDEX IF NOT EXISTS events_by_id ON events (id)",
)
# An append in one statement (one round trip, its own transaction), for a
# writer that guessed the state it appends to: the head position and time, the
# revision of every stream of the transaction (the one before its first row
# there; -1: no such stream) and that none of its ids (``all_ids``, when not
# just those of the rows) is stored; the rows were encoded for that state.
# ``ok`` checks the guess in the statement's snapshot; ``locked`` then locks
# the head, skipping it if another writer holds it (no waiting, and a miss
# leaves no commit to flush). If a writer committed after the snapshot, the
# head has moved and ``locked`` (which re-reads a row updated since, and
# rechecks it) is empty; so when it is not, the snapshot's checks still hold.
# Every write is conditional on ``locked``: on a miss nothing is written and
# the result is 0; else 1, and the NOTIFY wakes subscribers at the commit.
_APPEND_GUESSED: Final = """
    WITH ok AS (
        SELECT 1 FROM head h
        WHERE h.position = %(guess)b AND h.recorded_at <= %(now)b
          AND NOT EXISTS (SELECT 1 FROM events e WHERE e.id = ANY(coalesce(%(all_ids)b::uuid[], %(i)b)))
          AND NOT EXISTS (
              SELECT 1 FROM unnest(%(n)b::text[], %(r)b::bigint[]) AS u(name, revision) GROUP BY u.name
              HAVING coalesce((SELECT s.revision FROM streams s WHERE s.name = u.name), -1)
                     <> min(u.revision) - 1)),
    locked AS (
        SELECT 1 FROM head h WHERE h.position = %(guess)b AND EXISTS (SELECT 1 FROM ok)
        FOR UPDATE SKIP LOCKED),
    s AS (
        INSERT INTO streams (name, revision)
        SELECT u.name, max(u.revision) FROM unnest(%(n)b::text[], %(r)b::bigint[]) AS u(name, revision)
        WHERE EXISTS (SELECT 1 FROM locked) GROUP BY u.name
        ON CONFLICT (name) DO UPDATE SET revision = EXCLUDED.revision
        RETURNING stream_id, name),
    e AS (
        INSERT INTO events (position, stream_id, revision, id, type, record, checksum)
        SELECT u.p, s.stream_id, u.r, u.i, u.t, u.b, u.c
        FROM unnest(%(n)b::text[], %(p)b::bigint[], %(r)b::bigint[], %(i)b::uuid[], %(t)b::text[],
                    %(b)b::bytea[], %(c)b::bigint[]) AS u(n, p, r, i, t, b, c)
        JOIN s ON s.name = u.n),
    h AS (
        UPDATE head SET position = %(last)b, recorded_at = %(now)b
        WHERE EXISTS (SELECT 1 FROM locked) RETURNING position)
    SELECT count(pg_notify(%(channel)b, position::text)) FROM h"""
_UPGRADES: Final = {  # version: the statements that bring it to the next
    1: ("ALTER TABLE events DROP CONSTRAINT IF EXISTS events_stream_id_fkey", "UPDATE head SET version = 2"),
}
_LOCK_HEAD: Final = "SELECT position, recorded_at FROM head FOR UPDATE"  # the append lock
# Stored ids among the transaction's events (id, stream, revision, position),
# then its streams' revisions (NULL, name, revision, stream_id): one round trip.
_LOOKUP: Final = """
    SELECT e.id, s.name, e.revision, e.position
    FROM events e JOIN streams s USING (stream_id) WHERE e.id = ANY(%b::uuid[])
    UNION ALL
    SELECT NULL, name, revision, stream_id FROM streams WHERE name = ANY(%b::text[])"""
# One statement writes a whole transaction: the streams' new revisions (a new
# stream gets its id here), the events (joined to their stream by name), the
# head, and the NOTIFY that wakes subscribers at the commit.
_WRITE: Final = """
    WITH s AS (
        INSERT INTO streams (name, revision)
        SELECT * FROM unnest(%b::text[], %b::bigint[])
        ON CONFLICT (name) DO UPDATE SET revision = EXCLUDED.revision
        RETURNING stream_id, name),
    e AS (
        INSERT INTO events (position, stream_id, revision, id, type, record, checksum)
        SELECT u.p, s.stream_id, u.r, u.i, u.t, u.b, u.c
        FROM unnest(%b::text[], %b::bigint[], %b::bigint[], %b::uuid[], %b::text[], %b::bytea[],
                    %b::bigint[]) AS u(n, p, r, i, t, b, c)
        JOIN s ON s.name = u.n),
    h AS (UPDATE head SET position = %b, recorded_at = %b RETURNING position)
    SELECT pg_notify(%b, position::text) FROM h"""


class PostgresStore(EventStore):
    """The store contract in one schema of a PostgreSQL database; safe across threads and processes.

    ``clock`` stamps ``recorded_at`` (never backwards, across processes too:
    the last time is kept in the head row). ``create=False`` refuses a
    schema that holds no store (``StoreNotFound``); ``read_only=True`` also
    refuses appends (``StoreReadOnly``) and changes nothing on the server.
    """

    capabilities = Capabilities(atomic_append_multi=True)

    def __init__(
        self,
        uri: str,
        *,
        clock: Callable[[], int] = time.time_ns,
        create: bool = True,
        read_only: bool = False,
    ) -> None:
        self.uri = uri
        self._shown = shown_uri(uri)
        self._conninfo, self.schema = parse_uri(uri)
        self._channel = f"unbroken_{self.schema}"
        self._clock = clock
        self._read_only = read_only
        if read_only:
            self.capabilities = Capabilities(atomic_append_multi=True, read_only=True)
        self._closed = False
        self._idle: list[Any] = []
        self._pool_lock = threading.Lock()
        self._queue = threading.Condition()
        self._pending: list[_Request | _Multi] = []
        self._leading = False
        self._writer: Any = None
        self._head: tuple[int, int] | None = None  # (position, recorded_at) after this store's last commit
        self._revisions: dict[str, int] = {}  # stream revisions as of this store's commits
        self._unguessed = 0  # transactions still to take the locked path after a miss
        self._notified = 0
        self._woken = threading.Condition()
        self._listener: threading.Thread | None = None
        self._listening = threading.Event()
        try:
            self._prepare(create and not read_only)
        except BaseException:
            self.close()  # the pooled connection the check used
            raise

    def _prepare(self, create: bool) -> None:
        """Create the schema and tables if asked (under an advisory lock), else check they exist."""
        with self._connection() as conn:
            exists = conn.execute("SELECT to_regclass(%s)", (f"{self.schema}.head",)).fetchone()[0]
            if exists is None and not create:
                raise StoreNotFound(f"no store in schema {self.schema!r} at {self._shown}")
            if exists is None:
                with conn.transaction():
                    conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (self._channel,))
                    conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"')
                    for statement in _TABLES:
                        conn.execute(statement)
            version = conn.execute("SELECT version FROM head").fetchone()[0]
            if version in _UPGRADES and not self._read_only:
                version = self._upgrade(conn)
            if version != SCHEMA_VERSION and not (self._read_only and version in _UPGRADES):
                raise StoreError(f"{self._shown}: store schema version {version}; this reads {SCHEMA_VERSION}")

    def _upgrade(self, conn: Any) -> int:
        """Bring an older store's schema to ``SCHEMA_VERSION`` (one writer at a time); the new version."""
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (self._channel,))
            version = conn.execute("SELECT version FROM head").fetchone()[0]
            while version in _UPGRADES:
                for statement in _UPGRADES[version]:
                    conn.execute(statement)
                version = conn.execute("SELECT version FROM head").fetchone()[0]
        return version

    # -- connections ----------------------------------------------------------
    def _connect(self, writer: bool = False) -> Any:
        """A new autocommit connection to the store's schema, commits flushed.

        The writer's statements run with sequential
        scans off: they look rows up by id and name, and a prepared
        statement's cached plan, made while the tables were small, would
        otherwise scan the whole events table on every append for ever. And
        with JIT off: the penalty that turns scans off makes every plan look
        costly enough to compile (~100 ms a statement).
        """
        import psycopg

        options = f"-c search_path={self.schema} -c synchronous_commit=on"
        if writer:
            options += " -c enable_seqscan=off -c jit=off"
        return psycopg.connect(self._conninfo, autocommit=True, options=options)

    @contextlib.contextmanager
    def _connection(self) -> Iterator[Any]:
        """A pooled autocommit connection, errors converted; broken ones are dropped, not reused."""
        with _converted(self._shown):
            with self._pool_lock:
                check_open(self._closed, self.uri)
                conn = self._idle.pop() if self._idle else None
            if conn is None:
                conn = self._connect()
            try:
                yield conn
            finally:
                self._give_back(conn)

    def _give_back(self, conn: Any) -> None:
        from psycopg.pq import TransactionStatus

        healthy = not conn.closed and conn.info.transaction_status == TransactionStatus.IDLE
        with self._pool_lock:
            if healthy and not self._closed and len(self._idle) < IDLE_CONNECTIONS:
                self._idle.append(conn)
                return
        conn.close()

    # -- writing --------------------------------------------------------------
    def append(
        self, stream: str, events: Iterable[NewEvent], expected: Expected = ANY
    ) -> AppendResult:
        encoded = prepare_batch(stream, events)
        validate_expected(expected)
        return self._submit(_Request(stream, encoded, expected)).result()

    def append_multi(self, requests: Iterable[AppendRequest]) -> list[AppendResult]:
        """Every request in one transaction of its own: all are stored, or none."""
        prepared = prepare_multi(requests)
        multi = _Multi([_Request(stream, encoded, expected) for stream, encoded, expected in prepared])
        return self._submit(multi).result()  # type: ignore[return-value]

    def _submit(self, request: _Request | _Multi) -> concurrent.futures.Future:
        """Queue ``request``; the first appender to find no commit under way commits the queue.

        Leader-follower group commit: while one appender commits, others
        queue; when it is done, one of them commits everything queued in one
        transaction. A lone appender commits at once, on its own thread.
        """
        if self._read_only:
            raise StoreReadOnly(f"{self._shown} was opened read-only; nothing can be appended through it")
        with self._queue:
            check_open(self._closed, self.uri)
            self._pending.append(request)
            while self._leading and not request.future.done():
                self._queue.wait()
            if request.future.done():
                return request.future
            self._leading = True
            group, self._pending = self._pending, []
        try:
            for part in transactions(group, _Multi):
                self._commit(part)
        finally:
            with self._queue:
                self._leading = False
                self._queue.notify_all()
        return request.future

    def _commit(self, group: list) -> None:
        """One transaction for ``group``; every request's future gets its outcome."""
        try:
            if self._closed:
                raise StoreClosed(f"store {self.uri} is closed")
            with _converted(self._shown):
                outcomes = self._transaction(group)
        except BaseException as error:  # the whole transaction failed: every caller hears why
            self._forget()
            if self._writer is not None and not _reusable(self._writer):
                self._writer.close()
                self._writer = None
            for request in group:
                request.future.set_exception(error)
            return
        for request, outcome in zip(group, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                request.future.set_exception(outcome)
            else:
                request.future.set_result(outcome)

    def _transaction(self, group: list) -> list:
        """One round trip when this store's guess of the state holds (``_guessed``), else two more."""
        if self._writer is None:
            self._writer = self._connect(writer=True)
            self._forget()
        multi = isinstance(group[0], _Multi)
        requests = group[0].parts if multi else group
        outcomes = self._guessed(self._writer, requests, multi)
        if outcomes is None:
            outcomes = self._locked(self._writer, requests, multi)
        return outcomes

    def _guessed(self, conn: Any, requests: list[_Request], multi: bool) -> list | None:
        """Append assuming no other writer has committed since this store's last commit.

        The rows are encoded for the remembered head and stream revisions and
        sent with that guess in ``_APPEND_GUESSED``, which writes them only if
        the guess holds. None when it did not (nothing written), or when the
        outcome depends on more than the guess (a refused request, a retry).
        """
        if self._unguessed:
            self._unguessed -= 1
            return None
        if self._head is None:
            return None
        position, last_time = self._head
        streams = {request.stream for request in requests}
        revisions = {name: self._revisions[name] for name in streams if name in self._revisions}
        batch = _Batch(position, max(self._clock(), last_time), {}, revisions)
        try:
            outcomes = _decide(batch, requests, multi)
        except StoreError:
            return None
        if not batch.rows or any(isinstance(outcome, BaseException) for outcome in outcomes):
            return None
        all_ids = [event.id for request in requests for event, _, _ in request.events]
        if len(all_ids) == batch.rows:  # no retry within the group: the rows' ids are all the ids
            all_ids = None
        names, positions, revisions, event_ids, types, records, checksums = batch.columns
        written = conn.execute(_APPEND_GUESSED, {
            "guess": position, "last": batch.position, "now": batch.now, "channel": self._channel,
            "all_ids": all_ids, "n": names, "p": positions, "r": revisions, "i": event_ids, "t": types,
            "b": records, "c": checksums}).fetchone()[0]
        if not written:
            self._unguessed = LOCKED_AFTER_A_MISS
            return None
        self._remember(batch)
        return outcomes

    def _locked(self, conn: Any, requests: list[_Request], multi: bool) -> list:
        """Two round trips, pipelined: (BEGIN, lock the head, look up ids and streams); (write, COMMIT).

        The outcomes are decided in Python under the head lock from what the
        lookup read, and one statement writes every stream, event and the
        head. The lookup is a statement of its own, after the lock: its
        snapshot then holds every commit made before ours. The lock is held
        for one round trip of this client and the commit: the fewer, the
        better other processes' appends flow.
        """
        ids = [event.id for request in requests for event, _, _ in request.events]
        names = list({request.stream: None for request in requests})
        with conn.pipeline(), conn.transaction():
            head = conn.execute(_LOCK_HEAD)
            found = conn.execute(_LOOKUP, (ids, names))
            position, last_time = head.fetchone()
            stored, revisions = {}, {}
            for event_id, name, revision, position_or_id in found.fetchall():
                if event_id is None:
                    revisions[name] = revision
                else:
                    stored[event_id] = StoredId(name, revision, position_or_id)
            batch = _Batch(position, max(self._clock(), last_time), stored, revisions)
            outcomes = _decide(batch, requests, multi)
            if batch.rows:
                conn.execute(_WRITE, (*batch.stream_columns(), *batch.columns,
                                      batch.position, batch.now, self._channel))
        self._remember(batch)
        return outcomes

    def _remember(self, batch: _Batch) -> None:
        """Keep the state after a commit: the next append guesses it (``_guessed``)."""
        self._head = (batch.position, batch.now)
        if len(self._revisions) > REMEMBERED_STREAMS:
            self._revisions.clear()
        self._revisions.update(batch.revisions)

    def _forget(self) -> None:
        self._head = None
        self._revisions.clear()

    # -- reading --------------------------------------------------------------
    def read_stream(
        self,
        stream: str,
        from_revision: int | None = None,
        backwards: bool = False,
        limit: int | None = None,
    ) -> Iterator[RecordedEvent]:
        check_read_args(from_revision, limit, "from_revision")
        check_open(self._closed, self.uri)
        rows = self._query("SELECT stream_id FROM streams WHERE name = %s", (stream,))
        if not rows:
            return iter(())
        return self._paged("stream_id = %s AND ", [rows[0][0]], "revision", from_revision, backwards, limit)

    def read_all(
        self,
        from_position: int | None = None,
        backwards: bool = False,
        limit: int | None = None,
        filter: ReadFilter = NO_FILTER,
    ) -> Iterator[RecordedEvent]:
        check_read_args(from_position, limit, "from_position")
        check_open(self._closed, self.uri)
        clause, params = _filter_sql(filter)
        return self._paged(clause, params, "position", from_position, backwards, limit)

    def _paged(self, clause: str, params: list, key: str, start: int | None, backwards: bool,
               limit: int | None) -> Iterator[RecordedEvent]:
        """Keyset pages of ``READ_PAGE`` rows, each one query (one snapshot)."""
        compare, order = ("<", "DESC") if backwards else (">", "ASC")
        if start is None:
            cursor = (1 << 62) if backwards else -1
        else:
            cursor = start + 1 if backwards else start - 1
        sql = (f"SELECT record, checksum FROM events WHERE {clause}{key} {compare} %s "
               f"ORDER BY {key} {order} LIMIT %s")
        remaining = limit
        while remaining is None or remaining > 0:
            size = READ_PAGE if remaining is None else min(READ_PAGE, remaining)
            events = _decode(self._query(sql, (*params, cursor, size), binary=True))
            yield from events
            if len(events) < size:
                return
            cursor = getattr(events[-1], key)
            if remaining is not None:
                remaining -= len(events)

    def stream_revision(self, stream: str) -> int | None:
        check_open(self._closed, self.uri)
        rows = self._query("SELECT revision FROM streams WHERE name = %s", (stream,))
        return rows[0][0] if rows else None

    def last_position(self) -> int:
        check_open(self._closed, self.uri)
        return self._query("SELECT position FROM head", ())[0][0]

    def _query(self, sql: str, params: tuple | list, binary: bool = False) -> list:
        with self._connection() as conn:
            return conn.execute(sql, params, binary=binary).fetchall()

    def check_integrity(self) -> list[str]:
        """Whether the head row agrees with the events table ([] when it does)."""
        check_open(self._closed, self.uri)
        head, newest = self._query(
            "SELECT (SELECT position FROM head), (SELECT coalesce(max(position), 0) FROM events)", ())[0]
        if head != newest:
            return [f"head row says position {head} but the newest event is at {newest}"]
        return []

    # -- waiting and lifecycle ------------------------------------------------
    def wait_for_append(self, after_position: int, timeout: float) -> bool:
        """Woken by the NOTIFY of any append's commit, in any process; True when something is newer."""
        if self._closed:
            return True
        self._start_listener(timeout)
        if self._notified > after_position or self.last_position() > after_position:
            return True
        with self._woken:
            return self._woken.wait_for(lambda: self._closed or self._notified > after_position, timeout)

    def _start_listener(self, timeout: float) -> None:
        """Start the LISTEN thread once; wait (up to ``timeout``) until it listens."""
        with self._woken:
            if self._listener is None:
                self._listener = threading.Thread(
                    target=self._listen, name=f"unbroken-listen {self.schema}", daemon=True)
                self._listener.start()
        self._listening.wait(timeout)

    def _listen(self) -> None:
        """LISTEN until the store closes; reconnect (every LISTEN_POLL_S) while the server is down."""
        import psycopg

        while not self._closed:
            try:
                with self._connect() as conn:
                    conn.execute(f'LISTEN "{self._channel}"')
                    self._listening.set()
                    while not self._closed:
                        for note in conn.notifies(timeout=LISTEN_POLL_S):
                            self._heard(int(note.payload or 0))
            except psycopg.Error:
                self._listening.clear()
                self._heard(0)  # wake waiters: they re-read, and see the outage
                time.sleep(LISTEN_POLL_S)

    def _heard(self, position: int) -> None:
        with self._woken:
            self._notified = max(self._notified, position)
            self._woken.notify_all()

    def close(self) -> None:
        """Let a commit under way finish, then close every connection. Idempotent."""
        with self._queue:
            if self._closed:
                return
            self._closed = True
            while self._leading:
                self._queue.wait()
            writer, self._writer = self._writer, None
        with self._pool_lock:
            idle, self._idle = self._idle, []
        for conn in [*idle, *([writer] if writer is not None else [])]:
            conn.close()
        self._heard(0)


class _Request:
    __slots__ = ("stream", "events", "expected", "future")

    def __init__(self, stream: str, events: list, expected: Expected) -> None:
        self.stream = stream
        self.events = events  # [(NewEvent, data bytes, Metadata)]
        self.expected = expected
        self.future: concurrent.futures.Future[AppendResult] = concurrent.futures.Future()


class _Multi:
    """An ``append_multi``: a transaction of its own, all or nothing."""

    __slots__ = ("parts", "future")

    def __init__(self, parts: list[_Request]) -> None:
        self.parts = parts
        self.future: concurrent.futures.Future[list[AppendResult]] = concurrent.futures.Future()



class _Batch:
    """One transaction's writes, decided in Python under the head lock.

    ``stored`` holds the already-stored ids among the transaction's events,
    ``revisions`` the current revisions of its existing streams; both are
    updated as requests are added, so a later request in the same transaction
    sees an earlier one exactly as if it had been committed before it.
    """

    def __init__(self, position: int, now: int, stored: dict[uuid.UUID, StoredId],
                 revisions: dict[str, int]) -> None:
        self.position = position
        self.now = now
        self.stored = stored
        self.revisions = revisions
        self.touched: dict[str, int] = {}
        self.rows = 0
        self.columns: tuple[list, ...] = ([], [], [], [], [], [], [])  # name, position, revision, id, type, record, crc

    def add_or_fail(self, request: _Request) -> AppendResult | StoreError:
        """``request``'s result, its events added; or the error that refuses it (nothing added)."""
        try:
            return self.add(request)
        except StoreError as error:
            return error

    def add_all(self, requests: list[_Request]) -> list[AppendResult]:
        """Every request added, or the first refusal raised with its ``request_index``."""
        results = []
        for index, request in enumerate(requests):
            try:
                results.append(self.add(request))
            except StoreError as error:
                raise mark_request(error, index) from None
        return results

    def add(self, request: _Request) -> AppendResult:
        """Add one request's events after the others; an exact retry returns the original result."""
        stream, encoded = request.stream, request.events
        ids = [event.id for event, _, _ in encoded]
        repeat = repeated_result(stream, ids, {i: self.stored[i] for i in ids if i in self.stored})
        if repeat is not None:
            return repeat
        current = self.revisions.get(stream)
        check_expected(stream, request.expected, current)
        first_revision = 0 if current is None else current + 1
        first_position = self.position + 1
        names, positions, revisions, event_ids, types, records, checksums = self.columns
        for offset, (event, data, metadata) in enumerate(encoded):
            revision, position = first_revision + offset, first_position + offset
            recorded_at = self.now if event.recorded_at is None else event.recorded_at
            record = _RECORD_ENCODER.encode(RecordedEvent(
                event.id, stream, revision, position, recorded_at,
                recorded_at if event.occurred_at is None else event.occurred_at,
                event.type, data, metadata))  # fmt: skip
            names.append(stream)
            positions.append(position)
            revisions.append(revision)
            event_ids.append(event.id)
            types.append(event.type)
            records.append(record)
            checksums.append(zlib.crc32(record))
            self.stored[event.id] = StoredId(stream, revision, position)
        self.position += len(encoded)
        self.rows += len(encoded)
        self.revisions[stream] = self.touched[stream] = first_revision + len(encoded) - 1
        return AppendResult(first_position, self.position, first_revision + len(encoded))

    def stream_columns(self) -> tuple[list[str], list[int]]:
        """The streams written to and their revisions after the writes."""
        return list(self.touched), list(self.touched.values())


def _reusable(conn: Any) -> bool:
    """Whether ``conn`` is open and outside any transaction."""
    from psycopg.pq import TransactionStatus

    return not conn.closed and conn.info.transaction_status == TransactionStatus.IDLE


def _decide(batch: _Batch, requests: list[_Request], multi: bool) -> list:
    """Each request's outcome (one list of results for an ``append_multi``), its rows in ``batch``."""
    if multi:
        return [batch.add_all(requests)]
    return [batch.add_or_fail(request) for request in requests]


def _decode(rows: list) -> list[RecordedEvent]:
    """Check each row's CRC-32 and decode its record; ``CorruptEvent`` names the first bad one."""
    events = []
    for record, checksum in rows:
        if zlib.crc32(record) != checksum:
            raise CorruptEvent(_position_of(record, events))
        try:
            events.append(_RECORD_DECODER.decode(record))
        except (msgspec.DecodeError, ValueError):
            raise CorruptEvent(_position_of(record, events), "record does not decode") from None
    return events


def _position_of(record: bytes, before: list[RecordedEvent]) -> int:
    try:
        return _RECORD_DECODER.decode(record).position
    except (msgspec.DecodeError, ValueError):
        return before[-1].position + 1 if before else 0


def _filter_sql(filter: ReadFilter) -> tuple[str, list]:
    """SQL conditions (ending in AND) and parameters for a read filter; names are parameters."""
    clause, params = "", []
    if filter.types:
        clause += "type = ANY(%s::text[]) AND "
        params.append(list(filter.types))
    if filter.stream_prefixes:
        clause += ("stream_id IN (SELECT stream_id FROM streams, unnest(%s::text[]) AS p(prefix) "
                   "WHERE starts_with(name, prefix)) AND ")
        params.append(list(filter.stream_prefixes))
    return clause, params


def parse_uri(uri: str) -> tuple[str, str]:
    """The libpq connection URI (our ``schema=`` removed, a connect timeout added) and the schema."""
    parts = urlsplit(uri)
    if parts.scheme.lower() not in ("postgresql", "postgres"):
        raise InvalidArgument(f"not a PostgreSQL store URI: {uri!r}")
    query = parse_qsl(parts.query, keep_blank_values=True)
    schema = next((v for k, v in query if k == "schema"), DEFAULT_SCHEMA)
    if not _SCHEMA_NAME.fullmatch(schema):
        raise InvalidArgument(
            f"schema {schema!r} in {shown_uri(uri)}: use lowercase letters, digits and '_' (at most 48)")
    query = [(k, v) for k, v in query if k != "schema"]
    if not any(k == "connect_timeout" for k, _ in query):
        query.append(("connect_timeout", str(CONNECT_TIMEOUT_S)))
    return urlunsplit(("postgresql", parts.netloc, parts.path, urlencode(query), "")), schema


def shown_uri(uri: str) -> str:
    """``uri`` without its password, for error messages."""
    parts = urlsplit(uri)
    if parts.password is None:
        return uri
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


@contextlib.contextmanager
def _converted(where: str) -> Iterator[None]:
    """Turn psycopg errors into ``StoreError`` subclasses naming the server."""
    import psycopg
    from psycopg import errors

    try:
        yield
    except errors.DiskFull as e:
        raise StoreFull(f"PostgreSQL at {where}: disk full; the append was rolled back ({e})") from e
    except (psycopg.OperationalError, psycopg.InterfaceError) as e:
        raise StoreUnavailable(f"PostgreSQL at {where} is unavailable: {_first_line(e)}") from e
    except psycopg.Error as e:
        raise StoreError(f"PostgreSQL at {where}: {type(e).__name__}: {_first_line(e)}") from e


def _first_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


def new_schema_name() -> str:
    """A fresh schema name (for tests and benchmarks that want a store of their own)."""
    return f"t_{uuid.uuid4().hex[:16]}"

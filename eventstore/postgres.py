"""PostgreSQL backend (psycopg 3): the contract on a PostgreSQL server shared by many processes.

``open_store("postgresql://user@host:5432/db?schema=unbroken")``: the store
lives in one schema (``schema=``, default ``unbroken``; the other query
options go to libpq). Three tables:

- ``head``: one row, the last position handed out and the last recorded
  time. Every append transaction locks it: by moving it forward (``UPDATE``)
  or, on the locked path, ``SELECT ... FOR UPDATE`` first.
- ``streams``: one row per stream, its name and id. A stream's revision is
  its newest event's (the ``(stream_id, revision)`` index), so an append to
  an existing stream writes no ``streams`` row.
- ``events``: one row per event, keyed by ``position``; a unique index on
  ``(stream_id, revision)`` and another on ``id`` (no foreign key to
  ``streams``: one statement writes both, under the head lock). As in the
  embedded store each row holds the whole ``RecordedEvent`` as one msgpack
  ``record`` plus a CRC-32 of it, checked on every read (``CorruptEvent``);
  its revision, position, recorded_at and occurred_at are fixed-width int64s
  (one 36-byte window the server can rewrite in place).

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

One statement per transaction. A store remembers the state after its own
last commit (head position and time, its streams' revisions), encodes the
next transaction's rows and decides its outcomes for that state, and sends
them in one statement in autocommit (``_APPEND_GUESSED``; ``_APPEND_ONE``, its
scalar form, for one event to a remembered stream), which checks the
streams, takes the head lock by moving the head, and re-bases everything on
the real state: positions, revisions and stamped times move, changed records
are rewritten in their window and their CRC re-based from the old one
(``_CRC_REBASE``). The lock is thus held only for the server's own work and
the commit flush, never across a client round trip, whether the guess was
right (a lone writer) or not (writers in several processes). When an outcome
depends on more than the guess (a stored id, a refusal, an expected revision
of a stream that moved, or anything committed while the statement waited for
the lock that its snapshot missed: the unique indexes refuse the rows) nothing
is written and the store takes the locked path, two round trips pipelined:
``BEGIN``, the head lock and one lookup of the transaction's ids and streams;
the outcomes decided in Python; one statement writing streams, events and
head, and ``COMMIT``.

Durability: ``synchronous_commit = on`` on every connection; ``append``
returns after its transaction's commit is flushed. Idempotency by event id is
durable in every mode (ANY included): the unique index on ``id`` refuses a
stored id in the guessed statement (the whole statement rolls back), and the
locked path looks the ids up under the head lock. An append whose connection dies
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

import contextlib
import re
import struct
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
# 2 dropped the foreign key events -> streams; 3 added the server functions append_events and
# crc_rebase; 4 dropped streams.revision (a stream's revision is its newest event's, read from the
# events' (stream_id, revision) index, so an append to an existing stream writes no streams row) and
# append_events (one statement does its work, _APPEND_GUESSED), and added rebased_record and
# rebased_checksum. An older store is upgraded when opened for writing.
SCHEMA_VERSION: Final = 4
REMEMBERED_STREAMS: Final = 100_000  # stream revisions kept for guessing the state of the next append
READ_PAGE: Final = 1000  # rows per query
IDLE_CONNECTIONS: Final = 8  # pooled connections kept open between calls
CONNECT_TIMEOUT_S: Final = 5
LISTEN_POLL_S: Final = 0.25  # how often the listener thread looks up from its socket

_SCHEMA_NAME = re.compile(r"[a-z_][a-z0-9_]{0,47}")
_RECORD_ENCODER: Final = msgspec.msgpack.Encoder(uuid_format="bytes")
_RECORD_DECODER: Final = msgspec.msgpack.Decoder(RecordedEvent)
# A record's revision, position, recorded_at and occurred_at (consecutive in
# RecordedEvent) are written as one window of four msgpack int64s (0xd3 and 8
# bytes, big-endian), so that the server can rewrite them in place when the
# state it appends to is not the one the client encoded the record for.
_WINDOW: Final = struct.Struct(">BqBqBqBq")
_INT64: Final = 0xD3
_ARRAY_OF_9: Final = b"\x99"  # msgpack's header of RecordedEvent's nine fields
_ZERO_RUN_KEYS: dict[int, int] = {}  # record tail length: _zero_run_key (lengths repeat)
_ZEROS: Final = memoryview(bytes(1 << 16))
_CRC_POLY: Final = 0xEDB88320  # CRC-32 (zlib's), reflected


def _crc_table() -> list[int]:
    table = []
    for byte in range(256):
        value = byte
        for _ in range(8):
            value = (value >> 1) ^ _CRC_POLY if value & 1 else value >> 1
        table.append(value)
    return table

_TABLES: Final = (
    """CREATE TABLE IF NOT EXISTS head (
        one BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (one),
        position BIGINT NOT NULL,
        recorded_at BIGINT NOT NULL,
        version INTEGER NOT NULL)""",
    f"INSERT INTO head VALUES (TRUE, 0, 0, {SCHEMA_VERSION}) ON CONFLICT DO NOTHING",
    """CREATE TABLE IF NOT EXISTS streams (
        stream_id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        name TEXT NOT NULL UNIQUE)""",
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
# CRC-32 of a record whose window changed, from its old CRC: CRC-32 is linear,
# so crc(new) = crc(old) xor the raw CRC (no init, no final xor) of old xor new,
# which is zero but for the window's 32 value bytes. That raw CRC is taken over
# the window (36 bytes, 8 at a time: slicing-by-8 tables ``t``), then run past
# the rest of the record (its zero bytes) by multiplying it by ``k`` = x^(8 *
# bytes after the window) mod P, which the client computes (``_zero_run_key``):
# a byte of ``k`` at a time (Horner; times x^8 is one table step), each byte's
# product from the register times x^0..x^7 (``r0``..``r7``). No loop over
# bits or bytes: ~20 statements a row. ``deltas``: the four fields' old xor new.
_CRC_REBASE: Final = """
    CREATE OR REPLACE FUNCTION crc_rebase(crc bigint, k bigint, deltas bigint[]) RETURNS bigint
    LANGUAGE plpgsql IMMUTABLE STRICT AS $fn$
    DECLARE
        t bigint[] := '{@TABLES@}'::bigint[];  -- t[256 * n + byte + 1]: the table for n bytes further on
        reg bigint := 0;
        d bigint;
        x bigint;
        r0 bigint; r1 bigint; r2 bigint; r3 bigint; r4 bigint; r5 bigint; r6 bigint; r7 bigint;
        acc bigint := 0;
    BEGIN
        FOREACH d IN ARRAY deltas LOOP
            reg := (reg >> 8) # t[(reg & 255) + 1];  -- the field's 0xd3 marker, unchanged
            x := reg # (((d >> 56) & 255) | (((d >> 48) & 255) << 8) | (((d >> 40) & 255) << 16)
                        | (((d >> 32) & 255) << 24));
            reg := t[1793 + (x & 255)] # t[1537 + ((x >> 8) & 255)] # t[1281 + ((x >> 16) & 255)]
                   # t[1025 + ((x >> 24) & 255)] # t[769 + ((d >> 24) & 255)] # t[513 + ((d >> 16) & 255)]
                   # t[257 + ((d >> 8) & 255)] # t[1 + (d & 255)];
        END LOOP;
        r0 := reg;
        @POWERS@
        @HORNER@
        RETURN crc # acc;
    END $fn$"""


def _crc_rebase_sql() -> str:
    """``_CRC_REBASE`` with its tables and its unrolled multiplication filled in."""
    tables = [_crc_table()]
    for _ in range(7):
        tables.append([(value >> 8) ^ tables[0][value & 255] for value in tables[-1]])
    powers = "\n        ".join(
        f"r{i + 1} := (r{i} >> 1) # ((r{i} & 1) * {_CRC_POLY});" for i in range(7))
    horner = "\n        ".join(
        "acc := ((acc >> 8) # t[(acc & 255) + 1]) # "
        + " # ".join(f"(((k >> {31 - 8 * byte - i}) & 1) * r{i})" for i in range(8)) + ";"
        for byte in (3, 2, 1, 0))
    return (_CRC_REBASE.replace("@TABLES@", ",".join(str(v) for table in tables for v in table))
            .replace("@POWERS@", powers).replace("@HORNER@", horner))


# A record whose window changed, and its CRC, for ``_APPEND_GUESSED``: functions of
# their own (PL/pgSQL, never inlined) because they run only when a guess was
# wrong, while an expression written in the INSERT was compiled on every call
# (with only two arrays unnested: server CPU 320 -> 273 us a single-event call,
# medians of three alternations).
_REBASED_RECORD: Final = """
    CREATE OR REPLACE FUNCTION rebased_record(b bytea, m bigint, new_revision bigint, new_position bigint, stamped_at bigint)
    RETURNS bytea LANGUAGE plpgsql IMMUTABLE STRICT AS $fn$
    DECLARE
        o integer := ((m >> 32) & 65535)::integer;  -- where the window starts
    BEGIN
        RETURN overlay(b PLACING
            decode('d3', 'hex') || int8send(new_revision) || decode('d3', 'hex') || int8send(new_position)
            || CASE WHEN (m >> 48) & 1 = 1 THEN decode('d3', 'hex') || int8send(stamped_at)
                    ELSE substring(b FROM o + 19 FOR 9) END
            || CASE WHEN (m >> 48) & 2 = 2 THEN decode('d3', 'hex') || int8send(stamped_at)
                    ELSE substring(b FROM o + 28 FOR 9) END
            FROM o + 1 FOR 36);
    END $fn$"""
_REBASED_CHECKSUM: Final = """
    CREATE OR REPLACE FUNCTION rebased_checksum(c bigint, m bigint, revision_delta bigint, position_delta bigint,
                                                time_delta bigint)
    RETURNS bigint LANGUAGE plpgsql IMMUTABLE STRICT AS $fn$
    BEGIN
        RETURN crc_rebase(c, m & 4294967295, ARRAY[revision_delta, position_delta,
            CASE WHEN (m >> 48) & 1 = 1 THEN time_delta ELSE 0 END,
            CASE WHEN (m >> 48) & 2 = 2 THEN time_delta ELSE 0 END]);
    END $fn$"""
_FUNCTIONS: Final = (_crc_rebase_sql(), _REBASED_RECORD, _REBASED_CHECKSUM)
_APPEND_EVENTS_3: Final = (  # version 3's server function, dropped by the upgrade to 4
    "append_events(bigint, bigint, text, uuid[], text[], bigint[], boolean[], text[], bigint[], uuid[], text[], "
    "bytea[], bigint[], bigint[])")
# The append, whole, in one statement in autocommit, so the head lock is held
# only for the statement's work and the commit flush, never across a client
# round trip. The client encodes the rows for the state it guesses (head
# position ``head`` and time ``time``, each stream's revision ``before``, -1:
# no such stream) and decides each request's outcome for it. ``guess`` reads
# each stream's id and revision (its newest event's); if every request still
# fits (a stream a request expects at a revision, ``free`` false, has not
# moved), ``h`` takes the head lock by moving the head, and the rows are
# re-based on the real state: positions move by ``moved`` (the head's real
# distance from the guess: an UPDATE that waited for the lock re-reads the
# newest head), a stream's revisions by its move, stamped times become
# ``stamped_at`` (never before the head's time); a record that changed is
# rewritten in its window and its CRC re-based (``places``: the CRC key, the
# window's offset << 32, the stamped times << 48: 1 recorded_at, 2
# occurred_at). Rows are in position order; ``row_streams`` index ``names``.
# ``guess`` reads the statement's snapshot, taken before any wait for the
# lock, so it can miss what an appender committed during the wait: the unique
# indexes then refuse the rows (a stored id, a taken (stream, revision), a
# taken stream name) and the whole statement rolls back, as when the outcome
# depends on more than the guess (a stream moved that a request expects at a
# revision: no row, nothing written); the client then decides under the lock
# (``_locked``). Replaces version 3's PL/pgSQL function: the same work in
# one statement cost ~30-50 us less server CPU a single-event call (no
# function call, no statements of its own; interleaved blocks, medians).
_APPEND_GUESSED_TEMPLATE: Final = """
    WITH guess AS (
        SELECT u.k, u.name, s.stream_id, coalesce(r.revision, -1) - u.before AS move,
               (coalesce(r.revision, -1) = u.before OR u.free) AND (s.stream_id IS NOT NULL OR u.before = -1) AS fits
        FROM unnest(%(names)b::text[], %(before)b::bigint[], %(free)b::boolean[])
             WITH ORDINALITY AS u(name, before, free, k)
        LEFT JOIN streams s ON s.name = u.name
        LEFT JOIN LATERAL (SELECT e.revision FROM events e WHERE e.stream_id = s.stream_id
                           ORDER BY e.revision DESC LIMIT 1) r ON TRUE),
    c AS (
        SELECT bool_and(g.fits) AS fits, array_agg(g.move ORDER BY g.k) AS moves,
               array_agg(g.stream_id ORDER BY g.k) AS stream_ids
        FROM guess g),
    h AS (
        UPDATE head SET position = position + %(count)b::bigint, recorded_at = greatest(recorded_at, %(time)b::bigint)
        WHERE (SELECT c.fits FROM c)
        RETURNING position - %(count)b::bigint - %(head)b::bigint AS moved, recorded_at AS stamped_at),@NEW_STREAMS@
    e AS (
        INSERT INTO events (position, stream_id, revision, id, type, record, checksum)
        SELECT x.p + h.moved, @STREAM_ID@, x.r + x.move, (%(ids)b::uuid[])[u.q], u.t,
               CASE WHEN x.same THEN u.b
                    ELSE rebased_record(u.b, x.m, x.r + x.move, x.p + h.moved, h.stamped_at) END,
               CASE WHEN x.same THEN x.c
                    ELSE rebased_checksum(x.c, x.m, x.r # (x.r + x.move), x.p # (x.p + h.moved),
                                          %(time)b::bigint # h.stamped_at) END
        FROM h, c, unnest(%(types)b::text[], %(records)b::bytea[]) WITH ORDINALITY AS u(t, b, q),
        LATERAL (SELECT %(head)b::bigint + u.q AS p, (%(row_streams)b::bigint[])[u.q] AS s,
                        (%(revisions)b::bigint[])[u.q] AS r, (%(checksums)b::bigint[])[u.q] AS c,
                        c.moves[(%(row_streams)b::bigint[])[u.q]] AS move, (%(places)b::bigint[])[u.q] AS m,
                        h.moved = 0 AND c.moves[(%(row_streams)b::bigint[])[u.q]] = 0
                        AND ((%(places)b::bigint[])[u.q] >> 48 = 0 OR h.stamped_at = %(time)b::bigint) AS same) AS x)
    SELECT h.moved, c.moves, h.stamped_at,
           (SELECT count(*) FROM (SELECT pg_notify(%(channel)b::text,
                                                    (%(head)b::bigint + h.moved + %(count)b::bigint)::text)) AS sent)
    FROM h, c"""
# A stream the client does not remember (guessed new) is created here if it
# is; when every stream is remembered (it exists: streams are never removed,
# and ``guess`` refuses one that does not) the statement leaves this part out,
# which saves initialising an INSERT and its subplan on every call.
_NEW_STREAMS: Final = """
    n AS (
        INSERT INTO streams (name) SELECT g.name FROM guess g, h
        WHERE g.stream_id IS NULL AND g.k = ANY(%(row_streams)b::bigint[])
        RETURNING stream_id, name),"""
_APPEND_GUESSED: Final = (
    _APPEND_GUESSED_TEMPLATE.replace("@NEW_STREAMS@", _NEW_STREAMS).replace(
        "@STREAM_ID@", "coalesce(c.stream_ids[x.s], (SELECT n.stream_id FROM n WHERE n.name = (%(names)b::text[])[x.s]))"))
_APPEND_REMEMBERED: Final = (
    _APPEND_GUESSED_TEMPLATE.replace("@NEW_STREAMS@", "").replace("@STREAM_ID@", "c.stream_ids[x.s]"))
# ``_APPEND_REMEMBERED`` for the commonest append, one event to a stream this store remembers, with
# scalar parameters: the same guess, lock, re-basing and notification without unnesting and
# aggregating arrays. Returns the same row (the stream's move as a one-element array).
_APPEND_ONE: Final = """
    WITH guess AS (
        SELECT s.stream_id, coalesce((SELECT e.revision FROM events e WHERE e.stream_id = s.stream_id
                                      ORDER BY e.revision DESC LIMIT 1), -1) - %(before)b::bigint AS move
        FROM streams s WHERE s.name = %(name)b::text),
    h AS (
        UPDATE head SET position = position + 1, recorded_at = greatest(recorded_at, %(time)b::bigint)
        WHERE (SELECT guess.move = 0 OR %(free)b::boolean FROM guess)
        RETURNING position - 1 - %(head)b::bigint AS moved, recorded_at AS stamped_at),
    e AS (
        INSERT INTO events (position, stream_id, revision, id, type, record, checksum)
        SELECT %(head)b::bigint + 1 + h.moved, guess.stream_id, %(revision)b::bigint + guess.move, %(id)b::uuid,
               %(type)b::text,
               CASE WHEN x.same THEN %(record)b::bytea
                    ELSE rebased_record(%(record)b::bytea, %(place)b::bigint, %(revision)b::bigint + guess.move,
                                        %(head)b::bigint + 1 + h.moved, h.stamped_at) END,
               CASE WHEN x.same THEN %(checksum)b::bigint
                    ELSE rebased_checksum(%(checksum)b::bigint, %(place)b::bigint, %(revision)b::bigint
                                          # (%(revision)b::bigint + guess.move), (%(head)b::bigint + 1)
                                          # (%(head)b::bigint + 1 + h.moved), %(time)b::bigint # h.stamped_at) END
        FROM h, guess, LATERAL (SELECT h.moved = 0 AND guess.move = 0
                                   AND (%(place)b::bigint >> 48 = 0 OR h.stamped_at = %(time)b::bigint) AS same) x)
    SELECT h.moved, ARRAY[guess.move], h.stamped_at, pg_notify(%(channel)b::text, (%(head)b::bigint + 1 + h.moved)::text)
    FROM h, guess"""
# The unique indexes that refuse a guessed append's rows when the guess missed
# what another appender committed (``_APPEND_GUESSED``): the locked path decides.
_GUESS_REFUSED_BY: Final = frozenset({"events_by_id", "events_stream_id_revision_key", "streams_name_key"})
_UPGRADES: Final = {  # version: the statements that bring it to the next
    1: ("ALTER TABLE events DROP CONSTRAINT IF EXISTS events_stream_id_fkey", "UPDATE head SET version = 2"),
    2: (*_FUNCTIONS, "UPDATE head SET version = 3"),
    3: ("ALTER TABLE streams DROP COLUMN IF EXISTS revision", f"DROP FUNCTION IF EXISTS {_APPEND_EVENTS_3}",
        *_FUNCTIONS, "UPDATE head SET version = 4"),
}
_LOCK_HEAD: Final = "SELECT position, recorded_at FROM head FOR UPDATE"  # the append lock
# A stream's revision (that of its newest event) for a row ``s`` of streams: one index probe.
_NEWEST_REVISION: Final = (
    "(SELECT e.revision FROM events e WHERE e.stream_id = s.stream_id ORDER BY e.revision DESC LIMIT 1)")
# Stored ids among the transaction's events (id, stream, revision, position),
# then its streams' revisions (NULL, name, revision, stream_id): one round trip.
_LOOKUP: Final = f"""
    SELECT e.id, s.name, e.revision, e.position
    FROM events e JOIN streams s USING (stream_id) WHERE e.id = ANY(%b::uuid[])
    UNION ALL
    SELECT NULL, s.name, {_NEWEST_REVISION}, s.stream_id FROM streams s WHERE s.name = ANY(%b::text[])"""
# One statement writes a whole transaction: the new streams (each gets its id
# here), the events (joined to their stream by name), the head, and the NOTIFY
# that wakes subscribers at the commit.
_WRITE: Final = """
    WITH n AS (INSERT INTO streams (name) SELECT unnest(%b::text[]) RETURNING stream_id, name),
    s AS (SELECT stream_id, name FROM n UNION ALL SELECT stream_id, name FROM streams WHERE name = ANY(%b::text[])),
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
                    for statement in (*_TABLES, *_FUNCTIONS):
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
        costly enough to compile (~100 ms a statement). And with generic plans
        always: the guessed append takes arrays, and a custom plan
        for each call's arrays cost ~100-250 us of server CPU a call in
        planning (plans do not depend on the arrays' contents).
        """
        import psycopg

        options = f"-c search_path={self.schema} -c synchronous_commit=on"
        if writer:
            options += " -c enable_seqscan=off -c jit=off -c plan_cache_mode=force_generic_plan"
        conn = psycopg.connect(self._conninfo, autocommit=True, options=options)
        if writer:
            _register_array_dumpers(conn)
        return conn

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
        return self._submit(_Request(stream, encoded, expected))

    def append_multi(self, requests: Iterable[AppendRequest]) -> list[AppendResult]:
        """Every request in one transaction of its own: all are stored, or none."""
        prepared = prepare_multi(requests)
        multi = _Multi([_Request(stream, encoded, expected) for stream, encoded, expected in prepared])
        return self._submit(multi)  # type: ignore[return-value]

    def _submit(self, request: _Request | _Multi) -> AppendResult | list[AppendResult]:
        """Queue ``request``; the first appender to find no commit under way commits the queue; its outcome.

        Leader-follower group commit: while one appender commits, others
        queue; when it is done, one of them commits everything queued in one
        transaction. A lone appender commits at once, on its own thread.
        Outcomes are handed over in each request's ``outcome`` under
        ``_queue`` (followers wait on it anyway; a Future each cost a lone
        append its Condition).
        """
        if self._read_only:
            raise StoreReadOnly(f"{self._shown} was opened read-only; nothing can be appended through it")
        with self._queue:
            check_open(self._closed, self.uri)
            self._pending.append(request)
            while self._leading and request.outcome is _PENDING:
                self._queue.wait()
            if request.outcome is not _PENDING:
                return _returned(request.outcome)
            self._leading = True
            group, self._pending = self._pending, []
        try:
            for part in transactions(group, _Multi):
                self._commit(part)
        finally:
            for left in group:  # the leader was interrupted (KeyboardInterrupt, say) before these ended
                if left.outcome is _PENDING:
                    left.outcome = StoreError("the append was interrupted before its transaction ended; "
                                              "it may or may not be stored (retrying with the same ids is safe)")
            with self._queue:
                self._leading = False
                self._queue.notify_all()
        return _returned(request.outcome)

    def _commit(self, group: list) -> None:
        """One transaction for ``group``; every request gets its outcome."""
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
                request.outcome = error
            return
        for request, outcome in zip(group, outcomes, strict=True):
            request.outcome = outcome

    def _transaction(self, group: list) -> list:
        """One statement (``_on_server``); two more round trips when it cannot decide."""
        if self._writer is None:
            self._writer = self._connect(writer=True)
            self._forget()
        multi = isinstance(group[0], _Multi)
        requests = group[0].parts if multi else group
        outcomes = self._on_server(self._writer, requests, multi)
        if outcomes is None:
            outcomes = self._locked(self._writer, requests, multi)
        return outcomes

    def _on_server(self, conn: Any, requests: list[_Request], multi: bool) -> list | None:
        """The whole append in one statement, its own transaction (``_APPEND_GUESSED``).

        The rows are encoded and the outcomes decided for the state this
        store guesses (after its own last commit; streams it has not written
        are guessed new); the server re-bases both on the real state under the
        head lock. None when an outcome depends on more than the guess (a
        refused request, a retry, an expected revision of a stream that
        moved): nothing was written, and ``_locked`` decides.
        """
        from psycopg import errors

        position, last_time = self._head or (0, 0)
        names = list({request.stream: None for request in requests})
        guessed = {name: self._revisions[name] for name in names if name in self._revisions}
        batch = _Batch(position, max(self._clock(), last_time), {}, dict(guessed))
        try:
            outcomes = _decide(batch, requests, multi)
        except StoreError:
            return None
        if not batch.rows or any(isinstance(outcome, BaseException) for outcome in outcomes):
            return None
        if batch.rows == 1 and len(requests) == 1 and guessed:  # one event to a remembered stream
            statement, arguments = _APPEND_ONE, _one_arguments(position, batch, requests[0], guessed, self._channel)
        else:
            statement = _APPEND_REMEMBERED if len(guessed) == len(names) else _APPEND_GUESSED
            arguments = _guessed_arguments(position, batch, requests, names, guessed, self._channel)
        try:
            row = conn.execute(statement, arguments).fetchone()
        except errors.UniqueViolation as error:
            if error.diag.constraint_name not in _GUESS_REFUSED_BY:
                raise
            return None  # the guess missed a commit made while it waited for the lock: ``_locked`` decides
        if row is None:
            return None
        moved, stream_moves, stamped_at, _ = row
        moves = dict(zip(names, stream_moves, strict=True))
        self._remember(batch.position + moved, stamped_at,
                       {name: revision + moves[name] for name, revision in batch.revisions.items()})
        if multi:
            return [[_rebased(result, request, moved, moves)
                     for result, request in zip(outcomes[0], requests, strict=True)]]
        return [_rebased(outcome, request, moved, moves) for outcome, request in zip(outcomes, requests, strict=True)]

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
            batch = _Batch(position, max(self._clock(), last_time), stored, dict(revisions))
            outcomes = _decide(batch, requests, multi)
            if batch.rows:
                new_streams = [name for name in batch.touched if name not in revisions]
                conn.execute(_WRITE, (new_streams, list(batch.touched), *batch.columns[:7],
                                      batch.position, batch.now, self._channel))
        self._remember(batch.position, batch.now, batch.revisions)
        return outcomes

    def _remember(self, position: int, now: int, revisions: dict[str, int]) -> None:
        """Keep the state after a commit: the next append guesses it (``_on_server``)."""
        self._head = (position, now)
        if len(self._revisions) > REMEMBERED_STREAMS:
            self._revisions.clear()
        self._revisions.update(revisions)

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
        rows = self._query(f"SELECT {_NEWEST_REVISION} FROM streams s WHERE s.name = %s", (stream,))
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


_PENDING: Final = object()  # a request's outcome until its transaction has ended


def _returned(outcome: Any) -> Any:
    """A request's outcome as its caller gets it: the result, or the error raised."""
    if isinstance(outcome, BaseException):
        raise outcome
    return outcome


class _Request:
    __slots__ = ("stream", "events", "expected", "outcome")

    def __init__(self, stream: str, events: list, expected: Expected) -> None:
        self.stream = stream
        self.events = events  # [(NewEvent, data bytes, Metadata)]
        self.expected = expected
        self.outcome: Any = _PENDING  # an AppendResult or the error, set by the committing appender


class _Multi:
    """An ``append_multi``: a transaction of its own, all or nothing."""

    __slots__ = ("parts", "outcome")

    def __init__(self, parts: list[_Request]) -> None:
        self.parts = parts
        self.outcome: Any = _PENDING  # as _Request's: the list of results, or the error



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
        # name, position, revision, id, type, record, crc; then for the guessed append each record's
        # place: the key that runs a CRC past the bytes after its window, where the window starts
        # (<< 32) and which times were stamped (<< 48: 1 recorded_at, 2 occurred_at)
        self.columns: tuple[list, ...] = ([], [], [], [], [], [], [], [])

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
        names, positions, revisions, event_ids, types, records, checksums, places = self.columns
        window = len(_RECORD_ENCODER.encode((encoded[0][0].id, stream)))  # array header, id, stream
        for offset, (event, data, metadata) in enumerate(encoded):
            revision, position = first_revision + offset, first_position + offset
            stamped = event.recorded_at is None
            recorded_at = self.now if stamped else event.recorded_at
            occurred_at = recorded_at if event.occurred_at is None else event.occurred_at
            # RecordedEvent's fields as a tuple, the window as one raw item: six items, nine fields
            record = _ARRAY_OF_9 + _RECORD_ENCODER.encode((event.id, stream, msgspec.Raw(_WINDOW.pack(
                _INT64, revision, _INT64, position, _INT64, recorded_at, _INT64, occurred_at)),
                event.type, data, metadata))[1:]  # fmt: skip
            names.append(stream)
            positions.append(position)
            revisions.append(revision)
            event_ids.append(event.id)
            types.append(event.type)
            records.append(record)
            checksums.append(zlib.crc32(record))
            stamps = stamped | (stamped and event.occurred_at is None) << 1
            tail = len(record) - window - _WINDOW.size
            key = _ZERO_RUN_KEYS.get(tail)
            if key is None:
                if len(_ZERO_RUN_KEYS) > 4096:
                    _ZERO_RUN_KEYS.clear()
                key = _ZERO_RUN_KEYS[tail] = _zero_run_key(tail)
            places.append(key | window << 32 | stamps << 48)
            self.stored[event.id] = StoredId(stream, revision, position)
        self.position += len(encoded)
        self.rows += len(encoded)
        self.revisions[stream] = self.touched[stream] = first_revision + len(encoded) - 1
        return AppendResult(first_position, self.position, first_revision + len(encoded))


def _zero_run_key(length: int) -> int:
    """x^(8 * length) mod P: what runs a raw CRC-32 register past ``length`` bytes (``_CRC_REBASE``)."""
    register = 0x80000000 ^ 0xFFFFFFFF  # x^0, as zlib's crc32 takes a register
    while length > 0:
        run = min(length, len(_ZEROS))
        register = zlib.crc32(_ZEROS[:run], register)
        length -= run
    return register ^ 0xFFFFFFFF


class _Array(bytes):
    """A one-dimensional PostgreSQL array already in binary wire format; its element type in ``oid``.

    psycopg infers a list's element type and dumps each element in Python, which
    cost ~8 us of client CPU per array parameter of a guessed append (ten of
    them); these are built with ``struct`` and sent as they are.
    """

    oid = 0


class _Int8Array(_Array):
    oid = 1016


class _TextArray(_Array):
    oid = 1009


class _UuidArray(_Array):
    oid = 2951


class _ByteaArray(_Array):
    oid = 1001


class _BoolArray(_Array):
    oid = 1000


_ELEMENT_OIDS: Final = {_Int8Array: 20, _TextArray: 25, _UuidArray: 2950, _ByteaArray: 17, _BoolArray: 16}
_ARRAY_HEADER: Final = struct.Struct(">iiIii")  # dimensions, has nulls, element type, length, lower bound
_LENGTH: Final = struct.Struct(">i")


def _array(kind: type[_Array], items: list[bytes]) -> _Array:
    """``items`` (each element's binary form, none NULL) as one binary array of ``kind``."""
    if not items:
        return kind(struct.pack(">iiI", 0, 0, _ELEMENT_OIDS[kind]))
    return kind(_ARRAY_HEADER.pack(1, 0, _ELEMENT_OIDS[kind], len(items), 1)
                + b"".join([part for item in items for part in (_LENGTH.pack(len(item)), item)]))


def _int8_array(values: list[int]) -> _Array:
    header = _ARRAY_HEADER.pack(1, 0, 20, len(values), 1) if values else struct.pack(">iiI", 0, 0, 20)
    return _Int8Array(header + struct.pack(">" + "iq" * len(values), *[x for v in values for x in (8, v)]))


def _register_array_dumpers(conn: Any) -> None:
    """Let ``conn`` send ``_Array`` parameters as they are, typed by their class."""
    from psycopg.adapt import Dumper
    from psycopg.pq import Format

    for kind in _ELEMENT_OIDS:
        dumper = type(f"{kind.__name__}Dumper", (Dumper,), {
            "format": Format.BINARY, "oid": kind.oid, "dump": lambda self, obj: obj})
        conn.adapters.register_dumper(kind, dumper)


def _guessed_arguments(position: int, batch: _Batch, requests: list[_Request], names: list[str],
                       guessed: dict[str, int], channel: str) -> dict[str, Any]:
    """The parameters of ``_APPEND_GUESSED`` for ``batch``, encoded for the guessed state."""
    any_only = dict.fromkeys(names, True)
    for request in requests:
        any_only[request.stream] = any_only[request.stream] and request.expected is ANY
    streams, _, revisions, ids, types, records, checksums, places = batch.columns
    index = {name: k for k, name in enumerate(names, 1)}
    return {"head": position, "time": batch.now, "count": batch.rows, "channel": channel,
            "names": _array(_TextArray, [name.encode() for name in names]),
            "before": _int8_array([guessed.get(name, -1) for name in names]),
            "free": _array(_BoolArray, [b"\x01" if free else b"\x00" for free in any_only.values()]),
            "row_streams": _int8_array([index[name] for name in streams]), "revisions": _int8_array(revisions),
            "ids": _array(_UuidArray, [i.bytes for i in ids]), "types": _array(_TextArray, [t.encode() for t in types]),
            "records": _array(_ByteaArray, records), "checksums": _int8_array(checksums),
            "places": _int8_array(places)}


def _one_arguments(position: int, batch: _Batch, request: _Request, guessed: dict[str, int],
                   channel: str) -> dict[str, Any]:
    """The parameters of ``_APPEND_ONE``: ``batch`` holds one event of ``request``, whose stream is in ``guessed``."""
    _, _, (revision,), (event_id,), (event_type,), (record,), (checksum,), (place,) = batch.columns
    return {"head": position, "time": batch.now, "channel": channel, "name": request.stream,
            "before": guessed[request.stream], "free": request.expected is ANY, "revision": revision,
            "id": event_id, "type": event_type, "record": record, "checksum": checksum, "place": place}


def _rebased(result: AppendResult | BaseException, request: _Request, moved: int,
             moves: dict[str, int]) -> AppendResult | BaseException:
    """``result`` decided for the guessed state, moved onto the real one (``_APPEND_GUESSED``)."""
    if isinstance(result, BaseException):
        return result
    move = moves[request.stream]
    return AppendResult(result.first_position + moved, result.last_position + moved, result.next_revision + move)


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

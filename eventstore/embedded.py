"""Embedded backend: durable SQLite on disk, the default store.

Durability: WAL with ``synchronous=FULL``, so ``append`` returns only after
its transaction is on disk. One commit runs at a time. A lone synchronous
appender commits on its own thread; concurrent appenders (and every
``append_async``) queue for a committer thread, which commits everything queued
in one transaction, waiting up to ``COMMIT_DELAY`` for appenders it expects
(see ``_commit_loop``). Within a group each request gets its own outcome: the
group is written with a few ``executemany`` calls, and if an id repeats it is
rolled back and written request by request in savepoints (``_group_commit``).
Other processes may append to the same file. A transaction takes the last
position and its streams' revisions from the writer's own last commit only
while SQLite's ``PRAGMA data_version`` shows that no other connection has
committed since (``_group_commit.StreamCache``); otherwise it reads them from
the file.

Reads go page by page (``_READ_PAGE`` rows), each page its own short read
transaction, every row's CRC-32 checked and the page decoded in one msgpack
call. A read that can return ``READ_AHEAD_MIN`` events or more hands the
queries and checksums to a read-ahead process (``_readahead``) and only
decodes here, so a long replay uses a second core; same pages, same errors.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import json
import os
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from itertools import chain
from operator import attrgetter
from pathlib import Path
from typing import Final

import msgspec

from . import _readahead, _sqlite
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
from ._damage import inspect_before_open
from ._errors import StoreError, StoreNotFound, StoreReadOnly
from ._group_commit import (
    STREAM_REVISION,
    RepeatInGroup,
    StreamCache,
    write_each,
    write_group,
    write_repeats,
)
from ._rules import transactions, validate_expected
from ._types import ANY, AppendResult, Expected, NewEvent, RecordedEvent
from .validation import prepare_batch, prepare_multi
from .workers import widen_pipe, worker_exit

COMMIT_DELAY: Final = 0.002  # seconds a group waits for appenders known to be coming
_READ_PAGE: Final = 256  # rows per query: keeps each page's buffers off fresh mmap'd memory
READ_AHEAD_MIN: Final = 50_000  # events a read must be able to return to get a read-ahead process
READ_AHEAD_PIPE_BYTES: Final = 1 << 20
READ_AHEAD_EXIT_S: Final = 10.0  # deadline for a worker that sent its last frame to exit


class _Request:
    __slots__ = ("stream", "events", "expected", "future")

    def __init__(self, stream: str, events: list, expected: Expected) -> None:
        self.stream = stream
        self.events = events  # [(NewEvent, data bytes, Metadata)]
        self.expected = expected
        # Set when queued for the committer; an appender committing on its own thread needs none
        # (a Future and its Condition were a visible share of a lone append's CPU).
        self.future: concurrent.futures.Future[AppendResult] | None = None


class _Part(msgspec.Struct, gc=False):
    """One request of an ``append_multi``: no future of its own (the multi-append has one).

    A struct, built in C (~0.1 us against ~0.3 for a class with ``__init__``): an import
    makes tens of thousands per ``append_multi``. It holds no reference cycle.
    """

    stream: str
    events: list  # [(NewEvent, data bytes, Metadata)]
    expected: Expected


class _MultiRequest:
    """An ``append_multi``: its parts commit in one transaction of their own, all or none."""

    __slots__ = ("parts", "future")

    def __init__(self, parts: list[_Part]) -> None:
        self.parts = parts
        self.future: concurrent.futures.Future[list[AppendResult]] | None = None  # as _Request's


class EmbeddedStore(EventStore):
    """The contract on one SQLite file; safe across threads, tasks and processes.

    ``recovery`` lists what opening had to repair (for example garbage after
    the last page, moved to a side file); it is empty for a healthy file.
    ``max_bytes`` caps the file size: an append past it raises ``StoreFull``.
    ``read_ahead`` lets a read that can return ``READ_AHEAD_MIN`` events or
    more run its queries and checksums in a second process (``_readahead``);
    the events, their order and every error are the same either way. By
    default it is on when this process may run on more than one CPU (with
    one, the worker would only take turns with the reader).

    ``create=False`` refuses a path with no store (``StoreNotFound``) instead
    of creating one. ``read_only=True`` (implies ``create=False``) opens
    without a writer: nothing on disk changes (no repair, no schema, no WAL
    checkpoint), appends raise ``StoreReadOnly``, and the file is read
    through SQLite's ``mode=ro``, or ``immutable=1`` when its directory is
    not writable and no WAL side files exist (see ``_sqlite.read_mode``).
    """

    capabilities = Capabilities(atomic_append_multi=True)

    def __init__(
        self,
        path: str | Path,
        *,
        clock: Callable[[], int] = time.time_ns,
        max_bytes: int | None = None,
        busy_timeout_ms: int = 30_000,
        read_ahead: bool | None = None,
        create: bool = True,
        read_only: bool = False,
    ) -> None:
        self.path = Path(path)
        self._read_ahead = _cpus_available() > 1 if read_ahead is None else read_ahead
        self.uri = f"embedded://{self.path if self.path.is_absolute() else '/./' + str(self.path)}"
        self._clock = clock
        self._busy_ms = busy_timeout_ms
        if self.path.is_dir():
            raise StoreNotFound(f"{self.path} is a directory, not a store file")
        if (read_only or not create) and not self.path.exists():
            raise StoreNotFound(f"no store at {self.path}")
        self._mode = _sqlite.read_mode(self.path) if read_only else None
        if read_only:
            self.capabilities = Capabilities(atomic_append_multi=True, read_only=True)
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self.recovery = inspect_before_open(self.path, repair=not read_only)
        self._writer: sqlite3.Connection | None = None
        if read_only:
            probe = _sqlite.connect(self.path, writer=False, busy_timeout_ms=busy_timeout_ms, mode=self._mode)
            try:
                _sqlite.check_schema(probe, self.path)
            finally:
                probe.close()
        else:
            self._writer = _sqlite.connect(self.path, writer=True, busy_timeout_ms=busy_timeout_ms)
            _sqlite.initialise(self._writer, self.path)
        if max_bytes is not None and self._writer is not None:
            pages = max(1, max_bytes // _sqlite.PAGE_SIZE)
            self._writer.execute(f"PRAGMA max_page_count = {int(pages)}")
        self._queue = threading.Condition()
        self._pending: list[_Request] = []
        self._committing = False  # a commit is under way (committer thread or an inline appender)
        self._grouping = False  # the committer saw concurrent appenders: no inline commits for now
        self._committer: threading.Thread | None = None
        self._appended = threading.Condition()
        self._readers: list[tuple[sqlite3.Connection, threading.Lock]] = []
        self._local = threading.local()
        self._last_recorded_at = 0
        self._last_committed = 0
        self._cache = StreamCache()  # the writer's last committed state (used while no other connection commits)
        self._closed = False
        try:
            self._verify_tail()
        except BaseException:
            self.close()
            raise

    # -- writing ------------------------------------------------------------
    def append(
        self, stream: str, events: Iterable[NewEvent], expected: Expected = ANY
    ) -> AppendResult:
        return self._commit(self._request(stream, events, expected))

    def append_multi(self, requests: Iterable[AppendRequest]) -> list[AppendResult]:
        """Every request in one SQLite transaction of its own: all are stored, or none.

        It queues like any append (one commit at a time) but never shares its
        transaction with other appenders, so a failure of one of its requests
        rolls back exactly its own writes. A lock held by another process is
        waited for up to the busy timeout, then the whole call fails with
        ``StoreLocked`` and nothing is written.
        """
        prepared = prepare_multi(requests)
        multi = _MultiRequest([_Part(stream, encoded, expected) for stream, encoded, expected in prepared])
        return self._commit(multi)  # type: ignore[return-value]

    async def append_async(
        self, stream: str, events: Iterable[NewEvent], expected: Expected = ANY
    ) -> AppendResult:
        # Never inline: committing on the event loop's thread would block the loop.
        request = self._request(stream, events, expected)
        with self._queue:
            self._check_writable()
            future = self._enqueue(request)
        return await asyncio.wrap_future(future)

    def _request(self, stream: str, events: Iterable[NewEvent], expected: Expected) -> _Request:
        """Validate and encode on the caller's thread."""
        encoded = prepare_batch(stream, events)
        validate_expected(expected)
        return _Request(stream, encoded, expected)

    def _check_writable(self) -> None:
        if self._writer is None:
            raise StoreReadOnly(f"{self.path} was opened read-only; nothing can be appended through it")
        check_open(self._closed, self.uri)

    def _commit(self, request: _Request | _MultiRequest) -> AppendResult | list[AppendResult]:
        """Commit ``request`` and return its outcome (raise its error).

        When nothing is committing or queued and the committer has not seen
        concurrent appenders since its last group, the caller commits its own
        request on its own thread: a lone appender pays no hand-off to the
        committer and back (and no Future). Otherwise the request joins the
        committer's queue and is group-committed with the others.
        """
        with self._queue:
            self._check_writable()
            if self._pending or self._committing or self._grouping:
                future = self._enqueue(request)
            else:
                future = None
                self._committing = True
        if future is not None:
            return future.result()
        try:
            if isinstance(request, _MultiRequest):
                return self._transaction(request.parts, whole=True)
            (outcome,) = self._transaction([request])
        finally:
            with self._queue:
                self._committing = False
                self._queue.notify_all()
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    def _enqueue(self, request: _Request | _MultiRequest) -> concurrent.futures.Future:
        """Queue ``request`` for the committer thread (started on first use); hold ``_queue``."""
        request.future = concurrent.futures.Future()
        self._pending.append(request)
        if self._committer is None:
            self._committer = threading.Thread(
                target=self._commit_loop, name=f"unbroken-commit {self.path.name}", daemon=True
            )
            self._committer.start()
        self._queue.notify_all()
        return request.future

    def _commit_loop(self) -> None:
        """Commit whatever is queued, one transaction per group, until the store closes.

        Group commit with an adaptive delay: ``expected`` is how many appenders
        were active around the last commit (those it answered plus those that
        queued meanwhile). While fewer are queued, wait up to ``COMMIT_DELAY``
        for the rest, which were woken by the last commit and are about to
        append again. A lone appender never waits (``expected`` is 1).
        """
        expected = 1
        while True:
            with self._queue:
                # One commit at a time: an appender may be committing inline.
                while self._committing or (not self._pending and not self._closed):
                    self._queue.wait()
                if len(self._pending) < expected and not self._closed:
                    self._queue.wait_for(
                        lambda n=expected: len(self._pending) >= n or self._closed, COMMIT_DELAY
                    )
                group, self._pending = self._pending, []
                self._committing = bool(group)
            if not group:
                if self._closed:
                    return
                continue
            try:
                for part in transactions(group, _MultiRequest):
                    self._commit_group(part)
            finally:
                with self._queue:
                    self._committing = False
                    expected = len(group) + len(self._pending)
                    self._grouping = expected > 1  # appenders are concurrent: keep forming groups
                    self._queue.notify_all()

    def _commit_group(self, group: list) -> None:
        """One transaction for the queued group; each caller's future gets its own outcome.

        A request whose caller cancelled it (an ``append_async`` whose task was
        cancelled) before its transaction began is left out: nothing of it is
        written. Once a request's future is running it can no longer be cancelled.
        """
        group = [r for r in group if r.future.set_running_or_notify_cancel()]
        if not group:
            return
        try:
            if isinstance(group[0], _MultiRequest):
                outcomes = [self._transaction(group[0].parts, whole=True)]
            else:
                outcomes = self._transaction(group)
        except BaseException as error:  # the whole group failed: every caller hears why
            for request in group:
                request.future.set_exception(error)
            return
        for request, outcome in zip(group, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                request.future.set_exception(outcome)
            else:
                request.future.set_result(outcome)

    def _transaction(self, requests: list, whole: bool = False) -> list:
        """One transaction for ``requests``: each one's outcome; raises when the whole transaction failed.

        ``whole`` (an ``append_multi``'s parts): committed only if every
        request succeeds, else the first refusal is raised with its
        ``request_index`` and nothing is written.
        """
        conn = self._writer
        assert conn is not None
        with _sqlite.converted(self.path):
            conn.execute("BEGIN IMMEDIATE")
            try:
                now = max(self._clock(), self._last_recorded_at)
                outcomes, last = self._write(requests, now)
                if whole:
                    failed = next((i for i, o in enumerate(outcomes) if isinstance(o, BaseException)), None)
                    if failed is not None:
                        raise mark_request(outcomes[failed], failed)
                conn.execute("COMMIT")
            except BaseException:
                self._roll_back(conn)
                raise
        self._last_recorded_at = now
        self._committed(last)
        return outcomes

    def _roll_back(self, conn: sqlite3.Connection) -> None:
        """End a failed write transaction: nothing of it was committed."""
        if conn.in_transaction:
            conn.execute("ROLLBACK")
            self._cache.rolled_back()
        else:  # SQLite ended it on its own: whether a COMMIT that failed stored anything is not known here
            self._cache.forget()

    def _committed(self, last: int) -> None:
        """Keep the committed state; wake ``wait_for_append`` callers: positions up to ``last`` are committed."""
        self._cache.committed(last)
        with self._appended:
            self._last_committed = max(self._last_committed, last)
            self._appended.notify_all()

    def _write(self, group: list, now: int) -> tuple[list, int]:
        """Write ``group`` in the open transaction.

        On a repeated id (a retry, a re-import) the transaction starts over
        and the group's ids are looked up at once (``write_repeats``); only
        when ids repeat within the group itself is it written request by
        request, each in a savepoint (``write_each``).
        """
        conn = self._writer
        for write in (write_group, write_repeats):
            try:
                return write(conn, group, now, cache=self._cache)
            except (sqlite3.IntegrityError, RepeatInGroup):
                self._restart(conn)
        return write_each(conn, group, now)  # ids repeat within the group itself: one by one

    def _restart(self, conn: sqlite3.Connection) -> None:
        """Begin the write transaction again after a repeated id: nothing of the failed try stays."""
        self._cache.forget()  # what the failed try left pending, and the one-by-one path bypasses it
        if conn.in_transaction:  # SQLite has rolled back already when OR ROLLBACK refused a row
            conn.execute("ROLLBACK")  # part of the group may be written
        conn.execute("BEGIN IMMEDIATE")

    # -- reading ------------------------------------------------------------
    def read_stream(
        self,
        stream: str,
        from_revision: int | None = None,
        backwards: bool = False,
        limit: int | None = None,
    ) -> Iterator[RecordedEvent]:
        check_read_args(from_revision, limit, "from_revision")
        check_open(self._closed, self.uri)
        row = self._query("SELECT stream_id FROM streams WHERE name = ?", (stream,))
        if not row:
            return iter(())
        clause = "stream_id = ? AND revision {} ?"
        return self._paged(clause, [row[0][0]], "revision", from_revision, backwards, limit)

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
        return self._paged(clause + "position {} ?", params, "position", from_position, backwards, limit)

    def _paged(
        self,
        clause: str,
        params: list,
        key: str,
        start: int | None,
        backwards: bool,
        limit: int | None,
    ) -> Iterator[RecordedEvent]:
        """Read page by page, each page its own short read transaction (events chained in C)."""
        return chain.from_iterable(self._pages(clause, params, key, start, backwards, limit))

    def _pages(
        self,
        clause: str,
        params: list,
        key: str,
        start: int | None,
        backwards: bool,
        limit: int | None,
    ) -> Iterator[list[RecordedEvent]]:
        compare, order = ("<", "DESC") if backwards else (">", "ASC")
        cursor = (start + 1 if backwards else start - 1) if start is not None else None
        if cursor is None:
            cursor = (1 << 62) if backwards else -1
        where = f"FROM events WHERE {clause.format(compare)} ORDER BY {key} {order} LIMIT ?"
        if self._read_ahead and key == "position" and self._long_read(cursor, backwards, limit):
            worker = self._start_worker(f"SELECT record, checksum, {key} {where}", params, cursor, limit)
            if worker is not None:
                yield from self._pages_from(worker, backwards)
                return
        sql = f"SELECT record, checksum {where}"  # the cursor comes from the decoded events
        last_position = (1 << 62) if backwards else 0

        def page_after(at: int, size: int) -> list[RecordedEvent]:
            nonlocal last_position
            rows = self._query(sql, (*params, at, size))
            if not rows:
                return []
            events = _sqlite.decode_rows(rows, last_position, backwards)
            last_position = events[-1].position
            return events

        yield from _readahead.paged(page_after, attrgetter(key), cursor, _READ_PAGE, limit)

    def _long_read(self, cursor: int, backwards: bool, limit: int | None) -> bool:
        """Whether a ``read_all`` from ``cursor`` can return enough events to pay for a worker process.

        Stream reads never ask: a stream is short next to the log, and its
        length is not known from positions.
        """
        if limit is not None and limit < READ_AHEAD_MIN:
            return False
        last = self.last_position()
        span = min(cursor - 1, last) if backwards else last - cursor
        return span >= READ_AHEAD_MIN

    def _start_worker(self, sql: str, params: list, cursor: int, limit: int | None) -> subprocess.Popen | None:
        """The read-ahead process for one read (see ``_readahead``), or None if none can start."""
        if not sys.executable:
            return None  # an embedded interpreter with no Python to start: read in this one
        path = str(self.path) if self._mode is None else _sqlite.read_uri(self.path, self._mode)
        args = {"path": path, "uri": self._mode is not None, "busy_ms": self._busy_ms, "sql": sql, "params": params,
                "cursor": cursor, "page": _READ_PAGE, "limit": limit}
        try:
            worker = subprocess.Popen(
                [sys.executable, "-I", _readahead.__file__, json.dumps(args)],
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            )
        except OSError:
            return None  # no process to spare: read in this one
        widen_pipe(worker.stdout, READ_AHEAD_PIPE_BYTES)  # Linux: let it run ~16 pages ahead
        return worker

    def _pages_from(self, worker: subprocess.Popen, backwards: bool) -> Iterator[list[RecordedEvent]]:
        """Decode the worker's pages as they come; stop it when the read ends or is abandoned."""
        frames = worker.stdout
        assert frames is not None and worker.stderr is not None
        last_position = (1 << 62) if backwards else 0
        try:
            while len(head := frames.read(_readahead.HEADER.size)) == _readahead.HEADER.size:
                kind, n, length = _readahead.HEADER.unpack(head)
                payload = frames.read(length)
                if len(payload) < length:
                    break  # cut off mid-frame: the worker died
                check_open(self._closed, self.uri)  # a closed store stops a read, as in-process
                if kind == _readahead.END:
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        worker.wait(READ_AHEAD_EXIT_S)  # it exits on its own once the read is done
                    return
                if kind == _readahead.ERROR:
                    raise _sqlite.convert(_worker_error(payload), self.path)
                if kind == _readahead.ROWS:
                    events = _sqlite.decode_rows(_readahead.split_rows(payload, n), last_position, backwards)
                else:
                    records = functools.partial(_readahead.page_records, payload, n)
                    events = _sqlite.decode_page(memoryview(payload)[4 * n :], records, last_position, backwards)
                yield events
                last_position = events[-1].position
            raise StoreError(f"{self.path}: the read-ahead process stopped before the read ended "
                             f"({worker_exit(worker, READ_AHEAD_EXIT_S)})")
        finally:
            if worker.poll() is None:
                worker.kill()
            worker.wait()
            frames.close()
            worker.stderr.close()

    def stream_revision(self, stream: str) -> int | None:
        check_open(self._closed, self.uri)
        rows = self._query(f"SELECT {STREAM_REVISION} FROM streams WHERE name = ?", (stream,))
        return rows[0][0] if rows and rows[0][0] >= 0 else None

    def last_position(self) -> int:
        check_open(self._closed, self.uri)
        return self._query("SELECT max(position) FROM events", ())[0][0] or 0

    def _query(self, sql: str, params: tuple | list) -> list:
        with _sqlite.converted(self.path):
            conn, lock = self._reader()
            with lock:  # close() takes the lock before closing conn
                if self._closed:
                    raise sqlite3.ProgrammingError("Cannot operate on a closed database.")
                return conn.execute(sql, params).fetchall()

    def _reader(self) -> tuple[sqlite3.Connection, threading.Lock]:
        """This thread's read connection and the lock that keeps close() from racing it."""
        pair = getattr(self._local, "reader", None)
        if pair is None:
            conn = _sqlite.connect(self.path, writer=False, busy_timeout_ms=self._busy_ms, mode=self._mode)
            pair = (conn, threading.Lock())
            with self._queue:
                if self._closed:
                    pair[0].close()
                    raise sqlite3.ProgrammingError("Cannot operate on a closed database.")
                self._readers.append(pair)
            self._local.reader = pair
        return pair

    def _verify_tail(self, count: int = 64) -> None:
        """Read the newest events once so a damaged tail is reported at open, not later.

        Also resumes recorded times from the newest event, so they never step
        back across a restart even if the wall clock did.
        """
        newest = list(self.read_all(backwards=True, limit=count))
        self._last_recorded_at = max((e.recorded_at for e in newest), default=0)

    def check_integrity(self) -> list[str]:
        """SQLite's ``quick_check`` of the whole file: [] when its pages are sound."""
        check_open(self._closed, self.uri)
        with _sqlite.converted(self.path):
            conn, lock = self._reader()
            with lock:
                return _sqlite.quick_check(conn)

    # -- waiting and lifecycle ------------------------------------------------
    def wait_for_append(self, after_position: int, timeout: float) -> bool:
        if self._closed or self._last_committed > after_position:
            return True
        if self.last_position() > after_position:  # written by another handle or process
            return True
        with self._appended:
            if self._closed or self._last_committed > after_position:
                return True
            return self._appended.wait(timeout)

    async def wait_for_append_async(self, after_position: int, timeout: float) -> bool:
        return await asyncio.to_thread(self.wait_for_append, after_position, timeout)

    def close(self) -> None:
        """Commit what is already queued, then close every connection. Idempotent."""
        with self._queue:
            if self._closed:
                return
            self._closed = True
            self._queue.notify_all()
            committer = self._committer
        if committer is not None and committer is not threading.current_thread():
            committer.join()
        with self._queue:
            while self._committing:  # an appender committing inline finishes first
                self._queue.wait()
            readers, self._readers = self._readers, []
        for conn, lock in readers:
            with lock:
                conn.close()
        if self._writer is not None:
            self._writer.close()
        with self._appended:
            self._appended.notify_all()



def _cpus_available() -> int:
    """CPUs this process may run on (its affinity where the OS tells it)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _worker_error(payload: bytes) -> sqlite3.Error:
    """The SQLite error the read-ahead process met, rebuilt for ``_sqlite.convert``."""
    detail = json.loads(payload)
    error = sqlite3.OperationalError(detail["message"])
    error.sqlite_errorname = detail["errorname"]  # type: ignore[attr-defined]
    return error


def _filter_sql(filter: ReadFilter) -> tuple[str, list]:
    """SQL conditions (ending in AND) and parameters for a read filter; names are parameters."""
    clause, params = "", []
    if filter.types:
        clause += f"type IN ({','.join('?' * len(filter.types))}) AND "
        params.extend(filter.types)
    if filter.stream_prefixes:
        tests = " OR ".join("substr(name, 1, ?) = ?" for _ in filter.stream_prefixes)
        clause += f"stream_id IN (SELECT stream_id FROM streams WHERE {tests}) AND "
        for prefix in filter.stream_prefixes:
            params.extend((len(prefix), prefix))
    return clause, params

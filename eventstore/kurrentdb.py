"""KurrentDB backend (through esdbclient 1.1.7): the contract on a KurrentDB server or cluster.

Mapping: our stream revision is KurrentDB's stream position; our global
position is the event's commit position in ``$all``, a byte offset into the
server's transaction log (strictly increasing, not dense, not starting at 1).
``occurred_at`` and our ``Metadata`` travel in the event's JSON metadata.
``recorded_at`` is the server's timestamp (100 ns resolution), or an imported
event's own.

How the contract is met on a server that works differently:

- Positions are byte offsets, and KurrentDB starts a ``$all`` read only at a
  position where an event starts. ``read_all(from_position=X)`` for any X
  starts at the nearest event boundary at or below X that this store object
  has seen (positions of appends, reads and ``last_position``) and skips the
  events before X; with none known it starts at the beginning.
- KurrentDB's backward ``$all`` read excludes its start; ours includes it, so
  the event at X is fetched first.
- Every read sends its ``limit`` to the server (pages of ``PAGE``); ``limit=0``
  asks the server nothing.
- Stream-prefix filters go to the server as one regex ``(?:p1|p2).*`` (esdbclient
  wraps include patterns in ``^...$``) with every character outside
  ``[A-Za-z0-9_]`` written as a ``\\uXXXX`` escape (UTF-16, as .NET reads it).
  Type filters are applied here when a prefix filter is given too (the server
  takes one filter per read).
- esdbclient's default exclude filter hides ``$``-types and
  ``PersistentConfig\\d+`` types; this backend instead excludes system
  *streams* (names starting with ``$``, which ours never do), so every event
  we append is read back whatever its type.
- An append's result comes from the commit position the server returns (the
  batch's last event) and one stream read; when the server answers an
  idempotent retry (no position), the batch is looked up in its stream.

Differences that remain, declared in ``capabilities``:

- ``dense_positions=False``: positions have gaps (byte offsets).
- ``durable_idempotency=False``: a retry is recognised for ever when it carries
  the same exact expected revision (or ``NO_STREAM``); with ``ANY``/``EXISTS``
  only while the server's id cache holds its ids (a retry after that writes
  the events again, and the result names the new copies). A batch repeating
  some stored ids, or stored ids in another order, is refused
  (``DuplicateIdConflict``) when they are in the same stream;
  ``global_unique_ids=False``: ids stored in *another* stream are not seen.
- ``woken_by_appends=False``: ``wait_for_append`` polls the server every
  ``POLL_SECONDS``; KurrentDB pushes nothing to a plain reader.
- ``atomic_append_multi=False``: esdbclient 1.1.7 has no multi-stream append,
  so ``append_multi`` validates every request first (an invalid one writes
  nothing), then appends them one by one in order; a failure leaves the
  requests before it stored (the error carries ``request_index``).
- ``$all`` reads on a secure server need a user with admin rights.

This backend runs the shared contract suite against a server when
``UNBROKEN_KURRENTDB_URI`` is set, and offline against a fake client
(tests/eventstore/kurrentdb_fake.py) that models the server behaviour above.
"""

from __future__ import annotations

import bisect
import threading
import uuid
from collections.abc import Iterable, Iterator
from typing import Any, Final
from urllib.parse import parse_qsl, urlencode, urlsplit

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
    DuplicateIdConflict,
    InvalidArgument,
    StoreClosed,
    StoreError,
    StoreUnavailable,
    WrongExpectedVersion,
)
from ._rules import validate_expected
from ._types import (
    ANY,
    EXISTS,
    NO_STREAM,
    AppendResult,
    Expected,
    Metadata,
    NewEvent,
    RecordedEvent,
)
from .validation import prepare_batch, prepare_multi

PAGE: Final = 500  # events per server read
POLL_SECONDS: Final = 0.02  # how often wait_for_append asks the server
KNOWN_POSITIONS: Final = 100_000  # event boundaries remembered for reads from arbitrary positions
_SYSTEM_STREAMS: Final = (r"\$.*",)  # excluded by stream name, instead of esdbclient's type filter


class _Envelope(msgspec.Struct, frozen=True, omit_defaults=True):
    """What we keep in KurrentDB's per-event metadata."""

    occurred_at: int | None = None
    metadata: Metadata | None = None
    recorded_at: int | None = None  # an imported event's own receive time


_ENVELOPE = msgspec.json.Decoder(_Envelope)


class KurrentDBStore(EventStore):
    """The store contract over esdbclient's ``EventStoreDBClient`` (or ``client=``, a test double)."""

    capabilities = Capabilities(
        atomic_append_multi=False, dense_positions=False, durable_idempotency=False,
        global_unique_ids=False, woken_by_appends=False)

    def __init__(self, uri: str, *, client: Any = None) -> None:
        self.uri = uri
        self._closed = False
        self._stop = threading.Event()
        self._known: list[int] = []  # sorted event boundaries seen
        self._known_lock = threading.Lock()
        if client is not None:
            self._client = client
            return
        from esdbclient import EventStoreDBClient

        target = esdb_uri(uri)
        try:
            with _converted(self):
                self._client = EventStoreDBClient(target)
        except ValueError as error:
            raise InvalidArgument(f"KurrentDB URI {uri!r}: {error}") from error

    # -- writing ------------------------------------------------------------
    def append(
        self, stream: str, events: Iterable[NewEvent], expected: Expected = ANY
    ) -> AppendResult:
        encoded = prepare_batch(stream, events)
        validate_expected(expected)
        return self._append_encoded(stream, encoded, expected)

    def append_multi(self, requests: Iterable[AppendRequest]) -> list[AppendResult]:
        """Request by request, in order; NOT atomic (see the module docstring)."""
        prepared = prepare_multi(requests)
        results = []
        for index, (stream, encoded, expected) in enumerate(prepared):
            try:
                results.append(self._append_encoded(stream, encoded, expected))
            except StoreError as error:
                mark_request(error, index)
                raise
        return results

    def _append_encoded(self, stream: str, encoded: list, expected: Expected) -> AppendResult:
        from esdbclient import NewEvent as EsdbEvent
        from esdbclient.exceptions import WrongCurrentVersion

        check_open(self._closed, self.uri)
        batch = [
            EsdbEvent(
                type=event.type,
                data=data,
                metadata=msgspec.json.encode(_Envelope(event.occurred_at, metadata, event.recorded_at)),
                content_type="application/json" if metadata.content_type.endswith("json") else "application/octet-stream",
                id=event.id,
            )
            for event, data, metadata in encoded
        ]
        ids = [e.id for e in batch]
        with _converted(self):
            try:
                position = self._client.append_to_stream(stream, current_version=_state(expected), events=batch)
            except WrongCurrentVersion:
                raise self._refusal(stream, ids, expected) from None
            return self._result(stream, ids, position)

    def _refusal(self, stream: str, ids: list[uuid.UUID], expected: Expected) -> StoreError:
        """What a refused append means: a real version conflict, or a partial repeat of stored ids.

        KurrentDB answers a batch that repeats only some stored ids with a
        wrong-expected-version error even under ``ANY``.
        """
        actual = self._revision(stream)
        repeated = [str(i) for i in ids if i in self._ids_in(stream, set(ids))]
        if repeated and (expected is ANY or expected is EXISTS or _satisfied(expected, actual)):
            return DuplicateIdConflict(stream, repeated, "batch repeats some stored event ids but not all")
        return WrongExpectedVersion(stream, expected, actual)

    def _result(self, stream: str, ids: list[uuid.UUID], position: int) -> AppendResult:
        """The result of an acknowledged append: from the returned position, else by looking the ids up."""
        if position:
            last = self._first_at(position)
            if last is not None and last.id == ids[-1] and last.stream_name == stream:
                start = last.stream_position - len(ids) + 1
                head = self._client.get_stream(stream, stream_position=start, limit=1)
                if head and head[0].id == ids[0]:
                    self._remember([head[0].commit_position, position])
                    return AppendResult(head[0].commit_position, position, last.stream_position + 1)
        return self._locate(stream, ids)

    def _locate(self, stream: str, ids: list[uuid.UUID]) -> AppendResult:
        """Where an idempotently retried batch is stored: its ids, in order, in ``stream``."""
        found = self._ids_in(stream, set(ids))
        places = [found.get(i) for i in ids]
        if any(p is None for p in places):
            repeated = [str(i) for i in ids if i in found]
            if not repeated:
                raise StoreError(f"stream {stream!r}: KurrentDB acknowledged an append that is not in the stream")
            raise DuplicateIdConflict(stream, repeated, "batch repeats some stored event ids but not all")
        revisions = [p[0] for p in places]  # type: ignore[index]
        if revisions != list(range(revisions[0], revisions[0] + len(ids))):
            raise DuplicateIdConflict(stream, [str(i) for i in ids], "ids are stored, but not as one batch in this order")
        return AppendResult(places[0][1], places[-1][1], revisions[-1] + 1)  # type: ignore[index]

    def _ids_in(self, stream: str, wanted: set[uuid.UUID]) -> dict[uuid.UUID, tuple[int, int]]:
        """``{id: (revision, position)}`` of the wanted ids in ``stream``, read newest first, page by page."""
        from esdbclient.exceptions import NotFound

        found: dict[uuid.UUID, tuple[int, int]] = {}
        start: int | None = None
        while len(found) < len(wanted):
            try:
                page = self._client.get_stream(stream, stream_position=start, backwards=True, limit=PAGE)
            except NotFound:
                return found
            for event in page:
                if event.id in wanted:
                    found[event.id] = (event.stream_position, event.commit_position or 0)
            if len(page) < PAGE or page[-1].stream_position == 0:
                return found
            start = page[-1].stream_position - 1
        return found

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
        return self._stream_pages(stream, from_revision, backwards, limit)

    def _stream_pages(self, stream: str, start: int | None, backwards: bool, limit: int | None):
        from esdbclient.exceptions import NotFound

        remaining = limit
        while remaining is None or remaining > 0:
            size = PAGE if remaining is None else min(PAGE, remaining)
            check_open(self._closed, self.uri)
            with _converted(self):
                try:
                    page = self._client.get_stream(stream, stream_position=start, backwards=backwards, limit=size)
                except NotFound:
                    return
            events = [_recorded(e) for e in page]
            yield from events
            if len(events) < size or (backwards and events[-1].revision == 0):
                return
            start = events[-1].revision + (-1 if backwards else 1)
            if remaining is not None:
                remaining -= len(events)

    def read_all(
        self,
        from_position: int | None = None,
        backwards: bool = False,
        limit: int | None = None,
        filter: ReadFilter = NO_FILTER,
    ) -> Iterator[RecordedEvent]:
        check_read_args(from_position, limit, "from_position")
        check_open(self._closed, self.uri)
        if backwards:
            return self._read_backwards(from_position, limit, filter)
        return self._read_forwards(from_position or 0, limit, filter)

    def read_after(self, checkpoint: int, limit: int, filter: ReadFilter = NO_FILTER) -> list[RecordedEvent]:
        """A checkpoint is an event boundary (or 0), so the read starts right there."""
        check_open(self._closed, self.uri)
        self._remember([checkpoint] if checkpoint else [])
        return list(self._read_forwards(checkpoint + 1, limit, filter))

    def _read_forwards(self, start: int, limit: int | None, filter: ReadFilter) -> Iterator[RecordedEvent]:
        """Events at ``start`` and after: from the nearest known boundary at or below it, skipping."""
        cursor = self._boundary_at_or_below(start)
        seen = -1  # a forward read includes its start: the next page repeats the last event
        remaining = limit
        while remaining is None or remaining > 0:
            raw = self._all_page(cursor, False, filter)
            for event in raw:
                recorded = _recorded(event)
                if recorded.position <= seen or recorded.position < start or not _wanted(recorded, filter):
                    continue
                yield recorded
                if remaining is not None:
                    remaining -= 1
                    if remaining == 0:
                        return
            if len(raw) < PAGE:
                return
            cursor = seen = raw[-1].commit_position

    def _read_backwards(self, start: int | None, limit: int | None, filter: ReadFilter) -> Iterator[RecordedEvent]:
        """Newest first from ``start`` inclusive (KurrentDB's backward read excludes its start)."""
        if limit == 0:
            return
        cursor: int | None = None
        remaining = limit
        if start is not None:
            at = next(iter(self._read_forwards(start, 1, NO_FILTER)), None)
            if at is not None:
                cursor = at.position
                if at.position == start and _wanted(at, filter):
                    yield at
                    if remaining is not None:
                        remaining -= 1
        while remaining is None or remaining > 0:
            raw = self._all_page(cursor, True, filter)
            for event in raw:
                recorded = _recorded(event)
                if not _wanted(recorded, filter):
                    continue
                yield recorded
                if remaining is not None:
                    remaining -= 1
                    if remaining == 0:
                        return
            if len(raw) < PAGE:
                return
            cursor = raw[-1].commit_position

    def _all_page(self, cursor: int | None, backwards: bool, filter: ReadFilter) -> list:
        """One server read of ``$all`` from ``cursor`` (an event boundary, or None for an end)."""
        options: dict[str, Any] = {"backwards": backwards, "limit": PAGE, "filter_by_stream_name": True}
        if filter.stream_prefixes:
            options["filter_include"] = [prefix_pattern(filter.stream_prefixes)]
            options["filter_exclude"] = ()
        else:
            options["filter_exclude"] = _SYSTEM_STREAMS
        if cursor is not None:
            options["commit_position"] = cursor
        check_open(self._closed, self.uri)
        with _converted(self):
            page = list(self._client.read_all(**options))
        self._remember([e.commit_position for e in page if e.commit_position])
        return page

    def _boundary_at_or_below(self, position: int) -> int | None:
        with self._known_lock:
            index = bisect.bisect_right(self._known, position)
            return self._known[index - 1] if index else None

    def _remember(self, positions: list[int]) -> None:
        if not positions:
            return
        with self._known_lock:
            for position in positions:
                index = bisect.bisect_left(self._known, position)
                if index == len(self._known) or self._known[index] != position:
                    self._known.insert(index, position)
            if len(self._known) > KNOWN_POSITIONS:
                del self._known[: len(self._known) - KNOWN_POSITIONS]

    def _first_at(self, position: int) -> Any:
        """The event that starts at ``position`` (a boundary the server gave us), or None."""
        page = list(self._client.read_all(commit_position=position, limit=1, filter_exclude=()))
        return page[0] if page and page[0].commit_position == position else None

    def stream_revision(self, stream: str) -> int | None:
        check_open(self._closed, self.uri)
        with _converted(self):
            return self._revision(stream)

    def _revision(self, stream: str) -> int | None:
        from esdbclient import StreamState

        version = self._client.get_current_version(stream)
        return None if version is StreamState.NO_STREAM else int(version)

    def last_position(self) -> int:
        check_open(self._closed, self.uri)
        page = self._all_page(None, True, NO_FILTER)[:1]
        return (page[0].commit_position or 0) if page else 0

    def wait_for_append(self, after_position: int, timeout: float) -> bool:
        """Poll the server every ``POLL_SECONDS`` until something is after ``after_position``."""
        import time

        deadline = time.monotonic() + timeout
        while not self._closed:
            if self.last_position() > after_position:
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            self._stop.wait(min(POLL_SECONDS, remaining))
        return True

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._stop.set()
            self._client.close()

    def _closed_after_call(self) -> None:
        """A call that raced ``close()`` may have made esdbclient reconnect: close that channel too."""
        connection = getattr(self._client, "_connection", None)
        if connection is not None:
            connection.close()


def esdb_uri(uri: str) -> str:
    """``kurrentdb://host:2113?tls=false`` as the ``esdb://`` URI esdbclient expects.

    Raises ``InvalidArgument`` for a URI naming no host.
    """
    parts = urlsplit(uri)
    if not parts.hostname:
        raise InvalidArgument(f"KurrentDB URI {uri!r} names no server; try kurrentdb://host:2113?tls=false")
    query = [("Tls" if k.lower() == "tls" else k, v) for k, v in parse_qsl(parts.query)]
    return f"esdb://{parts.netloc}{parts.path}" + (f"?{urlencode(query)}" if query else "")


def prefix_pattern(prefixes: tuple[str, ...]) -> str:
    """One include pattern matching names that start with any prefix (esdbclient adds ``^...$``)."""
    return "(?:" + "|".join(dotnet_literal(p) for p in prefixes) + ").*"


def dotnet_literal(text: str) -> str:
    """``text`` as a .NET regex matching it literally: ``\\uXXXX`` for each UTF-16 unit outside [A-Za-z0-9_]."""
    units = text.encode("utf-16-be", "surrogatepass")
    out = []
    for index in range(0, len(units), 2):
        unit = int.from_bytes(units[index : index + 2], "big")
        char = chr(unit)
        out.append(char if char.isascii() and (char.isalnum() or char == "_") else f"\\u{unit:04X}")
    return "".join(out)


def _wanted(event: RecordedEvent, filter: ReadFilter) -> bool:
    return not event.stream.startswith("$") and filter.matches(event)


def _satisfied(expected: Expected, actual: int | None) -> bool:
    if expected is NO_STREAM:
        return actual is None
    return isinstance(expected, int) and expected == actual


def _recorded(raw: Any) -> RecordedEvent:
    envelope = _ENVELOPE.decode(raw.metadata) if raw.metadata else _Envelope()
    server_time = int(raw.recorded_at.timestamp() * 1_000_000) * 1000 if raw.recorded_at else 0
    recorded_at = envelope.recorded_at if envelope.recorded_at is not None else server_time
    return RecordedEvent(
        raw.id, raw.stream_name, raw.stream_position, raw.commit_position or 0, recorded_at,
        envelope.occurred_at if envelope.occurred_at is not None else recorded_at,
        raw.type, bytes(raw.data), envelope.metadata or Metadata(),
    )  # fmt: skip


def _state(expected: Expected) -> Any:
    from esdbclient import StreamState

    if expected is ANY:
        return StreamState.ANY
    if expected is NO_STREAM:
        return StreamState.NO_STREAM
    if expected is EXISTS:
        return StreamState.EXISTS
    return expected


class _converted:
    """Turn esdbclient errors into ``StoreError`` subclasses at this boundary.

    After ``close()`` every error is ``StoreClosed`` (and a channel esdbclient
    reopened meanwhile is closed).
    """

    def __init__(self, store: KurrentDBStore) -> None:
        self.store = store

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: Any, error: Any, tb: Any) -> bool:
        from esdbclient import exceptions as x

        uri = self.store.uri
        if self.store._closed:
            self.store._closed_after_call()
            if error is None or isinstance(error, StoreError):
                return False
            raise StoreClosed(f"store {uri} is closed") from error
        if error is None or not isinstance(error, x.EventStoreDBClientException | x.ProgrammingError):
            return False
        if isinstance(error, x.ServiceUnavailable | x.DiscoveryFailed | x.DeadlineExceeded):
            raise StoreUnavailable(f"KurrentDB at {uri} is unreachable: {error}") from error
        raise StoreError(f"KurrentDB at {uri}: {type(error).__name__}: {error}") from error

"""KurrentDB backend (through esdbclient): the contract on a KurrentDB server or cluster.

Mapping: our stream revision is KurrentDB's stream position, our global
position its commit position (strictly increasing, not dense). ``occurred_at``
and our ``Metadata`` travel in the event's JSON metadata. ``recorded_at`` is
the server's timestamp (100 ns resolution), or an imported event's own.

Differences from the embedded store, inherent to KurrentDB:
- idempotent retries are KurrentDB's: exact for an append with an exact
  expected revision; with ``ANY`` only while the server's id cache holds the
  events. A partial repeat is not detected.
- live subscriptions poll (every 50 ms) instead of being woken by appends.
- ``append_multi`` is not atomic: esdbclient 1.1.7 has no multi-stream
  append, so it validates every request first (an invalid one writes
  nothing), then appends them one by one in order. A failure part-way leaves
  the requests before it stored, in order; the error carries
  ``request_index``, and retrying the whole call is idempotent by id.
  ``capabilities.atomic_append_multi`` is False to say so.

This backend runs the shared contract suite when ``UNBROKEN_KURRENTDB_URI`` is
set; no KurrentDB server can run on the machines this project is built on.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterable, Iterator
from typing import Any
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
from ._errors import StoreError, StoreUnavailable, WrongExpectedVersion
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

_SEARCH_BACK = 10_000  # how far back a retried append looks for its original events


class _Envelope(msgspec.Struct, frozen=True, omit_defaults=True):
    """What we keep in KurrentDB's per-event metadata."""

    occurred_at: int | None = None
    metadata: Metadata | None = None
    recorded_at: int | None = None  # an imported event's own receive time


_ENVELOPE = msgspec.json.Decoder(_Envelope)


class KurrentDBStore(EventStore):
    """The store contract over esdbclient's ``EventStoreDBClient``."""

    capabilities = Capabilities(atomic_append_multi=False)

    def __init__(self, uri: str, **_: Any) -> None:
        from esdbclient import EventStoreDBClient

        self.uri = uri
        self._closed = False
        self._stop = threading.Event()
        with _converted(uri):
            self._client = EventStoreDBClient(esdb_uri(uri))

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
        with _converted(self.uri, stream, expected, self.stream_revision):
            self._client.append_to_stream(stream, current_version=_state(expected), events=batch)
            return self._locate(stream, [e.id for e in batch])

    def _locate(self, stream: str, ids: list[uuid.UUID]) -> AppendResult:
        """The result of an append whose ids are stored (newly or by an earlier try)."""
        wanted = set(ids)
        found = [
            e for e in self._client.read_stream(stream, backwards=True, limit=_SEARCH_BACK)
            if e.id in wanted
        ]
        if len(found) != len(ids):
            raise StoreError(f"stream {stream!r}: appended events not found after the append")
        found.sort(key=lambda e: e.stream_position)
        return AppendResult(found[0].commit_position, found[-1].commit_position, found[-1].stream_position + 1)

    # -- reading ------------------------------------------------------------
    def read_stream(
        self,
        stream: str,
        from_revision: int | None = None,
        backwards: bool = False,
        limit: int | None = None,
    ) -> Iterator[RecordedEvent]:
        from esdbclient.exceptions import NotFound

        check_read_args(from_revision, limit, "from_revision")
        check_open(self._closed, self.uri)
        with _converted(self.uri):
            try:
                found = self._client.get_stream(
                    stream, stream_position=from_revision, backwards=backwards,
                    **({"limit": limit} if limit is not None else {}),
                )  # fmt: skip
            except NotFound:
                return iter(())
        return iter([_recorded(e) for e in found])

    def read_all(
        self,
        from_position: int | None = None,
        backwards: bool = False,
        limit: int | None = None,
        filter: ReadFilter = NO_FILTER,
    ) -> Iterator[RecordedEvent]:
        check_read_args(from_position, limit, "from_position")
        check_open(self._closed, self.uri)
        return self._read_all(from_position, backwards, limit, filter)

    def read_after(self, checkpoint: int, limit: int, filter: ReadFilter = NO_FILTER) -> list[RecordedEvent]:
        """KurrentDB only reads from real event positions, and a checkpoint is one."""
        check_open(self._closed, self.uri)
        page: list[RecordedEvent] = []
        for event in self._read_all(checkpoint or None, False, None, filter):
            if event.position > checkpoint:
                page.append(event)
                if len(page) >= limit:
                    break
        return page

    def _read_all(self, start: int | None, backwards: bool, limit: int | None, filter: ReadFilter):
        options: dict[str, Any] = {"backwards": backwards}
        if filter.stream_prefixes:
            options |= {"filter_include": [_prefix_regex(filter.stream_prefixes)], "filter_by_stream_name": True}
        elif filter.types:
            options["filter_include"] = [_exact_regex(filter.types)]
        if start:
            options["commit_position"] = start
        delivered = 0
        with _converted(self.uri):
            for raw in self._client.read_all(**options):
                event = _recorded(raw)
                if not filter.matches(event) or (start and not backwards and event.position < start):
                    continue
                yield event
                delivered += 1
                if limit is not None and delivered >= limit:
                    return

    def stream_revision(self, stream: str) -> int | None:
        from esdbclient import StreamState

        check_open(self._closed, self.uri)
        with _converted(self.uri):
            version = self._client.get_current_version(stream)
        return None if version is StreamState.NO_STREAM else int(version)

    def last_position(self) -> int:
        check_open(self._closed, self.uri)
        with _converted(self.uri):
            return int(self._client.get_commit_position())

    def wait_for_append(self, after_position: int, timeout: float) -> bool:
        """Poll the server's commit position; KurrentDB pushes nothing to a plain reader."""
        if self._closed or self.last_position() > after_position:
            return True
        self._stop.wait(timeout)
        return self._closed or self.last_position() > after_position

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._stop.set()
            self._client.close()


def esdb_uri(uri: str) -> str:
    """``kurrentdb://host:2113?tls=false`` as the ``esdb://`` URI esdbclient expects."""
    parts = urlsplit(uri)
    query = [("Tls" if k.lower() == "tls" else k, v) for k, v in parse_qsl(parts.query)]
    netloc = parts.netloc or "localhost:2113"
    return f"esdb://{netloc}{parts.path}" + (f"?{urlencode(query)}" if query else "")


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


def _prefix_regex(prefixes: tuple[str, ...]) -> str:
    import re

    return "^(" + "|".join(re.escape(p) for p in prefixes) + ")"


def _exact_regex(names: tuple[str, ...]) -> str:
    import re

    return "^(" + "|".join(re.escape(n) for n in names) + ")$"


class _converted:
    """Turn esdbclient errors into ``StoreError`` subclasses at this boundary."""

    def __init__(self, uri: str, stream: str = "", expected: Any = None, revision: Any = None) -> None:
        self.uri, self.stream, self.expected, self.revision = uri, stream, expected, revision

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: Any, error: Any, tb: Any) -> bool:
        from esdbclient import exceptions as x

        if error is None or not isinstance(error, x.EventStoreDBClientException | x.ProgrammingError):
            return False
        if isinstance(error, x.WrongCurrentVersion):
            raise WrongExpectedVersion(self.stream, self.expected, self.revision(self.stream)) from error
        if isinstance(error, x.ServiceUnavailable | x.DiscoveryFailed | x.DeadlineExceeded):
            raise StoreUnavailable(f"KurrentDB at {self.uri} is unreachable: {error}") from error
        raise StoreError(f"KurrentDB at {self.uri}: {type(error).__name__}: {error}") from error

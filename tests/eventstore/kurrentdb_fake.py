"""A test double of the esdbclient 1.1.7 surface the KurrentDB backend calls, behaving as KurrentDB does.

Not a KurrentDB: a model of the documented server behaviour the backend must
cope with, so its logic is checked offline (no server can run here):

- ``$all`` positions are byte offsets of each event's record in the log
  (commit == prepare for a gRPC append), so they have gaps, and the log starts
  with system events (``$``-streams, ``$``-types, a ``PersistentConfig1``).
- A ``$all`` read must start at a position where an event starts; any other
  position is an error. A backward read excludes its start position.
- Filters are regexes matched against the stream name or the event type
  (esdbclient wraps include patterns in ``^...$`` and builds an exclude
  regex; .NET reads ``\\uXXXX`` as one UTF-16 unit, so names are matched as
  UTF-16 units). esdbclient's default exclude filter hides ``$``-types and
  ``PersistentConfig\\d+`` types.
- ``limit`` is the count of events returned; a stream read with a limit of 0
  is an error.
- Idempotent appends: with an exact expected revision below the current one,
  the events at the following revisions are compared by id (all equal: a
  success that writes nothing and returns no position; some: wrong expected
  version). With ANY/EXISTS the server's id cache (``cache_size`` ids,
  oldest forgotten first) decides: every id cached for this stream, in any
  order, is an idempotent success; some is a wrong expected version; none
  (ids in another stream included) is a write.
- ``append_to_stream`` returns the commit position of the batch's last event.
"""

from __future__ import annotations

import datetime
import re
import sys
import threading
import uuid
from collections import OrderedDict
from typing import Any

from esdbclient import NewEvent, RecordedEvent, StreamState
from esdbclient.client import DEFAULT_EXCLUDE_FILTER
from esdbclient.common import construct_filter_exclude_regex, construct_filter_include_regex
from esdbclient.exceptions import (
    BadRequestError,
    NotFound,
    ServiceUnavailable,
    WrongCurrentVersion,
)

RECORD_OVERHEAD = 120  # bytes a record takes besides its names and payload (not exact; only gaps matter)


def _utf16_units(text: str) -> str:
    """``text`` as a string of UTF-16 code units, the way a .NET regex sees it."""
    raw = text.encode("utf-16-be", "surrogatepass")
    return "".join(chr(int.from_bytes(raw[i : i + 2], "big")) for i in range(0, len(raw), 2))


def _dotnet_match(pattern: str, text: str) -> bool:
    return re.search(pattern, _utf16_units(text)) is not None


class FakeServer:
    """The state of one fake KurrentDB node, shared by every client connected to it."""

    def __init__(self, cache_size: int = 10_000, start_offset: int = 4096) -> None:
        self.lock = threading.RLock()
        self.log: list[RecordedEvent] = []
        self.streams: dict[str, list[RecordedEvent]] = {}
        self.id_cache: OrderedDict[uuid.UUID, tuple[str, int]] = OrderedDict()
        self.cache_size = cache_size
        self.end = start_offset
        self.down = False
        self.calls: list[tuple[str, dict]] = []
        for stream, type in (("$settings", "$settings"), ("$persistentSubscriptionConfig", "PersistentConfig1"),
                             ("$stats-127.0.0.1:2113", "$statsCollected")):
            self._write(stream, [NewEvent(type=type, data=b"{}")])

    def _write(self, stream: str, events: list[NewEvent]) -> int:
        history = self.streams.setdefault(stream, [])
        now = datetime.datetime.now(datetime.UTC)
        for event in events:
            recorded = RecordedEvent(
                type=event.type, data=event.data, metadata=event.metadata, content_type=event.content_type,
                id=event.id, stream_name=stream, stream_position=len(history), commit_position=self.end,
                prepare_position=self.end, recorded_at=now)
            self.end += RECORD_OVERHEAD + len(stream.encode()) + len(event.type.encode()) + len(event.data) + len(event.metadata)
            history.append(recorded)
            self.log.append(recorded)
            self.id_cache[event.id] = (stream, recorded.stream_position)
            self.id_cache.move_to_end(event.id)
            while len(self.id_cache) > self.cache_size:
                self.id_cache.popitem(last=False)
        return history[-1].commit_position  # type: ignore[return-value]


class FakeClient:
    """The methods of ``esdbclient.EventStoreDBClient`` the backend uses, on a ``FakeServer``."""

    def __init__(self, server: FakeServer) -> None:
        self.server = server
        self.closed = False
        self._connection = _Connection()

    def _enter(self, name: str, **args: Any) -> None:
        if self.server.down:
            raise ServiceUnavailable("failed to connect to all addresses")
        self.server.calls.append((name, args))

    # -- writing ------------------------------------------------------------
    def append_to_stream(self, stream_name: str, *, current_version: Any, events: Any,
                         timeout: float | None = None) -> int:
        events = [events] if isinstance(events, NewEvent) else list(events)
        with self.server.lock:
            self._enter("append_to_stream", stream_name=stream_name, current_version=current_version)
            history = self.server.streams.get(stream_name, [])
            current = len(history) - 1
            if current_version is StreamState.ANY or current_version is StreamState.EXISTS:
                if current_version is StreamState.EXISTS and current < 0:
                    raise WrongCurrentVersion(f"stream {stream_name} does not exist")
                cached = [self.server.id_cache.get(e.id) for e in events]
                mine = [c for c in cached if c is not None and c[0] == stream_name]
                if mine and len(mine) == len(events):
                    return 0  # idempotent: success, no position
                if mine:
                    raise WrongCurrentVersion(f"current version is {current}")
                return self.server._write(stream_name, events)
            expected = -1 if current_version is StreamState.NO_STREAM else int(current_version)
            if expected == current:
                return self.server._write(stream_name, events)
            if expected < current:
                following = history[expected + 1 : expected + 1 + len(events)]
                if [e.id for e in following] == [e.id for e in events]:
                    return 0
            raise WrongCurrentVersion(f"current version is {current}")

    # -- reading ------------------------------------------------------------
    def get_stream(self, stream_name: str, *, stream_position: int | None = None, backwards: bool = False,
                   resolve_links: bool = False, limit: int = sys.maxsize, timeout: float | None = None,
                   credentials: Any = None) -> tuple:
        with self.server.lock:
            self._enter("get_stream", stream_name=stream_name, stream_position=stream_position,
                        backwards=backwards, limit=limit)
            if limit < 1:
                raise BadRequestError("count must be positive")
            history = self.server.streams.get(stream_name)
            if not history:
                raise NotFound(f"stream {stream_name!r} not found")
            if backwards:
                top = len(history) - 1 if stream_position is None else min(stream_position, len(history) - 1)
                chosen = history[top::-1] if top >= 0 else []
            else:
                chosen = history[stream_position or 0 :]
            return tuple(chosen[:limit])

    def get_current_version(self, stream_name: str, *, timeout: float | None = None) -> Any:
        with self.server.lock:
            self._enter("get_current_version", stream_name=stream_name)
            history = self.server.streams.get(stream_name)
            return history[-1].stream_position if history else StreamState.NO_STREAM

    def read_all(self, *, commit_position: int | None = None, backwards: bool = False,
                 resolve_links: bool = False, filter_exclude: Any = DEFAULT_EXCLUDE_FILTER,
                 filter_include: Any = (), filter_by_stream_name: bool = False,
                 limit: int = sys.maxsize, timeout: float | None = None, credentials: Any = None) -> _Response:
        with self.server.lock:
            self._enter("read_all", commit_position=commit_position, backwards=backwards, limit=limit,
                        filter_include=tuple(filter_include), filter_exclude=tuple(filter_exclude),
                        filter_by_stream_name=filter_by_stream_name)
            log = list(self.server.log)
            if commit_position is not None and commit_position != self.server.end and commit_position not in {
                    e.commit_position for e in log}:
                raise BadRequestError(f"invalid position {commit_position}: not the start of a record")
        if backwards:
            chosen = [e for e in reversed(log) if commit_position is None or e.commit_position < commit_position]
        else:
            chosen = [e for e in log if commit_position is None or e.commit_position >= commit_position]
        if filter_include or filter_exclude:
            regex = (construct_filter_include_regex(filter_include) if filter_include
                     else construct_filter_exclude_regex(filter_exclude))
            chosen = [e for e in chosen
                      if _dotnet_match(regex, e.stream_name if filter_by_stream_name else e.type)]
        return _Response(chosen[:limit])

    def close(self) -> None:
        self.closed = True
        self._connection.close()


class _Response:
    """esdbclient's read response: iterable once, and a context manager."""

    def __init__(self, events: list[RecordedEvent]) -> None:
        self._events = iter(events)

    def __iter__(self) -> _Response:
        return self

    def __next__(self) -> RecordedEvent:
        return next(self._events)

    def __enter__(self) -> _Response:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._events = iter(())


class _Connection:
    def __init__(self) -> None:
        self.closed = False

    def close(self) -> None:
        self.closed = True


_SERVERS: dict[str, FakeServer] = {}


def fake_server(name: str, **options: Any) -> FakeServer:
    """The fake server called ``name`` (created on first use), so several stores can share one."""
    return _SERVERS.setdefault(name, FakeServer(**options))


def drop_server(name: str) -> None:
    _SERVERS.pop(name, None)

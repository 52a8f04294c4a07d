"""In-memory backend: the full contract, nothing on disk. For tests and replays."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator

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
from ._rules import StoredId, check_expected, repeated_result, validate_expected
from ._types import ANY, AppendResult, Expected, NewEvent, RecordedEvent
from .validation import prepare_batch, prepare_multi


class MemoryStore(EventStore):
    """Events in lists behind one lock; thread-safe; lost when the process ends."""

    capabilities = Capabilities(atomic_append_multi=True)

    def __init__(self, uri: str = "memory://", clock: Callable[[], int] = time.time_ns) -> None:
        self.uri = uri
        self._clock = clock
        self._lock = threading.Condition()
        self._log: list[RecordedEvent] = []
        self._streams: dict[str, list[RecordedEvent]] = {}
        self._ids: dict[uuid.UUID, StoredId] = {}
        self._last_recorded_at = 0
        self._closed = False

    def append(
        self, stream: str, events: Iterable[NewEvent], expected: Expected = ANY
    ) -> AppendResult:
        encoded = prepare_batch(stream, events)
        validate_expected(expected)
        with self._lock:
            check_open(self._closed, self.uri)
            return self._append_locked(stream, encoded, expected)

    def append_multi(self, requests: Iterable[AppendRequest]) -> list[AppendResult]:
        """All requests under one lock; on any failure the log is put back as it was."""
        prepared = prepare_multi(requests)
        with self._lock:
            check_open(self._closed, self.uri)
            mark = (len(self._log), self._last_recorded_at, {s: len(h) for s, h in self._streams.items()})
            results = []
            try:
                for index, (stream, encoded, expected) in enumerate(prepared):
                    try:
                        results.append(self._append_locked(stream, encoded, expected))
                    except Exception as error:
                        mark_request(error, index)
                        raise
            except BaseException:
                self._undo(*mark)
                raise
            return results

    def _append_locked(self, stream: str, encoded: list, expected: Expected) -> AppendResult:
        ids = [e.id for e, _, _ in encoded]
        stored = {i: self._ids[i] for i in ids if i in self._ids}
        repeat = repeated_result(stream, ids, stored)  # type: ignore[arg-type]
        if repeat is not None:
            return repeat
        history = self._streams.get(stream)
        check_expected(stream, expected, len(history) - 1 if history else None)
        return self._write(stream, encoded)

    def _undo(self, length: int, last_recorded_at: int, streams: dict[str, int]) -> None:
        """Forget every event after position ``length`` (an ``append_multi`` that failed)."""
        for event in self._log[length:]:
            self._ids.pop(event.id, None)
        del self._log[length:]
        for name in list(self._streams):
            if name not in streams:
                del self._streams[name]
            else:
                del self._streams[name][streams[name]:]
        self._last_recorded_at = last_recorded_at

    def _write(self, stream: str, encoded: list) -> AppendResult:
        history = self._streams.setdefault(stream, [])
        now = self._last_recorded_at = max(self._clock(), self._last_recorded_at)
        first = len(self._log) + 1
        for event, data, metadata in encoded:
            recorded_at = now if event.recorded_at is None else event.recorded_at
            recorded = RecordedEvent(
                id=event.id,
                stream=stream,
                revision=len(history),
                position=len(self._log) + 1,
                recorded_at=recorded_at,
                occurred_at=recorded_at if event.occurred_at is None else event.occurred_at,
                type=event.type,
                data=data,
                metadata=metadata,
            )
            self._log.append(recorded)
            history.append(recorded)
            self._ids[event.id] = StoredId(stream, recorded.revision, recorded.position)
        self._lock.notify_all()
        return AppendResult(first, len(self._log), len(history))

    def read_stream(
        self,
        stream: str,
        from_revision: int | None = None,
        backwards: bool = False,
        limit: int | None = None,
    ) -> Iterator[RecordedEvent]:
        check_read_args(from_revision, limit, "from_revision")
        with self._lock:
            check_open(self._closed, self.uri)
            history = list(self._streams.get(stream, ()))
        return _window(history, from_revision, backwards, limit, key=lambda e: e.revision)

    def read_all(
        self,
        from_position: int | None = None,
        backwards: bool = False,
        limit: int | None = None,
        filter: ReadFilter = NO_FILTER,
    ) -> Iterator[RecordedEvent]:
        check_read_args(from_position, limit, "from_position")
        with self._lock:
            check_open(self._closed, self.uri)
            log = self._log if not backwards else list(self._log)
            # Fix the end under the lock: an append in progress must not show half its batch.
            ordered = _ordered(log, from_position, backwards)
        return _take((e for e in ordered if filter.matches(e)), limit)

    def stream_revision(self, stream: str) -> int | None:
        with self._lock:
            check_open(self._closed, self.uri)
            history = self._streams.get(stream)
            return len(history) - 1 if history else None

    def last_position(self) -> int:
        with self._lock:
            check_open(self._closed, self.uri)
            return len(self._log)

    def wait_for_append(self, after_position: int, timeout: float) -> bool:
        with self._lock:
            if self._closed or len(self._log) > after_position:
                return True
            return self._lock.wait(timeout)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._lock.notify_all()


def _ordered(log: list[RecordedEvent], start: int | None, backwards: bool) -> Iterator[RecordedEvent]:
    """Events from position ``start`` (inclusive) onwards or backwards; positions are index+1."""
    if backwards:
        top = len(log) if start is None else min(start, len(log))
        return (log[i] for i in range(top - 1, -1, -1))
    first = max((start or 1) - 1, 0)
    # The log only grows, so iterating by index is safe against concurrent appends.
    end = len(log)
    return (log[i] for i in range(first, end))


def _window(
    history: list[RecordedEvent],
    start: int | None,
    backwards: bool,
    limit: int | None,
    key: Callable[[RecordedEvent], int],
) -> Iterator[RecordedEvent]:
    if backwards:
        chosen = [e for e in reversed(history) if start is None or key(e) <= start]
    else:
        chosen = [e for e in history if start is None or key(e) >= start]
    return _take(iter(chosen), limit)


def _take(events: Iterator[RecordedEvent], limit: int | None) -> Iterator[RecordedEvent]:
    if limit is None:
        yield from events
        return
    for count, event in enumerate(events):
        if count >= limit:
            return
        yield event

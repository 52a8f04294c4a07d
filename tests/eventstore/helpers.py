"""Small builders and checks shared by the event store tests."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from eventstore import EventStore, NewEvent, RecordedEvent


def ev(type: str = "Thing", data: bytes | Any = b"{}", **kwargs: Any) -> NewEvent:
    """One new event; the data defaults to an empty JSON object."""
    return NewEvent(type, data, **kwargs)


def batch(count: int, type: str = "Thing", tag: str = "e") -> list[NewEvent]:
    """``count`` events whose data names their index, so reads can be checked by content."""
    return [NewEvent(type, f'{{"{tag}":{i}}}'.encode()) for i in range(count)]


def read_after(store: EventStore, base: int, **kwargs: Any) -> list[RecordedEvent]:
    """Every event after position ``base`` (the store's position when the test started)."""
    return list(store.read_all(from_position=base + 1, **kwargs))


class ManualClock:
    """A clock in nanoseconds that moves only when told to, so recorded times are exact."""

    def __init__(self, start: int = 1_700_000_000_000_000_000) -> None:
        self.now = start
        self.calls = 0

    def __call__(self) -> int:
        self.calls += 1
        return self.now

    def set(self, now: int) -> None:
        self.now = now


def assert_log_shape(events: Iterable[RecordedEvent]) -> None:
    """Positions strictly increase and each stream's revisions run 0, 1, 2... without gaps."""
    events = list(events)
    positions = [e.position for e in events]
    assert positions == sorted(set(positions)), f"positions not strictly increasing: {positions}"
    revisions: dict[str, list[int]] = {}
    for event in events:
        revisions.setdefault(event.stream, []).append(event.revision)
    for stream, seen in revisions.items():
        assert seen == list(range(len(seen))), f"stream {stream!r} revisions have gaps: {seen}"


def run_threads(target: Callable[[int], Any], count: int, timeout: float = 30.0) -> list[Any]:
    """Run ``target(i)`` on ``count`` threads; return their results, re-raise the first error."""
    results: list[Any] = [None] * count
    errors: list[BaseException] = []

    def work(index: int) -> None:
        try:
            results[index] = target(index)
        except BaseException as e:  # handed to the main thread below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,), daemon=True) for i in range(count)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + timeout
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    stuck = sum(thread.is_alive() for thread in threads)
    assert not stuck, f"{stuck} of {count} threads still running after {timeout} s"
    if errors:
        raise errors[0]
    return results


class Background:
    """A thread running ``target()``; ``join()`` returns its result or re-raises its error."""

    def __init__(self, target: Callable[[], Any]) -> None:
        self.result: Any = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(target,), daemon=True)
        self._thread.start()

    def _run(self, target: Callable[[], Any]) -> None:
        try:
            self.result = target()
        except BaseException as e:  # re-raised in the test's thread by join()
            self._error = e

    def join(self, timeout: float = 10.0) -> Any:
        self._thread.join(timeout)
        assert not self._thread.is_alive(), f"background thread still running after {timeout} s"
        if self._error is not None:
            raise self._error
        return self.result

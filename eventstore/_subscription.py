"""Catch-up-then-live subscriptions, shared by every backend.

A subscription reads pages with ``read_all`` after its checkpoint; when a page
comes back empty it waits for the backend to signal an append (or for a short
poll interval, so appends by other processes are seen too) and reads again.
Memory is bounded by one page, however long the log.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import AsyncIterator, Iterator
from typing import Final, Protocol

from ._filter import ReadFilter
from ._types import RecordedEvent

POLL_SECONDS: Final = 0.05


class Followable(Protocol):
    """What a subscription asks of a store (every ``EventStore`` is one)."""

    def last_position(self) -> int: ...

    def read_after(self, checkpoint: int, limit: int, filter: ReadFilter) -> list[RecordedEvent]: ...

    def wait_for_append(self, after_position: int, timeout: float) -> bool: ...

    async def wait_for_append_async(self, after_position: int, timeout: float) -> bool: ...


class Subscription:
    """Events after a checkpoint, then live; iterate it with ``for`` or ``async for``.

    ``position`` is the checkpoint: the position of the last event handed out.
    ``stop()`` ends iteration (from any thread) at the next wake-up.
    """

    def __init__(
        self, store: Followable, after_position: int, filter: ReadFilter, page_size: int = 1000
    ) -> None:
        self.store = store
        self.position = after_position
        self.filter = filter
        self.page_size = page_size
        self._scanned = after_position
        self._buffer: deque[RecordedEvent] = deque()
        self._stopped = False

    def stop(self) -> None:
        """End the subscription; iteration finishes instead of waiting for more."""
        self._stopped = True

    @property
    def stopped(self) -> bool:
        return self._stopped

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- sync ---------------------------------------------------------------
    def __iter__(self) -> Iterator[RecordedEvent]:
        return self

    def __next__(self) -> RecordedEvent:
        while not self._buffer:
            if self._stopped:
                raise StopIteration
            if not self._fill():
                self.store.wait_for_append(self._scanned, POLL_SECONDS)
        return self._deliver()

    def next_within(self, timeout: float) -> RecordedEvent | None:
        """The next event, or None if none arrives within ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while not self._buffer:
            if self._stopped:
                return None
            if self._fill():
                break
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            self.store.wait_for_append(self._scanned, min(POLL_SECONDS, remaining))
        return self._deliver()

    # -- async --------------------------------------------------------------
    def __aiter__(self) -> AsyncIterator[RecordedEvent]:
        return self

    async def __anext__(self) -> RecordedEvent:
        while not self._buffer:
            if self._stopped:
                raise StopAsyncIteration
            filled = await asyncio.to_thread(self._fill)
            if not filled:
                await self.store.wait_for_append_async(self._scanned, POLL_SECONDS)
        return self._deliver()

    # -- internals ----------------------------------------------------------
    def _fill(self) -> bool:
        """Read the next page into the buffer; True if it holds events now."""
        # Filtered: note the horizon first, to skip up to it when nothing more matched.
        # Unfiltered there is nothing to skip (a round trip less on the wake-up path).
        horizon = None if self.filter.is_empty else self.store.last_position()
        page = self.store.read_after(self._scanned, self.page_size, self.filter)
        self._buffer.extend(page)
        if page:
            self._scanned = page[-1].position
        if len(page) < self.page_size and horizon is not None:
            # Nothing more matched up to the horizon: skip that stretch next time.
            self._scanned = max(self._scanned, horizon)
        return bool(page)

    def _deliver(self) -> RecordedEvent:
        event = self._buffer.popleft()
        self.position = event.position
        return event

"""Batched, acknowledged appends: many exchanges per store transaction, none reported early.

Pollers hand payloads to a ``Recorder``; it stamps each with a receive time that
never goes back (so store positions follow receive times and a replay delivers
them in order), gives it a deterministic, time-ordered id (``event_id``: of session,
source, sequence and receive time, so retrying an append is idempotent) and appends
them in batches: one transaction per ``flush_every`` seconds, or sooner when
``max_batch`` events wait. ``add``
takes a callback run only once the event is durable (``add_acknowledged``
returns a future instead); ``stored`` counts only durable events.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
import uuid
from collections.abc import Callable
from typing import Any

from eventstore import EventStore, Metadata, NewEvent, StoreError, derived_event_id, type_of
from eventstore.payloads import encode_payload

NAMESPACE = uuid.UUID("6f1d3c1e-5b0e-4a47-9a77-0d3c6b1e2a10")
_PREFIXES: dict[tuple[str, str], Any] = {}


def event_id(session: str, source: str, sequence: int, received_at: int) -> uuid.UUID:
    """The deterministic id of the ``sequence``-th event of ``source`` in ``session``, received at ``received_at``.

    ``eventstore.derived_event_id(received_at, sha1(NAMESPACE + "session/source/sequence/received_at"))``:
    time-ordered, so hours of polling append to the end of the store's id index (with
    uuid5 ids each batch dirtied a random index page per event, and the store's append
    cost grew with its size: 54 vs 40 us CPU an event after 120,000 events, offline, in
    BENCHMARKS.md), and the receive time is part of the identity, so a second run under
    the same ``--session`` name is never taken for a repeat of the first. The SHA-1
    state of the common prefix is kept, so each id hashes only its own part.
    """
    prefix = _PREFIXES.get((session, source))
    if prefix is None:
        if len(_PREFIXES) > 4096:
            _PREFIXES.clear()
        prefix = _PREFIXES[(session, source)] = hashlib.sha1(
            NAMESPACE.bytes + f"{session}/{source}/".encode(), usedforsecurity=False)
    digest = prefix.copy()
    digest.update(f"{sequence}/{received_at}".encode())
    return derived_event_id(received_at, digest.digest())


class Recorder:
    """Collects events from every poller and appends them to one stream in batches."""

    def __init__(self, store: EventStore, stream: str = "modbus", *, flush_every: float = 0.05,
                 max_batch: int = 1000, clock: Callable[[], int] = time.time_ns) -> None:
        self.store = store
        self.stream = stream
        self.flush_every = flush_every
        self.max_batch = max_batch
        self._clock = clock
        self._last = 0
        self._pending: list[tuple[tuple, Any]] = []  # (event parts, future or callback or None)
        self._metadata: dict[str, Metadata] = {}
        self._wake = asyncio.Event()
        self._closing = False
        self._task: asyncio.Task | None = None
        self.stored = 0
        self.batches = 0
        self.error: BaseException | None = None
        self.listeners: list[Callable[[int], Any]] = []  # called with the last stored position

    def now(self) -> int:
        """A receive time (ns): the wall clock, never before the previous stamp."""
        self._last = max(self._clock(), self._last)
        return self._last

    def add(self, payload: Any, *, source: str, session: str, sequence: int, received_at: int,
            occurred_at: int | None = None, on_stored: Callable[[], Any] | None = None) -> None:
        """Queue ``payload``; ``on_stored()`` is called once it is durable (never before)."""
        if self.error is not None:
            raise StoreError(f"recorder stopped: {self.error}")
        # The NewEvent (id, envelope) is built in the append thread, off the event loop.
        event = (payload, source, session, sequence, received_at, occurred_at)
        self._pending.append((event, on_stored))
        if len(self._pending) >= self.max_batch:
            self._wake.set()

    def add_acknowledged(self, payload: Any, **kwargs: Any) -> asyncio.Future:
        """``add``, returning a future that completes (with the position) once stored."""
        future: asyncio.Future = asyncio.get_running_loop().create_future()
        self.add(payload, **kwargs)
        event, _ = self._pending[-1]
        self._pending[-1] = (event, future)
        return future

    def start(self) -> None:
        """Start the flushing task on the running loop."""
        self._task = asyncio.get_running_loop().create_task(self._run(), name="modbus-recorder")

    async def _run(self) -> None:
        # One batch per wake-up: a wake-up every ``flush_every`` or when ``max_batch`` events
        # wait. Draining at once what came in during an append made batches of 5-10 events
        # with one device (750 commits in 3 s instead of 60) and their fixed cost (the
        # transaction, its fsync, the thread hand-off) dominated the CPU per event.
        while True:
            try:
                async with asyncio.timeout(self.flush_every):
                    await self._wake.wait()
            except TimeoutError:
                pass
            self._wake.clear()
            await self._append_batch()
            if len(self._pending) >= self.max_batch or self._closing:
                self._wake.set()
            if self._closing and not self._pending:
                return

    async def flush(self) -> None:
        """Append everything queued, in batches; complete their futures after each is durable."""
        while self._pending and await self._append_batch():
            pass

    async def _append_batch(self) -> bool:
        """Append up to ``max_batch`` queued events in one transaction; False when the store failed."""
        if not self._pending:
            return True
        batch, self._pending = self._pending[: self.max_batch], self._pending[self.max_batch:]
        try:
            result = await asyncio.to_thread(self._append, [e for e, _ in batch])
        except Exception as e:  # the store failed: nothing in the batch is acknowledged
            self.error = e
            for _, done in batch + self._pending:
                if isinstance(done, asyncio.Future) and not done.done():
                    done.set_exception(StoreError(f"not stored: {e}"))
            self._pending = []
            return False
        self.stored += len(batch)
        self.batches += 1
        first = result.last_position - len(batch) + 1
        for i, (_, done) in enumerate(batch):
            if done is None:
                continue
            if isinstance(done, asyncio.Future):
                if not done.done():
                    done.set_result(first + i)
            else:
                done()
        for listener in self.listeners:
            listener(result.last_position)
        return True

    def _append(self, items: list[tuple]) -> Any:
        """Build the batch's events and append them in one transaction (runs in a thread).

        Each payload is encoded here, with its type from its tag, so the store gets plain
        bytes and takes the batch in its quick validation pass (a payload struct sends
        every event through the full per-event checks: 17.8 -> 10.4 us an event for the
        ids, events and checks of a 600-exchange batch, on a loaded machine).
        """
        metadata = self._metadata
        events = []
        for payload, source, session, sequence, received_at, occurred_at in items:
            meta = metadata.get(source)
            if meta is None:
                meta = metadata[source] = Metadata(source=source)
            events.append(NewEvent(
                type_of(payload), encode_payload(payload), id=event_id(session, source, sequence, received_at),
                occurred_at=occurred_at if occurred_at is not None else received_at,
                recorded_at=received_at, metadata=meta))
        return self.store.append(self.stream, events)

    async def close(self) -> None:
        """Store everything queued, then stop."""
        self._closing = True
        self._wake.set()
        if self._task is not None:
            await self._task
        else:
            await self.flush()

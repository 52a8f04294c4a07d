"""What every broker application shares: the run loop, reconnecting, the status line, stopping.

``serve(app, stop)`` keeps an application connected until ``stop`` is set: a
broker that is down at start or goes away later is retried with a capped
backoff, and nothing is acknowledged that is not durable in the store.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Callable
from typing import Protocol

from .messages import Ingestor


class App(Protocol):
    """A broker application: ``start`` connects and subscribes; ``stop`` drains and closes."""

    name: str
    ingestor: Ingestor
    connected: bool
    last_error: str

    async def start(self) -> None: ...
    async def stop(self) -> None: ...


async def serve(app: App, stop: asyncio.Event, *, status_every: float = 5.0,
                out: Callable[[str], None] | None = None) -> None:
    """Run ``app`` until ``stop`` is set; (re)connect with backoff; print a status line."""
    out = out or (lambda line: print(line, file=sys.stderr, flush=True))
    reporter = asyncio.create_task(_status(app, stop, status_every, out)) if status_every else None
    delay = 0.1
    try:
        while not stop.is_set():
            try:
                await app.start()
                app.connected, delay = True, 0.1
                await stop.wait()
            except Exception as e:  # the broker is down or refused us: say so, retry
                app.connected = False
                app.last_error = f"{type(e).__name__}: {e}"[:200]
                out(f"{app.name}: not connected ({app.last_error}); retrying in {delay:.1f}s")
                await _stop_quietly(app)
                try:
                    await asyncio.wait_for(stop.wait(), delay)
                except TimeoutError:
                    pass
                delay = min(delay * 2, 2.0)
    finally:
        await _stop_quietly(app)
        if reporter is not None:
            reporter.cancel()
        out(status_line(app, 0.0))


async def bounded(awaitable, timeout: float = 2.0) -> str:
    """Await ``awaitable`` for at most ``timeout`` s without cancelling it (closing a nats
    connection that is reconnecting drains forever and may ignore a cancellation); returns
    "" when it finished cleanly, else what went wrong."""
    task = asyncio.ensure_future(awaitable)
    await asyncio.wait({task}, timeout=timeout)
    if not task.done():
        return f"did not finish within {timeout:.0f}s"
    error = task.exception()
    return "" if error is None else f"{type(error).__name__}: {error}"[:200]


async def _stop_quietly(app: App) -> None:
    try:
        await app.stop()
    except Exception as e:  # closing a dead connection may fail; nothing is lost by it
        app.last_error = f"{type(e).__name__}: {e}"[:200]


def status_line(app: App, rate: float) -> str:
    """``ingest nats: stored N (R rejected) in B batches, X/s, connected``."""
    i = app.ingestor
    state = "connected" if app.connected else f"disconnected ({app.last_error})"
    return (f"{app.name}: stored {i.stored:,} ({i.rejected:,} rejected) in {i.batches:,} "
            f"batches, {rate:,.0f}/s, {state}")


async def _status(app: App, stop: asyncio.Event, every: float, out: Callable[[str], None]) -> None:
    last, t0 = app.ingestor.stored, time.monotonic()
    while not stop.is_set():
        try:
            await asyncio.wait_for(stop.wait(), every)
        except TimeoutError:
            pass
        now = time.monotonic()
        out(status_line(app, (app.ingestor.stored - last) / max(now - t0, 1e-9)))
        last, t0 = app.ingestor.stored, now


class Batcher:
    """Collects messages handed over one by one and stores them in batches, acking after.

    ``add(incoming, ack)`` queues a message with the coroutine function that
    acks it; a writer task appends up to ``max_batch`` messages per transaction
    (or whatever came within ``linger`` seconds) and then awaits each ack. A
    batch the store refuses is not acked (the broker redelivers it).
    """

    def __init__(self, ingestor: Ingestor, *, max_batch: int = 500, linger: float = 0.01) -> None:
        self.ingestor = ingestor
        self.max_batch, self.linger = max_batch, linger
        self._items: list = []
        self._wake = asyncio.Event()
        self._taken = asyncio.Event()  # set whenever a flush takes messages off the queue
        self._task: asyncio.Task | None = None
        self.last_error = ""

    def add(self, incoming, ack) -> None:
        """Queue one message and its ack."""
        self._items.append((incoming, ack))
        if len(self._items) >= self.max_batch:
            self._wake.set()
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="broker-batcher")

    async def room(self, limit: int) -> None:
        """Wait until fewer than ``limit`` messages wait to be stored (back pressure)."""
        while len(self._items) >= limit:
            self._taken.clear()
            await self._taken.wait()

    async def _run(self) -> None:
        while self._items:
            try:
                await asyncio.wait_for(self._wake.wait(), self.linger)
            except TimeoutError:
                pass
            self._wake.clear()
            await self.flush()

    async def flush(self) -> None:
        """Store what is queued now, then ack it."""
        batch, self._items = self._items[: self.max_batch], self._items[self.max_batch:]
        self._taken.set()
        if not batch:
            return
        try:
            await asyncio.to_thread(self.ingestor.append, [m for m, _ in batch])
        except Exception as e:  # not stored, not acked: the broker redelivers
            self.last_error = f"store: {type(e).__name__}: {e}"[:200]
            return
        for _, ack in batch:
            await ack()

    async def close(self) -> None:
        """Store and ack everything queued."""
        while self._items:
            await self.flush()
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)

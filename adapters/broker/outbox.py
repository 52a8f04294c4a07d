"""The outbox: decisions with external effect, published in store order, exactly once.

The store is the durable local buffer (TR-002). Decisions to publish are first
appended as ``OutboxEntry`` events to the stream ``outbox-NAME`` (event id
from the effect key, so enqueuing the same decision twice stores it once);
a worker publishes them in stream order, each with its effect key as
``Nats-Msg-Id``, waits for each JetStream ack, and after every batch appends an
``OutboxPosition`` event to ``outbox-NAME-position``. When the broker is down
the worker retries the same entry with a capped backoff and nothing moves on;
after a crash it resumes after the last saved position, and the few entries
published since then are published again with the same message ids, which
JetStream drops as duplicates inside the stream's duplicate window.

Entries come from a trace (``enqueue_trace``), from a projection replayed over
the store (``enqueue_projection``), or from any code calling ``enqueue``.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterable
from typing import Any, Final

import msgspec

from eventstore import ANY, EventStore, NewEvent

from .service import bounded

NAMESPACE: Final = uuid.UUID("9e2f6c8a-4b1d-4c3e-a5f7-2d8b0c6e1f93")
ENTRY: Final = "OutboxEntry"
POSITION: Final = "OutboxPosition"
EFFECTIVE: Final = ("released", "sent")


class OutboxEntry(msgspec.Struct, frozen=True, kw_only=True):
    """One decision to publish; ``effect_key`` is its idempotency key (and message id)."""

    effect_key: str
    kind: str
    subject: str
    action: str
    status: str
    at: int
    reasons: list[str] = []
    source: str = ""


class OutboxPosition(msgspec.Struct, frozen=True):
    """Every entry of the outbox stream up to ``revision`` is published (and acked)."""

    revision: int
    published: int
    at: int


_ENC = msgspec.json.Encoder()
_ENTRY = msgspec.json.Decoder(OutboxEntry)
_POSITION = msgspec.json.Decoder(OutboxPosition)


def streams(name: str) -> tuple[str, str]:
    """The outbox stream and its position stream for outbox ``name``."""
    return f"outbox-{name}", f"outbox-{name}-position"


def enqueue(store: EventStore, name: str, entries: Iterable[OutboxEntry]) -> int:
    """Append entries to the outbox in order (idempotent by effect key); returns how many are new."""
    stream, _ = streams(name)
    before = store.stream_revision(stream)
    requests = []
    seen: set[str] = set()
    for e in entries:
        if e.effect_key in seen:
            continue
        seen.add(e.effect_key)
        event = NewEvent(ENTRY, _ENC.encode(e), id=uuid.uuid5(NAMESPACE, f"{name}/{e.effect_key}"),
                         metadata={"source": e.source or f"outbox:{name}"})
        requests.append((stream, [event], ANY))
    for i in range(0, len(requests), 5000):
        store.append_multi(requests[i:i + 5000])
    after = store.stream_revision(stream)
    return (after if after is not None else -1) - (before if before is not None else -1)


def entries_of(rows: Iterable[dict[str, Any]], source: str = "") -> list[OutboxEntry]:
    """Outbox entries from decision rows: external, released or sent, with an effect key."""
    out = []
    for d in rows:
        if d.get("external") and d.get("status") in EFFECTIVE and d.get("effect_key"):
            out.append(OutboxEntry(
                effect_key=d["effect_key"], kind=d["kind"], subject=d["subject"],
                action=d["action"], status=str(d["status"]), at=int(d["at"]),
                reasons=list(d.get("reasons") or ()), source=source))
    return out


def enqueue_trace(store: EventStore, name: str, trace_dir: str) -> int:
    """Enqueue the external effective decisions of a trace, in decision order."""
    import replay

    frame = replay.query(trace_dir, "SELECT * FROM decisions ORDER BY run_id, seq")
    return enqueue(store, name, entries_of(frame.to_dicts(), source=f"trace:{trace_dir}"))


def enqueue_projection(store: EventStore, name: str, projection: Any, now: int | None = None) -> int:
    """Replay the store (outbox streams left out) through ``projection``; enqueue what is due.

    Decisions of timers that would fire after ``now`` (the wall clock) are left
    for a later call: in a live system they have not happened yet.
    """
    import replay

    now = time.time_ns() if now is None else now
    events = [e for e in store.read_all() if not e.stream.startswith("outbox-")]
    result = replay.run(replay.deliveries_of(events), projection, collect=True)
    rows = [msgspec.to_builtins(d) for d in result.decisions]
    due = [r for r in rows if int(r["at"]) <= now]
    return enqueue(store, name, entries_of(due, source=f"projection:{projection.name}"))


def saved_position(store: EventStore, name: str) -> int:
    """The last outbox revision known to be published (-1: none)."""
    _, position_stream = streams(name)
    for event in store.read_stream(position_stream, backwards=True, limit=1):
        return _POSITION.decode(event.data).revision
    return -1


class NatsOutbox:
    """Publishes the outbox stream to a JetStream subject through faststream, in order."""

    def __init__(self, store: EventStore, name: str, *, url: str, subject: str, js_stream: str,
                 batch: int = 500, poll: float = 0.05, ack_timeout: float = 2.0,
                 duplicate_window: float = 600.0) -> None:
        self.store, self.name = store, name
        self.url, self.subject, self.js_stream = url, subject, js_stream
        self.batch, self.poll, self.ack_timeout = batch, poll, ack_timeout
        self.duplicate_window = duplicate_window
        self.position = saved_position(store, name)
        self.published = 0
        self.retries = 0
        self.connected = False
        self.last_error = ""
        self._broker: Any = None

    async def _connect(self) -> None:
        from faststream.nats import NatsBroker

        from .nats_app import ensure_stream

        await ensure_stream(self.url, self.js_stream, self.subject, self.duplicate_window)
        broker = NatsBroker(self.url, max_reconnect_attempts=-1, reconnect_time_wait=0.2,
                            connect_timeout=2, logger=None, error_cb=self._on_error)
        await broker.connect()
        self._broker = broker
        self.connected = True

    async def _on_error(self, e: Exception) -> None:
        self.last_error = f"{type(e).__name__}: {e}"[:200]  # nats-py reconnects on its own

    async def _close(self) -> None:
        broker, self._broker = self._broker, None
        self.connected = False
        if broker is not None:
            problem = await bounded(broker.stop())  # a dead connection: nothing to lose
            if problem:
                self.last_error = f"closing: {problem}"

    async def publish_one(self, entry_id: str, data: bytes) -> None:
        """Publish one entry and wait for JetStream's ack (raises on failure)."""
        if self._broker is None:
            await self._connect()
        await self._broker.publish(data, self.subject, headers={"Nats-Msg-Id": entry_id},
                                   stream=self.js_stream, timeout=self.ack_timeout)

    async def run(self, stop: asyncio.Event, until_empty: bool = False) -> None:
        """Publish until ``stop`` is set (or, with ``until_empty``, until nothing is left)."""
        stream, position_stream = streams(self.name)
        delay = 0.05
        try:
            while not stop.is_set():
                batch = list(self.store.read_stream(stream, from_revision=self.position + 1,
                                                    limit=self.batch))
                if not batch:
                    if until_empty:
                        return
                    await _wait(stop, self.poll)
                    continue
                done = -1
                for event in batch:
                    key = _ENTRY.decode(event.data).effect_key
                    while not stop.is_set():
                        try:
                            await self.publish_one(key, event.data)
                            self.connected, delay = True, 0.05
                            break
                        except Exception as e:  # broker down or slow: same entry again, later
                            self.retries += 1
                            self.connected = False
                            self.last_error = f"{type(e).__name__}: {e}"[:200]
                            if self._broker is not None and not _reconnecting(self._broker):
                                await self._close()  # not a reconnect in progress: start over
                            await _wait(stop, delay)
                            delay = min(delay * 2, 1.0)
                    else:
                        break
                    done = event.revision
                    self.published += 1
                if done > self.position:
                    self.position = done
                    mark = OutboxPosition(done, self.published, time.time_ns())
                    await asyncio.to_thread(self.store.append, position_stream,
                                            [NewEvent(POSITION, _ENC.encode(mark))])
        finally:
            await self._close()

    def status(self) -> str:
        """``outbox NAME: published N, position P, R retries, connected``."""
        state = "connected" if self.connected else f"disconnected ({self.last_error})"
        return (f"outbox {self.name}: published {self.published:,}, position {self.position}, "
                f"{self.retries:,} retries, {state}")


async def _wait(stop: asyncio.Event, seconds: float) -> None:
    try:
        await asyncio.wait_for(stop.wait(), seconds)
    except TimeoutError:
        pass


def _reconnecting(broker: Any) -> bool:
    """True while the broker's NATS connection is up or nats-py is reconnecting it on its own."""
    from faststream.exceptions import IncorrectState

    try:
        conn = broker.connection  # faststream's public accessor; raises when never connected
    except IncorrectState:
        return False
    return conn.is_reconnecting or conn.is_connected

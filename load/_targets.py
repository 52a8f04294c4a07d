"""Where load goes: a store (embedded, memory, KurrentDB, PostgreSQL) or NATS JetStream.

``open_target(uri)`` parses a target URI:

- ``embedded:///path/events.db`` (or any other store URI ``open_store`` takes,
  e.g. ``kurrentdb://...`` when one is configured): each batch of due messages
  is appended in one transaction; acknowledged means durable.
- ``nats://127.0.0.1:4222/SUBJECT?stream=NAME``: each message is published to
  JetStream with ``Nats-Msg-Id`` set to the message id (so a retried publish is
  stored once), ``Ub-Stream`` and ``Ub-Occurred-At`` (the intended send time)
  headers; acknowledged means JetStream's publish ack. ``unbroken ingest nats``
  carries the messages on into a store.

Every message's event id is ``adapters.broker.messages.event_id("msg/" + key)``,
whichever the target, so loss accounting matches ids the same way.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

from adapters.broker.messages import OCCURRED_HEADER, STREAM_HEADER, event_id
from eventstore import ANY, NewEvent, UnbrokenError, open_store
from eventstore.payloads import encode_payload


class TargetError(UnbrokenError, ValueError):
    """A target URI that cannot be used."""


@dataclass(slots=True)
class Message:
    """One message of a run: its key (the id), stream, payload and intended send time (ns)."""

    seq: int
    key: str
    stream: str
    payload: Any
    intended_ns: int


def message_event_id(key: str):
    """The event id a message with key ``key`` is stored under."""
    return event_id("msg/" + key)


class StoreTarget:
    """Appends each batch of messages to a store in one transaction (``append_multi``)."""

    kind = "store"

    def __init__(self, uri: str) -> None:
        self.uri = uri
        self.store: Any = None

    async def open(self) -> None:
        """Open the store."""
        self.store = open_store(self.uri)

    async def send(self, batch: list[Message]) -> list[bool]:
        """Append ``batch`` durably; True for each acknowledged message."""
        requests: list[tuple[str, list[NewEvent], Any]] = []
        for m in batch:
            event = NewEvent.of(m.payload, id=message_event_id(m.key), occurred_at=m.intended_ns)
            if requests and requests[-1][0] == m.stream:
                requests[-1][1].append(event)
            else:
                requests.append((m.stream, [event], ANY))
        await asyncio.to_thread(self.store.append_multi, requests)
        return [True] * len(batch)

    async def close(self) -> None:
        """Close the store."""
        if self.store is not None:
            self.store.close()


class NatsTarget:
    """Publishes to JetStream and waits for each publish ack (retried under the same msg id)."""

    kind = "nats"

    def __init__(self, url: str, subject: str, stream: str) -> None:
        self.url, self.subject, self.js_stream = url, subject, stream
        self.nc: Any = None
        self.js: Any = None
        self.errors = 0

    async def open(self) -> None:
        """Connect (reconnecting forever) and make sure the JetStream stream exists."""
        import nats

        from adapters.broker.nats_app import ensure_stream

        deadline = time.monotonic() + 30
        while True:
            try:
                await ensure_stream(self.url, self.js_stream, self.subject)
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.5)
        self.nc = await nats.connect(self.url, max_reconnect_attempts=-1, reconnect_time_wait=0.2,
                                     connect_timeout=2)
        self.js = self.nc.jetstream()

    async def send(self, batch: list[Message]) -> list[bool]:
        """Publish every message of ``batch`` concurrently; True where JetStream acked."""
        return list(await asyncio.gather(*(self._publish(m) for m in batch)))

    async def _publish(self, m: Message) -> bool:
        body = encode_payload(m.payload)
        headers = {"Nats-Msg-Id": m.key, STREAM_HEADER: m.stream, OCCURRED_HEADER: str(m.intended_ns)}
        delay = 0.05
        for _ in range(10_000):
            try:
                await self.js.publish(self.subject, body, headers=headers, timeout=2.0)
                return True
            except asyncio.CancelledError:
                raise
            except Exception:  # broker down or slow: the same msg id again, deduplicated
                self.errors += 1
                await asyncio.sleep(delay)
                delay = min(delay * 2, 1.0)
        return False

    async def close(self) -> None:
        """Drain and close the connection."""
        if self.nc is not None:
            try:
                await asyncio.wait_for(self.nc.close(), 5)
            except Exception:
                pass


def open_target(uri: str):
    """A target for ``uri`` (see the module docstring); ``TargetError`` if it makes no sense."""
    parts = urlsplit(uri)
    if parts.scheme == "nats":
        subject = parts.path.lstrip("/") or "load"
        stream = parse_qs(parts.query).get("stream", ["UNBROKEN"])[0]
        if not parts.port:
            raise TargetError(f"target {uri!r}: give the port, e.g. nats://127.0.0.1:4222/load")
        return NatsTarget(f"nats://{parts.hostname}:{parts.port}", subject, stream)
    if parts.scheme in ("embedded", "memory", "kurrentdb", "kurrentdb+discover", "esdb",
                        "postgresql", "postgres", "sqlite") or "://" not in uri:
        return StoreTarget(uri)
    raise TargetError(f"target {uri!r}: use a store URI (embedded:///path.db, kurrentdb://...) "
                      "or nats://HOST:PORT/SUBJECT?stream=NAME")

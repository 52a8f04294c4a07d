"""Ingest from NATS JetStream: a durable pull consumer read by one long-lived pull, manual acks.

The ingest never gives up on a message the server sent it. faststream's
``NatsBroker`` holds the connection (reconnecting on its own); the consumer is
read through nats-py directly, because faststream's batch pull (nats-py's
``fetch`` with a short client-side timeout, in a loop) dropped whole fetched
batches: when a fetch's deadline ran out between its two requests, nats-py
raised a bare ``TimeoutError`` that faststream's loop did not catch, the
fetched messages were never handed over, and JetStream redelivered them one
ack wait later (about 3% of the messages at a trickle).

Instead, one pull request at a time asks for up to ``batch`` messages and
lives ``PULL_EXPIRES`` seconds on the server, which sends an idle heartbeat
every ``PULL_HEARTBEAT`` seconds while it waits; its expiry is decided by the
server only. Every message that reaches the inbox goes to a ``Batcher``, the
request's or a stale one's alike: each batch is appended with one store
transaction and only then acked, message by message; a batch that cannot be
stored is not acked (JetStream redelivers it after ``ack_wait``; the ids make
the second append a no-op). The next request is sent when the current one is
filled, refused, a heartbeat from expiring (so one is always open: the server
may drop an expired request without saying so), or went silent (no
heartbeat: the connection or the server went away), and only while connected
and fewer than ``batch`` messages wait for the store. A message that arrives
for an older request is stored like any other. The JetStream stream and the
durable consumer are created when they do not exist (file storage, the given
duplicate window); existing ones are used as they are.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any, Final

from .messages import Incoming, Ingestor
from .service import Batcher, bounded

MSG_ID: Final = "Nats-Msg-Id"
PULL_EXPIRES: Final = 5.0  # s a pull request waits on the server for messages
PULL_HEARTBEAT: Final = 1.0  # s between the server's idle heartbeats while a request waits
PULL_SILENCE: Final = 3 * PULL_HEARTBEAT  # s without a word from the server: the request is gone
PULL_RENEW: Final = PULL_EXPIRES - PULL_HEARTBEAT  # s after which the next request is sent anyway
REFUSED_PAUSE: Final = 0.5  # s before asking again after the server refused a request
HEARTBEAT, EXPIRED = "100", "408"  # the status codes of an idle heartbeat and an expired request


class NatsIngest:
    """Consumes a JetStream subject through a durable pull consumer into the store."""

    def __init__(self, ingestor: Ingestor, *, url: str, subject: str, durable: str,
                 js_stream: str, batch: int = 1000, ack_wait: float = 30.0,
                 max_ack_pending: int = 20_000, duplicate_window: float = 120.0,
                 linger: float = 0.002) -> None:
        self.name = "ingest nats"
        self.ingestor = ingestor
        self.url, self.subject, self.durable, self.js_stream = url, subject, durable, js_stream
        self.batch, self.ack_wait, self.linger = batch, ack_wait, linger
        self.max_ack_pending, self.duplicate_window = max_ack_pending, duplicate_window
        self.connected = False
        self.last_error = ""
        self.requests = 0  # pull requests sent
        self._broker: Any = None
        self._sub: Any = None
        self._puller: asyncio.Task | None = None
        self._batcher: Batcher | None = None
        self._left = 0  # messages the current request may still bring
        self._heard = 0.0  # monotonic time the server last said something to us
        self._ended = asyncio.Event()  # the current request is over: send the next one
        self._refused = ""  # why the server refused the current request, if it did
        self._online = asyncio.Event()  # connected: a request sent now reaches the server

    async def start(self) -> None:
        """Make sure the stream and the consumer exist, connect, and start pulling."""
        from faststream.nats import NatsBroker

        await self.ensure_stream()
        broker = NatsBroker(self.url, max_reconnect_attempts=-1, reconnect_time_wait=0.2,
                            connect_timeout=2, logger=None, error_cb=self._on_error,
                            disconnected_cb=self._on_disconnected,
                            reconnected_cb=self._on_reconnected)
        self._broker = broker
        await broker.connect()
        self._online.set()
        nc = broker.connection
        await self._ensure_consumer(nc.jetstream())
        self._batcher = Batcher(self.ingestor, max_batch=self.batch, linger=self.linger)
        inbox = nc.new_inbox()
        self._sub = await nc.subscribe(inbox, cb=self._on_message)
        self._puller = asyncio.create_task(self._pull(nc, inbox), name="nats-ingest-pull")

    async def _ensure_consumer(self, js: Any) -> None:
        from nats.js.api import AckPolicy, ConsumerConfig
        from nats.js.errors import NotFoundError

        try:
            await js.consumer_info(self.js_stream, self.durable)
        except NotFoundError:
            await js.add_consumer(self.js_stream, ConsumerConfig(
                durable_name=self.durable, filter_subject=self.subject,
                ack_policy=AckPolicy.EXPLICIT, ack_wait=self.ack_wait,
                max_ack_pending=self.max_ack_pending))

    async def _pull(self, nc: Any, inbox: str) -> None:
        """Keep one pull request open on the server, the next sent when the last is over."""
        subject = f"$JS.API.CONSUMER.MSG.NEXT.{self.js_stream}.{self.durable}"
        request = json.dumps({"batch": self.batch, "expires": int(PULL_EXPIRES * 1e9),
                              "idle_heartbeat": int(PULL_HEARTBEAT * 1e9)}).encode()
        assert self._batcher is not None
        while True:
            await self._batcher.room(self.batch)  # back pressure: the store is behind
            await self._online.wait()  # requests are not queued up while disconnected
            self._left, self._heard, self._refused = self.batch, time.monotonic(), ""
            self._ended.clear()
            await nc.publish(subject, request, reply=inbox)
            self.requests += 1
            await self._request_over()
            if self._refused:
                await asyncio.sleep(REFUSED_PAUSE)

    async def _request_over(self) -> None:
        """Wait until the current request ended, is about to expire, or went silent.

        The next request is sent a heartbeat before the current one expires, so one
        is always waiting on the server: nats-server 2.9 drops an expired request
        without a 408 when a message arrives at that moment, and waiting for the
        408 then left no request open until the silence ran out (3 s stalls)."""
        renew_at = time.monotonic() + PULL_RENEW
        while not self._ended.is_set():
            now = time.monotonic()
            if now >= renew_at or now - self._heard > PULL_SILENCE:
                return  # about to expire, or a reconnect or a restarted server lost it
            try:
                await asyncio.wait_for(self._ended.wait(), min(PULL_HEARTBEAT, renew_at - now))
            except TimeoutError:
                pass

    async def _on_message(self, msg: Any) -> None:
        """A message or a status for one of our pull requests (never dropped)."""
        self._heard = time.monotonic()
        status = (msg.headers or {}).get("Status") if not msg.reply else None
        if status is None:  # a stream message (JetStream messages carry an ack subject)
            assert self._batcher is not None
            self._batcher.add(_incoming(msg), msg.ack)
            self._left -= 1
            if self._left <= 0:
                self._ended.set()
        elif status != HEARTBEAT:  # expired (408) or refused: either way it is over
            if status != EXPIRED:
                description = (msg.headers or {}).get("Description", "")
                self._refused = self.last_error = f"pull request refused: {status} {description}"
            self._ended.set()

    async def _on_disconnected(self) -> None:
        self._online.clear()

    async def _on_reconnected(self) -> None:
        self._online.set()
        self._ended.set()  # the server may have forgotten the request: send a new one

    async def _on_error(self, e: Exception) -> None:
        self.last_error = f"{type(e).__name__}: {e}"[:200]  # nats-py reconnects on its own

    async def stop(self) -> None:
        """Stop pulling, store and ack what arrived, close (unacked messages stay with JetStream)."""
        broker, self._broker = self._broker, None
        puller, self._puller = self._puller, None
        sub, self._sub = self._sub, None
        self.connected = False
        self._online.clear()
        if puller is not None:
            puller.cancel()
            await asyncio.gather(puller, return_exceptions=True)
        if sub is not None:  # no more deliveries; what already arrived goes to the batcher
            await bounded(sub.drain(), 5.0)
        if self._batcher is not None:
            await self._batcher.close()
            self.last_error = self._batcher.last_error or self.last_error
        if broker is None:
            return
        problem = await bounded(broker.connection.flush(2), 3.0) if sub is not None else ""
        problem = await bounded(broker.stop()) or problem
        if problem:
            self.last_error = f"closing: {problem}"

    async def ensure_stream(self) -> None:
        """Create the JetStream stream over the subject when it does not exist yet."""
        await ensure_stream(self.url, self.js_stream, self.subject, self.duplicate_window)
async def ensure_stream(url: str, name: str, subject: str, duplicate_window: float = 120.0) -> None:
    """Create JetStream stream ``name`` (file storage) for ``subject`` unless it exists."""
    import nats
    from nats.js.api import StorageType, StreamConfig
    from nats.js.errors import NotFoundError

    async def quiet(e: Exception) -> None:  # the caller reports the failure; no log traceback
        pass

    nc = await nats.connect(url, connect_timeout=2, allow_reconnect=False, max_reconnect_attempts=0,
                            error_cb=quiet)
    try:
        js = nc.jetstream()
        try:
            await js.stream_info(name)
        except NotFoundError:
            await js.add_stream(StreamConfig(name=name, subjects=[subject], storage=StorageType.FILE,
                                             duplicate_window=duplicate_window))
    finally:
        await nc.close()


def _incoming(r: Any) -> Incoming:
    headers = r.headers or {}
    msg_id = headers.get(MSG_ID)
    if msg_id:
        key = f"msg/{msg_id}"
        where = f"Nats-Msg-Id {msg_id}"
    else:
        md = r.metadata
        key = f"nats/{md.stream}/{md.sequence.stream}"
        where = f"JetStream {md.stream} seq {md.sequence.stream}"
    return Incoming(key=key, subject=r.subject, body=r.data, headers=headers, where=where)



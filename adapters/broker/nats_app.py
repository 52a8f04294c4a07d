"""Ingest from NATS JetStream with faststream: a durable pull consumer, batches, manual acks.

Each fetched batch is appended with one store transaction and only then acked,
message by message; a batch that cannot be stored is not acked (JetStream
redelivers it after ``ack_wait``; the ids make the second append a no-op).
Fetching and writing overlap: the subscriber hands each batch to a writer task
through a short queue (``depth`` batches), so the next fetch runs while the
previous batch is being made durable; acks still follow durability.
The JetStream stream is created when it does not exist (file storage, the
given duplicate window); an existing stream is used as it is (faststream's own
declaration, which may rewrite a stream's settings, is switched off).
"""

from __future__ import annotations

import asyncio
from typing import Any

from .messages import Incoming, Ingestor
from .service import bounded

MSG_ID = "Nats-Msg-Id"


class NatsIngest:
    """A faststream NatsBroker whose one subscriber appends batches to the store."""

    def __init__(self, ingestor: Ingestor, *, url: str, subject: str, durable: str,
                 js_stream: str, batch: int = 1000, ack_wait: float = 30.0,
                 max_ack_pending: int = 20_000, duplicate_window: float = 120.0,
                 depth: int = 4) -> None:
        self.name = "ingest nats"
        self.ingestor = ingestor
        self.url, self.subject, self.durable, self.js_stream = url, subject, durable, js_stream
        self.batch, self.ack_wait = batch, ack_wait
        self.max_ack_pending, self.duplicate_window = max_ack_pending, duplicate_window
        self.connected = False
        self.last_error = ""
        self.acked = 0
        self._broker: Any = None
        self._queue: asyncio.Queue = asyncio.Queue(maxsize=depth)
        self._writer: asyncio.Task | None = None

    async def start(self) -> None:
        """Make sure the JetStream stream exists, then start the faststream broker."""
        from faststream import AckPolicy
        from faststream.nats import JStream, NatsBroker, NatsMessage, PullSub
        from nats.js.api import ConsumerConfig

        await self.ensure_stream()
        broker = NatsBroker(self.url, max_reconnect_attempts=-1, reconnect_time_wait=0.2,
                            connect_timeout=2, logger=None, error_cb=self._on_error)

        @broker.subscriber(
            self.subject, stream=JStream(self.js_stream, declare=False), durable=self.durable,
            pull_sub=PullSub(batch_size=self.batch, timeout=0.05, batch=True),
            config=ConsumerConfig(ack_wait=self.ack_wait, max_ack_pending=self.max_ack_pending),
            ack_policy=AckPolicy.MANUAL, decoder=_no_decode,
        )
        async def handle(body: Any, msg: NatsMessage) -> None:
            await self._queue.put(msg.raw_message)

        self._broker = broker
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_loop(), name="nats-ingest-writer")
        await broker.start()

    async def _write_loop(self) -> None:
        while True:
            raws = await self._queue.get()
            try:
                await self.on_batch(raws)
            finally:
                self._queue.task_done()

    async def _on_error(self, e: Exception) -> None:
        self.last_error = f"{type(e).__name__}: {e}"[:200]  # nats-py reconnects on its own

    async def on_batch(self, raws: list) -> None:
        """Append a fetched batch durably, then ack each message; on a store error, ack none."""
        incoming = [_incoming(r) for r in raws]
        try:
            await asyncio.to_thread(self.ingestor.append, incoming)
        except Exception as e:  # not stored: not acked, redelivered after ack_wait
            self.last_error = f"store: {type(e).__name__}: {e}"[:200]
            return
        for r in raws:
            await r.ack()
        self.acked += len(raws)

    async def stop(self) -> None:
        """Stop consuming and close the connection (unacked messages stay with JetStream)."""
        broker, self._broker = self._broker, None
        self.connected = False
        if broker is None:
            return
        try:  # batches already fetched: store and ack them while the connection is up
            await asyncio.wait_for(self._queue.join(), 10.0)
        except TimeoutError:
            pass
        problem = await bounded(broker.stop())
        if problem:
            self.last_error = f"closing: {problem}"
        while not self._queue.empty():  # fetched after the wait: never acked, redelivered
            self._queue.get_nowait()
            self._queue.task_done()
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.cancel()
            await asyncio.gather(writer, return_exceptions=True)

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


async def _no_decode(msg: Any, original: Any = None) -> None:
    return None  # the handler reads the raw messages; faststream's JSON decoding is skipped


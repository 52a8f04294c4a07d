"""Ingest from a Redis Stream with faststream: a consumer group, batches, XACK after durability.

An entry is either what faststream publishes (the ``__data__`` field, with its
headers) or a plain ``XADD`` with a ``body`` field and header fields beside it
(``Ub-Stream``, ``Ub-Msg-Id``, ...). The idempotency key is ``Ub-Msg-Id`` (or
``Nats-Msg-Id``), else the stream and entry id. At start, entries a crashed run of
the same consumer left pending are stored and acked first, and other consumers'
entries pending longer than ``claim_idle`` seconds are claimed (XAUTOCLAIM; Redis 7
has no XREADGROUP CLAIM, which faststream's own option needs).
"""

from __future__ import annotations

import asyncio
from typing import Any

from .messages import Incoming, Ingestor
from .service import bounded

MSG_ID_HEADERS = ("Ub-Msg-Id", "Nats-Msg-Id", "message_id")


class RedisIngest:
    """A faststream RedisBroker whose batch subscriber appends to the store, then acks."""

    def __init__(self, ingestor: Ingestor, *, url: str, stream: str, group: str,
                 consumer: str = "unbroken", batch: int = 500, claim_idle: float = 30.0) -> None:
        self.name = "ingest redis"
        self.ingestor = ingestor
        self.url, self.redis_stream, self.group, self.consumer = url, stream, group, consumer
        self.batch, self.claim_idle = batch, claim_idle
        self.connected = False
        self.last_error = ""
        self._broker: Any = None

    async def start(self) -> None:
        """Connect, create the group if needed, and consume."""
        from faststream import AckPolicy
        from faststream.redis import RedisBroker, RedisStreamMessage, StreamSub

        await self.ensure_group()
        await self.recover_pending()
        broker = RedisBroker(self.url, logger=None)
        sub = StreamSub(self.redis_stream, group=self.group, consumer=self.consumer, batch=True,
                        max_records=self.batch, polling_interval=50)

        @broker.subscriber(stream=sub, ack_policy=AckPolicy.MANUAL, decoder=_no_decode)
        async def handle(body: Any, msg: RedisStreamMessage) -> None:
            await self.on_batch(msg)

        self._broker = broker
        await broker.start()

    async def ensure_group(self) -> None:
        """Create the consumer group at the start of the stream (faststream would start at
        its end, missing entries added before the first run)."""
        import redis.asyncio as aioredis
        from redis.exceptions import ResponseError

        client = aioredis.Redis.from_url(self.url)
        try:
            await client.xgroup_create(self.redis_stream, self.group, id="0", mkstream=True)
        except ResponseError as e:
            if "BUSYGROUP" not in str(e):
                raise
        finally:
            await client.aclose()

    async def recover_pending(self) -> None:
        """Store and XACK what a crashed run left pending: this consumer's own entries (a
        ``>`` read never returns them again) and other consumers' idle ones (XAUTOCLAIM)."""
        import redis.asyncio as aioredis

        client = aioredis.Redis.from_url(self.url)
        try:
            while True:
                reply = await client.xreadgroup(self.group, self.consumer, {self.redis_stream: "0"},
                                                count=self.batch)
                entries = reply[0][1] if reply else []
                if not entries or not await self._store_and_ack(client, entries):
                    break
            cursor = "0-0"
            while True:
                cursor, entries, *_ = await client.xautoclaim(
                    self.redis_stream, self.group, self.consumer, int(self.claim_idle * 1000),
                    start_id=cursor, count=self.batch)
                entries = [(i, f) for i, f in entries if f]  # deleted entries come back empty
                if entries:
                    await self._store_and_ack(client, entries)
                if cursor in (b"0-0", "0-0"):
                    break
        finally:
            await client.aclose()

    async def _store_and_ack(self, client: Any, entries: list) -> bool:
        incoming = [self._incoming(i, f) for i, f in entries]
        await asyncio.to_thread(self.ingestor.append, incoming)
        await client.xack(self.redis_stream, self.group, *[i for i, _ in entries])
        return True

    async def on_batch(self, msg: Any) -> None:
        """Append the entries of one read durably, then XACK them."""
        raw = msg.raw_message
        incoming = [self._incoming(entry_id, fields)
                    for entry_id, fields in zip(raw["message_ids"], raw["data"], strict=True)]
        try:
            await asyncio.to_thread(self.ingestor.append, incoming)
        except Exception as e:  # not stored: not acked; claimed again later
            self.last_error = f"store: {type(e).__name__}: {e}"[:200]
            return
        await msg.ack()

    def _incoming(self, entry_id: bytes, fields: dict) -> Incoming:
        from faststream.redis.parser.binary import BinaryMessageFormatV1

        entry = entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)
        data = fields.get(b"__data__")
        if data is not None:
            try:
                body, headers = BinaryMessageFormatV1.parse(data)
            except Exception:  # not faststream's envelope after all: keep it as the body
                body, headers = data, {}
        else:
            body = fields.get(b"body", b"")
            headers = {_text(k): _text(v) for k, v in fields.items() if k != b"body"}
        headers = {str(k): str(v) for k, v in headers.items()}
        msg_id = next((headers[h] for h in MSG_ID_HEADERS if headers.get(h)), None)
        key = f"msg/{msg_id}" if msg_id else f"redis/{self.redis_stream}/{entry}"
        return Incoming(key=key, subject=self.redis_stream, body=bytes(body), headers=headers,
                        where=f"Redis stream {self.redis_stream} entry {entry}")

    async def stop(self) -> None:
        """Stop consuming and close the connection."""
        broker, self._broker = self._broker, None
        self.connected = False
        if broker is not None:
            await bounded(broker.stop())


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


async def _no_decode(msg: Any, original: Any = None) -> None:
    return None

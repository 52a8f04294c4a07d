"""Ingest from a Redis Stream with faststream: a consumer group, batches, XACK after durability.

An entry is either what faststream publishes (the ``__data__`` field, with its
headers) or a plain ``XADD`` with a ``body`` field and header fields beside it
(``Ub-Stream``, ``Ub-Msg-Id``, ...). The idempotency key is ``Ub-Msg-Id`` (or
``Nats-Msg-Id``), else the stream and entry id. Entries a crashed consumer left
pending are claimed again after ``claim_idle`` seconds.
"""

from __future__ import annotations

import asyncio
from typing import Any

from .messages import Incoming, Ingestor

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

        broker = RedisBroker(self.url, logger=None)
        sub = StreamSub(self.redis_stream, group=self.group, consumer=self.consumer, batch=True,
                        max_records=self.batch, polling_interval=50, last_id="0",
                        claim_min_idle_time=int(self.claim_idle * 1000))

        @broker.subscriber(stream=sub, ack_policy=AckPolicy.MANUAL, decoder=_no_decode)
        async def handle(body: Any, msg: RedisStreamMessage) -> None:
            await self.on_batch(msg)

        self._broker = broker
        await broker.start()

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
            await broker.stop()


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


async def _no_decode(msg: Any, original: Any = None) -> None:
    return None

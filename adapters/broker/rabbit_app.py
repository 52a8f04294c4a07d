"""Ingest from a RabbitMQ queue with faststream: manual acks after the batch is durable.

Messages are handed to a ``Batcher`` as they arrive (up to ``prefetch`` unacked
at a time) and acked once their batch is stored. The idempotency key is the
AMQP ``message_id`` (faststream sets one on publish) or a ``Ub-Msg-Id`` header;
a message with neither gets the key of its content (queue and sha256 of the
body and headers), so a redelivery of it is still stored once.
"""

from __future__ import annotations

import hashlib
from typing import Any

from .messages import Incoming, Ingestor
from .service import Batcher, bounded


class RabbitIngest:
    """A faststream RabbitBroker consuming a durable queue into the store."""

    def __init__(self, ingestor: Ingestor, *, url: str, queue: str, prefetch: int = 2000,
                 batch: int = 500) -> None:
        self.name = "ingest rabbit"
        self.ingestor = ingestor
        self.url, self.queue, self.prefetch = url, queue, prefetch
        self.batcher = Batcher(ingestor, max_batch=batch)
        self.connected = False
        self.last_error = ""
        self._broker: Any = None

    async def start(self) -> None:
        """Connect, declare the durable queue, consume with manual acks."""
        from faststream import AckPolicy
        from faststream.rabbit import Channel, RabbitBroker, RabbitMessage, RabbitQueue

        broker = RabbitBroker(self.url, logger=None)

        @broker.subscriber(RabbitQueue(self.queue, durable=True), ack_policy=AckPolicy.MANUAL,
                           channel=Channel(prefetch_count=self.prefetch), decoder=_no_decode)
        async def handle(body: Any, msg: RabbitMessage) -> None:
            raw = msg.raw_message
            self.batcher.add(self._incoming(raw), raw.ack)

        self._broker = broker
        await broker.start()

    def _incoming(self, raw: Any) -> Incoming:
        headers = {str(k): v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)
                   for k, v in (raw.headers or {}).items()}
        msg_id = raw.message_id or headers.get("Ub-Msg-Id")
        if msg_id:
            key = f"msg/{msg_id}"
        else:
            digest = hashlib.sha256(raw.body + repr(sorted(headers.items())).encode()).hexdigest()
            key = f"rabbit/{self.queue}/{digest}"
        return Incoming(key=key, subject=self.queue, body=bytes(raw.body), headers=headers,
                        where=f"RabbitMQ queue {self.queue} message {msg_id or key}")

    async def stop(self) -> None:
        """Store and ack what is queued, then close."""
        broker, self._broker = self._broker, None
        self.connected = False
        if broker is not None:
            await self.batcher.close()
            await bounded(broker.stop())


async def _no_decode(msg: Any, original: Any = None) -> None:
    return None

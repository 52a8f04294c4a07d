"""Ingest, dedupe and rejection against the Redis (127.0.0.1:6379) and RabbitMQ
(127.0.0.1:5672, guest/guest) servers this machine runs; skipped when they are not
reachable (failed with CI=true)."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest

from adapters.broker.messages import Ingestor, event_id
from adapters.broker.rabbit_app import RabbitIngest
from adapters.broker.redis_app import RedisIngest
from adapters.broker.service import serve
from eventstore import open_store
from eventstore.payloads import Rejected, decode_payload
from projections.payloads import MarketTick

from .broker_support import tick
from .nats_server import reachable, require_service

pytestmark = pytest.mark.service
BAD = {"bad-json": b"{oops", "bad-type": b'{"type":"Nope"}', "bad-fit": b'{"type":"MarketTick"}'}


async def _serve_until(app, until, timeout: float = 30.0) -> None:
    stop = asyncio.Event()
    task = asyncio.create_task(serve(app, stop, status_every=0))
    deadline = time.monotonic() + timeout
    try:
        while not until():
            assert time.monotonic() < deadline, f"not done within {timeout}s: {app.last_error}"
            await asyncio.sleep(0.02)
    finally:
        stop.set()
        await task


def _check_store(store, n: int) -> None:
    ids = [e.id for e in store.read_stream("ticks")]
    assert len(ids) == n == len(set(ids))
    assert set(ids) == {event_id(f"msg/g-{i}") for i in range(n)}
    assert all(isinstance(decode_payload(e), MarketTick) for e in store.read_stream("ticks"))
    rejected = {e.id: decode_payload(e) for e in store.read_stream("rejected")}
    for key, body in BAD.items():
        r = rejected[event_id(f"msg/{key}")]
        assert isinstance(r, Rejected) and r.raw == body


@pytest.mark.case("EF-003")
def test_redis_stream_ingest_dedupe_and_rejection(tmp_path):
    """Entries with Ub-Msg-Id (some twice) and bad ones: each good one once, bad ones Rejected,
    everything XACKed; a second consumer group replaying the stream adds nothing."""
    require_service("redis", reachable(6379), "nothing listens on 127.0.0.1:6379")
    import redis.asyncio as aioredis

    key = f"unbroken-test-{uuid.uuid4().hex[:8]}"
    n = 300

    async def main():
        r = aioredis.Redis(host="127.0.0.1", port=6379)
        try:
            for i in range(n):
                await r.xadd(key, {"body": tick(i), "Ub-Msg-Id": f"g-{i}"})
            for i in range(0, n, 10):  # a producer retry: the same message id again
                await r.xadd(key, {"body": tick(i), "Ub-Msg-Id": f"g-{i}"})
            for k, body in BAD.items():
                await r.xadd(key, {"body": body, "Ub-Msg-Id": k})
            total = n + n // 10 + len(BAD)
            with open_store(f"embedded:///{tmp_path}/events.db") as store:
                for group in ("g1", "g2"):
                    ingestor = Ingestor(store, "redis", stream="ticks")
                    app = RedisIngest(ingestor, url="redis://127.0.0.1:6379", stream=key,
                                      group=group)
                    await _serve_until(app, lambda i=ingestor: i.stored >= total)
                    _check_store(store, n)
                    pending = await r.xpending(key, group)
                    assert pending["pending"] == 0  # every entry acknowledged
        finally:
            await r.delete(key)
            await r.aclose()

    asyncio.run(main())


@pytest.mark.case("EF-002")
def test_rabbitmq_ingest_dedupe_and_rejection(tmp_path):
    """Messages with message_id (some published twice) and bad ones: each good one once,
    bad ones Rejected, the queue left empty (all acked)."""
    require_service("rabbitmq", reachable(5672), "nothing listens on 127.0.0.1:5672")
    import aio_pika

    queue = f"unbroken-test-{uuid.uuid4().hex[:8]}"
    n = 300

    async def main():
        conn = await aio_pika.connect_robust("amqp://guest:guest@127.0.0.1:5672/")
        try:
            channel = await conn.channel()
            q = await channel.declare_queue(queue, durable=True)
            for i in [*range(n), *range(0, n, 10)]:
                await channel.default_exchange.publish(
                    aio_pika.Message(tick(i), message_id=f"g-{i}"), routing_key=queue)
            for k, body in BAD.items():
                await channel.default_exchange.publish(aio_pika.Message(body, message_id=k),
                                                       routing_key=queue)
            total = n + n // 10 + len(BAD)
            with open_store(f"embedded:///{tmp_path}/events.db") as store:
                ingestor = Ingestor(store, "rabbit", stream="ticks")
                app = RabbitIngest(ingestor, url="amqp://guest:guest@127.0.0.1:5672/", queue=queue)
                await _serve_until(app, lambda: ingestor.stored >= total)
                _check_store(store, n)
            q = await channel.declare_queue(queue, durable=True, passive=True)
            assert q.declaration_result.message_count == 0
        finally:
            ch = await conn.channel()
            await ch.queue_delete(queue)
            await conn.close()

    asyncio.run(main())


def test_redis_entries_left_pending_by_a_crash_are_stored_on_restart(tmp_path):
    """A consumer read entries and died before XACK: the next run stores and acks them."""
    require_service("redis", reachable(6379), "nothing listens on 127.0.0.1:6379")
    import redis.asyncio as aioredis

    key = f"unbroken-test-{uuid.uuid4().hex[:8]}"

    async def main():
        r = aioredis.Redis(host="127.0.0.1", port=6379)
        try:
            for i in range(50):
                await r.xadd(key, {"body": tick(i), "Ub-Msg-Id": f"g-{i}"})
            await r.xgroup_create(key, "g", id="0")
            await r.xreadgroup("g", "unbroken", {key: ">"}, count=30)  # read, never acked
            with open_store(f"embedded:///{tmp_path}/events.db") as store:
                ingestor = Ingestor(store, "redis", stream="ticks")
                app = RedisIngest(ingestor, url="redis://127.0.0.1:6379", stream=key, group="g")
                await _serve_until(app, lambda: ingestor.stored >= 50)
                assert {e.id for e in store.read_stream("ticks")} == {
                    event_id(f"msg/g-{i}") for i in range(50)}
            assert (await r.xpending(key, "g"))["pending"] == 0
        finally:
            await r.delete(key)
            await r.aclose()

    asyncio.run(main())

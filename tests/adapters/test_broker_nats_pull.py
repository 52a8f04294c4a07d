"""The NATS ingest keeps every message JetStream sends it, however the messages trickle in.

Messages published a few at a time, with gaps longer than a short pull's
timeout, are each delivered once (the consumer's delivery sequence equals the
stream sequence: nothing was sent twice) and stored long before the ack wait
(a message the ingest dropped would come back only after it). The ingest it
replaced lost a few percent of such messages and stored them one ack wait late.
"""

from __future__ import annotations

import asyncio
import random
import time

import nats
import pytest

from adapters.broker.messages import Ingestor
from adapters.broker.nats_app import NatsIngest, ensure_stream
from adapters.broker.service import serve
from eventstore import open_store

from .broker_support import tick
from .nats_server import NatsServer

pytestmark = pytest.mark.service

ACK_WAIT = 3.0  # s: a dropped message would come back, and be stored, only after this


@pytest.fixture
def server(tmp_path):
    srv = NatsServer(tmp_path).start()
    yield srv
    srv.close()


async def _trickle(url: str, subject: str, n: int, seed: int) -> None:
    """Publish ``n`` messages in groups of 1-3, 10-40 ms apart, each with its send time."""
    rng = random.Random(seed)
    nc = await nats.connect(url, connect_timeout=2)
    js = nc.jetstream()
    sent = 0
    while sent < n:
        group = range(sent, min(n, sent + rng.randint(1, 3)))
        await asyncio.gather(*(js.publish(subject, tick(i), timeout=10, headers={
            "Nats-Msg-Id": f"p-{i}", "Ub-Occurred-At": str(time.time_ns())}) for i in group))
        sent = group.stop
        await asyncio.sleep(rng.uniform(0.01, 0.04))
    await nc.close()


async def _delivery_state(url: str, stream: str, durable: str):
    nc = await nats.connect(url, connect_timeout=2)
    try:
        info = await nc.jetstream().consumer_info(stream, durable)
        return info.delivered.consumer_seq, info.delivered.stream_seq, info.num_ack_pending
    finally:
        await nc.close()


def test_trickled_messages_are_each_delivered_once_and_stored_before_the_ack_wait(server, tmp_path):
    n = 160
    uri = f"embedded:///{tmp_path}/events.db"

    async def main():
        await ensure_stream(server.url, "P", "p.>")
        with open_store(uri) as store:
            ingestor = Ingestor(store, "nats", stream="p")
            app = NatsIngest(ingestor, url=server.url, subject="p.>", durable="p", js_stream="P",
                             ack_wait=ACK_WAIT)
            stop = asyncio.Event()
            task = asyncio.create_task(serve(app, stop, status_every=0))
            try:
                await _trickle(server.url, "p.in", n, seed=16)
                deadline = time.monotonic() + 60
                while ingestor.stored < n and time.monotonic() < deadline:
                    await asyncio.sleep(0.02)
            finally:
                stop.set()
                await task
            events = list(store.read_stream("p"))
        assert len(events) == n == len({e.id for e in events})
        assert await _delivery_state(server.url, "P", "p") == (n, n, 0)  # no delivery twice
        late = sorted((e.recorded_at - e.occurred_at) / 1e9 for e in events)
        assert late[-1] < ACK_WAIT / 2, f"stored late (s): {late[-5:]}"

    asyncio.run(main())

"""Exactly-once ingest from a real NATS JetStream (nats-server on loopback, SIGKILLed and restarted).

The kill test sends 100,000 messages (about 25 s here); UNBROKEN_BIG_N=20000 makes it shorter.
"""

from __future__ import annotations

import asyncio
import os
import re
import time

import nats
import pytest

from adapters.broker.messages import Ingestor, event_id
from adapters.broker.nats_app import NatsIngest, ensure_stream
from adapters.broker.service import serve
from eventstore import open_store
from eventstore.payloads import Rejected, decode_payload, encode_payload
from projections.payloads import MarketTick

from .broker_support import IngestProcess, expected_ids, publish_all, stream_count, tick
from .nats_server import NatsServer, wait_for

pytestmark = pytest.mark.service


@pytest.fixture
def server(tmp_path):
    srv = NatsServer(tmp_path).start()
    yield srv
    srv.close()


@pytest.fixture
def ingest_process(tmp_path):
    """Make ``IngestProcess`` objects that are killed and reaped however the test ends."""
    made: list[IngestProcess] = []

    def make(args: list[str]) -> IngestProcess:
        made.append(IngestProcess(tmp_path, args))
        return made[-1]

    yield make
    for process in made:
        process.close()


async def _connect(url: str):
    return await nats.connect(url, max_reconnect_attempts=-1, reconnect_time_wait=0.1,
                              connect_timeout=2)


async def _run_ingest(app, until, timeout: float = 30.0):
    """Serve ``app`` until ``until()`` holds (or fail after ``timeout``), then stop it."""
    stop = asyncio.Event()
    task = asyncio.create_task(serve(app, stop, status_every=0))
    deadline = time.monotonic() + timeout
    while not until():
        if time.monotonic() > deadline:
            stop.set()
            await task
            raise AssertionError(f"ingest did not finish within {timeout}s: {app.ingestor}")
        await asyncio.sleep(0.02)
    stop.set()
    await task


async def _consumer_state(url: str, stream: str, durable: str):
    nc = await nats.connect(url)
    try:
        info = await nc.jetstream().consumer_info(stream, durable)
        return info.num_pending, info.num_ack_pending
    finally:
        await nc.close()


@pytest.mark.case("EF-002")
def test_EF_002_bad_messages_become_rejected_events_and_are_acked(server, tmp_path):
    """Undecodable, unknown, misfit, oversized and bad-stream messages: Rejected, acked, ingest goes on."""
    uri = f"embedded:///{tmp_path}/events.db"
    bad = {
        "b-json": (b"{not json", {}, "not JSON"),
        "b-type": (b'{"type":"NoSuchType","x":1}', {}, "unknown event type"),
        "b-fit": (b'{"type":"MarketTick","symbol":3}', {}, "does not fit MarketTick"),
        "b-big": (b'{"type":"MarketTick","symbol":"' + b"x" * 5000 + b'","price":1.0}', {},
                  "over the limit"),
        "b-stream": (tick(1), {"Ub-Stream": "$system"}, "invalid stream"),
        "b-time": (tick(2), {"Ub-Occurred-At": "yesterday"}, "not integer ns"),
    }

    async def main():
        await ensure_stream(server.url, "T", "t.>")
        nc = await _connect(server.url)
        js = nc.jetstream()
        for key, (body, headers, _) in bad.items():
            await js.publish("t.in", body, headers={"Nats-Msg-Id": key, **headers})
        for i in range(3):
            await js.publish("t.in", tick(i), headers={"Nats-Msg-Id": f"good-{i}"})
        await nc.close()
        with open_store(uri) as store:
            ingestor = Ingestor(store, "nats", stream="ticks", max_bytes=4096)
            app = NatsIngest(ingestor, url=server.url, subject="t.>", durable="d", js_stream="T",
                             ack_wait=2)
            await _run_ingest(app, lambda: ingestor.stored >= len(bad) + 3)
            assert ingestor.rejected == len(bad)
            rejected = {e.id: decode_payload(e) for e in store.read_stream("rejected")}
            good = list(store.read_stream("ticks"))
        assert len(good) == 3 and all(isinstance(decode_payload(e), MarketTick) for e in good)
        for key, (body, _, reason) in bad.items():
            r = rejected[event_id(f"msg/{key}")]
            assert isinstance(r, Rejected) and reason in r.reason, (key, r.reason)
            assert r.raw == body and r.source == "nats:t.in" and key in r.where
        assert await _consumer_state(server.url, "T", "d") == (0, 0)  # all acked, none pending

    asyncio.run(main())


@pytest.mark.case("EF-003")
def test_EF_003_a_replayed_message_id_never_applies_twice(server, tmp_path):
    """A second consumer replays the whole JetStream stream; the same ids add nothing."""
    uri = f"embedded:///{tmp_path}/events.db"

    async def main():
        await ensure_stream(server.url, "R", "r.>")
        nc = await _connect(server.url)
        js = nc.jetstream()
        await publish_all(js, "r.x", 1000)
        for i in range(5):  # without a message id: the id is the JetStream position
            await js.publish("r.x", tick(10_000 + i))
        await nc.close()
        with open_store(uri) as store:
            for durable in ("first", "replay"):  # the second reads every message again
                ingestor = Ingestor(store, "nats", stream="ticks")
                app = NatsIngest(ingestor, url=server.url, subject="r.>", durable=durable,
                                 js_stream="R", ack_wait=2)
                await _run_ingest(app, lambda i=ingestor: i.stored >= 1005)
                ids = [e.id for e in store.read_stream("ticks")]
                assert len(ids) == 1005 == len(set(ids))
            assert expected_ids(1000) <= set(ids)
            assert event_id("nats/R/1001") in set(ids)  # stream seq 1001: the first without an id

    asyncio.run(main())


def _big_n() -> int:
    return int(os.environ.get("UNBROKEN_BIG_N", "100000"))


@pytest.mark.slow
def test_every_message_exactly_once_while_broker_and_ingest_are_killed(server, tmp_path,
                                                                     ingest_process):
    """N messages; nats-server SIGKILLed and restarted 3 times, the ingest process 3 times."""
    n = _big_n()
    uri = f"embedded:///{tmp_path}/events.db"
    ingest = ingest_process([
        "--url", server.url, "--subject", "big.>", "--js-stream", "BIG", "--durable", "ing",
        "--store", uri, "--stream", "big", "--ack-wait", "2", "--status-every", "0.5"])
    progress = [0]
    killed_at: list[int] = []  # how many messages were acked when the broker was killed

    async def chaos():
        """Kill the broker or the ingest each time another sixth of the messages is published."""
        steps = ["broker", "ingest", "broker", "ingest", "both", "ingest"]
        for k, what in enumerate(steps, start=1):
            while progress[0] < n * k // (len(steps) + 1):
                await asyncio.sleep(0.01)
            if what in ("broker", "both"):
                server.kill()
                killed_at.append(progress[0])
            if what in ("ingest", "both"):
                ingest.kill()
            if what in ("broker", "both"):
                await asyncio.to_thread(server.start)
            if what in ("ingest", "both"):
                ingest.start()

    async def main():
        await ensure_stream(server.url, "BIG", "big.>", duplicate_window=300)
        ingest.start()
        nc = await _connect(server.url)
        js = nc.jetstream()
        chaos_task = asyncio.create_task(chaos())
        await publish_all(js, "big.t", n, progress=progress)
        await chaos_task
        await nc.close()

    asyncio.run(main())
    # the broker died three times while publishing went on (the client may buffer through a
    # short outage, so failed publishes are not counted on)
    assert server.kills == 3 and len(killed_at) == 3 and max(killed_at) < n
    wait_for(lambda: stream_count(uri, "big") >= n, 120, f"{n} events in the store", every=0.25)
    assert ingest.terminate() == 0  # SIGTERM: a clean stop
    with open_store(uri) as store:
        events = list(store.read_stream("big"))
        assert store.stream_revision("rejected") is None
    ids = [e.id for e in events]
    assert len(ids) == n and set(ids) == expected_ids(n)  # every message, exactly once
    sizes = sorted(int(decode_payload(e).size) for e in events)
    assert sizes == list(range(n))  # and with its own content
    log = ingest.log.read_text()
    assert "ingest nats: stored" in log and "Traceback" not in log


def test_ingest_command_stops_cleanly_on_sigterm_with_a_status_line(server, tmp_path,
                                                                   ingest_process):
    """The command prints where it reads and writes, status lines, and exits 0 on SIGTERM."""
    uri = f"embedded:///{tmp_path}/events.db"
    ingest = ingest_process(["--url", server.url, "--subject", "c.>", "--js-stream", "C",
                            "--store", uri, "--stream", "c", "--status-every", "0.2",
                            "--ack-wait", "2"])

    async def publish():
        await ensure_stream(server.url, "C", "c.>")
        nc = await _connect(server.url)
        await publish_all(nc.jetstream(), "c.x", 300)
        await nc.close()

    ingest.start()
    asyncio.run(publish())
    wait_for(lambda: stream_count(uri, "c") == 300, 30, "300 events stored")
    status = re.compile(r"ingest nats: stored 3\d\d \(0 rejected\) in \d+ batches, [\d,]+/s, connected")
    wait_for(lambda: status.search(ingest.log.read_text()), 30, "a status line with the count")
    assert ingest.terminate() == 0
    text = ingest.log.read_text()
    assert f"ingest nats: {server.url} c.> -> {uri}" in text and "Traceback" not in text


def test_payload_round_trip_keeps_headers_stream_and_time(server, tmp_path):
    """Ub-Stream picks the store stream and Ub-Occurred-At the source time."""
    uri = f"embedded:///{tmp_path}/events.db"

    async def main():
        await ensure_stream(server.url, "H", "h.>")
        nc = await _connect(server.url)
        body = encode_payload(MarketTick(symbol="AAPL", price=189.25, price_minor=18925))
        await nc.jetstream().publish("h.x", body, headers={
            "Nats-Msg-Id": "h1", "Ub-Stream": "ticks-AAPL", "Ub-Occurred-At": "1700000000000000000"})
        await nc.close()
        with open_store(uri) as store:
            ingestor = Ingestor(store, "nats")
            app = NatsIngest(ingestor, url=server.url, subject="h.>", durable="h", js_stream="H",
                             ack_wait=2)
            await _run_ingest(app, lambda: ingestor.stored >= 1)
            (event,) = list(store.read_stream("ticks-AAPL"))
        assert event.id == event_id("msg/h1") and event.occurred_at == 1_700_000_000_000_000_000
        assert decode_payload(event) == MarketTick(symbol="AAPL", price=189.25, price_minor=18925)
        assert event.metadata.source == "nats:h.x"

    asyncio.run(main())

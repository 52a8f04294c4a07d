"""Broker benchmark: JetStream ingest into the embedded store, and the outbox publish rate.

Every figure is compared with a baseline measured in the same run, against the same
nats-server (a real one on loopback with a temporary JetStream directory):

  ingest   NatsIngest (one long-lived pull request on a durable consumer -> Ingestor.append_multi
           in the embedded store, WAL + synchronous=FULL -> ack each message) vs a bare loop of the
           same client (nats-py pull_subscribe, fetch 500, ack each message, nothing stored).
           Goal: >= 10,000 events/s end to end (EF-001) and >= 50% of the bare rate.
  outbox   NatsOutbox (read the outbox stream from the store, publish each entry with its
           Nats-Msg-Id through faststream and wait for the JetStream ack, checkpoint every
           500) vs a bare nats-py js.publish-and-wait-for-ack loop over the same bodies.

Each side runs twice, alternating, on its own fresh messages; the best run counts.

Run:  .venv/bin/python tests/bench/bench_broker.py [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BATCH = int(__import__("os").environ.get("BENCH_BATCH", "1000"))  # NatsIngest default
sys.path.insert(0, str(ROOT))

import nats  # noqa: E402

from adapters.broker.messages import Ingestor  # noqa: E402
from adapters.broker.nats_app import NatsIngest, ensure_stream  # noqa: E402
from adapters.broker.outbox import NatsOutbox, OutboxEntry, enqueue  # noqa: E402
from eventstore import open_store  # noqa: E402
from eventstore.payloads import encode_payload  # noqa: E402
from projections.payloads import MarketTick  # noqa: E402
from tests.adapters.nats_server import NatsServer  # noqa: E402


async def publish(url: str, subject: str, n: int, prefix: str) -> None:
    """Fill the JetStream stream with n ticks (pipelined publishes, all acked)."""
    nc = await nats.connect(url)
    js = nc.jetstream()
    for start in range(0, n, 1000):
        await asyncio.gather(*(js.publish(subject, encode_payload(
            MarketTick(symbol=f"S{i % 50}", price=100.0 + i % 1000 / 100, size=float(i))),
            headers={"Nats-Msg-Id": f"{prefix}-{i}"}) for i in range(start, min(n, start + 1000))))
    await nc.close()


async def bare_consume(url: str, stream: str, subject: str, n: int) -> float:
    """events/s of fetch-500-and-ack with the same client, storing nothing."""
    nc = await nats.connect(url)
    sub = await nc.jetstream().pull_subscribe(subject, durable="bare", stream=stream)
    t0, got = time.perf_counter(), 0
    while got < n:
        try:
            msgs = await sub.fetch(500, timeout=0.05)
        except TimeoutError:
            continue
        for m in msgs:
            await m.ack()
        got += len(msgs)
    rate = got / (time.perf_counter() - t0)
    await nc.close()
    return rate


async def ingest(url: str, stream: str, subject: str, n: int, tmp: Path) -> float:
    """events/s of NatsIngest into a fresh embedded store, connect to last ack included."""
    from adapters.broker.service import serve

    with open_store(f"embedded:///{tmp}/ingest-{time.monotonic_ns()}.db") as store:
        ingestor = Ingestor(store, "nats", stream="ticks")
        app = NatsIngest(ingestor, url=url, subject=subject, durable="ing", js_stream=stream,
                         batch=BATCH)
        stop = asyncio.Event()
        t0 = time.perf_counter()
        task = asyncio.create_task(serve(app, stop, status_every=0, out=lambda line: None))
        while (store.stream_revision("ticks") or 0) < n - 1:  # every message durable once
            await asyncio.sleep(0.005)
        rate = n / (time.perf_counter() - t0)
        stop.set()
        await task
    return rate


async def bare_publish(url: str, stream: str, subject: str, bodies: list[bytes]) -> float:
    """messages/s of js.publish + wait for the ack, one after another."""
    await ensure_stream(url, stream, subject, 600)
    nc = await nats.connect(url)
    js = nc.jetstream()
    t0 = time.perf_counter()
    for i, body in enumerate(bodies):
        await js.publish(subject, body, headers={"Nats-Msg-Id": f"bare-{i}"}, stream=stream)
    rate = len(bodies) / (time.perf_counter() - t0)
    await nc.close()
    return rate


async def outbox(url: str, stream: str, subject: str, n: int, tmp: Path, run: int) -> float:
    """messages/s of NatsOutbox draining n entries from the store."""
    with open_store(f"embedded:///{tmp}/outbox-{run}.db") as store:
        enqueue(store, "b", [OutboxEntry(effect_key=f"order:r{run}-{i}#0", kind="order",
                                         subject=f"s{i}", action="place-order",
                                         status="released", at=i) for i in range(n)])
        box = NatsOutbox(store, "b", url=url, subject=subject, js_stream=stream)
        t0 = time.perf_counter()
        await box.run(asyncio.Event(), until_empty=True)
        assert box.published == n
        return n / (time.perf_counter() - t0)


async def main(quick: bool) -> int:
    n_ingest, n_outbox = (50_000, 3_000) if quick else (200_000, 20_000)
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        server = NatsServer(tmp).start()
        try:
            ingest_rates, bare_rates = [], []
            for run in range(2):
                for side in ("bare", "ingest"):
                    stream, subject = f"B{run}{side}", f"b{run}{side}.t"
                    await ensure_stream(server.url, stream, subject)
                    await publish(server.url, subject, n_ingest, f"{run}{side}")
                    if side == "bare":
                        bare_rates.append(await bare_consume(server.url, stream, subject, n_ingest))
                    else:
                        ingest_rates.append(await ingest(server.url, stream, subject, n_ingest, tmp))
            box_rates, pub_rates = [], []
            entry = OutboxEntry(effect_key="order:x#0", kind="order", subject="x",
                                action="place-order", status="released", at=0)
            import msgspec
            bodies = [msgspec.json.encode(msgspec.structs.replace(entry, at=i))
                      for i in range(n_outbox)]
            for run in range(2):
                pub_rates.append(await bare_publish(server.url, f"P{run}", f"p{run}.t", bodies))
                box_rates.append(await outbox(server.url, f"O{run}", f"o{run}.t", n_outbox, tmp, run))
        finally:
            server.close()
    ingest_best, bare_best = max(ingest_rates), max(bare_rates)
    box_best, pub_best = max(box_rates), max(pub_rates)
    print(f"bench_broker {dt.date.today()} {platform.python_version()} "
          f"{'--quick' if quick else 'full'}: {n_ingest:,} ingest messages, {n_outbox:,} outbox")
    print(f"ingest   {ingest_best:10,.0f} ev/s   bare consume+ack {bare_best:10,.0f} ev/s   "
          f"ratio {ingest_best / bare_best:.2f}  (goal >= 10,000 ev/s and >= 0.50)")
    print(f"         runs: ingest {[round(r) for r in ingest_rates]}, bare {[round(r) for r in bare_rates]}")
    print(f"outbox   {box_best:10,.0f} msg/s  bare publish+ack  {pub_best:10,.0f} msg/s  "
          f"ratio {box_best / pub_best:.2f}")
    print(f"         runs: outbox {[round(r) for r in box_rates]}, bare {[round(r) for r in pub_rates]}")
    ok = ingest_best >= 10_000 and ingest_best >= 0.5 * bare_best
    print("goal met" if ok else "GOAL NOT MET")
    return 0 if ok else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, well under a minute")
    sys.exit(asyncio.run(main(parser.parse_args().quick)))

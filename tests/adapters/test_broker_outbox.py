"""The outbox against a real nats-server: a broker outage and a worker crash lose nothing,
duplicate nothing (after JetStream's Nats-Msg-Id dedupe), and keep store order (TR-002)."""

from __future__ import annotations

import asyncio
import subprocess
import time

import nats
import pytest

import replay
from adapters.broker.outbox import (
    NatsOutbox,
    OutboxEntry,
    enqueue,
    enqueue_projection,
    saved_position,
    streams,
)
from eventstore import open_store
from load._trading_model import TradingProfile, generate_trading

from .broker_support import UNBROKEN
from .nats_server import NatsServer

pytestmark = pytest.mark.service


@pytest.fixture
def server(tmp_path):
    srv = NatsServer(tmp_path).start()
    yield srv
    srv.close()


class Gated(NatsOutbox):
    """An outbox that stops before publishing entry 700 and 1500 until the test lets it go."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.gates = {700: asyncio.Event(), 1500: asyncio.Event()}
        self.reached = {700: asyncio.Event(), 1500: asyncio.Event()}

    async def publish_one(self, entry_id: str, data: bytes) -> None:
        gate = self.gates.get(self.published)
        if gate is not None and not gate.is_set():
            self.reached[self.published].set()
            await gate.wait()
        await super().publish_one(entry_id, data)


def _entries(n: int) -> list[OutboxEntry]:
    return [OutboxEntry(effect_key=f"order:s{i}#0", kind="order", subject=f"s{i}",
                        action="place-order", status="released", at=i) for i in range(n)]


async def _published(url: str, stream: str) -> list[str]:
    """Every message id in the JetStream stream, in stream order."""
    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        info = await js.stream_info(stream)
        ids = []
        for seq in range(info.state.first_seq, info.state.last_seq + 1):
            msg = await js.get_msg(stream, seq)
            ids.append(msg.headers["Nats-Msg-Id"])
        return ids
    finally:
        await nc.close()


async def _until(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.01)


@pytest.mark.case("TR-002")
def test_TR_002_outbox_survives_broker_outage_and_worker_crash(server, tmp_path):
    """Publishing stalls while the broker is down, resumes in order; a crash republishes
    a few entries with the same ids, which JetStream drops: each decision once, in order."""
    n = 3000
    uri = f"embedded:///{tmp_path}/events.db"
    with open_store(uri) as store:
        assert enqueue(store, "t", _entries(n)) == n
        assert enqueue(store, "t", _entries(n)) == 0  # enqueuing again adds nothing

        async def main():
            first = Gated(store, "t", url=server.url, subject="out.orders", js_stream="OUT",
                          batch=200, ack_timeout=0.5)
            task = asyncio.create_task(first.run(asyncio.Event()))
            await first.reached[700].wait()
            server.kill()  # the broker goes away: nothing moves on, nothing is skipped
            first.gates[700].set()
            await _until(lambda: first.retries >= 3, 30, "retries during the outage")
            assert first.published == 700
            await asyncio.to_thread(server.start)
            await first.reached[1500].wait()  # publishing resumed after the outage
            task.cancel()  # a crash: no goodbye, the position saved lags the published ones
            await asyncio.gather(task, return_exceptions=True)
            assert first.published == 1500 and saved_position(store, "t") == 1399
            second = NatsOutbox(store, "t", url=server.url, subject="out.orders", js_stream="OUT")
            await second.run(asyncio.Event(), until_empty=True)
            assert second.published == n - 1400  # 100 of them again: JetStream drops those
            assert saved_position(store, "t") == n - 1
            return await _published(server.url, "OUT")

        ids = asyncio.run(main())
    assert ids == [f"order:s{i}#0" for i in range(n)]  # once each, in store order


def test_outbox_from_a_trading_trace_and_from_a_live_projection(server, tmp_path):
    """`unbroken outbox nats --trace` publishes the trace's external releases; a projection
    replayed over the store enqueues the same effects (no duplicates between the two)."""
    log = tmp_path / "trading.jsonl"
    generate_trading(log, TradingProfile(symbols=2, minutes=16, crash_at=7, flood_at=1,
                                         limits_at=3, flood_signals=30))
    uri = f"embedded:///{tmp_path}/events.db"
    trace = tmp_path / "trace"
    with open_store(uri) as store:
        replay.import_log(log, store)
        replay.run(replay.deliveries_of(store.read_all()), replay.load_projection("trading"),
                   trace_dir=trace)
    expected = replay.query(trace, "SELECT effect_key FROM decisions WHERE external AND status "
                                   "IN ('released', 'sent') ORDER BY seq")["effect_key"].to_list()
    assert any(k.startswith("alert:") for k in expected) and len(expected) > 20
    done = subprocess.run(
        [UNBROKEN, "outbox", "nats", "--store", uri, "--url", server.url, "--subject", "out.t",
         "--js-stream", "OUTT", "--name", "trading", "--trace", str(trace), "--drain"],
        capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert f"{len(expected)} new entries" in done.stderr and "Traceback" not in done.stderr
    assert asyncio.run(_published(server.url, "OUTT")) == expected
    with open_store(uri) as store:  # a live projection over the store finds nothing new
        assert enqueue_projection(store, "trading", replay.load_projection("trading"),
                                  now=2**62) == 0
        assert store.stream_revision(streams("trading")[0]) == len(expected) - 1

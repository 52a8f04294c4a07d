"""Helpers of the broker tests: publishing with retries, the ingest subprocess, store counts."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

from adapters.broker.messages import event_id
from eventstore import open_store
from eventstore.payloads import encode_payload
from projections.payloads import MarketTick

UNBROKEN = str(Path(sys.executable).with_name("unbroken"))


def tick(i: int) -> bytes:
    """The body of message ``i``: a MarketTick whose size is ``i`` (to check content)."""
    return encode_payload(MarketTick(symbol=f"S{i % 7}", price=100.0 + (i % 100) / 100, size=float(i)))


def expected_ids(n: int, prefix: str = "m") -> set:
    """The event ids messages ``prefix-0`` .. ``prefix-(n-1)`` must get."""
    return {event_id(f"msg/{prefix}-{i}") for i in range(n)}


async def publish_all(js, subject: str, n: int, prefix: str = "m", chunk: int = 500,
                      progress: list | None = None, start: int = 0) -> int:
    """Publish messages start..n-1 with Nats-Msg-Id, each retried until JetStream acks it.

    Returns how many publish attempts failed (a broker outage makes some fail).
    """
    failures = 0
    pending = list(range(start, n))
    while pending:
        window, pending = pending[:chunk], pending[chunk:]
        while window:
            results = await asyncio.gather(
                *(js.publish(subject, tick(i), headers={"Nats-Msg-Id": f"{prefix}-{i}"}, timeout=2)
                  for i in window), return_exceptions=True)
            failed = [i for i, r in zip(window, results, strict=True) if isinstance(r, BaseException)]
            failures += len(failed)
            if failed:
                await asyncio.sleep(0.05)  # the broker is down: give it a moment before retrying
            window = failed
        if progress is not None:
            progress[0] = n - len(pending)
    return failures


class IngestProcess:
    """``unbroken ingest nats`` as a real subprocess, killable and restartable."""

    def __init__(self, tmp: Path, args: list[str]) -> None:
        self.args = [UNBROKEN, "ingest", "nats", *args]
        self.log = tmp / "ingest.log"
        self.proc: subprocess.Popen | None = None
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1"}

    def start(self) -> None:
        """Start (or restart) the ingest process."""
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(self.args, stdout=log, stderr=log, env=self.env)

    def kill(self) -> None:
        """SIGKILL it: no cleanup, fetched messages stay unacked."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def close(self) -> None:
        """Kill it if it still runs (a test that failed midway) and reap it."""
        if self.proc is not None and self.proc.poll() is None:
            self.kill()

    def terminate(self, timeout: float = 30) -> int:
        """SIGTERM it and return its exit code (a clean stop is expected)."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=timeout)


def stored_ids(uri: str, stream: str) -> list:
    """The ids of every event in ``stream``, in order."""
    with open_store(uri) as store:
        return [e.id for e in store.read_stream(stream)]


def stream_count(uri: str, stream: str) -> int:
    """How many events ``stream`` holds (0 when the store or stream does not exist yet)."""
    try:
        with open_store(uri) as store:
            rev = store.stream_revision(stream)
    except Exception:  # the ingest process has not created the store yet
        return 0
    return 0 if rev is None else rev + 1

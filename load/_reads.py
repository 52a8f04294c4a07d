"""Open-loop BACnet reads against the event server (``unbroken serve bacnet``): BN-001's read mix.

``read_load(address, rate, seconds, seed)`` sends reads at Poisson times:
60% ReadProperty (present-value), 30% ReadPropertyMultiple (present-value,
status-flags, object-name), 10% ReadRange (the object's log-buffer), each on a
random object of the BN-001 set, sent raw by ``_readclient`` (no bacpypes3
application in the load process). Reads go concurrently (up to
``max_inflight``); latency counts from each read's intended time. An error
answer (a deleted object) is an answer; a timeout is a failed read.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from adapters.bacnet.logrecords import object_identifier_bytes

from ._arrivals import poisson, schedule
from ._profiles import READ_MIX, bn_objects, read_kind
from ._readclient import ReadClient, encode_read

KINDS = tuple(kind for kind, _ in READ_MIX)


@dataclass(slots=True)
class Reads:
    """One row per scheduled read."""

    intended_ns: np.ndarray
    done_ns: np.ndarray
    kind: np.ndarray  # index into KINDS
    ok: np.ndarray  # 1 answered (an error answer too), 0 failed or not sent
    errors: dict[str, int] = field(default_factory=dict)

    def latencies_ms(self, mask: np.ndarray | None = None) -> np.ndarray:
        """Latency of each answered read (in ``mask``), ms from its intended time."""
        keep = (self.ok == 1) if mask is None else (self.ok == 1) & mask
        return (self.done_ns[keep] - self.intended_ns[keep]) / 1e6

    def judged_ms(self, mask: np.ndarray) -> np.ndarray:
        """Latency of every read in ``mask``; a failed or unsent read counts as infinitely late."""
        lat = np.where(self.ok == 1, (self.done_ns - self.intended_ns) / 1e6, np.inf)
        return lat[mask]


def parse_address(uri: str) -> str:
    """``bacnet://127.0.0.1:47809`` (or ``127.0.0.1:47809``) as ``host:port``."""
    return uri.removeprefix("bacnet://").rstrip("/")


async def read_load(address: str, rate: float, seconds: float, seed: int, *, metrics: Any = None,
                    max_inflight: int = 64, timeout: float = 2.0, grace: float = 10.0) -> Reads:
    """Read from the server at ``address`` open-loop; returns every read's outcome.

    The reads go through ``_readclient.ReadClient`` (raw UDP, each request encoded
    once per object and kind). Up to ``max_inflight`` are in flight; a read due
    while that many are waits, and its latency, from its intended time, shows
    it. Reads still unsent ``grace`` seconds after the last intended time are
    given up (never sent: failed), so a server that cannot keep up does not
    stretch the run.
    """
    offsets, _ = schedule(poisson(rate, seconds), seed)
    n = len(offsets)
    rng = random.Random(seed)
    objects = bn_objects()
    plan = [(read_kind(rng), objects[rng.randrange(len(objects))]) for _ in range(n)]
    out = Reads(np.zeros(n, np.int64), np.zeros(n, np.int64),
                np.array([KINDS.index(k) for k, _ in plan], np.int8), np.zeros(n, np.int8))
    requests: dict[tuple[str, tuple[str, int]], tuple[bytes, bytes]] = {}
    for kind, obj in plan:
        if (kind, obj) not in requests:
            requests[kind, obj] = (encode_read(kind, *obj), object_identifier_bytes(*obj))

    def done(i: int, outcome: str, now: int) -> None:
        out.done_ns[i] = now
        kind = plan[i][0]
        if outcome == "timeout":
            out.errors["TimeoutError"] = out.errors.get("TimeoutError", 0) + 1
        else:  # an error answer (a deleted object) is an answer too
            out.ok[i] = 1
            if outcome != "ack":
                name = f"answer:{outcome}({kind})"
                out.errors[name] = out.errors.get(name, 0) + 1
        if metrics is not None:
            metrics.read(kind, (now - intended[i]) / 1e9 if outcome != "timeout" else None)
        room.set()

    host, _, port = address.rpartition(":")
    room = asyncio.Event()  # set when a read finishes (there is room for one more)
    client = await ReadClient.open(host, int(port), done, timeout=timeout)
    start = time.time_ns() + 200_000_000
    out.intended_ns[:] = offsets + start
    intended = out.intended_ns.tolist()
    deadline = start + int((seconds + grace) * 1e9)
    try:
        i = 0
        while i < n:
            now = time.time_ns()
            if intended[i] > now:
                await asyncio.sleep((intended[i] - now) / 1e9)
                continue
            if client.in_flight >= max_inflight:
                room.clear()
                await room.wait()
                continue
            if now > deadline:  # the server fell too far behind: the rest are unsent
                out.errors["not sent (behind schedule)"] = n - i
                break
            kind, obj = plan[i]
            client.send(i, *requests[kind, obj])
            i += 1
        try:
            await asyncio.wait_for(client.idle.wait(), timeout * 3)
        except TimeoutError:
            pass
    finally:
        client.close()
    if client.mismatched or client.unreadable:
        out.errors["answers matching no read"] = client.mismatched + client.unreadable
    return out


def write_reads(reads: Reads, path: Path) -> Path:
    """One Parquet row per read: kind, intended_ns, done_ns, ok."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({
        "kind": pa.array([KINDS[k] for k in reads.kind]),
        "intended_ns": pa.array(reads.intended_ns), "done_ns": pa.array(reads.done_ns),
        "ok": pa.array(reads.ok.astype(bool)),
    }), path)
    return path


def load_reads(path: Path) -> Reads:
    """Reads written by ``write_reads``."""
    import pyarrow.parquet as pq

    t = pq.read_table(path).to_pydict()
    return Reads(np.array(t["intended_ns"], np.int64), np.array(t["done_ns"], np.int64),
                 np.array([KINDS.index(k) for k in t["kind"]], np.int8),
                 np.array(t["ok"], np.int8))


MODBUS_FUNCTIONS = {"coils": "read_coils", "discrete_inputs": "read_discrete_inputs",
                    "holding_registers": "read_holding_registers",
                    "input_registers": "read_input_registers"}


def parse_modbus(uri: str) -> tuple[str, int, int, str, int, int]:
    """``modbus://HOST:PORT?unit=1&function=input_registers&address=0&count=5`` as parts."""
    from urllib.parse import parse_qs, urlsplit

    parts = urlsplit(uri)
    q = {k: v[0] for k, v in parse_qs(parts.query).items()}
    function = q.get("function", "input_registers")
    if function not in MODBUS_FUNCTIONS:
        raise ValueError(f"{uri}: function must be one of {', '.join(MODBUS_FUNCTIONS)}")
    return (parts.hostname or "127.0.0.1", parts.port or 502, int(q.get("unit", 1)),
            MODBUS_FUNCTIONS[function], int(q.get("address", 0)), int(q.get("count", 1)))


async def modbus_read_load(uri: str, rate: float, seconds: float, seed: int, *,
                           metrics: Any = None, connections: int = 4,
                           timeout: float = 1.0) -> Reads:
    """Poll a Modbus TCP device (e.g. ``unbroken simulate modbus``) open loop at ``rate``/s.

    ``connections`` clients poll concurrently (a Modbus TCP device answers one request
    per connection at a time); a poll due while all are busy waits, and its latency,
    from the intended time, shows it.
    """
    from pymodbus.client import AsyncModbusTcpClient

    host, port, unit, fn, address, count = parse_modbus(uri)
    offsets, _ = schedule(poisson(rate, seconds), seed)
    n = len(offsets)
    out = Reads(np.zeros(n, np.int64), np.zeros(n, np.int64), np.zeros(n, np.int8),
                np.zeros(n, np.int8))
    clients = [AsyncModbusTcpClient(host, port=port, timeout=timeout, retries=0)
               for _ in range(connections)]
    for c in clients:
        await c.connect()
    free: asyncio.Queue = asyncio.Queue()
    for c in clients:
        free.put_nowait(c)
    start = time.time_ns() + 200_000_000
    out.intended_ns[:] = offsets + start

    async def one(i: int, client: Any) -> None:
        try:
            if not client.connected:
                await client.connect()
            response = await getattr(client, fn)(address, count=count, device_id=unit)
            out.ok[i] = 1
            if response.isError():
                out.errors["exception"] = out.errors.get("exception", 0) + 1
        except (KeyboardInterrupt, asyncio.CancelledError):
            raise
        except BaseException as e:  # a dropped connection or a timeout: a failed poll
            out.errors[type(e).__name__] = out.errors.get(type(e).__name__, 0) + 1
        finally:
            out.done_ns[i] = time.time_ns()
            free.put_nowait(client)
            if metrics is not None:
                metrics.read("modbus", (out.done_ns[i] - out.intended_ns[i]) / 1e9
                             if out.ok[i] else None)

    tasks = set()
    try:
        for i in range(n):
            delay = (out.intended_ns[i] - time.time_ns()) / 1e9
            if delay > 0:
                await asyncio.sleep(delay)
            client = await free.get()
            task = asyncio.create_task(one(i, client))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        if tasks:
            await asyncio.wait(set(tasks), timeout=timeout * 3)
    finally:
        for c in clients:
            c.close()
    return out

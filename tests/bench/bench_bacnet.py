"""BACnet event server benchmark (BN-001, BN-004): read latency, append-to-served lag, memory.

Run: .venv/bin/python tests/bench/bench_bacnet.py [--quick]

1. Baseline: a bare bacpypes3 device serving the same 1,000 static objects; a client
   reads it (60% ReadProperty, 30% ReadPropertyMultiple) and we take p50/p99.
2. The event server (its own process, `python -m adapters.bacnet.workload serve`)
   with 1,000 objects while a writer process appends 100 events/s (BN-001 mix), the
   same client load plus 10% ReadRange at 50 reads/s; then 1,000 events/s with 500
   reads/s. Zero loss: every live object's final value read over BACnet equals the
   writer's last value. Reported: read p50/p99 and the ratio to the baseline,
   append-to-served lag p50/p99 (store stamp to folded, server clock), resident memory.
3. Store-to-COV-notification latency: a client subscribed to 20 objects; another
   process appends; time from append return to notification.
4. Memory with 1,000 and 2,000 objects (history 64 per object).
5. BN-004 with full histories: 2,000 objects, each with 64 values stored before the
   server starts; the server folds them all on start; its resident memory after.
   ``--full-history-only`` runs just this phase.
6. ``--read-cpu``: CPU per answered read, by kind (ReadProperty, ReadPropertyMultiple,
   ReadRange over 10 history entries): the event server over 1,000 objects and the raw
   read client of the load generator in this process, 1,000 closed-loop reads per kind,
   twice; baseline: a bare bacpypes3 device (``SimulatedDevice``) with the same objects
   answering the same ReadProperty and ReadPropertyMultiple in the same run (it has no
   ReadRange).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bacpypes3.pdu import Address  # noqa: E402
from bacpypes3.primitivedata import ObjectIdentifier  # noqa: E402

from adapters.bacnet.net import free_port  # noqa: E402
from adapters.bacnet.simulator import SimObject, SimulatedDevice  # noqa: E402
from adapters.bacnet.workload import objects_of  # noqa: E402

PY = sys.executable


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] if values else float("nan")


async def client_load(address: str, objects: list[tuple[str, int]], rate: float, seconds: float,
                      seed: int, ranges: bool) -> list[float]:
    """Reads at ``rate``/s for ``seconds``: 60% RP, 30% RPM, 10% ReadRange (if ``ranges``)."""
    from tests.adapters.bacnet_support import client, read_range

    app = client(9300 + seed)
    a = Address(address)
    rng = random.Random(seed)
    latencies: list[float] = []
    errors = 0
    start = time.monotonic()
    n = 0
    try:
        while (elapsed := time.monotonic() - start) < seconds:
            due = int(elapsed * rate)
            while n < due:
                n += 1
                object_type, instance = rng.choice(objects)
                oid = f"{object_type},{instance}"
                draw = rng.random()
                t = time.perf_counter()
                try:
                    if draw < 0.6 or (draw >= 0.9 and not ranges):
                        await app.read_property(a, ObjectIdentifier(oid), "present-value")
                    elif draw < 0.9:
                        await app.read_property_multiple(a, [oid, ["present-value",
                                                                   "status-flags", "object-name"]])
                    else:
                        await read_range(app, address, oid, None)
                except BaseException as e:  # a deleted object's error is an answer too
                    if isinstance(e, KeyboardInterrupt | asyncio.CancelledError):
                        raise
                    errors += 1
                latencies.append((time.perf_counter() - t) * 1000)
            await asyncio.sleep(0.002)
    finally:
        app.close()
    return latencies


async def baseline(count: int, seconds: float, rate: float) -> dict:
    specs = [SimObject(t, i, f"{t}-{i}", 1 if t.startswith("multi") else 0.0)
             for t, i in objects_of(count)]
    device = SimulatedDevice(f"127.0.0.1:{free_port()}", 4000, specs)
    device.start()
    try:
        lat = await client_load(device.address, objects_of(count), rate, seconds, 1, False)
    finally:
        device.stop()
    return {"p50_ms": pct(lat, 0.5), "p99_ms": pct(lat, 0.99), "reads": len(lat)}


def start_server(uri: str, address: str, seconds: float, stop: Path) -> subprocess.Popen:
    proc = subprocess.Popen([PY, "-m", "adapters.bacnet.workload", "serve", "--store", uri,
                             "--address", address, "--seconds", str(seconds),
                             "--stop-file", str(stop)], stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    assert json.loads(line)["ready"], line
    return proc


def write(uri: str, objects: int, rate: float, seconds: float, expect: Path,
          initial_only: bool = False) -> subprocess.Popen:
    return subprocess.Popen([PY, "-m", "adapters.bacnet.workload", "write", "--store", uri,
                             "--objects", str(objects), "--rate", str(rate), "--seconds",
                             str(0 if initial_only else seconds), "--expect", str(expect)]
                            + ([] if initial_only else ["--skip-initial"]),
                            stdout=subprocess.DEVNULL)


async def verify(address: str, expect: dict) -> int:
    """Objects whose served value differs from the writer's last (0 = zero loss)."""
    from tests.adapters.bacnet_support import client

    app = client(9400)
    a = Address(address)
    wrong = 0
    try:
        keys = list(expect)
        for i in range(0, len(keys), 20):
            args = []
            for k in keys[i:i + 20]:
                args += [k, ["present-value"]]
            for oid, _p, _i, value in await app.read_property_multiple(a, args):
                want = expect[f"{oid[0]},{oid[1]}"]
                got = str(value) == "active" if str(value) in ("active", "inactive") else value
                if want is not None and (abs(float(got) - float(want)) > 1e-3):
                    wrong += 1
    finally:
        app.close()
    return wrong


async def server_run(count: int, rate: float, reads: float, seconds: float) -> dict:
    tmp = Path(tempfile.mkdtemp())
    uri = f"embedded://{tmp}/events.db"
    expect = tmp / "expect.json"
    write(uri, count, rate, seconds, expect, initial_only=True).wait()
    address = f"127.0.0.1:{free_port()}"
    stop = tmp / "stop"
    server = start_server(uri, address, seconds + 120, stop)
    writer = write(uri, count, rate, seconds, expect)
    lat = await client_load(address, objects_of(count), reads, seconds, 2, True)
    writer.wait()
    await asyncio.sleep(1.0)
    wrong = await verify(address, json.loads(expect.read_text()))
    stop.touch()
    result = json.loads(server.stdout.read().strip().splitlines()[-1])
    server.wait()
    result.update({"read_p50_ms": pct(lat, 0.5), "read_p99_ms": pct(lat, 0.99),
                   "reads": len(lat), "wrong": wrong})
    return result


async def cov_latency(samples: int) -> dict:
    from adapters.bacnet.server import EventServer
    from tests.adapters.bacnet_support import append, client, definition, value

    tmp = Path(tempfile.mkdtemp())
    uri = f"embedded://{tmp}/events.db"
    append(uri, [definition(i) for i in range(1, 21)] + [value(i, 0.0) for i in range(1, 21)])
    server = EventServer(uri, address=f"127.0.0.1:{free_port()}")
    await server.start()
    app = client(9500)
    a = Address(server.address)
    lat = []
    try:
        async with app.change_of_value(a, ObjectIdentifier("analog-input,1"), 1, False, 300) as sub:
            await sub.get_value()
            for n in range(samples):
                while not sub.queue.empty():
                    sub.queue.get_nowait()
                script = ("import sys,time\nfrom eventstore import open_store, NewEvent\n"
                          "from projections.payloads.bacnet import BacnetValueUpdate\n"
                          "s=open_store(sys.argv[1])\n"
                          "s.append('bacnet',[NewEvent.of(BacnetValueUpdate(device_id=1,"
                          "object_type='analog-input',instance=1,value=float(sys.argv[2])))])\n"
                          "print(time.time_ns())\n")
                proc = await asyncio.create_subprocess_exec(PY, "-c", script, uri, str(n + 1.0),
                                                            stdout=subprocess.PIPE)
                while True:
                    prop, val = await asyncio.wait_for(sub.get_value(), 10)
                    if str(prop) == "present-value" and val == n + 1.0:
                        break
                got = time.time_ns()
                out, _ = await proc.communicate()
                lat.append((got - int(out.decode().strip())) / 1e6)
    finally:
        app.close()
        await server.stop()
    return {"p50_ms": pct(lat, 0.5), "p99_ms": pct(lat, 0.99), "max_ms": max(lat), "n": len(lat)}


async def memory(count: int) -> dict:
    return await server_run(count, 100, 10, 10)


async def full_history_memory(count: int, history: int = 64) -> dict:
    """Resident memory of the server with ``count`` objects, each with ``history`` values."""
    from adapters.bacnet.workload import DEVICE, definition, value_for
    from eventstore import NewEvent, open_store
    from projections.payloads.bacnet import BacnetValueUpdate

    tmp = Path(tempfile.mkdtemp())
    uri = f"embedded://{tmp}/events.db"
    rng = random.Random(4)
    objects = objects_of(count)
    with open_store(uri) as store:
        store.append("bacnet", [NewEvent.of(definition(t, i)) for t, i in objects])
        for _ in range(history):
            store.append("bacnet", [NewEvent.of(BacnetValueUpdate(
                device_id=DEVICE, object_type=t, instance=i, value=value_for(t, rng)))
                for t, i in objects])
    stop = tmp / "stop"
    started = time.monotonic()
    server = start_server(uri, f"127.0.0.1:{free_port()}", 5, stop)  # ready = folded
    ready_s = time.monotonic() - started
    result = json.loads(server.stdout.read().strip().splitlines()[-1])
    server.wait()
    result["ready_s"] = ready_s
    return result


async def _cpu_per_read(address: str, kind: str, objects: list[tuple[str, int]],
                        n: int = 1000) -> float:
    """CPU seconds of this process per read of ``kind``, closed loop, every answer checked."""
    from adapters.bacnet.logrecords import object_identifier_bytes
    from load._readclient import ReadClient, encode_read

    host, _, port = address.rpartition(":")
    loop = asyncio.get_running_loop()
    waiting: list[asyncio.Future] = []
    client = await ReadClient.open(host, int(port), lambda token, outcome, ns:
                                   waiting.pop().set_result(outcome))
    requests = [(encode_read(kind, t, i), object_identifier_bytes(t, i)) for t, i in objects]
    try:
        start = time.process_time()
        for j in range(n):
            waiting.append(loop.create_future())
            client.send(j, *requests[j % len(requests)])
            if await waiting[-1] != "ack":
                raise RuntimeError(f"{kind} of {objects[j % len(objects)]} was not answered")
        return (time.process_time() - start) / n
    finally:
        client.close()


async def read_cpu() -> None:
    """Phase 6: CPU per answered read, event server against a bare bacpypes3 device."""
    import shutil
    import tempfile

    from adapters.bacnet.server import EventServer
    from eventstore import NewEvent, open_store
    from projections.payloads.bacnet import BacnetObjectDefinition, BacnetValueUpdate

    objects = objects_of(1000)
    specs = [SimObject(t, i, f"{t}-{i}", 1 if t.startswith("multi") else 0.0) for t, i in objects]
    device = SimulatedDevice(f"127.0.0.1:{free_port()}", 4000, specs)
    device.start()
    tmp = Path(tempfile.mkdtemp(prefix="bench-bacnet-cpu-"))
    uri = f"embedded://{tmp}/events.db"
    with open_store(uri) as store:
        store.append("bacnet", [NewEvent.of(BacnetObjectDefinition(
            device_id=1, object_type=t, instance=i, name=f"{t}-{i}")) for t, i in objects])
        for k in range(10):  # ten history entries per object
            store.append("bacnet", [NewEvent.of(BacnetValueUpdate(
                device_id=1, object_type=t, instance=i, value=k % 2 if t.startswith("binary")
                else k + 1)) for t, i in objects])
    server = EventServer(uri, address=f"127.0.0.1:{free_port()}", device_id=599)
    await server.start()
    try:
        for kind in ("read-property", "read-property-multiple", "read-range"):
            ours = [await _cpu_per_read(server.address, kind, objects) for _ in range(2)]
            line = f"{kind}: event server {min(ours) * 1e3:.3f}-{max(ours) * 1e3:.3f} ms CPU a read"
            if kind != "read-range":
                bare = [await _cpu_per_read(device.address, kind, objects) for _ in range(2)]
                line += (f"; bare bacpypes3 device {min(bare) * 1e3:.3f}-{max(bare) * 1e3:.3f} ms"
                         f" (x{min(ours) / min(bare):.2f})")
            print(line, flush=True)
    finally:
        await server.stop()
        device.stop()
        shutil.rmtree(tmp, ignore_errors=True)


async def main(quick: bool, full_history_only: bool = False) -> None:
    if full_history_only:
        f = await full_history_memory(2000)
        print(f"2000 objects, full history (64 each) folded on start: rss {f['rss_mb']:.1f} MB "
              f"(peak {f['rss_peak_mb']:.1f}), history entries {f['history_entries']}, "
              f"ready after {f['ready_s']:.1f} s")
        return
    seconds = 8 if quick else 30
    print(f"bench_bacnet {'--quick ' if quick else ''}{time.strftime('%Y-%m-%d %H:%M')}")
    base = await baseline(1000, seconds, 50)
    print(f"baseline bacpypes3 device, 1000 static objects, 50 reads/s: "
          f"p50 {base['p50_ms']:.2f} ms p99 {base['p99_ms']:.2f} ms ({base['reads']} reads)")
    for rate, reads in ((100, 50), (1000, 500)):
        r = await server_run(1000, rate, reads, seconds)
        print(f"event server, 1000 objects, {rate} events/s, {reads} reads/s: read p50 "
              f"{r['read_p50_ms']:.2f} ms p99 {r['read_p99_ms']:.2f} ms "
              f"(x{r['read_p99_ms'] / base['p99_ms']:.2f} of baseline p99); append-to-served "
              f"p50 {r['lag_p50_ms']:.1f} ms p99 {r['lag_p99_ms']:.1f} ms; wrong {r['wrong']}; "
              f"rss {r['rss_mb']:.1f} MB (peak {r['rss_peak_mb']:.1f}); events {r['events']}; "
              f"replay imported {r['replay_imported']}")
    c = await cov_latency(10 if quick else 40)
    print(f"store append (another process) -> COV notification: p50 {c['p50_ms']:.1f} ms "
          f"p99 {c['p99_ms']:.1f} ms max {c['max_ms']:.1f} ms (n={c['n']})")
    m = await memory(2000)
    print(f"2000 objects, history 64: rss {m['rss_mb']:.1f} MB (peak {m['rss_peak_mb']:.1f}), "
          f"history entries {m['history_entries']}")
    await main(quick, full_history_only=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--full-history-only", action="store_true")
    parser.add_argument("--read-cpu", action="store_true", help="only phase 6: CPU per read")
    args = parser.parse_args()
    asyncio.run(read_cpu() if args.read_cpu else main(args.quick, args.full_history_only))


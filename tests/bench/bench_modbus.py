"""Modbus ingest benchmark: poll exchanges per second stored in the embedded store, against a
bare pymodbus read loop over the same registers in the same run; and lateness at 100 ms.

  throughput  1 device and 50 devices, each polled back to back (two blocks a round: five
              input registers and two coils), by (a) a bare loop of AsyncModbusTcpClient
              reads that keeps nothing and (b) unbroken's pollers storing every exchange as
              a ModbusFrame event in an embedded store (batched appends, fsync per batch).
              Goal: (b) >= 0.8 x (a). The client's CPU time per exchange (all threads) is
              printed beside: on a loaded machine it is the steadier comparison. Also
              (c) the same bare loop with unbroken's own MBAP client (``MbapClient``,
              which the pollers use for Modbus TCP), so that (b) over (c), the cost of
              storing itself, is visible apart from the cheaper client.
  lateness    50 devices at a 100 ms interval each, stored: how late each poll round starts
              against its schedule (p50, p99, max) and how many rounds missed their tick.
              Goal: every poll on time (no missed tick; p99 well under the interval).
  growth      (--growth N, not by default) the storing cost as the store grows, without the
              network: N ModbusFrame exchanges of 50 devices through the recorder into an
              embedded store, 600 a batch, with the recorder's time-ordered ids and, alternating
              batch by batch into a second store, with the uuid5 ids it used before (random in
              the id index). CPU an event (all threads) in the first and the last tenth.

The devices are served by unbroken's simulator in a separate process (one port per device),
so the server's CPU is not the poller's. Figures vary with the machine; the ratio is what
to compare. Alternating runs: bare, lean, stored, bare, lean, stored; the best of each is reported,
and beside it the median ratio of the run pairs (each stored run over the bare run just
before it), steadier when other processes load the machine.

Run:  .venv/bin/python tests/bench/bench_modbus.py [--quick] [--json OUT] [--devices N ...] [--no-lateness]
                                                   [--growth N]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import hashlib
import json
import logging
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from pymodbus.client import AsyncModbusTcpClient

import adapters.modbus.recorder as recorder_module
from adapters.modbus import Ingest, MbapClient, Recorder, parse_devices
from eventstore import open_store
from projections.payloads.modbus import ModbusFrame

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
from tests.adapters.modbus_support import device_toml  # noqa: E402

logging.getLogger("pymodbus").setLevel(logging.CRITICAL)


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def _device_file(path: Path, count: int, interval: float) -> list:
    text = "\n".join(device_toml(f"dev{i:02d}", port, interval=interval, timeout=1.0)
                     for i, port in enumerate(_free_ports(count)))
    path.write_text(text)
    return parse_devices(text, str(path))


class Server:
    """``unbroken simulate modbus`` in its own process, serving the device file."""

    def __init__(self, devices_file: Path, count: int) -> None:
        self.p = subprocess.Popen(
            [sys.executable, "-c", "import sys; from eventstore.cli import main; sys.exit(main())",
             "simulate", "modbus", "--devices", str(devices_file)],
            stdout=subprocess.PIPE, text=True)
        for _ in range(count + 1):  # one line per device, then "serving ..."
            self.p.stdout.readline()  # type: ignore[union-attr]

    def cpu_seconds(self) -> float:
        """CPU time the simulator process has used so far (user + system, from /proc)."""
        fields = Path(f"/proc/{self.p.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        self.p.terminate()
        self.p.wait(timeout=10)
        self.p.stdout.close()  # type: ignore[union-attr]


async def _bare(devices, seconds: float) -> int:
    """Back-to-back reads of each device's blocks with plain pymodbus clients; exchanges done."""
    clients = [AsyncModbusTcpClient(d.host, port=d.port, timeout=1.0, retries=0, reconnect_delay=0)
               for d in devices]
    for c in clients:
        await c.connect()
    done = 0
    stop = time.perf_counter() + seconds

    async def loop(client, device):
        nonlocal done
        while time.perf_counter() < stop:
            for block in device.blocks:
                if block.function == 4:
                    await client.read_input_registers(block.address, count=block.count, device_id=device.unit)
                else:
                    await client.read_coils(block.address, count=block.count, device_id=device.unit)
                done += 1

    await asyncio.gather(*(loop(c, d) for c, d in zip(clients, devices, strict=True)))
    for c in clients:
        c.close()
    return done


class _Discard:
    """Where the lean client's raw bytes go in its bare loop: kept per exchange, never stored."""

    def __init__(self) -> None:
        self.tx, self.rx = b"", bytearray()


async def _bare_lean(devices, seconds: float) -> int:
    """The bare loop with unbroken's own MBAP client (``adapters.modbus.mbap``): keeps nothing."""
    clients = []
    for d in devices:
        io = _Discard()
        client = MbapClient(d.host, d.port, timeout=1.0, retries=0, io=io, on_connect=lambda up: None,
                            on_connect_error=lambda e: None)
        await client.connect()
        clients.append((client, io))
    done = 0
    stop = time.perf_counter() + seconds

    async def loop(client, io, device):
        nonlocal done
        while time.perf_counter() < stop:
            for block in device.blocks:
                io.rx = bytearray()
                if block.function == 4:
                    await client.read_input_registers(block.address, count=block.count, device_id=device.unit)
                else:
                    await client.read_coils(block.address, count=block.count, device_id=device.unit)
                done += 1

    await asyncio.gather(*(loop(c, io, d) for (c, io), d in zip(clients, devices, strict=True)))
    for c, _ in clients:
        c.close()
    return done


async def _stored(devices, seconds: float, store_path: Path) -> tuple[int, int, list[int]]:
    """The same reads through unbroken's pollers into an embedded store; (stored, in store, lateness)."""
    store = open_store(f"embedded://{store_path}")
    run = Ingest(devices, store, session=f"bench{time.time_ns()}")
    run.start()
    await asyncio.sleep(seconds)  # a timed run: the benchmark's measuring window
    run.stop()
    await run.wait()
    in_store = store.last_position()
    store.close()
    lateness = [ns for p in run.pollers.values() for ns in p.stats.lateness_ns[1:]]
    return sum(p.stats.exchanges for p in run.pollers.values()), in_store, lateness


def _pct(values: list[int], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] / 1e6 if ordered else 0.0


def _measure(server: Server, run, r: int) -> tuple[float, float, float]:
    """Exchanges done by ``run(r)`` and the client's and the simulator's CPU (us) per exchange."""
    cpu, sim = time.process_time(), server.cpu_seconds()
    n = run(r)
    return n, (time.process_time() - cpu) / n * 1e6, (server.cpu_seconds() - sim) / n * 1e6


def throughput(tmp: Path, count: int, seconds: float, rounds: int) -> dict:
    devices = _device_file(tmp / f"t{count}.toml", count, interval=1e-6)
    server = Server(tmp / f"t{count}.toml", count)

    def stored_run(r: int) -> int:
        done, in_store, _ = asyncio.run(_stored(devices, seconds, tmp / f"t{count}-{r}.db"))
        assert done <= in_store, "an exchange counted as stored is not in the store"
        return done

    variants = {"bare": lambda r: asyncio.run(_bare(devices, seconds)),
                "lean": lambda r: asyncio.run(_bare_lean(devices, seconds)), "stored": stored_run}
    rate: dict[str, list[float]] = {k: [] for k in variants}
    cpu: dict[str, list[float]] = {k: [] for k in variants}
    sim: dict[str, list[float]] = {k: [] for k in variants}
    try:
        for r in range(rounds):  # alternating: bare, lean, stored, bare, ...
            for name, run in variants.items():
                n, client_us, sim_us = _measure(server, run, r)
                rate[name].append(n / seconds)
                cpu[name].append(client_us)
                sim[name].append(sim_us)
    finally:
        server.stop()
    best_bare, best_stored, best_lean = max(rate["bare"]), max(rate["stored"]), max(rate["lean"])
    # each stored run over the bare one of the same round
    pairs = sorted(s / b for b, s in zip(rate["bare"], rate["stored"], strict=True))
    return {"devices": count, "bare_per_s": round(best_bare), "stored_per_s": round(best_stored),
            "ratio": round(best_stored / best_bare, 3), "ratio_pairs_median": round(pairs[len(pairs) // 2], 3),
            "lean_per_s": round(best_lean), "ratio_to_lean": round(best_stored / best_lean, 3),
            **{f"runs_{k}": [round(x) for x in v] for k, v in rate.items()},
            **{f"cpu_us_{k}": round(min(v), 1) for k, v in cpu.items()},
            **{f"sim_cpu_us_{k}": round(min(v), 1) for k, v in sim.items()}}


def lateness(tmp: Path, count: int, seconds: float) -> dict:
    devices = _device_file(tmp / "late.toml", count, interval=0.1)
    server = Server(tmp / "late.toml", count)
    try:
        done, in_store, late = asyncio.run(_stored(devices, seconds, tmp / "late.db"))
    finally:
        server.stop()
    missed = sum(1 for ns in late if ns >= 100_000_000)
    return {"devices": count, "interval_ms": 100, "seconds": seconds, "rounds": len(late),
            "exchanges_stored": done, "p50_ms": _pct(late, 0.5), "p99_ms": _pct(late, 0.99),
            "max_ms": max(late) / 1e6 if late else 0.0, "missed_ticks": missed}


_UUID5_PREFIXES: dict[tuple[str, str], object] = {}


def _uuid5_id(session: str, source: str, sequence: int, received_at: int) -> uuid.UUID:
    """The recorder's ids before they were time-ordered, made as it made them (cached SHA-1 prefix,
    the UUID's slots set directly): ``uuid5(NAMESPACE, f"{session}/{source}/{sequence}")``."""
    prefix = _UUID5_PREFIXES.get((session, source))
    if prefix is None:
        prefix = _UUID5_PREFIXES[(session, source)] = hashlib.sha1(
            recorder_module.NAMESPACE.bytes + f"{session}/{source}/".encode(), usedforsecurity=False)
    digest = prefix.copy()  # type: ignore[attr-defined]
    digest.update(str(sequence).encode())
    value = int.from_bytes(digest.digest()[:16]) & ~(0xF << 76 | 0b11 << 62) | 5 << 76 | 0b10 << 62
    made = object.__new__(uuid.UUID)
    object.__setattr__(made, "int", value)
    object.__setattr__(made, "is_safe", uuid.SafeUUID.unknown)
    return made


def growth(tmp: Path, total: int, batch: int = 600, devices: int = 50) -> dict:
    """CPU an event of recording ``total`` exchanges, time-ordered ids vs uuid5 ids, alternating by batch."""
    ids = {"time-ordered": recorder_module.event_id, "uuid5": _uuid5_id}
    stores = {name: open_store(f"embedded://{tmp / f'growth-{name}.db'}") for name in ids}
    cpu: dict[str, list[float]] = {name: [] for name in ids}
    regs = {"ec": 1.5, "ph": 6.1, "level": 40.0, "temp": 21.5}

    async def record(recorder: Recorder, start: int, name: str) -> None:
        for n in range(start, start + batch):
            at = time.time_ns()
            frame = ModbusFrame(device=f"dev{n % devices:02d}", unit=1, function=4, address=0,
                                values=[1, 2, 3, 4, 5], raw=bytes(19), request=bytes(12), count=5,
                                transaction=n & 0xFFFF, latency_ns=400_000, decoded=regs, received_at=at,
                                session="growth", sequence=n // devices)
            recorder.add(frame, source=frame.device, session="growth", sequence=n // devices, received_at=at)
        before = time.process_time()
        await recorder.flush()
        cpu[name].append((time.process_time() - before) / batch * 1e6)

    try:
        for start in range(0, total, batch):
            for name, make_id in ids.items():
                recorder_module.event_id = make_id  # the recorder looks its id function up per batch
                asyncio.run(record(Recorder(stores[name], max_batch=batch), start, name))
    finally:
        recorder_module.event_id = ids["time-ordered"]
        for store in stores.values():
            store.close()
    tenth = max(1, len(cpu["uuid5"]) // 10)
    return {"events": total, "batch": batch, "devices": devices,
            **{f"cpu_us_{part}_{name}": round(statistics.median(v[sl]), 2)
               for name, v in cpu.items() for part, sl in (("first", slice(0, tenth)), ("last", slice(-tenth, None)))}}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="short runs (about a minute in all)")
    parser.add_argument("--json", metavar="OUT", help="also write the figures as JSON")
    parser.add_argument("--devices", type=int, nargs="*", default=[1, 50], metavar="N",
                        help="device counts of the throughput figures (default: 1 50; none: no throughput run)")
    parser.add_argument("--no-lateness", action="store_true", help="skip the lateness run")
    parser.add_argument("--growth", type=int, metavar="N", help="also measure the storing cost over N exchanges "
                        "(offline; time-ordered vs uuid5 ids)")
    args = parser.parse_args()
    seconds, rounds, late_s = (2.0, 2, 5.0) if args.quick else (5.0, 3, 30.0)
    load_start = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        results = {
            "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), "machine": platform.platform(),
            "cpus": os.cpu_count(), "python": platform.python_version(), "quick": args.quick,
            "throughput": [throughput(Path(tmp), n, seconds, rounds) for n in args.devices],
            "lateness": None if args.no_lateness else lateness(Path(tmp), 50, late_s),
            "growth": growth(Path(tmp), args.growth) if args.growth else None,
        }
    results["load_average"] = [load_start, os.getloadavg()[0]]
    print(f"{results['date']}, load average {load_start:.2f} at the start, {os.getloadavg()[0]:.2f} at the end")
    for t in results["throughput"]:
        goal = "met" if t["ratio"] >= 0.8 else "NOT met"
        print(f"throughput, {t['devices']:>2} device(s): bare pymodbus {t['bare_per_s']}/s, stored "
              f"{t['stored_per_s']}/s, ratio {t['ratio']:.2f} (goal >= 0.80: {goal}; median of the "
              f"{len(t['runs_bare'])} run pairs {t['ratio_pairs_median']:.2f}); client CPU per "
              f"exchange {t['cpu_us_bare']} us bare, {t['cpu_us_stored']} us stored")
        print(f"    unbroken's own MBAP client, bare: {t['lean_per_s']}/s, {t['cpu_us_lean']} us CPU an "
              f"exchange (stored over it: {t['ratio_to_lean']:.2f}, the cost of storing itself); "
              f"simulator CPU per exchange {t['sim_cpu_us_bare']} / {t['sim_cpu_us_lean']} / "
              f"{t['sim_cpu_us_stored']} us (bare / lean / stored)")
    late = results["lateness"]
    if late is not None:
        print(f"lateness, {late['devices']} devices at {late['interval_ms']} ms for {late['seconds']} s: "
              f"{late['rounds']} rounds, p50 {late['p50_ms']:.2f} ms, p99 {late['p99_ms']:.2f} ms, "
              f"max {late['max_ms']:.2f} ms, missed ticks {late['missed_ticks']}")
    grown = results["growth"]
    if grown is not None:
        print(f"growth, {grown['events']:,} exchanges of {grown['devices']} devices, {grown['batch']} a batch, "
              f"CPU an event (first tenth -> last tenth): time-ordered ids {grown['cpu_us_first_time-ordered']} -> "
              f"{grown['cpu_us_last_time-ordered']} us, uuid5 ids {grown['cpu_us_first_uuid5']} -> "
              f"{grown['cpu_us_last_uuid5']} us")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    ok = all(t["ratio"] >= 0.8 for t in results["throughput"]) and (late is None or late["missed_ticks"] == 0)
    return 0 if ok else 1  # 1: a goal was not met (the figures above say which)


if __name__ == "__main__":
    sys.exit(main())

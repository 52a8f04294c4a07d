"""Import and log replay benchmark (issue 11): production logs at the machine's speed.

Every figure is compared with a baseline measured in the same run, on the same
machine, over the same events; timed runs alternate with their baseline and the
best of ``--repeat`` counts for each.

  import    import_log of an interleaved arrears log in file order (one append_multi per
            batch of lines: the default, 50,000, and 10,000) vs the store's own append of the
            same events (same ids, data, metadata and times) in batches of 1,000 to 100
            streams. Goals: >= 100,000 lines/s and >= 0.7x the batch-1,000 append rate.
  replay    `unbroken replay --log LOG --projection arrears` vs `unbroken replay --store`
            of the imported store (process start included, wall clock). Goal: >= 0.7x,
            same digest.
  vs pyeventsourcing  store.append in batches of 1/10/100/1000 (durable id dedupe, CRC-32,
            fsync per commit) vs eventsourcing's SQLiteApplicationRecorder.insert_events of
            the same payload bytes (WAL, SQLite's default synchronous=FULL, one transaction
            per call). Goal: >= 1.0x at every batch size. Wall clock and CPU an event (this
            process's user + system time, the steadier figure on a shared machine), best of
            --repeat for each. Needs the eventsourcing package
            (benchmark only, not a dependency): .venv/bin/pip install eventsourcing
  cli       the path a user runs, end to end with process start: `unbroken import LOG`
            then `unbroken replay --store ... --projection arrears --trace DIR`.

The log: `unbroken generate arrears --accounts 10200 --days 90 --seed 1` (1,004,641 lines);
--quick uses 1,000 accounts (98,605 lines) and two repeats.

Run:  .venv/bin/python tests/bench/bench_import.py [--quick] [--log FILE] [--repeat N] [--json OUT]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import resource
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import msgspec

from eventstore import NewEvent, open_store
from replay.log import DEFAULT_IMPORT_BATCH, import_log, read_log

UNBROKEN = [sys.executable, "-m", "eventstore.cli"]


def progress(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def rate(n: int, seconds: float) -> float:
    return n / seconds if seconds > 0 else float("inf")


def fresh(path: Path) -> Path:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    return path


def generate(work: Path, accounts: int) -> Path:
    log = work / f"arrears-{accounts}.jsonl"
    subprocess.run([*UNBROKEN, "generate", "arrears", "--accounts", str(accounts), "--days", "90",
                    "--seed", "1", "--out", str(log)], check=True, capture_output=True)
    return log


# -- import vs the store's own batch-1,000 appends -------------------------------------------------
CPU: dict[str, float] = {}  # best CPU seconds per measure (the machine is shared), log worker included


def cpu_seconds() -> float:
    """CPU time of this process and of its reaped children (the import's log reading worker)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime  # os.times() counts 10 ms ticks


def import_run(log: Path, db: Path, batch: int) -> float:
    with open_store(f"embedded://{fresh(db)}") as store:
        t0, c0 = time.perf_counter(), cpu_seconds()
        report = import_log(log, store, batch=batch, quarantine=db.with_suffix(".q.jsonl"))
        elapsed, cpu = time.perf_counter() - t0, cpu_seconds() - c0
    assert report.rejected == 0 and report.imported == report.read, report
    CPU[f"import b{batch}"] = min(CPU.get(f"import b{batch}", float("inf")), cpu)
    return elapsed


def same_events(log: Path) -> list[NewEvent]:
    """The log's events as the import stores them (ids, data, metadata, times), without their streams."""
    return [NewEvent(e.type, e.data, e.id, None, e.occurred_at, e.metadata, e.recorded_at) for e in read_log(log)]


def append_run(events: list[NewEvent], db: Path, batch: int = 1000, streams: int = 100) -> float:
    with open_store(f"embedded://{fresh(db)}") as store:
        t0, c0 = time.perf_counter(), cpu_seconds()
        for n, i in enumerate(range(0, len(events), batch)):
            store.append(f"batch-{n % streams:03d}", events[i : i + batch])
        elapsed, cpu = time.perf_counter() - t0, cpu_seconds() - c0
    CPU[f"append b{batch}"] = min(CPU.get(f"append b{batch}", float("inf")), cpu)
    return elapsed


def bench_import(log: Path, work: Path, repeat: int, lines: int) -> list[dict]:
    progress("reading the log's events for the append baseline")
    events = same_events(log)
    best = {"append b1000": float("inf"), f"import b{DEFAULT_IMPORT_BATCH}": float("inf"),
            "import b10000": float("inf")}
    for attempt in range(repeat):
        for name in best:
            db = work / f"{name.replace(' ', '-')}.db"
            if name.startswith("append"):
                seconds = append_run(events, db)
            else:
                seconds = import_run(log, db, int(name.split(" b")[1]))
            best[name] = min(best[name], seconds)
            progress(f"{name} (pass {attempt + 1}): {rate(lines, seconds):,.0f} lines/s")
    base = best["append b1000"]
    return [{"measure": name, "lines": lines, "seconds": s, "lines_per_s": rate(lines, s),
             "vs_append_b1000": base / s, "cpu_seconds": CPU[name],
             "cpu_vs_append_b1000": CPU["append b1000"] / CPU[name]} for name, s in best.items()]


# -- replay --log vs replay --store ----------------------------------------------------------------
def replay_cli(source: list[str], trace: Path | None = None) -> tuple[float, str, float]:
    """Wall seconds, digest and CPU seconds (the CLI's process and its read-ahead worker) of one replay."""
    args = [*UNBROKEN, "replay", *source, "--projection", "arrears"]
    if trace is not None:
        shutil.rmtree(trace, ignore_errors=True)
        args += ["--trace", str(trace)]
    c0 = children_cpu_seconds()
    t0 = time.perf_counter()
    done = subprocess.run(args, capture_output=True, text=True)
    elapsed = time.perf_counter() - t0
    assert done.returncode == 0, done.stderr
    digest = next(line.split()[1] for line in done.stdout.splitlines() if line.startswith("digest "))
    return elapsed, digest, children_cpu_seconds() - c0


def children_cpu_seconds() -> float:
    """CPU time of the reaped child processes (a CLI run, with the worker it reaped)."""
    times = os.times()
    return times.children_user + times.children_system


def bench_replay(log: Path, db: Path, repeat: int, lines: int) -> list[dict]:
    best = {"replay --log": float("inf"), "replay --store": float("inf")}
    cpu = dict.fromkeys(best, float("inf"))
    digests = {}
    sources = {"replay --log": ["--log", str(log)], "replay --store": ["--store", f"embedded://{db}"]}
    for attempt in range(repeat):
        for name, source in sources.items():
            seconds, digests[name], cpu_s = replay_cli(source)
            best[name], cpu[name] = min(best[name], seconds), min(cpu[name], cpu_s)
            progress(f"{name} (pass {attempt + 1}): {seconds:.1f} s, {cpu_s:.1f} CPU-s (worker included), "
                     f"digest {digests[name][:16]}")
    assert digests["replay --log"] == digests["replay --store"], digests
    return [{"measure": name, "lines": lines, "seconds": s, "lines_per_s": rate(lines, s),
             "vs_store": best["replay --store"] / s, "cpu_seconds": cpu[name],
             "cpu_vs_store": cpu["replay --store"] / cpu[name], "digest": digests[name]} for name, s in best.items()]


# -- against pyeventsourcing -----------------------------------------------------------------------
def es_run(path: Path, payloads: list[bytes], batch: int) -> float:
    from eventsourcing.persistence import StoredEvent
    from eventsourcing.sqlite import SQLiteApplicationRecorder, SQLiteDatastore

    datastore = SQLiteDatastore(str(fresh(path)))
    recorder = SQLiteApplicationRecorder(datastore)
    recorder.create_table()
    originators = [uuid.uuid4() for _ in range(100)]
    versions = [0] * 100
    t0, c0 = time.perf_counter(), cpu_seconds()
    for n, i in enumerate(range(0, len(payloads), batch)):
        s = n % 100
        stored = []
        for state in payloads[i : i + batch]:
            versions[s] += 1
            stored.append(StoredEvent(originators[s], versions[s], "arrears:MeterReading", state))
        recorder.insert_events(stored)
    elapsed, cpu = time.perf_counter() - t0, cpu_seconds() - c0
    datastore.close()
    CPU[f"eventsourcing b{batch}"] = min(CPU.get(f"eventsourcing b{batch}", float("inf")), cpu)
    return elapsed


def es_synchronous(path: Path) -> int:
    """``PRAGMA synchronous`` as eventsourcing's connections leave it (2 = FULL)."""
    from eventsourcing.sqlite import SQLiteDatastore

    datastore = SQLiteDatastore(str(fresh(path)))
    with datastore.transaction(commit=False) as cursor:
        cursor.execute("PRAGMA synchronous")
        value = cursor.fetchone()[0]
    datastore.close()
    return int(value)


def bench_vs_eventsourcing(log: Path, work: Path, repeat: int, quick: bool) -> list[dict]:
    try:
        import eventsourcing  # noqa: F401
    except ImportError:
        progress("eventsourcing is not installed: skipping the comparison "
                 "(install it for the benchmark only: .venv/bin/pip install eventsourcing)")
        return []
    totals = {1: 400, 10: 2_000, 100: 10_000, 1000: 30_000} if quick else {
        1: 2_000, 10: 10_000, 100: 50_000, 1000: 200_000}
    source = []
    for event in read_log(log):
        source.append(event)
        if len(source) >= max(totals.values()):
            break
    rows = []
    for batch, total in totals.items():
        chosen = source[:total]
        ours_events = [NewEvent(e.type, e.data, occurred_at=e.occurred_at) for e in chosen]  # fresh ids
        payloads = [e.data for e in chosen]
        ours_s = theirs_s = float("inf")
        CPU.pop(f"append b{batch}", None)  # the import section's batch-1,000 appends are another workload
        for attempt in range(repeat):
            ours_s = min(ours_s, append_run(ours_events, work / f"ours-b{batch}.db", batch))
            theirs_s = min(theirs_s, es_run(work / f"es-b{batch}-{attempt}.db", payloads, batch))
            ours_events = [NewEvent(e.type, e.data, occurred_at=e.occurred_at) for e in chosen]
        ours_cpu, theirs_cpu = CPU[f"append b{batch}"], CPU[f"eventsourcing b{batch}"]
        rows.append({"batch": batch, "events": total, "ours_eps": rate(total, ours_s),
                     "eventsourcing_eps": rate(total, theirs_s), "ratio": theirs_s / ours_s,
                     "ours_cpu_us": ours_cpu / total * 1e6, "eventsourcing_cpu_us": theirs_cpu / total * 1e6,
                     "cpu_ratio": theirs_cpu / ours_cpu})
        progress(f"vs eventsourcing batch={batch}: ours {rate(total, ours_s):,.0f}/s "
                 f"eventsourcing {rate(total, theirs_s):,.0f}/s ({theirs_s / ours_s:.2f}x); CPU an event "
                 f"ours {ours_cpu / total * 1e6:.1f} us, eventsourcing {theirs_cpu / total * 1e6:.1f} us "
                 f"({theirs_cpu / ours_cpu:.2f}x)")
    return rows


# -- the CLI path end to end -----------------------------------------------------------------------
def bench_cli(log: Path, work: Path, lines: int) -> list[dict]:
    db = fresh(work / "cli.db")
    t0 = time.perf_counter()
    done = subprocess.run([*UNBROKEN, "import", str(log), "--store", str(db)], capture_output=True, text=True)
    import_s = time.perf_counter() - t0
    assert done.returncode == 0, done.stderr
    replay_s, digest, _ = replay_cli(["--store", f"embedded://{db}"], trace=work / "trace")
    progress(f"cli: import {import_s:.1f} s, replay --trace {replay_s:.1f} s")
    return [
        {"measure": "unbroken import LOG --store DB", "seconds": import_s, "lines_per_s": rate(lines, import_s)},
        {"measure": "unbroken replay --store DB --projection arrears --trace DIR", "seconds": replay_s,
         "lines_per_s": rate(lines, replay_s), "digest": digest},
        {"measure": "both", "seconds": import_s + replay_s, "lines_per_s": rate(lines, import_s + replay_s)},
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="98,605-line log, 2 repeats")
    parser.add_argument("--log", type=Path, help="an arrears log to use instead of generating one")
    parser.add_argument("--repeat", type=int, help="passes per comparison (default 3, --quick 2)")
    parser.add_argument("--only", choices=("import", "replay", "eventsourcing", "cli"), action="append")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    repeat = args.repeat or (2 if args.quick else 3)
    only = set(args.only or ("import", "replay", "eventsourcing", "cli"))
    work = Path(tempfile.mkdtemp(prefix="bench-import-"))
    try:
        log = args.log or generate(work, 1000 if args.quick else 10_200)
        lines = sum(1 for _ in open(log, "rb"))
        progress(f"log {log}: {lines:,} lines, {log.stat().st_size / 2**20:.0f} MB")
        figures: dict = {"date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), "lines": lines,
                         "machine": f"{platform.machine()}, {os.cpu_count()} cpus, Python {platform.python_version()}, "
                                    f"SQLite {sqlite3.sqlite_version}"}
        if "import" in only or "replay" in only:
            figures["import"] = bench_import(log, work, repeat, lines) if "import" in only else []
        if "replay" in only:
            db = work / f"import-b{DEFAULT_IMPORT_BATCH}.db"
            if not db.exists():
                import_run(log, db, DEFAULT_IMPORT_BATCH)
            figures["replay"] = bench_replay(log, db, repeat, lines)
        if "eventsourcing" in only:
            figures["eventsourcing"] = bench_vs_eventsourcing(log, work, repeat, args.quick)
            if figures["eventsourcing"]:
                figures["eventsourcing_synchronous"] = es_synchronous(work / "sync-probe.db")
        if "cli" in only:
            figures["cli"] = bench_cli(log, work, lines)
        print(msgspec.json.format(msgspec.json.encode(figures), indent=2).decode())
        if args.json:
            args.json.write_bytes(msgspec.json.encode(figures))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Embedded store benchmark: appends, concurrent appends, reads, and memory over a long read.

Every figure is compared with a baseline measured in the same run, on the same
machine, over the same rows:

  append   store.append in batches of 1/10/100/1000 vs raw sqlite3: build the same
           rows (msgpack record + CRC-32, as the store stores them) and executemany
           them into the same schema and indexes, WAL + synchronous=FULL, one
           transaction per batch. Goal: store >= 70% of raw from batches of 10 up.
  concurrent  16 threads appending single events vs 1 thread. Goal: >= 5x (group commit).
  read     read_all + decode_payload vs a bare loop: sqlite3 fetch of the record column
           + msgspec decode of the record and its payload. Goal: >= 70%, ~1M events/s.
           Measured with the read-ahead process (the default for long reads) and
           in-process (read_ahead=False).
  memory   RSS (from /proc/self/statm) while reading and subscribing through N events
           (10,000,000 by default). Goal: flat (peak - start small and not growing with N).

Run:  .venv/bin/python tests/bench/bench_store.py [--quick] [--memory-events N] [--json OUT]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import resource
import shutil
import sqlite3
import sys
import tempfile
import threading
import time
import zlib
from pathlib import Path

import msgspec

from eventstore import NewEvent, RecordedEvent, open_store
from eventstore._group_commit import insert_events  # the store's own inserts, 64 rows a statement
from eventstore._sqlite import SCHEMA  # the baseline uses the store's own tables and indexes
from eventstore.payloads import decode_payload, payload_types
from projections.payloads import MeterReading

PAGE = os.sysconf("SC_PAGE_SIZE")
REPEATS = 3  # best of 3 for every timed comparison
MB = 1024 * 1024


def rss_bytes() -> int:
    """Resident set size of this process now (second field of /proc/self/statm)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE


def readings(n: int, start: int = 0) -> list[NewEvent]:
    """``n`` meter-reading events with realistic payloads, built before any timing starts."""
    out = []
    for i in range(start, start + n):
        acct = i % 5000
        payload = MeterReading(f"MTR{acct:06d}", f"AC{acct:06d}", 12_000.0 + i * 0.125)
        out.append(NewEvent("MeterReading", payload, occurred_at=1_704_067_200 * 10**9 + i))
    return out


def rate(events: int, seconds: float) -> float:
    return events / seconds if seconds > 0 else float("inf")


# -- appends -----------------------------------------------------------------
def store_append(path: Path, events: list[NewEvent], batch: int) -> float:
    with open_store(f"embedded://{path}") as store:
        t0 = time.perf_counter()
        for n, i in enumerate(range(0, len(events), batch)):
            store.append(f"account-{n % 100:06d}", events[i : i + batch])
        return time.perf_counter() - t0


def raw_append(path: Path, events: list[NewEvent], batch: int) -> float:
    """The least an append can do: build the stored rows, insert them, commit durably.

    Schema 2 updates no streams row per append (a stream's revision is its newest event's), so
    neither does this; rows go in as the store inserts them, 64 to a statement.
    """
    conn = sqlite3.connect(str(path), isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = FULL")
    for statement in SCHEMA:
        conn.execute(statement)
    conn.executemany("INSERT INTO streams VALUES (?, ?, -1)", [(s + 1, f"account-{s:06d}") for s in range(100)])
    record_encoder, json_encoder = msgspec.msgpack.Encoder(uuid_format="bytes"), msgspec.json.Encoder()
    revisions = [-1] * 100
    position, now = 0, time.time_ns()
    t0 = time.perf_counter()
    for n, i in enumerate(range(0, len(events), batch)):
        s = n % 100
        rows = []
        for e in events[i : i + batch]:
            position += 1
            revisions[s] += 1
            data = json_encoder.encode(e.data)
            rec = record_encoder.encode(
                RecordedEvent(e.id, f"account-{s:06d}", revisions[s], position, now, e.occurred_at, e.type, data)
            )
            rows.append((position, s + 1, revisions[s], e.type, e.id.bytes, rec, zlib.crc32(rec)))
        conn.execute("BEGIN IMMEDIATE")
        insert_events(conn, rows)
        conn.execute("COMMIT")
    elapsed = time.perf_counter() - t0
    conn.close()
    return elapsed


def bench_batches(work: Path, quick: bool) -> list[dict]:
    """Store and raw runs alternate and the best of each counts: other load on the machine
    slows whichever run it lands on, and alternating keeps both exposed to it alike."""
    totals = {1: 400, 10: 2_000, 100: 10_000, 1000: 30_000} if quick else {
        1: 2_000, 10: 10_000, 100: 50_000, 1000: 200_000}
    rows = []
    for batch, total in totals.items():
        events = readings(total)
        store_s, raw_s = float("inf"), float("inf")
        for attempt in range(REPEATS):
            store_s = min(store_s, store_append(work / f"store-b{batch}-{attempt}.db", events, batch))
            raw_s = min(raw_s, raw_append(work / f"raw-b{batch}-{attempt}.db", events, batch))
        rows.append({
            "batch": batch, "events": total, "store_eps": rate(total, store_s),
            "raw_eps": rate(total, raw_s), "ratio": raw_s / store_s, "events_per_fsync": batch,
        })
        progress(f"append batch={batch}: store {rate(total, store_s):,.0f}/s raw {rate(total, raw_s):,.0f}/s")
    return rows


def bench_concurrency(work: Path, quick: bool) -> list[dict]:
    total = 1_200 if quick else 6_000
    rows = []
    for threads in (1, 4, 16):
        per_thread = total // threads
        best = min((concurrent_run(work / f"concurrent-{threads}-{a}.db", threads, per_thread)
                    for a in range(REPEATS)), key=lambda r: r[0])
        elapsed, commits = best
        n = per_thread * threads
        rows.append({"threads": threads, "events": n, "eps": rate(n, elapsed), "events_per_fsync": n / commits})
        progress(f"concurrent threads={threads}: {rate(n, elapsed):,.0f}/s, {n / commits:.1f} events/fsync")
    for row in rows:
        row["vs_1"] = row["eps"] / rows[0]["eps"]
    return rows


def concurrent_run(path: Path, threads: int, per_thread: int) -> tuple[float, int]:
    """Seconds for ``threads`` threads to append ``per_thread`` single events each, and commits."""
    batches = [readings(per_thread, start=t * per_thread) for t in range(threads)]
    with open_store(f"embedded://{path}") as store:
        barrier = threading.Barrier(threads + 1)

        def worker(t: int, store=store, barrier=barrier, batches=batches) -> None:
            barrier.wait()
            for event in batches[t]:
                store.append(f"appender-{t}", [event])

        workers = [threading.Thread(target=worker, args=(t,)) for t in range(threads)]
        for w in workers:
            w.start()
        barrier.wait()
        t0 = time.perf_counter()
        for w in workers:
            w.join()
        elapsed = time.perf_counter() - t0
        # One recorded_at per committed group: distinct values count the fsyncs.
        commits = len({e.recorded_at for e in store.read_all()})
    return elapsed, commits


# -- reads -------------------------------------------------------------------
def fill(path: Path, total: int, label: str) -> float:
    """Append ``total`` events in batches of 1000; returns events/s of the appends alone."""
    chunk = 100_000
    appending = 0.0
    with open_store(f"embedded://{path}") as store:
        for start in range(0, total, chunk):
            events = readings(min(chunk, total - start), start)  # built outside the timing
            t0 = time.perf_counter()
            for i in range(0, len(events), 1000):
                store.append(f"account-{(start + i) // 1000 % 500:06d}", events[i : i + 1000])
            appending += time.perf_counter() - t0
            if start and start % 1_000_000 == 0:
                progress(f"{label}: {start:,} events written")
    return rate(total, appending)


def store_read(path: Path, read_ahead: bool = True) -> tuple[int, float]:
    with open_store(f"embedded://{path}", read_ahead=read_ahead) as store:
        t0 = time.perf_counter()
        n = 0
        for event in store.read_all():
            decode_payload(event)
            n += 1
        return n, time.perf_counter() - t0


def bare_read(path: Path) -> tuple[int, float]:
    record_decoder = msgspec.msgpack.Decoder(RecordedEvent)
    payload_decoders = {t: msgspec.json.Decoder(c) for t, c in payload_types().items()}
    conn = sqlite3.connect(str(path))
    t0 = time.perf_counter()
    cursor = conn.execute("SELECT record FROM events ORDER BY position")
    n = 0
    while rows := cursor.fetchmany(4000):
        for (record,) in rows:
            event = record_decoder.decode(record)
            payload_decoders[event.type].decode(event.data)
            n += 1
    elapsed = time.perf_counter() - t0
    conn.close()
    return n, elapsed


def bench_read(work: Path, quick: bool) -> dict:
    total = 100_000 if quick else 1_000_000
    path = work / "read.db"
    fill_eps = fill(path, total, "read store")
    times: dict[str, list[float]] = {"ahead": [], "in_process": [], "bare": []}
    for _ in range(3):  # alternating, so a burst on the host slows one pass, not one kind
        times["ahead"].append(store_read(path, read_ahead=True)[1])
        times["in_process"].append(store_read(path, read_ahead=False)[1])
        times["bare"].append(bare_read(path)[1])
    best = {k: min(v) for k, v in times.items()}
    row = {"events": total, "store_eps": rate(total, best["ahead"]), "bare_eps": rate(total, best["bare"]),
           "ratio": best["bare"] / best["ahead"], "in_process_eps": rate(total, best["in_process"]),
           "in_process_ratio": best["bare"] / best["in_process"], "fill_eps": fill_eps}
    progress(f"read: store {row['store_eps']:,.0f}/s (in-process {row['in_process_eps']:,.0f}/s) "
             f"bare {row['bare_eps']:,.0f}/s")
    return row


# -- memory ------------------------------------------------------------------
def sampled(iterator, every: int) -> dict:
    """Walk ``iterator`` (decoding payloads), sampling RSS every ``every`` events."""
    start = peak = rss_bytes()
    n = 0
    t0 = time.perf_counter()
    for event in iterator:
        decode_payload(event)
        n += 1
        if n % every == 0:
            peak = max(peak, rss_bytes())
    end = rss_bytes()
    return {"events": n, "start_mb": start / MB, "peak_mb": max(peak, end) / MB, "end_mb": end / MB,
            "eps": rate(n, time.perf_counter() - t0)}


def bench_memory(work: Path, total: int) -> dict:
    path = work / "memory.db"
    fill_eps = fill(path, total, "memory store")
    progress(f"memory store: {total:,} events at {fill_eps:,.0f}/s; reading")
    every = max(1, total // 200)
    with open_store(f"embedded://{path}") as store:
        read = sampled(store.read_all(), every)
        last = store.last_position()
        subscription = store.subscribe()

        def until_caught_up():
            for event in subscription:
                yield event
                if event.position >= last:
                    subscription.stop()

        subscribed = sampled(until_caught_up(), every)
    size = path.stat().st_size + sum(p.stat().st_size for p in path.parent.glob("memory.db-*"))
    return {"events": total, "fill_eps": fill_eps, "file_mb": size / MB, "read": read, "subscribe": subscribed,
            "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


# -- report ------------------------------------------------------------------
def progress(message: str) -> None:
    print(f"[bench_store] {message}", file=sys.stderr, flush=True)


def machine() -> dict:
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "?")
    return {"date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"), "cpu": cpu, "cores": os.cpu_count(),
            "kernel": platform.release(), "python": platform.python_version(), "sqlite": sqlite3.sqlite_version}


def report(results: dict) -> None:
    m = results["machine"]
    print(f"\nembedded store benchmark - {m['date']} - {m['cpu']}, {m['cores']} cores, "
          f"Linux {m['kernel']}, Python {m['python']}, SQLite {m['sqlite']}")
    print("\nappend (sequential; one fsync per batch)        store ev/s     raw ev/s   store/raw")
    for r in results["batches"]:
        print(f"  batch {r['batch']:>5} x {r['events']:>7,} events       {r['store_eps']:>12,.0f} {r['raw_eps']:>12,.0f}"
              f"   {r['ratio']:>6.0%}  (goal >= 70% from batch 10)")
    print("\nconcurrent single-event appends               ev/s   events/fsync   vs 1 thread")
    for r in results["concurrency"]:
        print(f"  {r['threads']:>2} threads x {r['events']:>6,} events   {r['eps']:>12,.0f}   {r['events_per_fsync']:>12.1f}"
              f"   {r['vs_1']:>8.1f}x" + ("  (goal >= 5x)" if r["threads"] == 16 else ""))
    r = results["read"]
    print(f"\nread_all + decode_payload, {r['events']:,} events (best of 3)")
    print(f"  store {r['store_eps']:,.0f} ev/s   bare sqlite3+msgspec {r['bare_eps']:,.0f} ev/s   "
          f"store/bare {r['ratio']:.0%}  (goal >= 70%, ~1M ev/s)")
    print(f"  in-process (read_ahead=False) {r['in_process_eps']:,.0f} ev/s   store/bare {r['in_process_ratio']:.0%}")
    m = results["memory"]
    print(f"\nmemory through {m['events']:,} events (file {m['file_mb']:,.0f} MB, filled at {m['fill_eps']:,.0f} ev/s"
          " in batches of 1000)")
    for name in ("read", "subscribe"):
        s = m[name]
        print(f"  {name:<9} RSS start {s['start_mb']:7.1f} MB  peak {s['peak_mb']:7.1f} MB  end {s['end_mb']:7.1f} MB"
              f"  growth {s['peak_mb'] - s['start_mb']:+.1f} MB   {s['eps']:,.0f} ev/s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, about a minute")
    parser.add_argument("--memory-events", type=int, default=None,
                        help="events for the memory run (default 10,000,000; 300,000 with --quick)")
    parser.add_argument("--dir", type=Path, default=None, help="work directory (default: a temporary one)")
    parser.add_argument("--json", type=Path, default=None, help="also write the results as JSON here")
    args = parser.parse_args(argv)
    memory_events = args.memory_events or (300_000 if args.quick else 10_000_000)
    work = Path(tempfile.mkdtemp(prefix="bench-store-", dir=args.dir))
    try:
        results = {"machine": machine(), "quick": args.quick, "batches": bench_batches(work, args.quick),
                   "concurrency": bench_concurrency(work, args.quick), "read": bench_read(work, args.quick),
                   "memory": bench_memory(work, memory_events)}
    finally:
        shutil.rmtree(work, ignore_errors=True)
    report(results)
    if args.json:
        args.json.write_bytes(msgspec.json.format(msgspec.json.encode(results)))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Does a reader tailing the log by position see every event, with appenders racing? (issue 17)

The issue's own requirement for a PostgreSQL store: with concurrent writers, a
reader must never see position 10 and later miss 9 because 9 committed after it.
This benchmark checks it for the three configurations bench_postgres.py compares:

  unbroken              PostgresStore (commit-ordered positions under the head lock)
  es default            pyeventsourcing's PostgreSQL application recorder as it comes
                        (LOCK TABLE ... IN EXCLUSIVE MODE around each insert)
  es functions          the same recorder with POSTGRES_ENABLE_DB_FUNCTIONS (one function
                        call, no table lock: its faster mode in bench_postgres.py)

For each, ``--processes`` spawned processes append single events as fast as they can
while this process tails the log the way a subscriber does: read from just after the
last position (notification id) it saw, remember the highest, repeat. Afterwards every
stored event's position is compared with what the reader saw: an event the reader
never saw although its position is below one the reader had already passed is missed
for good (a subscriber that checkpointed would never read it). The appends per second
of each run are printed beside.

Run:  .venv/bin/python tests/bench/bench_pg_order.py [--quick] [--processes N] [--events N] [--json OUT]
      (UNBROKEN_POSTGRES_URI: the server, default the local service; needs the
      eventsourcing package for the two es rows: .venv/bin/pip install "eventsourcing[postgres]")
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
import time
from pathlib import Path

import msgspec

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_postgres as pg  # noqa: E402  (the same server, schemas and pyeventsourcing set-up)

from eventstore import open_store  # noqa: E402
from eventstore.postgres import new_schema_name  # noqa: E402


def _store_appender(uri: str, count: int, ready, go) -> None:
    with open_store(uri) as store:
        ready.put(1)
        go.wait()
        for _ in range(count):
            store.append(f"p-{os.getpid()}", pg.events(1))


def _es_appender(schema: str, functions: bool, count: int, ready, go) -> None:
    pg._es_one_appender(schema, functions, count, ready, go)


def _tail(read_after, workers: list, started: float) -> tuple[set[int], float]:
    """Tail with ``read_after(position) -> positions`` until the appenders exit; (seen, appends' seconds)."""
    seen: set[int] = set()
    last = 0
    elapsed = 0.0
    while True:
        running = any(w.is_alive() for w in workers)
        if not running and not elapsed:
            elapsed = time.perf_counter() - started
        positions = read_after(last)
        seen.update(positions)
        if positions:
            last = max(last, max(positions))
        if not running and not positions:
            break
    for worker in workers:
        worker.join(60)
    assert all(w.exitcode == 0 for w in workers), "an appender process failed"
    return seen, elapsed


def _missed(seen: set[int], stored: list[int]) -> dict:
    missed = sorted(set(stored) - seen)
    return {"stored": len(stored), "seen": len(seen & set(stored)), "missed": len(missed),
            "first_missed": missed[:5]}


def run_store(processes: int, per_process: int) -> dict:
    schema = new_schema_name()
    uri = pg.store_uri(schema)
    try:
        with open_store(uri) as store:
            workers, started = pg.start_race(_store_appender, (uri, per_process), processes)

            def read_after(position: int) -> list[int]:
                return [e.position for e in store.read_all(from_position=position + 1, limit=1000)]

            seen, elapsed = _tail(read_after, workers, started)
            stored = [e.position for e in store.read_all()]
    finally:
        pg.drop(schema)
    return {"configuration": "unbroken", **_missed(seen, stored), "appends_per_s": len(stored) / elapsed}


def run_es(processes: int, per_process: int, functions: bool) -> dict:
    schema = new_schema_name()
    datastore, recorder = pg.es_recorder(schema, functions)
    try:
        workers, started = pg.start_race(_es_appender, (schema, functions, per_process), processes)

        def read_after(position: int) -> list[int]:
            return [n.id for n in recorder.select_notifications(start=position + 1, limit=1000)]

        seen, elapsed = _tail(read_after, workers, started)
        stored, start = [], 1
        while page := recorder.select_notifications(start=start, limit=10_000):
            stored.extend(n.id for n in page)
            start = page[-1].id + 1
    finally:
        datastore.close()
        pg.drop(schema)
    name = "es functions (no table lock)" if functions else "es default (LOCK TABLE)"
    return {"configuration": name, **_missed(seen, stored), "appends_per_s": len(stored) / elapsed}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="4 processes x 200 events")
    parser.add_argument("--processes", type=int, help="appender processes (default 8, --quick 4)")
    parser.add_argument("--events", type=int, help="events each process appends (default 1,000, --quick 200)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    processes = args.processes or (4 if args.quick else 8)
    per_process = args.events or (200 if args.quick else 1000)
    rows = [run_store(processes, per_process)]
    if pg.es_installed():
        rows += [run_es(processes, per_process, False), run_es(processes, per_process, True)]
    else:
        print("eventsourcing is not installed: only unbroken's row (.venv/bin/pip install "
              "'eventsourcing[postgres]' for the comparison)", file=sys.stderr)
    figures = {"date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), "processes": processes,
               "events_each": per_process, "load_average": os.getloadavg()[0], "runs": rows}
    for row in rows:
        print(f"{row['configuration']:<30} stored {row['stored']:>6}, seen by the tailing reader "
              f"{row['seen']:>6}, missed {row['missed']:>5}  ({row['appends_per_s']:,.0f} appends/s)")
    if args.json:
        args.json.write_bytes(msgspec.json.encode(figures))
    return 1 if rows[0]["missed"] else 0  # 1: unbroken's reader missed an event


if __name__ == "__main__":
    raise SystemExit(main())

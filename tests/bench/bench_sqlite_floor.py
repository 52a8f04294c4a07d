"""What SQLite itself costs under the embedded store (issue 11): the floors under two of its goals.

Both sections time raw sqlite3 with the store's own schema, connection settings and
insert statements, so the figures say what no Python above SQLite can beat.

  import    the rows an import of LOG writes (read back from an imported store: the same
            positions, streams, revisions, ids, records and checksums), inserted again into
            a fresh store file in 50,000-row transactions with the store's own statements,
            nothing else done: the floor under `import_log`, which must also read, decode,
            validate and encode every line. Alternating with `import_log` of LOG itself.
            Also the same rows without the id index (durable id dedupe) and without either
            index, to show what each access path costs. Goal of the issue: import >= 100,000
            lines/s.
  commits   single-row commits (WAL, synchronous=FULL, 4 KB pages), random ids, 100 streams:
            into the store's layout (rows, the (stream, revision) index, the id index: three
            B-trees, so three pages written and synced a commit) and into pyeventsourcing's
            (rows and its (originator, version) key: two B-trees, no id dedupe), alternating
            in rounds; median microseconds a commit and WAL bytes a commit. Goal of the issue:
            batch-1 appends >= 1.0x pyeventsourcing's.

Run:  .venv/bin/python tests/bench/bench_sqlite_floor.py [--quick] [--log FILE] [--repeat N] [--rounds N]
                                                        [--only import|commits] [--json OUT]
      (no --log: a 98,605-line arrears log is generated)
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import msgspec

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_import import fresh, generate, progress  # noqa: E402  (the same log and file handling)

from eventstore import open_store  # noqa: E402
from eventstore._group_commit import insert_events  # noqa: E402
from eventstore._sqlite import SCHEMA, connect  # noqa: E402
from replay.log import import_log  # noqa: E402

TRANSACTION_ROWS = 50_000  # import_log's default batch


def cpu_seconds() -> float:
    return time.process_time()


# -- the import floor ------------------------------------------------------------------------------
def timed_import(log: Path, db: Path) -> tuple[float, float]:
    store = open_store(f"embedded://{fresh(db)}")
    t0, c0 = time.perf_counter(), cpu_seconds()
    import_log(log, store, quarantine=db.with_suffix(".q.jsonl"), read_ahead=True)
    elapsed, cpu = time.perf_counter() - t0, cpu_seconds() - c0
    store.close()
    return elapsed, cpu


def stored_rows(db: Path) -> tuple[list[tuple], list[tuple]]:
    conn = sqlite3.connect(db)
    rows = conn.execute("SELECT position, stream_id, revision, type, id, record, checksum FROM events "
                        "ORDER BY position").fetchall()
    streams = conn.execute("SELECT stream_id, name, revision FROM streams").fetchall()
    conn.close()
    return rows, streams


def timed_inserts(rows: list[tuple], streams: list[tuple], db: Path, drop: tuple[str, ...]) -> tuple[float, float]:
    """Insert ``rows`` into a fresh store file as the store does (``drop``: indexes left out)."""
    conn = sqlite3.connect(fresh(db), isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.close()
    conn = connect(db, writer=True)
    for statement in SCHEMA:
        if not any(f"INDEX IF NOT EXISTS {name} " in statement for name in drop):
            conn.execute(statement)
    conn.executemany("INSERT INTO streams (stream_id, name, revision) VALUES (?, ?, ?)", streams)
    t0, c0 = time.perf_counter(), cpu_seconds()
    for start in range(0, len(rows), TRANSACTION_ROWS):
        conn.execute("BEGIN IMMEDIATE")
        insert_events(conn, rows[start : start + TRANSACTION_ROWS])
        conn.execute("COMMIT")
    elapsed, cpu = time.perf_counter() - t0, cpu_seconds() - c0
    conn.close()
    return elapsed, cpu


def bench_import_floor(log: Path, work: Path, repeat: int) -> list[dict]:
    progress("importing once to read back the rows the store writes")
    timed_import(log, work / "source.db")
    rows, streams = stored_rows(work / "source.db")
    variants = {
        "import_log (read, decode, validate, encode, insert)": None,
        "raw inserts, the store's schema (floor)": (),
        "raw inserts without the id index": ("events_by_id",),
        "raw inserts without either index": ("events_by_id", "events_by_stream"),
    }
    best = {name: (float("inf"), float("inf")) for name in variants}
    for attempt in range(repeat):
        for name, drop in variants.items():
            db = work / f"floor-{attempt}.db"
            wall, cpu = timed_import(log, db) if drop is None else timed_inserts(rows, streams, db, drop)
            best[name] = (min(best[name][0], wall), min(best[name][1], cpu))
            progress(f"{name} (pass {attempt + 1}): {len(rows) / wall:,.0f} lines/s, "
                     f"{cpu / len(rows) * 1e6:.1f} us CPU a line")
            fresh(db)
    floor_wall = best["raw inserts, the store's schema (floor)"][0]
    return [{"measure": name, "lines": len(rows), "seconds": wall, "lines_per_s": len(rows) / wall,
             "cpu_us_per_line": cpu / len(rows) * 1e6, "vs_floor": floor_wall / wall}
            for name, (wall, cpu) in best.items()]


# -- single-row commits: three B-trees vs two --------------------------------------------------------
LAYOUTS = {
    "unbroken (rows + stream index + id index)": (
        "CREATE TABLE events (position INTEGER PRIMARY KEY, stream_id INTEGER, revision INTEGER, "
        "id BLOB, record BLOB)",
        "CREATE UNIQUE INDEX by_stream ON events (stream_id, revision)",
        "CREATE UNIQUE INDEX by_id ON events (id)"),
    "pyeventsourcing (rows + originator/version key)": (
        "CREATE TABLE events (stream_id INTEGER, revision INTEGER, id BLOB, record BLOB, "
        "PRIMARY KEY (stream_id, revision))",),
}


def commit_layout(path: Path, statements: tuple[str, ...], preload: int) -> tuple[sqlite3.Connection, list[int]]:
    conn = sqlite3.connect(fresh(path), isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = FULL")
    for statement in statements:
        conn.execute(statement)
    revisions = [0] * 100
    conn.execute("BEGIN")
    for n in range(preload):  # a store with some history, so inserts spread over its pages
        revisions[n % 100] += 1
        conn.execute("INSERT INTO events (stream_id, revision, id, record) VALUES (?, ?, ?, ?)",
                     (n % 100, revisions[n % 100], uuid.uuid4().bytes, os.urandom(300)))
    conn.execute("COMMIT")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return conn, revisions


def commit_round(conn: sqlite3.Connection, revisions: list[int], wal: Path, commits: int) -> tuple[float, float]:
    record = os.urandom(300)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    t0 = time.perf_counter()
    for n in range(commits):
        revisions[n % 100] += 1
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("INSERT INTO events (stream_id, revision, id, record) VALUES (?, ?, ?, ?)",
                     (n % 100, revisions[n % 100], uuid.uuid4().bytes, record))
        conn.execute("COMMIT")
    elapsed = time.perf_counter() - t0
    return elapsed / commits * 1e6, wal.stat().st_size / commits


def bench_commits(work: Path, rounds: int, commits: int = 300, preload: int = 20_000) -> list[dict]:
    open_layouts = {name: (commit_layout(work / f"commit-{n}.db", statements, preload), work / f"commit-{n}.db-wal")
                    for n, (name, statements) in enumerate(LAYOUTS.items())}
    micros: dict[str, list[float]] = {name: [] for name in LAYOUTS}
    wal_bytes: dict[str, list[float]] = {name: [] for name in LAYOUTS}
    for attempt in range(rounds):
        for name, ((conn, revisions), wal) in open_layouts.items():
            us, per_commit = commit_round(conn, revisions, wal, commits)
            micros[name].append(us)
            wal_bytes[name].append(per_commit)
        progress(f"commits round {attempt + 1}/{rounds}: " + ", ".join(
            f"{name.split(' ')[0]} {micros[name][-1]:.0f} us" for name in LAYOUTS))
    for (conn, _), _ in open_layouts.values():
        conn.close()
    ours, theirs = (statistics.median(micros[name]) for name in LAYOUTS)
    return [{"layout": name, "median_us_per_commit": statistics.median(micros[name]),
             "best_us_per_commit": min(micros[name]), "wal_bytes_per_commit": statistics.median(wal_bytes[name]),
             "commits_per_s_vs_two_btrees": theirs / statistics.median(micros[name])} for name in LAYOUTS] + [
        {"ratio_three_btrees_over_two_by_rate": theirs / ours}]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--log", type=Path, help="an arrears log (default: a 98,605-line one is generated)")
    parser.add_argument("--quick", action="store_true", help="one pass, 5 rounds (with the generated log)")
    parser.add_argument("--repeat", type=int, help="passes of the import comparison (default 3, --quick 1)")
    parser.add_argument("--rounds", type=int, help="rounds of 300 commits per layout (default 15, --quick 5)")
    parser.add_argument("--only", choices=("import", "commits"), action="append")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    only = set(args.only or ("import", "commits"))
    repeat, rounds = args.repeat or (1 if args.quick else 3), args.rounds or (5 if args.quick else 15)
    work = Path(tempfile.mkdtemp(prefix="bench-floor-"))
    try:
        figures: dict = {"date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                         "sqlite": sqlite3.sqlite_version, "load_average_start": os.getloadavg()[0]}
        if "import" in only:
            figures["import"] = bench_import_floor(args.log or generate(work, 1000), work, repeat)
        if "commits" in only:
            figures["commits"] = bench_commits(work, rounds)
        figures["load_average_end"] = os.getloadavg()[0]
        print(msgspec.json.format(msgspec.json.encode(figures), indent=2).decode())
        if args.json:
            args.json.write_bytes(msgspec.json.encode(figures))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

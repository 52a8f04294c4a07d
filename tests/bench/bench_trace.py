"""Trace benchmarks: invariant SQL over a 10M-row decisions trace, and replay memory over a long log.

  query    builds a trace directory whose decisions table has N rows (10,000,000
           by default; the columns of replay/_schema.py, values shaped like the
           arrears projection's), then times the built-in SQL invariants that
           read only ``decisions`` (INV-1..INV-4) through
           ``replay.query`` (read-only views), against a bare DuckDB scan
           aggregating every column they touch, in the same process. The values
           are synthetic: the violation counts show the queries return rows,
           nothing about a projection.
  memory   replays a bulk arrears log from an embedded store through the arrears
           projection with the trace streamed to disk, sampling RSS as it goes:
           flat means the peak after 10% of the log is the peak after 100%.

Run: .venv/bin/python tests/bench/bench_trace.py [--quick] [--rows N] [--events N]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import tempfile
import time
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "bench-out" / "trace"
QUERY_INVARIANTS = ("INV-1", "INV-2", "INV-3", "INV-4")  # the built-ins that read only the trace


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


# -- a large decisions trace --------------------------------------------------
def build_trace(directory: Path, rows: int, seed: int = 7) -> None:
    """A trace directory with ``rows`` decisions (every other table empty), built column-wise."""
    from replay.trace._writer import TABLES, arrow_schema

    directory.mkdir(parents=True, exist_ok=True)
    for table in TABLES:
        if table != "decisions":
            pq.write_table(arrow_schema(table).empty_table(), directory / f"{table}.parquet")
    rng = np.random.default_rng(seed)
    schema = arrow_schema("decisions")
    writer = pq.ParquetWriter(directory / "decisions.parquet", schema)
    chunk = 1_000_000
    for start in range(0, rows, chunk):
        writer.write_table(_decisions_chunk(rng, start, min(chunk, rows - start), schema))
    writer.close()


def _decisions_chunk(rng: np.random.Generator, start: int, n: int, schema: pa.Schema) -> pa.Table:
    seq = np.arange(start, start + n, dtype=np.int64)
    account = rng.integers(0, 100_000, n)
    subjects = pa.array(np.char.add("AC", np.char.zfill(account.astype(str), 6)))
    status_codes = rng.choice(4, n, p=[0.5, 0.2, 0.2, 0.1])
    status = pa.DictionaryArray.from_arrays(
        pa.array(status_codes, pa.int8()), pa.array(["held", "cancelled", "blocked", "released"])
    ).cast(pa.string())
    released = status_codes == 3
    at = 1_704_067_200_000_000_000 + seq * 60_000_000_000
    month = (seq // 40_000 % 12 + 1).astype(str)
    keys = np.char.add(np.char.add(np.char.add("arrears-notice:", subjects.to_numpy(zero_copy_only=False).astype(str)), ":2024-"), month)
    reasons_values = pa.array(["debt_over_threshold", "hold_window"] * n)
    reasons = pa.ListArray.from_arrays(pa.array(np.arange(0, 2 * n + 1, 2, dtype=np.int32)), reasons_values)
    inputs = pa.ListArray.from_arrays(pa.array(np.zeros(n + 1, dtype=np.int32)), pa.array([], pa.string()))
    freshness = np.full(n, 72 * 3600 * 10**9, dtype=np.int64)
    columns = {
        "run_id": pa.array(["bench"] * n), "seq": seq, "cause_seq": seq, "at": at,
        "kind": pa.array(["arrears-notice"] * n), "subject": subjects,
        "action": pa.array(["send_arrears_notice"] * n), "status": status, "reasons": reasons,
        "confidence": np.where(released, rng.uniform(0.9, 1.0, n), rng.uniform(0.5, 1.0, n)),
        "min_confidence": np.where(released, 0.9, 0.5),
        "inputs": inputs, "effect_key": pa.array(keys, mask=~released), "external": released,
        "irreversible": released, "input_time": at - rng.integers(0, 48 * 3600 * 10**9, n),
        "freshness_ns": freshness, "hold_until": pa.array(at + 48 * 3600 * 10**9, mask=~released),
    }
    return pa.Table.from_arrays([pa.array(columns[f.name], f.type) if not isinstance(columns[f.name], pa.Array)
                                 else columns[f.name].cast(f.type) for f in schema], schema=schema)


def bench_query(rows: int) -> dict:
    from properties import builtin_invariants
    from replay import query

    directory = OUT / f"decisions-{rows}"
    if not (directory / "runs.parquet").exists():
        t = time.perf_counter()
        build_trace(directory, rows)
        print(f"[bench_trace] built {rows:,} decisions in {time.perf_counter() - t:.1f} s -> {directory}")
    size = (directory / "decisions.parquet").stat().st_size
    bare_sql = ("SELECT count(*), sum(confidence), sum(min_confidence), count(effect_key), "
                "count(DISTINCT effect_key), max(\"at\" - input_time), sum(freshness_ns), "
                "count(*) FILTER (WHERE external AND status = 'released') "
                f"FROM read_parquet('{directory / 'decisions.parquet'}')")
    con = duckdb.connect()
    bare = _best(lambda: con.execute(bare_sql).fetchall())
    results = {"rows": rows, "file_mb": round(size / 2**20, 1), "bare_scan_s": round(bare, 2)}
    chosen = [inv for inv in builtin_invariants() if inv.id in QUERY_INVARIANTS]
    for inv in chosen:
        seconds = _best(lambda inv=inv: query([directory], inv.sql))
        violations = query([directory], inv.sql).height
        results[inv.id] = {"seconds": round(seconds, 2), "violations": violations,
                           "vs_bare": round(seconds / bare, 1)}
    return results


def _best(fn, repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


# -- replay memory ------------------------------------------------------------------
def bench_memory(events: int) -> dict:
    import projections
    from eventstore import open_store
    from replay import deliveries_of, run

    store_path = ROOT / "bench-out" / "replay" / f"arrears-{events}.db"
    if not (ROOT / "bench-out" / "replay" / f"arrears-{events}.ready").exists():
        _fill_store(store_path, events)
    samples: list[tuple[int, float]] = []

    def progress(done: int, _total: int | None) -> None:
        samples.append((done, rss_mb()))

    start = rss_mb()
    with open_store(f"embedded://{store_path}") as store, tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        result = run(deliveries_of(store.read_all()), projections.get("arrears"),
                     trace_dir=Path(tmp) / "trace", collect=False, progress=progress)
        seconds = time.perf_counter() - t
    tenth = [mb for done, mb in samples if done <= events // 10]
    return {"events": events, "decisions": result.counts["decisions"], "seconds": round(seconds, 1),
            "rss_start_mb": round(start, 1), "rss_peak_first_10pct_mb": round(max(tenth, default=start), 1),
            "rss_peak_mb": round(max(mb for _, mb in samples), 1), "rss_end_mb": round(samples[-1][1], 1),
            "samples": len(samples)}


def _fill_store(path: Path, events: int) -> None:
    from eventstore import open_store
    from load.generators import generate_bulk
    from replay import import_log

    path.parent.mkdir(parents=True, exist_ok=True)
    log = path.with_suffix(".jsonl")
    generate_bulk(log, events, seed=1)
    with open_store(f"embedded://{path}") as store:
        import_log(log, store, batch=10_000)  # file order: replayable
    path.with_suffix(".ready").touch()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1,000,000 rows and 100,000 events")
    parser.add_argument("--rows", type=int, help="decisions in the query trace (10,000,000)")
    parser.add_argument("--events", type=int, help="events replayed for the memory run (1,000,000)")
    args = parser.parse_args()
    rows = args.rows or (1_000_000 if args.quick else 10_000_000)
    events = args.events or (100_000 if args.quick else 1_000_000)
    print(f"trace benchmark - {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC - {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} cores, Python {platform.python_version()}, DuckDB {duckdb.__version__}")
    q = bench_query(rows)
    print(f"\ninvariant SQL over {q['rows']:,} decisions ({q['file_mb']} MB Parquet), best of 3, read-only views")
    print(f"  bare DuckDB scan of the same columns      {q['bare_scan_s']:6.2f} s")
    for inv in QUERY_INVARIANTS:
        r = q[inv]
        print(f"  {inv:<6} {r['seconds']:6.2f} s  ({r['vs_bare']:.1f}x the bare scan)  {r['violations']} violations")
    m = bench_memory(events)
    print(f"\nreplay memory, {m['events']:,} events -> {m['decisions']:,} decisions, trace to disk, {m['seconds']} s")
    print(f"  RSS start {m['rss_start_mb']} MB, peak in the first 10% {m['rss_peak_first_10pct_mb']} MB, "
          f"peak {m['rss_peak_mb']} MB, end {m['rss_end_mb']} MB ({m['samples']} samples)")


if __name__ == "__main__":
    main()

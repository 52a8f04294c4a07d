"""PostgreSQL store benchmark: appends, concurrent appenders, reads, append-to-subscriber latency.

Every figure is compared with a baseline measured in the same run against the
same server (UNBROKEN_POSTGRES_URI, default the local service), alternating
passes, best of N:

  append   store.append in batches of 1/10/100/1000 vs a bare psycopg loop doing
           the same work per batch: one transaction, the same rows (msgpack record
           + CRC-32) INSERTed with executemany into a table with the same
           indexes, synchronous_commit on. The bare loop takes no append lock,
           checks no ids or expected versions and assigns positions from the
           client, so it is an upper bound. Goal: >= 0.7x raw. And vs
           pyeventsourcing's PostgresApplicationRecorder.insert_events (the same
           payload as each event's state, 10 aggregates like our 10 streams), in
           both its modes: default (pipeline, LOCK TABLE, executemany) and
           enable_db_functions (one server function call); the ratio is against
           the faster. Goal: >= 1.0x.
  concurrent  16 appender processes (single events) vs 1 process, and vs 16
           processes appending through pyeventsourcing's recorder in both modes:
           default (LOCK TABLE: commit-ordered ids, the guarantee we keep) and
           enable_db_functions (no table lock: ids need not commit in order).
           And vs the locked floor: 16 processes each calling a minimal PL/pgSQL
           function in autocommit that locks a head row, INSERTs one
           pre-encoded row at the next position, moves the head and notifies
           (no id, stream or version checks, no client round trip under the
           lock): the cheapest append that keeps positions in commit order by
           a lock held through the commit flush, hence an upper bound for any
           such design (one flush per transaction, no group commit across
           processes).
  single   single-event appends, store vs pyeventsourcing's function mode, in
           interleaved blocks of 300 in one process (10 rounds, order reversed
           every other round), so both meet the same load: medians per append
           of wall time, client CPU and the server backend's CPU (from
           /proc/PID/stat: a server on this machine only), and the median of
           the rounds' wall ratios. Steadier than best-of-N passes on a shared
           machine, whose fsync rate moves between passes. Goal: >= 1.0x.
  read     read_all of every event vs a bare SELECT of the record column + msgpack
           decode of each record (goal >= 0.7x), and vs pyeventsourcing's
           select_notifications in pages of 1,000 (goal >= 1.5x).
  latency  another process appends single events; a subscriber here measures the
           time from just before append() to delivery (CLOCK_MONOTONIC is
           system-wide). Goal: p99 < 10 ms. Baseline: a bare psycopg INSERT +
           COMMIT of one row, paced the same, in the same run (the commit flush
           is the floor: an event is visible only once durable).

pyeventsourcing is not a dependency of the project; install it for this benchmark
only: .venv/bin/pip install "eventsourcing[postgres]==9.5.6" (without it those
columns say so).

Run:  .venv/bin/python tests/bench/bench_postgres.py [--quick] [--only append|single|concurrent|read|latency]
"""

from __future__ import annotations

import argparse
import datetime as dt
import multiprocessing
import os
import statistics
import sys
import time
import uuid
import zlib
from urllib.parse import urlsplit

import msgspec
import psycopg

from eventstore import NewEvent, RecordedEvent, open_store
from eventstore.postgres import new_schema_name

SERVER = os.environ.get("UNBROKEN_POSTGRES_URI", "postgresql://root@127.0.0.1:5432/test")
ENCODE = msgspec.msgpack.Encoder(uuid_format="bytes")
DECODE = msgspec.msgpack.Decoder(RecordedEvent)
DATA = b'{"account_id":"acct-1","amount_minor":1234,"payment_id":"p-1"}'


def store_uri(schema: str) -> str:
    return f"{SERVER}{'&' if '?' in SERVER else '?'}schema={schema}"


def drop(schema: str) -> None:
    with psycopg.connect(SERVER, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def events(n: int) -> list[NewEvent]:
    return [NewEvent("PaymentReceived", DATA) for _ in range(n)]


def store_appends(batch: int, total: int) -> float:
    """Events per second through store.append into a fresh schema."""
    schema = new_schema_name()
    try:
        with open_store(store_uri(schema)) as store:
            store.append("warm", events(1))
            batches = [events(batch) for _ in range(max(1, total // batch))]
            started = time.perf_counter()
            for i, part in enumerate(batches):
                store.append(f"s-{i % 10}", part)
            return len(batches) * batch / (time.perf_counter() - started)
    finally:
        drop(schema)


def raw_appends(batch: int, total: int) -> float:
    """Events per second through a bare psycopg loop doing the same INSERTs."""
    schema = new_schema_name()
    with psycopg.connect(SERVER, options=f"-c search_path={schema} -c synchronous_commit=on") as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
        conn.execute("CREATE TABLE events (position BIGINT PRIMARY KEY, stream_id BIGINT, revision BIGINT, "
                     "id UUID NOT NULL, type TEXT, record BYTEA, checksum BIGINT, UNIQUE (stream_id, revision))")
        conn.execute("CREATE UNIQUE INDEX ON events (id)")
        conn.commit()
        position, revisions = 0, [0] * 10
        count = max(1, total // batch)
        started = time.perf_counter()
        for i in range(count):
            rows = []
            for event in events(batch):
                position += 1
                rec = RecordedEvent(event.id, f"s-{i % 10}", revisions[i % 10], position, time.time_ns(),
                                    time.time_ns(), event.type, event.data)
                record = ENCODE.encode(rec)
                rows.append((position, i % 10, revisions[i % 10], event.id, event.type, record, zlib.crc32(record)))
                revisions[i % 10] += 1
            with conn.cursor() as cur:
                cur.executemany("INSERT INTO events VALUES (%s, %s, %s, %s, %s, %s, %s)", rows)
            conn.commit()
        rate = count * batch / (time.perf_counter() - started)
    drop(schema)
    return rate


def es_recorder(schema: str, functions: bool, create: bool = True):
    """pyeventsourcing's PostgreSQL application recorder in a new schema: (datastore, recorder)."""
    from eventsourcing.postgres import PostgresApplicationRecorder, PostgresDatastore

    parts = urlsplit(SERVER)
    if create:
        with psycopg.connect(SERVER, autocommit=True) as conn:
            conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
    datastore = PostgresDatastore(parts.path.lstrip("/"), parts.hostname or "127.0.0.1", parts.port or 5432,
                                  parts.username or "", parts.password or "", schema=schema,
                                  enable_db_functions=functions)
    recorder = PostgresApplicationRecorder(datastore)
    if create:
        recorder.create_table()
    else:  # the tables exist: only learn the composite type (concurrent CREATEs would collide)
        datastore.register_type_adapters()
    return datastore, recorder


def es_installed() -> bool:
    try:
        import eventsourcing.postgres  # noqa: F401
    except ImportError:
        return False
    return True


def es_appends(batch: int, total: int, functions: bool) -> float:
    """Events per second through pyeventsourcing's recorder.insert_events, 10 aggregates."""
    from eventsourcing.persistence import StoredEvent

    schema = new_schema_name()
    datastore, recorder = es_recorder(schema, functions)
    try:
        aggregates, versions = [uuid.uuid4() for _ in range(10)], [1] * 10
        recorder.insert_events([StoredEvent(uuid.uuid4(), 1, "PaymentReceived", DATA)])  # warm, like the store
        count = max(1, total // batch)
        started = time.perf_counter()
        for i in range(count):
            k = i % 10
            recorder.insert_events([StoredEvent(aggregates[k], versions[k] + j, "PaymentReceived", DATA)
                                    for j in range(batch)])
            versions[k] += batch
        return count * batch / (time.perf_counter() - started)
    finally:
        datastore.close()
        drop(schema)


def _es_one_appender(schema: str, functions: bool, count: int, ready, go) -> None:
    from eventsourcing.persistence import StoredEvent

    datastore, recorder = es_recorder(schema, functions, create=False)
    aggregate = uuid.uuid4()
    ready.put(1)
    go.wait()
    for version in range(1, count + 1):
        recorder.insert_events([StoredEvent(aggregate, version, "PaymentReceived", DATA)])
    datastore.close()


def es_concurrent_appends(processes: int, per_process: int, functions: bool) -> float:
    """Events per second from ``processes`` processes appending through pyeventsourcing at once."""
    schema = new_schema_name()
    datastore, _ = es_recorder(schema, functions)
    datastore.close()
    try:
        return _race(_es_one_appender, (schema, functions, per_process), processes) * per_process
    finally:
        drop(schema)


def es_reads(total: int) -> float:
    """Events per second through pyeventsourcing's select_notifications, pages of 1,000."""
    from eventsourcing.persistence import StoredEvent

    schema = new_schema_name()
    datastore, recorder = es_recorder(schema, True)
    try:
        for i in range(0, total, 1000):
            aggregate = uuid.uuid4()
            recorder.insert_events([StoredEvent(aggregate, v, "PaymentReceived", DATA)
                                    for v in range(min(1000, total - i))])
        best = 0.0
        for _ in range(3):
            started, n, start = time.perf_counter(), 0, 1
            while True:
                page = recorder.select_notifications(start, 1000)
                n += len(page)
                if len(page) < 1000:
                    break
                start = page[-1].id + 1
            best = max(best, n / (time.perf_counter() - started))
        return best
    finally:
        datastore.close()
        drop(schema)


def start_race(target, args: tuple, processes: int) -> tuple[list, float]:
    """Start ``processes`` spawned processes running ``target(*args, ready, go)``; once all are
    ready, let them go; (the processes, the moment they went)."""
    ctx = multiprocessing.get_context("spawn")
    ready, go = ctx.Queue(), ctx.Event()
    workers = [ctx.Process(target=target, args=(*args, ready, go)) for _ in range(processes)]
    for worker in workers:
        worker.start()
    for _ in workers:
        ready.get(timeout=60)
    started = time.perf_counter()
    go.set()
    return workers, started


def _race(target, args: tuple, processes: int) -> float:
    """``start_race``, then wait for all: the processes finished per second (events/s = that x events each)."""
    workers, started = start_race(target, args, processes)
    for worker in workers:
        worker.join(300)
    elapsed = time.perf_counter() - started
    assert all(worker.exitcode == 0 for worker in workers), "an appender process failed"
    return processes / elapsed


def _one_appender(uri: str, count: int, ready, go) -> None:
    with open_store(uri) as store:
        ready.put(1)
        go.wait()
        for _ in range(count):
            store.append(f"p-{os.getpid()}", events(1))


def concurrent_appends(processes: int, per_process: int) -> float:
    """Events per second from ``processes`` processes appending single events at once."""
    schema = new_schema_name()
    uri = store_uri(schema)
    open_store(uri).close()
    try:
        return _race(_one_appender, (uri, per_process), processes) * per_process
    finally:
        drop(schema)


_FLOOR_FUNCTION = """
    CREATE FUNCTION append_floor(i uuid, r bytea, c bigint) RETURNS bigint LANGUAGE plpgsql AS $fn$
    DECLARE p bigint;
    BEGIN
        SELECT position + 1 INTO p FROM head FOR UPDATE;
        INSERT INTO events VALUES (p, 1, p, i, 'PaymentReceived', r, c);
        UPDATE head SET position = p;
        PERFORM pg_notify('floor', p::text);
        RETURN p;
    END $fn$"""


def _floor_appender(schema: str, count: int, ready, go) -> None:
    record = ENCODE.encode(RecordedEvent(uuid.uuid4(), "floor", 0, 0, time.time_ns(), time.time_ns(),
                                         "PaymentReceived", DATA))
    with psycopg.connect(SERVER, autocommit=True,
                         options=f"-c search_path={schema} -c synchronous_commit=on") as conn:
        ready.put(1)
        go.wait()
        for _ in range(count):
            conn.execute("SELECT append_floor(%b, %b, %b)", (uuid.uuid4(), record, zlib.crc32(record)))


def locked_floor_appends(processes: int, per_process: int) -> float:
    """Events per second from ``processes`` processes through the minimal commit-ordered append."""
    schema = new_schema_name()
    with psycopg.connect(SERVER, autocommit=True, options=f"-c search_path={schema}") as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
        conn.execute("CREATE TABLE head (one BOOLEAN PRIMARY KEY, position BIGINT NOT NULL)")
        conn.execute("INSERT INTO head VALUES (TRUE, 0)")
        conn.execute("CREATE TABLE events (position BIGINT PRIMARY KEY, stream_id BIGINT, revision BIGINT, "
                     "id UUID NOT NULL, type TEXT, record BYTEA, checksum BIGINT, UNIQUE (stream_id, revision))")
        conn.execute("CREATE UNIQUE INDEX ON events (id)")
        conn.execute(_FLOOR_FUNCTION)
    try:
        return _race(_floor_appender, (schema, per_process), processes) * per_process
    finally:
        drop(schema)


def reads(total: int) -> tuple[float, float]:
    """Events per second: store.read_all vs a bare SELECT + decode of the same rows."""
    schema = new_schema_name()
    try:
        with open_store(store_uri(schema)) as store:
            for i in range(0, total, 1000):
                store.append(f"r-{i % 7}", events(min(1000, total - i)))
            best_store = best_raw = 0.0
            for _ in range(3):
                started = time.perf_counter()
                n = sum(1 for _ in store.read_all())
                best_store = max(best_store, n / (time.perf_counter() - started))
                started = time.perf_counter()
                with psycopg.connect(SERVER, options=f"-c search_path={schema}") as conn:
                    cursor, n = 0, 0
                    while True:
                        rows = conn.execute("SELECT record, position FROM events WHERE position > %s "
                                            "ORDER BY position LIMIT 1000", (cursor,), binary=True).fetchall()
                        n += len([DECODE.decode(r[0]) for r in rows])
                        if len(rows) < 1000:
                            break
                        cursor = rows[-1][1]
                best_raw = max(best_raw, n / (time.perf_counter() - started))
            return best_store, best_raw
    finally:
        drop(schema)


def commit_latency(count: int) -> list[float]:
    """Milliseconds for a bare psycopg INSERT + COMMIT of one row (synchronous_commit on), paced."""
    schema = new_schema_name()
    delays = []
    with psycopg.connect(SERVER, options=f"-c search_path={schema} -c synchronous_commit=on") as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
        conn.execute("CREATE TABLE t (n BIGINT PRIMARY KEY, data BYTEA)")
        conn.commit()
        for n in range(count):
            started = time.monotonic_ns()
            conn.execute("INSERT INTO t VALUES (%s, %s)", (n, DATA))
            conn.commit()
            delays.append((time.monotonic_ns() - started) / 1e6)
            time.sleep(0.005)
    drop(schema)
    return delays


def percentiles(delays: list[float]) -> str:
    ordered = sorted(delays)
    p99 = ordered[int(len(ordered) * 0.99) - 1]
    return f"p50 {statistics.median(ordered):.2f} ms  p99 {p99:.2f} ms  max {ordered[-1]:.2f} ms"


def _latency_writer(uri: str, count: int, go) -> None:
    with open_store(uri) as store:
        go.wait()
        for _ in range(count):
            store.append("lat", [NewEvent("Tick", b'{"t":%d}' % time.monotonic_ns())])
            time.sleep(0.005)  # paced: latency of a live subscriber, not of a backlog


def latency(count: int) -> list[float]:
    """Milliseconds from just before append() in another process to delivery here."""
    schema = new_schema_name()
    uri = store_uri(schema)
    try:
        with open_store(uri) as store:
            sub = store.subscribe(store.last_position())
            ctx = multiprocessing.get_context("spawn")
            go = ctx.Event()
            writer = ctx.Process(target=_latency_writer, args=(uri, count, go))
            writer.start()
            go.set()
            delays = []
            for _ in range(count):
                event = sub.next_within(30)
                assert event is not None, "the subscriber timed out"
                delays.append((time.monotonic_ns() - msgspec.json.decode(event.data)["t"]) / 1e6)
            writer.join(60)
            return delays
    finally:
        drop(schema)


def ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}" if b else "-"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes")
    parser.add_argument("--only", choices=SECTIONS, action="append",
                        help="run only this section (repeatable; default: all)")
    args = parser.parse_args(argv)
    es = es_installed()
    print(f"# bench_postgres {dt.date.today()} server={SERVER} python={sys.version.split()[0]} "
          f"psycopg={psycopg.__version__} load={os.getloadavg()[0]:.2f}")
    if not es:
        print("# pyeventsourcing not installed: pip install 'eventsourcing[postgres]==9.5.6' to compare")
    for section in args.only or SECTIONS:
        SECTIONS[section](args.quick, es)
    print(f"# load at the end: {os.getloadavg()[0]:.2f}")
    return 0


def append_section(quick: bool, es: bool) -> None:
    total = 2000 if quick else 10_000
    rounds = 2 if quick else 3
    print("append: events/s, best of", rounds, "alternating passes; es = pyeventsourcing (default / db functions)")
    for size in (1, 10, 100, 1000):
        n = min(total, 600 * size) if size == 1 else total
        n = max(n, size)
        best = dict.fromkeys(("store", "raw", "es", "es_fn"), 0.0)
        for _ in range(rounds):
            best["store"] = max(best["store"], store_appends(size, n))
            best["raw"] = max(best["raw"], raw_appends(size, n))
            if es:
                best["es"] = max(best["es"], es_appends(size, n, False))
                best["es_fn"] = max(best["es_fn"], es_appends(size, n, True))
        es_best = max(best["es"], best["es_fn"])
        print(f"  batch {size:>4}: store {best['store']:>8.0f}  raw {best['raw']:>8.0f}  "
              f"es {best['es']:>8.0f} / {best['es_fn']:>8.0f}  "
              f"store/raw {ratio(best['store'], best['raw'])}  store/es {ratio(best['store'], es_best)}")


def concurrent_section(quick: bool, es: bool) -> None:
    per = 100 if quick else 300
    one = concurrent_appends(1, per * 4)
    many = concurrent_appends(16, per)
    floor = locked_floor_appends(16, per)
    es_many = es_concurrent_appends(16, per, False) if es else 0.0
    es_fn_many = es_concurrent_appends(16, per, True) if es else 0.0
    print(f"concurrent single-event appends: 1 process {one:.0f}/s, 16 processes {many:.0f}/s "
          f"(ratio {ratio(many, one)}); locked floor 16 processes {floor:.0f}/s (store/floor "
          f"{ratio(many, floor)}); es 16 processes {es_many:.0f}/s (default, ordered) "
          f"{es_fn_many:.0f}/s (db functions, unordered); store/es {ratio(many, es_many)} / "
          f"{ratio(many, es_fn_many)}")


def backend_cpu_s(pid: int) -> float:
    """CPU seconds (user + system) of server backend ``pid``; NaN when it is not on this machine."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Appender:
    """Single-event appends in blocks, measured per append: wall, client CPU, server backend CPU (us)."""

    def __init__(self, append_one, backend_pid: int) -> None:
        self.append_one, self.pid, self.blocks = append_one, backend_pid, []

    def block(self, size: int) -> None:
        server, client, wall = backend_cpu_s(self.pid), time.process_time(), time.perf_counter()
        for _ in range(size):
            self.append_one()
        self.blocks.append(tuple((time_now - start) / size * 1e6 for time_now, start in (
            (time.perf_counter(), wall), (time.process_time(), client), (backend_cpu_s(self.pid), server))))

    def medians(self) -> str:
        wall, client, server = (statistics.median(block[i] for block in self.blocks) for i in range(3))
        return f"wall {wall:.0f}  client CPU {client:.0f}  server CPU {server:.0f} us/append"


def store_appender(store) -> Appender:
    counter = iter(range(1 << 62))
    store.append("warm", events(1))
    return Appender(lambda: store.append(f"s-{next(counter) % 10}", events(1)), store._writer.info.backend_pid)


def es_appender(recorder, datastore) -> Appender:
    from eventsourcing.persistence import StoredEvent

    aggregates, versions, counter = [uuid.uuid4() for _ in range(10)], [1] * 10, iter(range(1 << 62))

    def append_one() -> None:
        k = next(counter) % 10
        recorder.insert_events([StoredEvent(aggregates[k], versions[k], "PaymentReceived", DATA)])
        versions[k] += 1

    append_one()
    with datastore.get_connection() as conn:
        pid = conn.info.backend_pid
    return Appender(append_one, pid)


def single_section(quick: bool, es: bool) -> None:
    if not es:
        print("single: needs pyeventsourcing")
        return
    size, rounds = 300, 4 if quick else 10
    schema, es_schema = new_schema_name(), new_schema_name()
    datastore, recorder = es_recorder(es_schema, True)
    try:
        with open_store(store_uri(schema)) as store:
            appenders = {"store": store_appender(store), "es": es_appender(recorder, datastore)}
            for r in range(rounds):
                for name in (("store", "es") if r % 2 == 0 else ("es", "store")):
                    appenders[name].block(size)
    finally:
        datastore.close()
        drop(schema)
        drop(es_schema)
    ratios = [e[0] / s[0] for s, e in zip(appenders["store"].blocks, appenders["es"].blocks, strict=True)]
    print(f"single-event appends, interleaved blocks of {size} x {rounds} rounds (medians): "
          f"store {appenders['store'].medians()}; es functions {appenders['es'].medians()}; "
          f"store/es {statistics.median(ratios):.2f} (events/s, median of the rounds' ratios)")


def read_section(quick: bool, es: bool) -> None:
    size = 20_000 if quick else 100_000
    store_rate, raw_rate = reads(size)
    es_rate = es_reads(size) if es else 0.0
    print(f"read_all: store {store_rate:.0f}/s  raw {raw_rate:.0f}/s  es {es_rate:.0f}/s  "
          f"store/raw {ratio(store_rate, raw_rate)}  store/es {ratio(store_rate, es_rate)}")


def latency_section(quick: bool, es: bool) -> None:
    count = 100 if quick else 500
    print(f"append-to-subscriber across processes: {percentiles(latency(count))}")
    print(f"bare INSERT + COMMIT (the floor):      {percentiles(commit_latency(count))}")


SECTIONS = {"append": append_section, "single": single_section, "concurrent": concurrent_section,
            "read": read_section, "latency": latency_section}


if __name__ == "__main__":
    sys.exit(main())

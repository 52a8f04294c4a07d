"""Long reads of the embedded store run their queries in a read-ahead process: same events, same errors.

``READ_AHEAD_MIN`` is lowered so that reads of a small store use the worker
(the 64-event check of the tail at open stays in-process); every read is
compared with the same read done in-process (``read_ahead=False``).
"""

from __future__ import annotations

import gc
import os
import signal
import sqlite3
import zlib
from pathlib import Path

import pytest

import eventstore.embedded as embedded_mod
from eventstore import (
    CorruptEvent,
    NewEvent,
    ReadFilter,
    StoreClosed,
    StoreDamaged,
    StoreError,
    open_store,
)
from eventstore.workers import widen_pipe

EVENTS = 1200  # several 256-row pages


@pytest.fixture
def store_path(tmp_path: Path) -> Path:
    path = tmp_path / "events.db"
    with open_store(f"embedded://{path}") as store:
        for start in range(0, EVENTS, 100):
            kind = "Reading" if start % 300 else "Payment"
            store.append(f"meter-{start // 100 % 4}", [NewEvent(kind, b'{"i":%d}' % (start + i)) for i in range(100)])
    return path


@pytest.fixture
def workers(monkeypatch: pytest.MonkeyPatch) -> list:
    """Every read-ahead process started, with the threshold lowered to any read."""
    started: list = []
    original = embedded_mod.EmbeddedStore._start_worker

    def spy(self, *args):
        worker = original(self, *args)
        started.append(worker)
        return worker

    monkeypatch.setattr(embedded_mod, "READ_AHEAD_MIN", 100)
    monkeypatch.setattr(embedded_mod.EmbeddedStore, "_start_worker", spy)
    return started


def _key(e):
    return (e.id, e.stream, e.revision, e.position, e.recorded_at, e.type, e.data, e.metadata)


READS = [
    {},
    {"from_position": 300},
    {"backwards": True},
    {"backwards": True, "from_position": 700},
    {"limit": 517},
    {"from_position": 90, "limit": 256},
    {"from_position": EVENTS - 50},  # fewer events left than READ_AHEAD_MIN: in-process
    {"filter": ReadFilter(types=("Payment",))},
    {"filter": ReadFilter(stream_prefixes=("meter-1", "meter-3"))},
    {"backwards": True, "filter": ReadFilter(types=("Reading",)), "limit": 400},
]


@pytest.mark.parametrize("read", READS, ids=[str(r) for r in READS])
def test_a_read_ahead_returns_what_an_in_process_read_returns(store_path, workers, read):
    with open_store(f"embedded://{store_path}", read_ahead=False) as plain:
        expected = [_key(e) for e in plain.read_all(**read)]
    assert not workers
    with open_store(f"embedded://{store_path}") as store:
        got = [_key(e) for e in store.read_all(**read)]
    assert got == expected and got
    if read.get("from_position") == EVENTS - 50:
        assert not workers
    else:
        assert len(workers) == 1 and workers[0].returncode == 0  # it ended on its own


def test_short_reads_and_stream_reads_stay_in_process(store_path, workers, monkeypatch):
    with open_store(f"embedded://{store_path}") as store:
        assert len(list(store.read_stream("meter-1"))) == EVENTS // 4  # a stream, however long
        monkeypatch.setattr(embedded_mod, "READ_AHEAD_MIN", 10_000)
        assert len(list(store.read_all())) == EVENTS
        assert len(list(store.read_all(limit=9_999))) == EVENTS
    assert not workers


def test_with_one_cpu_to_run_on_reads_stay_in_process_unless_asked(store_path, workers, monkeypatch):
    monkeypatch.setattr(embedded_mod.os, "sched_getaffinity", lambda pid: {0})
    with open_store(f"embedded://{store_path}") as store:
        assert len(list(store.read_all())) == EVENTS
    assert not workers
    with open_store(f"embedded://{store_path}", read_ahead=True) as store:
        assert len(list(store.read_all())) == EVENTS
    assert len(workers) == 1


def test_an_abandoned_read_stops_its_process(store_path, workers):
    with open_store(f"embedded://{store_path}") as store:
        events = store.read_all()
        first = [next(events) for _ in range(3)]
        assert [e.position for e in first] == [1, 2, 3]
        del events
        gc.collect()
        assert len(workers) == 1 and workers[0].returncode is not None


def _damage(path: Path, position: int, record: bytes, checksum: int | None = None) -> None:
    with sqlite3.connect(path) as conn:
        if checksum is None:
            conn.execute("UPDATE events SET record = ? WHERE position = ?", (record, position))
        else:
            conn.execute("UPDATE events SET record = ?, checksum = ? WHERE position = ?", (record, checksum, position))


def _error_of(path: Path, read_ahead: bool) -> CorruptEvent:
    with open_store(f"embedded://{path}", read_ahead=read_ahead) as store:
        with pytest.raises(CorruptEvent) as caught:
            list(store.read_all())
    return caught.value


def test_a_bad_checksum_is_the_same_corrupt_event(store_path, workers):
    with sqlite3.connect(store_path) as conn:
        (record,) = conn.execute("SELECT record FROM events WHERE position = 600").fetchone()
    _damage(store_path, 600, record[:-1] + bytes([record[-1] ^ 1]))
    in_process, ahead = _error_of(store_path, False), _error_of(store_path, True)
    assert str(ahead) == str(in_process) and "600" in str(ahead)
    assert workers and workers[-1].returncode is not None


def test_an_undecodable_record_with_a_good_checksum_is_the_same_corrupt_event(store_path, workers):
    garbage = b"\xc1 not msgpack"
    _damage(store_path, 700, garbage, zlib.crc32(garbage))
    in_process, ahead = _error_of(store_path, False), _error_of(store_path, True)
    assert str(ahead) == str(in_process) and "700" in str(ahead) and "does not decode" in str(ahead)


def test_closing_the_store_stops_a_read_ahead(store_path, workers):
    store = open_store(f"embedded://{store_path}")
    events = store.read_all()
    next(events)
    store.close()
    with pytest.raises(StoreClosed):
        list(events)
    assert workers[0].returncode is not None


def test_a_worker_that_dies_is_an_error_not_a_short_read(store_path, workers, monkeypatch):
    monkeypatch.setattr(embedded_mod, "READ_AHEAD_PIPE_BYTES", 4096)  # it cannot get to the end unread
    with open_store(f"embedded://{store_path}") as store:
        events = store.read_all()
        next(events)
        os.kill(workers[0].pid, signal.SIGKILL)
        workers[0].wait()
        with pytest.raises(StoreError, match=r"read-ahead process stopped before the read ended \(exit status -9: "):
            for _ in events:  # pages already in the pipe may still come first
                pass


def test_an_sqlite_error_in_the_worker_is_converted_like_one_in_process(store_path):
    with open_store(f"embedded://{store_path}") as store:
        worker = store._start_worker("SELECT record, checksum, position FROM no_such_table LIMIT ?", [], 0, None)
        with pytest.raises(StoreError, match="no such table") as caught:
            list(store._pages_from(worker, backwards=False))
        assert not isinstance(caught.value, StoreDamaged)
        assert worker.returncode is not None


def test_without_a_process_to_spare_the_read_runs_in_process(store_path, workers, monkeypatch):
    def refuse(*args, **kwargs):
        raise OSError("fork: resource temporarily unavailable")

    monkeypatch.setattr(embedded_mod.subprocess, "Popen", refuse)
    with open_store(f"embedded://{store_path}") as store:
        assert [e.position for e in store.read_all()] == list(range(1, EVENTS + 1))
    assert workers == [None]


def test_widen_pipe_gives_the_most_it_may_when_more_is_asked_for() -> None:
    """A size over /proc/sys/fs/pipe-max-size, refused without CAP_SYS_RESOURCE, still gets that maximum."""
    fcntl = pytest.importorskip("fcntl")
    allowed = int(Path("/proc/sys/fs/pipe-max-size").read_text())
    read_end, write_end = os.pipe()
    with os.fdopen(read_end, "rb") as pipe, os.fdopen(write_end, "wb"):
        got = widen_pipe(pipe, allowed * 4)
        assert got == fcntl.fcntl(pipe, fcntl.F_GETPIPE_SZ)
        assert got >= allowed
        assert widen_pipe(pipe, 1 << 16) >= 1 << 16  # a smaller size is set as asked (never below a page)

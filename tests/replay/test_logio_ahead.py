"""Reading a log in a second process (``read_ahead``) gives exactly what reading it in-process gives.

Same events (ids, positions, revisions, times, data, metadata), same counts,
same quarantine file, same errors at the same line; the worker is always
reaped, however the read ends (pytest's filterwarnings=error fails a test
that leaks a process or its pipes).
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import msgspec
import pytest

from eventstore import RecordedEvent, open_store
from replay.log import LogError, _ahead, import_log, read_log

ENCODE = msgspec.json.Encoder()


def write_log(path: Path, lines: int, bad_every: int = 0, repeats: bool = True) -> Path:
    """An interleaved log over 7 streams, a bad line every ``bad_every`` lines (0: none).

    Every 17th line repeats the id of the line 7 before it, in the same stream
    (already present); every 13th the id of the line 5 before it, in another
    stream (rejected); with ``repeats`` off, no id repeats.
    """
    out = []
    for n in range(1, lines + 1):
        if bad_every and n % bad_every == 0:
            out.append(b'{"stream": "s-1", "type": ' if n % 2 else b'{"stream": "", "type": "T", "data": {}}')
            continue
        same = n - 7 if n % 17 == 0 and n > 7 else n - 5 if n % 13 == 0 and n > 5 else n
        same = same if repeats else n
        out.append(ENCODE.encode({
            "id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"line {same}")),
            "stream": f"s-{n % 7}", "type": "Tick", "occurred_at": 1_000 + n,
            "data": {"n": n, "text": "é" * (n % 3)}, "metadata": {"source": f"src-{n % 2}"},
        }))
    path.write_bytes(b"\n".join(out) + b"\n")
    return path


def replayed(path: Path, read_ahead: bool, quarantine: Path) -> tuple[list, object]:
    reader = read_log(path, quarantine=quarantine, read_ahead=read_ahead)
    return list(reader), reader.report


def test_read_log_gives_the_same_events_rejections_and_counts(tmp_path: Path) -> None:
    log = write_log(tmp_path / "a.jsonl", 5_000, bad_every=97)
    here, here_report = replayed(log, False, tmp_path / "q1.jsonl")
    ahead, ahead_report = replayed(log, True, tmp_path / "q2.jsonl")
    assert len(here) > 4_000
    assert ahead == here
    assert msgspec.structs.replace(ahead_report, quarantine=None) == msgspec.structs.replace(  # type: ignore[type-var]
        here_report, quarantine=None
    )
    assert here_report.rejected > 5_000 // 97 + 300 and here_report.already_present > 250  # type: ignore[attr-defined]
    assert (tmp_path / "q2.jsonl").read_bytes() == (tmp_path / "q1.jsonl").read_bytes()


def test_import_gives_the_same_store_and_reimport_adds_nothing(tmp_path: Path) -> None:
    log = write_log(tmp_path / "a.jsonl", 3_000, bad_every=101)
    stores = {}
    for read_ahead in (False, True):
        db = tmp_path / f"{read_ahead}.db"
        with open_store(f"embedded://{db}") as store:
            first = import_log(log, store, batch=500, quarantine=tmp_path / f"q-{read_ahead}.jsonl",
                               read_ahead=read_ahead)
            again = import_log(log, store, batch=500, quarantine=tmp_path / f"q-{read_ahead}.jsonl",
                               read_ahead=read_ahead)
            stores[read_ahead] = ([(e.id, e.stream, e.revision, e.position, e.recorded_at, e.data, e.metadata)
                                   for e in store.read_all()], first, again)
    (here, here_first, here_again), (ahead, ahead_first, ahead_again) = stores[False], stores[True]
    assert ahead == here and len(here) == here_first.imported > 2_500
    assert (ahead_first.read, ahead_first.imported, ahead_first.rejected) == (
        here_first.read, here_first.imported, here_first.rejected)
    assert ahead_again.imported == here_again.imported == 0
    assert ahead_again.already_present == here_again.already_present
    assert ahead_again.already_present == here_first.imported + here_first.already_present > here_first.imported
    assert (tmp_path / "q-True.jsonl").read_bytes() == (tmp_path / "q-False.jsonl").read_bytes()


def test_strict_reading_stops_at_the_first_bad_line_after_the_good_ones(tmp_path: Path) -> None:
    log = write_log(tmp_path / "a.jsonl", 3_000, bad_every=2_500, repeats=False)
    seen = []
    with pytest.raises(LogError, match="line 2500") as here:
        seen.extend(read_log(log, read_ahead=False))
    ahead_seen = []
    with pytest.raises(LogError) as ahead:
        ahead_seen.extend(read_log(log, read_ahead=True))
    assert str(ahead.value) == str(here.value)
    assert ahead_seen == seen and len(seen) == 2_499


def test_an_error_of_the_reader_is_raised_with_its_message(tmp_path: Path) -> None:
    log = tmp_path / "bad.csv"
    log.write_bytes(b"when,what\n1,2\n")
    with pytest.raises(LogError) as here:
        list(read_log(log, read_ahead=False))
    with pytest.raises(LogError) as ahead:
        list(read_log(log, read_ahead=True))
    assert str(ahead.value) == str(here.value) and "column" in str(here.value)


def test_a_read_abandoned_early_stops_the_worker(tmp_path: Path) -> None:
    log = write_log(tmp_path / "a.jsonl", 50_000, repeats=False)
    reader = read_log(log, read_ahead=True)
    first = [next(reader) for _ in range(10)]
    assert [e.position for e in first] == list(range(1, 11))
    reader._events.close()  # type: ignore[attr-defined]  # what dropping the iterator does; the worker is reaped


@pytest.fixture
def workers(monkeypatch: pytest.MonkeyPatch) -> list:
    """Every log worker process started during the test, in order (started as usual)."""
    started: list = []
    real_start = _ahead._start

    def start_and_keep(*args: object) -> object:
        worker = real_start(*args)  # type: ignore[arg-type]
        started.append(worker)
        return worker

    monkeypatch.setattr(_ahead, "_start", start_and_keep)
    return started


def test_a_worker_that_dies_is_an_error_not_a_short_read(tmp_path: Path, workers: list) -> None:
    log = write_log(tmp_path / "a.jsonl", 50_000, repeats=False)
    reader = read_log(log, read_ahead=True)
    next(reader)
    os.kill(workers[0].pid, 9)
    with pytest.raises(LogError, match="stopped before the end of the file"):
        list(reader)


def test_the_worker_can_run_many_frames_ahead(tmp_path: Path, workers: list) -> None:
    """Its pipe holds ~20 frames or more, also where the asked-for 4 MiB is refused (no CAP_SYS_RESOURCE)."""
    fcntl = pytest.importorskip("fcntl")
    log = write_log(tmp_path / "a.jsonl", 50_000, repeats=False)
    reader = read_log(log, read_ahead=True)
    next(reader)
    size = fcntl.fcntl(workers[0].stdout, fcntl.F_GETPIPE_SZ)
    list(reader)
    allowed = int(Path("/proc/sys/fs/pipe-max-size").read_text())
    assert size >= min(_ahead.PIPE_BYTES, allowed) >= 1 << 20, size


def test_only_long_logs_get_a_worker_by_default(tmp_path: Path) -> None:
    small = write_log(tmp_path / "a.jsonl", 10)
    assert not _ahead.wanted(small, None)
    assert _ahead.wanted(small, True) and not _ahead.wanted(small, False)


def test_a_long_run_of_one_stream_is_split_into_appends_the_store_takes(tmp_path: Path) -> None:
    from eventstore.validation import MAX_BATCH

    log = tmp_path / "one.jsonl"
    log.write_bytes(b"".join(
        ENCODE.encode({"stream": "only", "type": "Tick", "occurred_at": n, "data": {"n": n}}) + b"\n"
        for n in range(MAX_BATCH + 1_500)
    ))
    with open_store("memory://") as store:
        sizes: list[list[int]] = []
        append_multi = store.append_multi

        def spy(requests: list) -> list:
            sizes.append([len(events) for _, events, _ in requests])
            return append_multi(requests)

        store.append_multi = spy  # type: ignore[method-assign]
        report = import_log(log, store, batch=MAX_BATCH + 1_000)
        assert report.imported == MAX_BATCH + 1_500 and report.rejected == 0
        assert sizes == [[MAX_BATCH, 1_000], [500]]  # never refused for size, never split into single lines
        events = list(store.read_stream("only"))
    assert [e.revision for e in events] == list(range(MAX_BATCH + 1_500))
    assert [msgspec.json.decode(e.data)["n"] for e in events] == list(range(MAX_BATCH + 1_500))


def test_without_a_worker_process_the_log_is_read_in_this_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    log = write_log(tmp_path / "a.jsonl", 2_000, bad_every=101)
    here, here_report = replayed(log, False, tmp_path / "q1.jsonl")
    monkeypatch.setattr(_ahead, "_start", lambda *args: None)  # as when no process can be started
    fallback, fallback_report = replayed(log, True, tmp_path / "q2.jsonl")
    assert fallback == here and fallback_report.rejected == here_report.rejected > 0  # type: ignore[attr-defined]


def test_the_cyclic_collector_is_paused_during_an_import_and_restored_after(tmp_path: Path) -> None:
    import gc

    log = write_log(tmp_path / "a.jsonl", 300)
    during: list[bool] = []
    assert gc.isenabled()
    with open_store("memory://") as store:
        import_log(log, store, batch=100, progress=lambda _: during.append(gc.isenabled()))
        assert gc.isenabled()
        gc.disable()
        try:
            import_log(log, store, batch=100)
            assert not gc.isenabled()  # a caller that had it off keeps it off
        finally:
            gc.enable()
    assert during and not any(during)


def test_a_payload_type_registered_at_run_time_is_checked_as_in_process(tmp_path: Path) -> None:
    from eventstore.payloads import Payload, register_payloads

    class AheadProbe(Payload, tag="AheadProbeIssue11"):  # known to this process only, not to a fresh one
        n: int

    register_payloads(AheadProbe)
    log = tmp_path / "typed.jsonl"
    log.write_bytes(b"".join(
        ENCODE.encode({"stream": f"s-{n % 3}", "type": "AheadProbeIssue11", "occurred_at": n,
                       "data": {"n": n if n % 5 else "not a number"}}) + b"\n"
        for n in range(1, 201)
    ))
    here, here_report = replayed(log, False, tmp_path / "q1.jsonl")
    ahead, ahead_report = replayed(log, True, tmp_path / "q2.jsonl")
    assert here_report.rejected == 40  # type: ignore[attr-defined]
    assert ahead == here and ahead_report.rejected == 40  # type: ignore[attr-defined]
    assert (tmp_path / "q2.jsonl").read_bytes() == (tmp_path / "q1.jsonl").read_bytes()


def test_frames_are_small_and_each_rejection_stays_before_its_item(tmp_path: Path) -> None:
    """Pending events leave as frames of at most ``FRAME_ITEMS``; delivered, they are in the order they came."""
    from replay.log._parse import Tally
    from replay.log._reject import Quarantine, Rejection

    size = _ahead.FRAME_ITEMS["events"]
    collector = _ahead._Collector(tmp_path / "a.jsonl")
    order: list[object] = []
    for n in range(2 * size + 10):
        if n in (0, size - 1, size, 2 * size):  # at the start, either side of a frame's end, in the last frame
            rejection = Rejection(str(collector.source), n, "line", f"bad before item {n}", b"x")
            collector.reject(rejection)
            order.append(rejection.reason)
        event = RecordedEvent(uuid.UUID(int=n), "s", n, n + 1, n, n, "Tick", b"{}")
        collector.items.append(event)
        order.append(event)
    collector.reject(Rejection(str(collector.source), 9_999, "line", "bad after every item", b"y"))
    order.append("bad after every item")
    collector.present = 3
    data = collector.frames("events")
    assert not collector.pending()
    chunks = []
    while data:
        kind, length = _ahead.HEADER.unpack_from(data)
        assert kind == _ahead.CHUNK
        chunks.append(msgspec.msgpack.decode(data[_ahead.HEADER.size:_ahead.HEADER.size + length], type=_ahead.Chunk))
        data = data[_ahead.HEADER.size + length:]
    assert [len(c.events) for c in chunks] == [size, size, 10] and [c.present for c in chunks] == [3, 0, 0]
    seen: list[object] = []
    tally = Tally(collector.source, Quarantine(None), on_reject=lambda r: seen.append(r.reason))
    for chunk in chunks:
        for run in _ahead._deliver(chunk, tally, "events"):
            seen += run
    assert seen == order


def _write_frames(write_end: int, count: int, size: int) -> None:
    """``count`` chunk frames of ``size`` bytes, numbered in their first 4 bytes, then the pipe closed."""
    with os.fdopen(write_end, "wb") as pipe:
        for n in range(count):
            pipe.write(_ahead.HEADER.pack(_ahead.CHUNK, size) + n.to_bytes(4, "big") + bytes(size - 4))


def test_the_drain_takes_frames_off_the_pipe_while_the_caller_is_busy() -> None:
    """A worker can write far more than the pipe holds before the caller reads a frame; order is kept."""
    import threading

    count, size = 40, 100_000  # 4 MB: more than any pipe here holds (1 MiB at most, without CAP_SYS_RESOURCE)
    read_end, write_end = os.pipe()
    with os.fdopen(read_end, "rb") as pipe:
        drain = _ahead._Drain(pipe)
        writer = threading.Thread(target=_write_frames, args=(write_end, count, size))
        writer.start()
        writer.join(timeout=30)
        assert not writer.is_alive(), "the writer blocked: nothing took frames off the pipe"
        numbers = []
        while (item := drain.next()) is not None:
            kind, payload = item
            assert kind == _ahead.CHUNK and len(payload) == size
            numbers.append(int.from_bytes(payload[:4], "big"))
        assert numbers == list(range(count))  # then None: the pipe closed without an end frame
        drain.close()


def test_a_drain_whose_caller_stops_early_ends_its_thread() -> None:
    """The queue full (the caller took nothing), close() still ends the thread promptly."""
    count = _ahead.AHEAD_FRAMES + 10
    read_end, write_end = os.pipe()
    with os.fdopen(read_end, "rb") as pipe:
        drain = _ahead._Drain(pipe)
        _write_frames(write_end, count, 1_000)  # ~1 MB in all: fits in the pipe and the queue's overflow
        drain.close()
        assert not drain._thread.is_alive()

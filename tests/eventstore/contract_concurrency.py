"""Contract cases: many threads and tasks on one store object (thread safety)."""

from __future__ import annotations

import asyncio
import sys
import threading
import time
from collections import Counter

from eventstore import NO_STREAM, WrongExpectedVersion

from .helpers import Background, assert_log_shape, batch, ev, read_after, run_threads

THREADS = 8


class ConcurrencyCases:
    def test_many_threads_append_at_once_and_all_land_without_gaps(self, store, ns):
        base = store.last_position()
        start = threading.Barrier(THREADS, timeout=10)

        def appender(index: int) -> list:
            start.wait()
            done = []
            for i in range(30):
                own = batch(1 + i % 3, tag=f"t{index}")
                done.append((own, store.append(ns + f"own-{index}", own)))
                shared = [ev(data=b"%d/%d" % (index, i))]
                done.append((shared, store.append(ns + "shared", shared)))
            return done

        appended = [pair for results in run_threads(appender, THREADS) for pair in results]
        events = read_after(store, base)
        assert_log_shape(events)
        assert len(events) == sum(len(batch_) for batch_, _ in appended)
        by_position = {e.position: e for e in events}
        for new_events, result in appended:
            landed = [e for e in events if result.first_position <= e.position <= result.last_position]
            assert [e.id for e in landed] == [e.id for e in new_events]
            assert by_position[result.last_position].revision == result.next_revision - 1
        assert store.stream_revision(ns + "shared") == THREADS * 30 - 1

    def test_optimistic_appends_race_and_exactly_one_wins_each_revision(self, store, ns):
        stream = ns + "race"
        start = threading.Barrier(4, timeout=10)

        def contender(index: int) -> int:
            start.wait()
            losses = 0
            for i in range(25):
                while True:
                    current = store.stream_revision(stream)
                    expected = NO_STREAM if current is None else current
                    try:
                        store.append(stream, [ev(data=b"%d/%d" % (index, i))], expected=expected)
                        break
                    except WrongExpectedVersion as e:
                        assert e.actual is not None and e.actual != current
                        losses += 1
            return losses

        run_threads(contender, 4)
        events = list(store.read_stream(stream))
        assert [e.revision for e in events] == list(range(100))
        per_writer = Counter(e.data.split(b"/")[0] for e in events)
        assert per_writer == {b"0": 25, b"1": 25, b"2": 25, b"3": 25}

    def test_readers_never_see_part_of_a_batch(self, store, ns):
        # A tiny switch interval makes threads interleave inside an append; a
        # store that publishes a batch event by event gets caught within a few
        # hundred batches (memory:// did, before read_all took its end under the lock).
        size, batches, budget = 50, 2000, 1.0
        base = store.last_position()
        done = threading.Event()

        def reader() -> list[int]:
            torn, seen = [], base
            while not done.is_set():
                events = list(store.read_all(from_position=seen + 1))
                seen = events[-1].position if events else seen
                if len(events) % size:
                    torn.append(len(events))
            return torn

        old = sys.getswitchinterval()
        sys.setswitchinterval(1e-6)
        try:
            thread = Background(reader)
            started = time.monotonic()
            for _ in range(batches):
                store.append(ns + "torn", batch(size))
                if time.monotonic() - started > budget:
                    break
            done.set()
            torn = thread.join()
        finally:
            sys.setswitchinterval(old)
        assert torn == [], f"read_all returned part of a batch {len(torn)} times: {torn[:5]}"

    def test_append_async_from_many_tasks(self, store, ns):
        base = store.last_position()

        async def main() -> list:
            calls = [store.append_async(ns + f"task-{i % 5}", batch(2, tag=f"k{i}")) for i in range(50)]
            return await asyncio.wait_for(asyncio.gather(*calls), 30)

        results = asyncio.run(main())
        positions = [p for r in results for p in (r.first_position, r.last_position)]
        assert len(set(positions)) == 100
        events = read_after(store, base)
        assert len(events) == 100
        assert_log_shape(events)
        assert {store.stream_revision(ns + f"task-{i}") for i in range(5)} == {19}

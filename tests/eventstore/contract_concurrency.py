"""Contract cases: many threads and tasks on one store object (thread safety)."""

from __future__ import annotations

import asyncio
import sys
import threading
import time
from collections import Counter

import pytest

from eventstore import ANY, NO_STREAM, DuplicateIdConflict, NewEvent, WrongExpectedVersion

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

    def test_the_same_batch_sent_by_many_threads_at_once_lands_once(self, store, ns):
        base = store.last_position()
        events = batch(3)
        start = threading.Barrier(THREADS, timeout=10)

        def send(_: int):
            start.wait()
            return store.append(ns + "same", [NewEvent(e.type, e.data, id=e.id) for e in events])

        results = run_threads(send, THREADS)
        assert len(set(results)) == 1, f"one batch, different results: {set(results)}"
        assert [e.id for e in read_after(store, base)] == [e.id for e in events]

    def test_racing_batches_that_share_an_id_one_wins_the_rest_conflict(self, store, ns):
        if not store.capabilities.global_unique_ids:
            pytest.skip("the store declares global_unique_ids=False: ids are checked within a stream only")
        base = store.last_position()
        shared = ev(data=b"shared")
        start = threading.Barrier(THREADS, timeout=10)

        def send(index: int):
            start.wait()
            stream = ns + ("overlap" if index % 2 else f"overlap-{index}")
            try:
                return store.append(stream, [shared, ev(data=b"%d" % index)])
            except DuplicateIdConflict as conflict:
                return conflict

        outcomes = run_threads(send, THREADS)
        winners = [o for o in outcomes if not isinstance(o, DuplicateIdConflict)]
        assert len(winners) == 1, f"expected one winner, got {outcomes}"
        events = read_after(store, base)
        assert len(events) == 2 and events[0].id == shared.id
        assert (events[0].position, events[1].position) == (
            winners[0].first_position, winners[0].last_position)

    def test_a_bad_append_racing_good_ones_fails_alone(self, store, ns):
        store.append(ns + "mixed", batch(1))
        base = store.last_position()
        start = threading.Barrier(THREADS, timeout=10)

        def send(index: int):
            start.wait()
            expected = NO_STREAM if index % 2 else ANY  # NO_STREAM is wrong: the stream exists
            try:
                return store.append(ns + "mixed", [ev(data=b"%d" % index)], expected=expected)
            except WrongExpectedVersion as wrong:
                return wrong

        outcomes = run_threads(send, THREADS)
        failed = [i for i, o in enumerate(outcomes) if isinstance(o, WrongExpectedVersion)]
        assert failed == list(range(1, THREADS, 2))
        landed = sorted(e.data for e in read_after(store, base))
        assert landed == sorted(b"%d" % i for i in range(0, THREADS, 2))

"""Contract cases: catch-up-then-live subscriptions, checkpoints and wake-ups."""

from __future__ import annotations

import asyncio
import threading
import time

from eventstore import ReadFilter

from .helpers import Background, batch, ev

DEADLINE = 10.0  # seconds; generous, only reached when something is broken


def take(sub, count: int, deadline: float = DEADLINE, on_each=None) -> list:
    """The next ``count`` events of ``sub``, failing if they do not all arrive in time."""
    got = []
    end = time.monotonic() + deadline
    while len(got) < count:
        remaining = end - time.monotonic()
        event = sub.next_within(remaining) if remaining > 0 else None
        assert event is not None, f"only {len(got)} of {count} events within {deadline} s"
        got.append(event)
        if on_each is not None:
            on_each(got)
    return got


class SubscriptionCases:
    def test_subscribe_catches_up_then_follows_appends_from_another_thread(self, store, ns):
        base = store.last_position()
        store.append(ns + "sub", batch(3, tag="old"))
        caught_up = threading.Event()

        def writer() -> None:
            assert caught_up.wait(DEADLINE), "the subscriber never caught up"
            for i in range(3):
                store.append(ns + "sub", [ev(data=b'{"new":%d}' % i)])

        sub = store.subscribe(from_position=base)
        thread = Background(writer)
        got = take(sub, 6, on_each=lambda got: len(got) == 3 and caught_up.set())
        thread.join(DEADLINE)
        assert [e.data for e in got] == [
            b'{"old":0}', b'{"old":1}', b'{"old":2}', b'{"new":0}', b'{"new":1}', b'{"new":2}']
        assert [e.revision for e in got] == list(range(6))
        assert sub.position == got[-1].position == store.last_position()

    def test_subscribe_without_a_checkpoint_starts_at_the_beginning(self, store, backend, ns):
        store.append(ns + "start", batch(2))
        got = take(store.subscribe(), 2 if backend.fresh else 1)
        if backend.fresh:
            assert [e.data for e in got] == [b'{"e":0}', b'{"e":1}']
        assert got[0].position == min(e.position for e in store.read_all(limit=1))

    def test_a_new_subscription_resumes_after_the_saved_checkpoint(self, store, ns):
        base = store.last_position()
        store.append(ns + "resume", batch(5))
        first = store.subscribe(from_position=base)
        before = take(first, 2)
        checkpoint = first.position
        first.stop()
        second = store.subscribe(from_position=checkpoint)
        after = take(second, 3)
        assert [e.revision for e in before + after] == [0, 1, 2, 3, 4]
        assert second.next_within(0.05) is None  # nothing beyond the log

    def test_a_filtered_subscription_skips_what_does_not_match(self, store, ns):
        base = store.last_position()
        store.append(ns + "keep-1", [ev("Wanted", b"1")])
        store.append(ns + "drop-1", [ev("Wanted", b"x")])
        store.append(ns + "keep-1", [ev("Other", b"x")])
        sub = store.subscribe(base, ReadFilter(stream_prefixes=(ns + "keep",), types=("Wanted",)))
        [first] = take(sub, 1)
        for i in range(30):  # plenty of non-matching events while the subscription is live
            store.append(ns + f"drop-{i}", [ev("Wanted", b"x")])
        store.append(ns + "keep-2", [ev("Wanted", b"2")])
        [second] = take(sub, 1)
        assert (first.data, second.data) == (b"1", b"2")
        assert second.stream == ns + "keep-2" and sub.position == second.position

    def test_stop_ends_a_for_loop_waiting_for_events(self, store, ns):
        base = store.last_position()
        store.append(ns + "stop", batch(2))
        sub = store.subscribe(from_position=base)
        seen: list = []
        both_seen = threading.Event()

        def consume() -> None:
            for event in sub:
                seen.append(event)
                if len(seen) == 2:
                    both_seen.set()

        thread = Background(consume)
        assert both_seen.wait(DEADLINE)
        sub.stop()
        thread.join(DEADLINE)  # fails if the for loop did not end after stop()
        assert len(seen) == 2

    def test_async_iteration_follows_appends_from_tasks(self, store, ns):
        base = store.last_position()

        async def main() -> list:
            sub = store.subscribe(from_position=base)
            producer = asyncio.create_task(produce())
            got = []

            async def consume() -> None:
                async for event in sub:
                    got.append(event)
                    if len(got) == 5:
                        break

            await asyncio.wait_for(consume(), DEADLINE)
            await producer
            return got

        async def produce() -> None:
            for i in range(5):
                await store.append_async(ns + "async", [ev(data=b"%d" % i)])

        got = asyncio.run(main())
        assert [e.data for e in got] == [b"0", b"1", b"2", b"3", b"4"]

    def test_wait_for_append_returns_at_once_when_events_are_there(self, store, ns):
        store.append(ns + "w", batch(1))
        started = time.monotonic()
        assert store.wait_for_append(store.last_position() - 1, 30.0) is True
        assert time.monotonic() - started < DEADLINE

    def test_wait_for_append_is_woken_by_an_append(self, store, ns):
        store.append(ns + "w", batch(1))
        last = store.last_position()
        waiting = threading.Event()

        def waiter() -> tuple[bool, float]:
            waiting.set()
            started = time.monotonic()
            return store.wait_for_append(last, 30.0), time.monotonic() - started

        thread = Background(waiter)
        assert waiting.wait(DEADLINE)
        store.append(ns + "w", batch(1))
        woken, waited = thread.join(DEADLINE)
        assert woken is True and waited < DEADLINE

    def test_wait_for_append_gives_up_after_its_timeout(self, store, ns):
        store.append(ns + "w", batch(1))
        started = time.monotonic()
        store.wait_for_append(store.last_position(), 0.05)
        assert time.monotonic() - started < DEADLINE

    def test_catch_up_runs_across_many_pages_in_order(self, store, ns):
        base = store.last_position()
        for part in range(3):
            store.append(ns + "pages", batch(900, tag=f"p{part}"))
        got = take(store.subscribe(from_position=base), 2700)
        assert [e.revision for e in got] == list(range(2700))
        assert [e.position for e in got] == sorted({e.position for e in got})

    def test_a_filtered_subscription_finds_a_match_behind_pages_of_others(self, store, ns):
        base = store.last_position()
        for part in range(3):
            store.append(ns + "noise", batch(900, tag=f"n{part}"))
        store.append(ns + "signal", [ev("Signal", b"here")])
        sub = store.subscribe(base, ReadFilter(stream_prefixes=(ns + "signal",)))
        [found] = take(sub, 1)
        assert (found.type, found.data) == ("Signal", b"here")
        assert sub.next_within(0.05) is None

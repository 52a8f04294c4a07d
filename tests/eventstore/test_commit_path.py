"""Where commits happen: inline for a lone appender, grouped for concurrent ones, never on the event loop.

The store calls its clock once per committed transaction, on the committing
thread, so a recording clock shows how many commits there were and where.
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

from eventstore import NewEvent, open_store


class CommitLog:
    """A store clock that records which thread asked for the time of each commit."""

    def __init__(self) -> None:
        self.threads: list[str] = []
        self.lock = threading.Lock()

    def __call__(self) -> int:
        with self.lock:
            self.threads.append(threading.current_thread().name)
            return len(self.threads)


def test_a_lone_appender_commits_once_per_append_on_its_own_thread(tmp_path: Path) -> None:
    log = CommitLog()
    with open_store(f"embedded://{tmp_path / 'events.db'}", clock=log) as store:
        for i in range(20):
            store.append("pump-1", [NewEvent("Dose", bytes([i]))])
    assert log.threads == [threading.current_thread().name] * 20


def test_concurrent_appenders_share_commits(tmp_path: Path) -> None:
    log = CommitLog()
    threads, per_thread = 8, 50
    start = threading.Barrier(threads)
    with open_store(f"embedded://{tmp_path / 'events.db'}", clock=log) as store:
        def append_many(n: int) -> None:
            start.wait(timeout=30)
            for i in range(per_thread):
                store.append(f"pump-{n}", [NewEvent("Dose", bytes([i]))])

        workers = [threading.Thread(target=append_many, args=(n,)) for n in range(threads)]
        for w in workers:
            w.start()
        for w in workers:
            w.join(timeout=60)
        assert store.last_position() == threads * per_thread
    assert len(log.threads) < threads * per_thread, "no two appends ever shared a commit"


def test_append_async_never_commits_on_the_event_loop_thread(tmp_path: Path) -> None:
    log = CommitLog()

    async def main() -> str:
        with open_store(f"embedded://{tmp_path / 'events.db'}", clock=log) as store:
            for i in range(5):
                await store.append_async("pump-1", [NewEvent("Dose", bytes([i]))])
            await asyncio.gather(*(store.append_async(f"p{i}", [NewEvent("Dose", b"x")]) for i in range(20)))
        return threading.current_thread().name

    loop_thread = asyncio.run(main())
    assert log.threads and loop_thread not in log.threads


def test_an_append_cancelled_while_queued_is_not_written_and_commits_go_on(tmp_path: Path) -> None:
    """A task cancelled while its append waits in the queue: nothing of it is stored, and the
    committer thread lives on to commit the next append (it used to die setting a result on
    the cancelled future, and every later append hung)."""
    inside_first_commit, release = threading.Event(), threading.Event()
    calls: list[int] = []

    def clock() -> int:  # holds the committer inside the first transaction until released
        calls.append(1)
        if len(calls) == 1:
            inside_first_commit.set()
            release.wait(30)
        return len(calls)

    async def main() -> list[str]:
        with open_store(f"embedded://{tmp_path / 'events.db'}", clock=clock) as store:
            first = asyncio.ensure_future(store.append_async("held", [NewEvent("Dose", b"0")]))
            assert await asyncio.to_thread(inside_first_commit.wait, 30)
            queued = [asyncio.ensure_future(store.append_async(f"cancelled-{i}", [NewEvent("Dose", b"x")]))
                      for i in range(5)]
            await asyncio.sleep(0)  # each task submits its request, then waits on it
            await asyncio.sleep(0)
            for task in queued:
                task.cancel()
            outcomes = await asyncio.gather(*queued, return_exceptions=True)
            assert all(isinstance(o, asyncio.CancelledError) for o in outcomes)
            release.set()
            await first
            await asyncio.wait_for(store.append_async("after", [NewEvent("Dose", b"1")]), 30)
            return [event.stream for event in store.read_all()]

    assert asyncio.run(main()) == ["held", "after"]

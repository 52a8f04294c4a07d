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

"""The PostgreSQL backend under kills: of the server (a throwaway cluster of our own) and of clients.

Appending processes (postgres_child.py) print each acknowledged batch. After
the kills, every acknowledged event must be stored exactly once, every batch
whole or absent, each stream's revisions gapless, positions strictly
increasing, and the store usable. Clients must get ``StoreUnavailable`` while
the server is down. The system PostgreSQL service is never touched: the
server that is killed is one these tests create with initdb and pg_ctl.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path

import pytest

from eventstore import NewEvent, StoreUnavailable, open_store
from eventstore.postgres import new_schema_name

from .helpers import assert_log_shape
from .postgres_cluster import Cluster, need_postgres_bin

CHILD = Path(__file__).with_name("postgres_child.py")
DEADLINE = 120.0
pytestmark = [pytest.mark.slow, pytest.mark.service]


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    """A PostgreSQL server of this test's own, removed afterwards."""
    own = Cluster(need_postgres_bin())
    try:
        own.start()
        yield own
    finally:
        own.remove()


class Writers:
    """Appending child processes and what they acknowledged, read from their output as it comes."""

    def __init__(self, uri: str, count: int, batches: int) -> None:
        self.acks: list[tuple[str, int, int, list[str]]] = []
        self.outages = 0
        self.changed = threading.Condition()
        self.procs = [
            subprocess.Popen([sys.executable, str(CHILD), uri, f"w{i}", str(batches), str(i)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for i in range(count)
        ]
        self.readers = [threading.Thread(target=self._read, args=(p,), daemon=True) for p in self.procs]
        for reader in self.readers:
            reader.start()

    def _read(self, proc: subprocess.Popen) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            kind, *rest = line.split()
            with self.changed:
                if kind == "ack":
                    stream, first, last, ids = rest
                    self.acks.append((stream, int(first), int(last), ids.split(",")))
                elif kind == "unavailable":
                    self.outages += 1
                self.changed.notify_all()

    def wait_for(self, what, timeout: float = DEADLINE) -> None:
        with self.changed:
            assert self.changed.wait_for(what, timeout), f"not reached in {timeout} s: {self.describe()}"

    def describe(self) -> str:
        return f"{len(self.acks)} acks, {self.outages} outages, exits {[p.poll() for p in self.procs]}"

    def finish(self) -> None:
        """Wait for every child to exit on its own; each must succeed."""
        for proc in self.procs:
            proc.wait(DEADLINE)
            assert proc.returncode == 0, f"writer failed: {proc.stderr.read()[-3000:]}"  # type: ignore[union-attr]
        for reader in self.readers:
            reader.join(DEADLINE)

    def kill(self, indexes: list[int]) -> None:
        for index in indexes:
            os.kill(self.procs[index].pid, signal.SIGKILL)
            self.procs[index].wait(DEADLINE)

    def stop_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait(DEADLINE)
        for reader in self.readers:
            reader.join(DEADLINE)
        for proc in self.procs:
            proc.stdout.close()  # type: ignore[union-attr]
            proc.stderr.close()  # type: ignore[union-attr]


def check_store(uri: str, acks: list) -> None:
    """Every acknowledged event there once, every batch whole, revisions gapless, store usable."""
    with open_store(uri) as store:
        events = list(store.read_all())
        assert store.check_integrity() == []
        assert_log_shape(events)
        ids = Counter(str(e.id) for e in events)
        assert max(ids.values()) == 1, "an event id is stored twice"
        at = {e.position: e for e in events}
        for stream, first, last, acked in acks:
            missing = [i for i in acked if i not in ids]
            assert not missing, f"acknowledged events lost from {stream}: {missing[:3]}"
            landed = [at[p] for p in range(first, last + 1)]  # the acknowledgement told the truth
            assert [str(e.id) for e in landed] == acked and {e.stream for e in landed} == {stream}
        batches: dict[tuple, list] = defaultdict(list)
        for event in events:
            body = json.loads(event.data)
            batches[(body["w"], body["b"])].append((event.stream, body["k"], body["n"]))
        for key, parts in batches.items():
            size = parts[0][2]
            assert sorted(k for _, k, _ in parts) == list(range(size)), f"batch {key} stored in part: {parts}"
            assert len({s for s, _, _ in parts}) == 1
        after = store.append("after-the-kill", [NewEvent("T", b"{}")])
        assert after.first_position == events[-1].position + 1


def test_server_sigkill_mid_load_loses_no_acknowledged_append(cluster: Cluster) -> None:
    uri = f"{cluster.uri}?schema={new_schema_name()}"
    open_store(uri).close()  # the schema exists before the writers race to create it
    writers = Writers(uri, count=4, batches=80)
    try:
        writers.wait_for(lambda: len(writers.acks) >= 40)
        cluster.kill()
        with pytest.raises(StoreUnavailable, match="unavailable"):
            open_store(uri)
        writers.wait_for(lambda: writers.outages >= 1)  # the writers see the outage too
        cluster.start()
        writers.finish()
    finally:
        writers.stop_all()
    assert len(writers.acks) == 4 * 80
    check_store(uri, writers.acks)


def test_server_killed_twice_and_a_store_object_reconnects_each_time(cluster: Cluster) -> None:
    uri = f"{cluster.uri}?schema={new_schema_name()}"
    with open_store(uri) as store:
        store.append("s", [NewEvent("T", b"0")])
        for round_ in range(2):
            cluster.kill()
            with pytest.raises(StoreUnavailable):
                store.append("s", [NewEvent("T", b"x")])
            with pytest.raises(StoreUnavailable):
                store.last_position()
            with pytest.raises(StoreUnavailable):  # a waiting subscriber hears of the outage
                store.wait_for_append(10**9, 0.05)
            cluster.start()
            store.append("s", [NewEvent("T", b"%d" % (round_ + 1))])
        assert [e.data for e in store.read_stream("s")] == [b"0", b"1", b"2"]
        assert [e.revision for e in store.read_stream("s")] == [0, 1, 2]


def test_clients_sigkilled_mid_append_leave_no_half_batch_and_no_lock(cluster: Cluster) -> None:
    uri = f"{cluster.uri}?schema={new_schema_name()}"
    open_store(uri).close()
    writers = Writers(uri, count=4, batches=0)
    try:
        writers.wait_for(lambda: len(writers.acks) >= 60)
        writers.kill([0, 1])
        seen = len(writers.acks)
        # The survivors go on: a killed client's transaction (and its head lock) died with it.
        writers.wait_for(lambda: len(writers.acks) >= seen + 40)
        writers.kill([2, 3])
    finally:
        writers.stop_all()
    check_store(uri, writers.acks)


def test_a_subscriber_sees_every_event_of_concurrent_processes_exactly_once_in_order() -> None:
    """Positions are commit-ordered: a subscription never passes a position that commits later."""
    from .backends import postgres_backend

    backend = postgres_backend()
    try:
        with backend.open() as store:
            sub = store.subscribe()
            got: list = []
            stop = threading.Event()

            def follow() -> None:
                while not stop.is_set():
                    event = sub.next_within(0.1)
                    if event is not None:
                        got.append(event)

            follower = threading.Thread(target=follow, daemon=True)
            follower.start()
            writers = Writers(backend.uri, count=6, batches=60)
            try:
                writers.finish()
            finally:
                writers.stop_all()
            stored = list(store.read_all())
            deadline = time.monotonic() + DEADLINE
            while len(got) < len(stored) and time.monotonic() < deadline:
                follower.join(0.05)
            stop.set()
            follower.join(DEADLINE)
        assert len(stored) == sum(len(ids) for *_, ids in writers.acks)
        assert [e.id for e in got] == [e.id for e in stored], "the subscriber missed or repeated events"
        assert_log_shape(got)
    finally:
        assert backend.cleanup is not None
        backend.cleanup()

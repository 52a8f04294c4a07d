"""Crash test of the embedded store: SIGKILL a process mid-append, many times over.

A child process (crash_child.py; three at once on one file in the second
test) appends from several threads and reports every acknowledged append on
its stdout pipe. The parent kills it with SIGKILL at seeded moments (after a seeded number of acknowledgements), then
opens the store and checks that every acknowledged event is there exactly
once, where the acknowledgement said, with gapless revisions, strictly
increasing positions and valid checksums. Set UNBROKEN_CRASH_SEED to
reproduce or vary a run; the seed is printed and named in every failure.
"""

from __future__ import annotations

import json
import os
import queue
import random
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest

from eventstore import open_store

from .backends import backend_for
from .helpers import assert_log_shape

CHILD = Path(__file__).with_name("crash_child.py")
KILLS = 25
THREADS = 4
DEADLINE = 30.0  # seconds for the child to start or to acknowledge; only reached when broken
DEFAULT_SEED = 20260101


def _lines(pipe, into: queue.Queue) -> None:
    for line in pipe:
        into.put(line)
    into.put(None)  # end of file: the child is gone


class Child:
    """One appending child process and the acknowledgements read from its pipe."""

    def __init__(self, db: Path, seed: int, log: Path) -> None:
        with log.open("ab") as errors:
            self.process = subprocess.Popen(
                [sys.executable, str(CHILD), str(db), str(THREADS), str(seed)],
                stdout=subprocess.PIPE, stderr=errors)
        self.log = log
        self.acknowledged: list[dict] = []
        self._lines: queue.Queue = queue.Queue()
        self._reader = threading.Thread(
            target=_lines, args=(self.process.stdout, self._lines), daemon=True)
        self._reader.start()
        self._deadline = time.monotonic() + DEADLINE

    def _next(self, what: str) -> bytes | None:
        remaining = self._deadline - time.monotonic()
        try:
            if remaining > 0:
                return self._lines.get(timeout=remaining)
        except queue.Empty:
            pass
        pytest.fail(f"child gave no {what} within {DEADLINE} s; see {self.log}")

    def wait_until_appending(self) -> None:
        first = self._next("'appending' line")
        assert first == b"appending\n", f"child failed to start: {first!r}; see {self.log}"

    def wait_for_acks(self, count: int) -> None:
        while len(self.acknowledged) < count:
            line = self._next(f"acknowledgement {len(self.acknowledged) + 1}")
            assert line is not None, f"child died on its own; see {self.log}"
            self.acknowledged.append(json.loads(line))

    def kill(self) -> list[dict]:
        """SIGKILL; return every acknowledgement, including those still in the pipe."""
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(DEADLINE)
        self._reader.join(DEADLINE)
        self.process.stdout.close()
        while (line := self._lines.get_nowait()) is not None:
            self.acknowledged.append(json.loads(line))
        return self.acknowledged


def run_children_until_killed(db: Path, seeds: list[int], acks: int, log: Path) -> list[dict]:
    """Start children on one file, SIGKILL them once each has ``acks`` acknowledgements."""
    children = [Child(db, seed, log) for seed in seeds]
    try:
        for child in children:
            child.wait_until_appending()
        for child in children:
            child.wait_for_acks(acks)
    finally:
        acknowledged = [ack for child in children for ack in child.kill()]
    return acknowledged


def check_store(db: Path, acknowledged: list[dict], where: str) -> int:
    """Every acknowledged event once, where it was acknowledged; returns the event count."""
    with open_store(f"embedded://{db}") as store:
        events = list(store.read_all())  # verifies every checksum on the way
        assert store.last_position() == (events[-1].position if events else 0), where
    assert_log_shape(events)
    ids = [e.id for e in events]
    assert len(ids) == len(set(ids)), f"{where}: an event id is stored twice"
    by_id = {e.id: e for e in events}
    for ack in acknowledged:
        assert "error" not in ack, f"{where}: {ack['error']}"
        got = [by_id.get(uuid.UUID(i)) for i in ack["ids"]]
        missing = [i for i, e in zip(ack["ids"], got, strict=True) if e is None]
        assert not missing, f"{where}: acknowledged events lost: {missing} of {ack}"
        assert {e.stream for e in got} == {ack["stream"]}, f"{where}: wrong stream for {ack}"
        assert (got[0].position, got[-1].position) == (ack["first"], ack["last"]), where
        revisions = [e.revision for e in got]
        assert revisions == list(range(ack["next"] - len(got), ack["next"])), where
    return len(events)


@pytest.mark.slow
def test_every_acknowledged_append_survives_sigkill(tmp_path: Path) -> None:
    backend_for("embedded", tmp_path)  # skips until the embedded backend exists
    seed = int(os.environ.get("UNBROKEN_CRASH_SEED", DEFAULT_SEED))
    print(f"crash test seed: {seed} (set UNBROKEN_CRASH_SEED to change it)")
    rng = random.Random(seed)
    db, log = tmp_path / "events.db", tmp_path / "child-stderr.log"
    acknowledged: list[dict] = []
    stored = 0
    for run in range(KILLS):
        acks = rng.choice([0, 1, 3, rng.randint(5, 60), rng.randint(60, 400)])
        where = f"seed {seed}, kill {run + 1} after {acks} acks"
        acknowledged += run_children_until_killed(db, [seed * 100 + run], acks, log)
        count = check_store(db, acknowledged, where)
        assert count >= stored, f"{where}: the store shrank from {stored} to {count} events"
        stored = count
    assert len(acknowledged) > KILLS, f"seed {seed}: too few appends acknowledged to mean anything"
    assert "Traceback" not in log.read_text(), f"seed {seed}: a child thread failed:\n{log.read_text()}"
    assert_verify_ok(db, f"seed {seed}")


@pytest.mark.slow
def test_processes_appending_to_one_file_at_once_lose_nothing(tmp_path: Path) -> None:
    backend_for("embedded", tmp_path)
    seed = int(os.environ.get("UNBROKEN_CRASH_SEED", DEFAULT_SEED))
    print(f"multi-process crash test seed: {seed}")
    rng = random.Random(seed)
    db, log = tmp_path / "events.db", tmp_path / "child-stderr.log"
    acknowledged: list[dict] = []
    for run in range(3):
        acks = rng.randint(20, 150)
        where = f"seed {seed}, round {run + 1}: 3 processes killed after {acks} acks each"
        seeds = [seed * 100 + run * 10 + k for k in range(3)]
        acknowledged += run_children_until_killed(db, seeds, acks, log)
        check_store(db, acknowledged, where)
    assert "Traceback" not in log.read_text(), f"seed {seed}: a child thread failed:\n{log.read_text()}"
    assert_verify_ok(db, f"seed {seed}")


def assert_verify_ok(db: Path, where: str) -> None:
    """``unbroken store verify`` finds nothing wrong with the file."""
    verify = subprocess.run(
        [sys.executable, "-m", "eventstore.cli", "store", "verify", str(db)],
        capture_output=True, text=True, timeout=DEADLINE)
    assert verify.returncode == 0, f"{where}: store verify says {verify.stdout}{verify.stderr}"

"""Crash test of the embedded store: SIGKILL a process mid-append, many times over.

A child process (crash_child.py) appends from several threads and reports
every acknowledged append on its stdout pipe. The parent kills it with
SIGKILL at seeded moments (after a seeded number of acknowledgements), then
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


def _next_line(lines: queue.Queue, deadline: float, what: str) -> bytes | None:
    remaining = deadline - time.monotonic()
    assert remaining > 0, f"child gave no {what} within {DEADLINE} s"
    try:
        return lines.get(timeout=remaining)
    except queue.Empty:
        pytest.fail(f"child gave no {what} within {DEADLINE} s")


def run_child_until_killed(db: Path, child_seed: int, acks: int, log: Path) -> list[dict]:
    """Start a child, SIGKILL it after ``acks`` acknowledgements, return every acknowledgement."""
    with log.open("ab") as errors:
        child = subprocess.Popen(
            [sys.executable, str(CHILD), str(db), str(THREADS), str(child_seed)],
            stdout=subprocess.PIPE, stderr=errors)
    lines: queue.Queue = queue.Queue()
    reader = threading.Thread(target=_lines, args=(child.stdout, lines), daemon=True)
    reader.start()
    acknowledged: list[dict] = []
    try:
        deadline = time.monotonic() + DEADLINE
        first = _next_line(lines, deadline, "'appending' line")
        assert first == b"appending\n", f"child failed to start: {first!r}; see {log}"
        while len(acknowledged) < acks:
            line = _next_line(lines, deadline, f"acknowledgement {len(acknowledged) + 1}")
            assert line is not None, f"child died on its own; see {log}"
            acknowledged.append(json.loads(line))
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(DEADLINE)
        reader.join(DEADLINE)
        child.stdout.close()
    # Acknowledgements already in the pipe when the kill landed count too.
    while (line := lines.get_nowait()) is not None:
        acknowledged.append(json.loads(line))
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
        acknowledged += run_child_until_killed(db, seed * 100 + run, acks, log)
        count = check_store(db, acknowledged, where)
        assert count >= stored, f"{where}: the store shrank from {stored} to {count} events"
        stored = count
    assert len(acknowledged) > KILLS, f"seed {seed}: too few appends acknowledged to mean anything"
    assert "Traceback" not in log.read_text(), f"seed {seed}: a child thread failed:\n{log.read_text()}"
    verify = subprocess.run(
        [sys.executable, "-m", "eventstore._cli_main", "store", "verify", str(db)],
        capture_output=True, text=True, timeout=DEADLINE)
    assert verify.returncode == 0, f"seed {seed}: store verify says {verify.stdout}{verify.stderr}"

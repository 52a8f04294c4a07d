"""The embedded store in a child process under ENOSPC, EIO and a failed fsync, injected at the
syscall level into SQLite's own writes: appends fail with a clear StoreError, no acknowledged
event is lost, and appends succeed again once the fault is lifted through the control file."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import native
from eventstore import open_store

CHILD = Path(__file__).with_name("store_child.py")
FAULTS = [
    ("enospc", "StoreFull", "disk or size limit full; the append was rolled back", "enospc"),
    ("eio", "StoreIOError", "I/O error; the append was rolled back", "eio"),
    ("fsync", "StoreIOError", "I/O error; the append was rolled back", "fsync"),
]


@pytest.mark.parametrize(("action", "error", "words", "logged"), FAULTS, ids=[f[0] for f in FAULTS])
def test_store_appends_fail_clearly_lose_nothing_and_recover(library, tmp_path, action, error, words, logged):
    db = tmp_path / "events.db"
    acked: list[int] = []
    with native.faults([], control=True, poll_ms=0, log=tmp_path / "faults.jsonl") as env:
        proc = subprocess.Popen([sys.executable, str(CHILD), str(db)], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, text=True, env=env)

        def append(first: int, count: int = 4) -> dict:
            proc.stdin.write(json.dumps({"op": "append", "first": first, "count": count}) + "\n")
            proc.stdin.flush()
            answer = json.loads(proc.stdout.readline())
            if answer["ok"]:
                acked.extend(range(first, first + count))
            return answer

        try:
            assert append(0)["ok"] and append(4)["ok"]
            env.set_rules(f"{action} path={tmp_path}/events.db*")
            failed = [append(8), append(12)]
            env.set_rules([])
            after = [append(16), append(8), append(12)]  # new events, then the failed ones retried
        finally:
            proc.stdin.close()
            proc.wait(30)
            proc.stdout.close()
    for answer in failed:
        assert answer == {**answer, "ok": False, "error": error, "store_error": True}
        assert words in answer["message"] and str(db) in answer["message"]
    assert all(a["ok"] for a in after)
    injected = env.injected()
    assert injected and {r["action"] for r in injected} == {logged}
    assert all(r["target"].startswith(str(db)) for r in injected)
    with open_store(str(db)) as store:
        stored = [json.loads(e.data)["n"] for e in store.read_all()]
    assert sorted(stored) == sorted(acked) == list(range(20))  # nothing acknowledged lost, none twice

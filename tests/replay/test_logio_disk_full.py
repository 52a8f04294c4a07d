"""An import that runs out of disk can be run again and ends with every good line exactly once.

A real full disk: a 1 MB tmpfs mounted for the test (needs root and mount
rights; skipped with the reason otherwise). The store fills it mid-import;
``unbroken import`` exits 3 having written whole batches only; the disk is
then grown (remount) and the same command finishes the job. The result is
compared with a clean import of the same log elsewhere.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest

from eventstore import open_store
from replay import import_log

pytestmark = pytest.mark.case("EF-002")


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "disk"
    mount.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)],
                          capture_output=True, text=True)
    if made.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {made.stderr.strip() or made.returncode}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def shape(uri: str) -> list[tuple]:
    with open_store(uri, read_only=True) as store:
        return [(e.id, e.stream, e.revision, e.position, e.recorded_at, e.data) for e in store.read_all()]


def unbroken(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "eventstore.cli", *args], capture_output=True, text=True)


def test_EF_002_an_import_that_fills_the_disk_can_be_rerun_once_there_is_room(tmp_path: Path, small_disk: Path) -> None:
    log = tmp_path / "log.jsonl"
    lines = [msgspec.json.encode({"stream": f"s{i % 7}", "type": "T", "occurred_at": 1_000 + i,
                                  "data": {"i": i, "pad": "x" * 200}}) for i in range(12_000)]
    lines[5_000] = b"{not json"
    log.write_bytes(b"\n".join(lines) + b"\n")
    db, quarantine = small_disk / "events.db", tmp_path / "q.jsonl"

    full = unbroken("import", str(log), "--store", str(db), "--quarantine", str(quarantine), "--batch", "500")
    assert full.returncode == 3, full.stderr
    assert "full" in full.stderr.lower()
    stored = shape(f"embedded://{db}")
    whole_batches = {min(k * 500, 5_000) + max(k * 500 - 5_001, 0) for k in range(1, 24)}  # line 5,001 is bad
    assert len(stored) in whole_batches, f"{len(stored)} events: not a whole number of batches"
    assert [e[4] for e in stored] == sorted(e[4] for e in stored)

    subprocess.run(["mount", "-o", "remount,size=64m", str(small_disk)], check=True)
    again = unbroken("import", str(log), "--store", str(db), "--quarantine", str(quarantine), "--batch", "500")
    assert again.returncode == 1, again.stderr  # the one bad line is still reported
    assert f"{len(stored)} already present" in again.stdout

    with open_store(f"embedded://{tmp_path / 'clean.db'}") as store:
        import_log(log, store, quarantine=tmp_path / "clean.q.jsonl", batch=500)
    assert shape(f"embedded://{db}") == shape(f"embedded://{tmp_path / 'clean.db'}")
    assert [msgspec.json.decode(q)["line"] for q in quarantine.read_bytes().splitlines()] == [5_001]

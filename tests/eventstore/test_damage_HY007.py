"""HY-007: a damaged store file opens with every acknowledged event, or refuses and can be salvaged."""

from __future__ import annotations

import os
import random
import shutil
import sqlite3
from pathlib import Path

import pytest

from eventstore import (
    CorruptEvent,
    NewEvent,
    StoreDamaged,
    StoreFull,
    open_store,
)
from eventstore._damage import salvage, verify
from eventstore.cli import main as unbroken

pytestmark = pytest.mark.case("HY-007")
EVENTS = 3000


def _filled_store(path: Path, count: int = EVENTS) -> list[tuple[str, int, bytes]]:
    """A closed store with ``count`` events over 30 streams; returns (stream, revision, data)."""
    rng = random.Random(7)
    written = []
    with open_store(f"embedded://{path}") as store:
        for start in range(0, count, 100):
            stream = f"meter-{start // 100 % 30}"
            batch = [NewEvent("Reading", rng.randbytes(150)) for _ in range(100)]
            result = store.append(stream, batch)
            first_revision = result.next_revision - len(batch)
            written += [(stream, first_revision + i, e.data) for i, e in enumerate(batch)]
    assert not Path(f"{path}-wal").exists(), "a clean close checkpoints the WAL away"
    return written


def _contents(path: Path) -> list[tuple[str, int, bytes]]:
    with open_store(f"embedded://{path}") as store:
        return [(e.stream, e.revision, e.data) for e in store.read_all()]


def test_HY_007_garbage_after_last_page_is_moved_aside_and_reported(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    written = _filled_store(path)
    size = path.stat().st_size
    garbage = random.Random(1).randbytes(777)
    with path.open("ab") as f:
        f.write(garbage)

    with open_store(f"embedded://{path}") as store:
        assert len(store.recovery) == 1 and "777 bytes" in store.recovery[0]
        assert [(e.stream, e.revision, e.data) for e in store.read_all()] == written
    assert Path(f"{path}.tail-{size}").read_bytes() == garbage
    assert path.stat().st_size == size


def test_HY_007_garbage_after_a_crash_in_the_wal_keeps_every_acknowledged_event(tmp_path: Path) -> None:
    live, crashed = tmp_path / "live.db", tmp_path / "crashed.db"
    store = open_store(f"embedded://{live}")
    acknowledged = [store.append("pump-1", [NewEvent("Dose", bytes([i]) * 50)]) for i in range(200)]
    # The files as they are on disk at this instant are what a crash leaves behind.
    for suffix in ("", "-wal"):
        shutil.copyfile(f"{live}{suffix}", f"{crashed}{suffix}")
    store.close()
    with open(f"{crashed}-wal", "ab") as wal:
        wal.write(random.Random(2).randbytes(5000))

    with open_store(f"embedded://{crashed}") as reopened:
        events = list(reopened.read_all())
    assert [e.position for e in events] == [r.last_position for r in acknowledged]
    assert [e.data for e in events] == [bytes([i]) * 50 for i in range(200)]


def test_HY_007_truncated_file_is_refused_and_salvage_recovers_the_readable_events(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "events.db"
    written = _filled_store(path)
    os.truncate(path, path.stat().st_size // 2)

    with pytest.raises(StoreDamaged, match="truncated.*unbroken store salvage"):
        open_store(f"embedded://{path}")
    assert unbroken(["store", "verify", str(path)]) == 1

    out = tmp_path / "salvaged.db"
    report = salvage(path, out)
    recovered = _contents(out)
    assert report.recovered == len(recovered) > 0
    assert set(recovered) <= set(written), "salvage never invents or alters an event"
    lost = {p for p in range(1, EVENTS + 1)} - {p for p in _positions(out)}
    reported = set(report.lost_positions + report.corrupt_positions)
    assert reported <= lost, "only positions that really were lost are reported lost"
    unreported = lost - reported
    if unreported:  # only past the last readable event, and then the report says so
        assert report.uncertain_after is not None and min(unreported) > report.uncertain_after
        assert any("may be lost" in note for note in report.notes)
    assert unbroken(["store", "salvage", str(path), "--out", str(tmp_path / "again.db")]) == 1
    assert "LOST" in capsys.readouterr().err


def test_HY_007_garbage_header_is_refused_and_salvage_rebuilds_it(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    written = _filled_store(path)
    with path.open("r+b") as f:
        f.write(random.Random(3).randbytes(100))

    with pytest.raises(StoreDamaged, match="header"):
        open_store(f"embedded://{path}")
    report = salvage(path, tmp_path / "salvaged.db")
    assert report.lost_positions == [] and report.corrupt_positions == []
    assert _contents(tmp_path / "salvaged.db") == written
    assert any("rebuilt the header" in note for note in report.notes)


def test_HY_007_flipped_byte_raises_corrupt_event_naming_the_position(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    written = _filled_store(path)
    target = 1234
    conn = sqlite3.connect(path)
    record = bytearray(conn.execute("SELECT record FROM events WHERE position = ?", (target,)).fetchone()[0])
    record[-10] ^= 0xFF
    conn.execute("UPDATE events SET record = ? WHERE position = ?", (bytes(record), target))
    conn.commit()
    conn.close()

    with open_store(f"embedded://{path}") as store:
        assert len(list(store.read_all(limit=target - 1))) == target - 1
        with pytest.raises(CorruptEvent) as caught:
            list(store.read_all())
        assert caught.value.position == target
    assert verify(path).corrupt_positions == [target]
    report = salvage(path, tmp_path / "salvaged.db")
    assert report.corrupt_positions == [target]
    assert _contents(tmp_path / "salvaged.db") == written[: target - 1] + written[target:]
    assert Path(f"{tmp_path / 'salvaged.db'}.corrupt.jsonl").read_text().count("\n") == 1


def test_HY_007_verify_passes_a_healthy_store(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    _filled_store(path, count=500)
    report = verify(path)
    assert report.ok and report.events == 500 and report.last_position == 500


def test_disk_full_rolls_back_and_leaves_the_store_usable(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    with open_store(f"embedded://{path}", max_bytes=256 * 1024) as store:
        store.append("s", [NewEvent("Small", b"x" * 100) for _ in range(10)])
        with pytest.raises(StoreFull, match="rolled back"):
            store.append("s", [NewEvent("Big", os.urandom(1000)) for _ in range(1000)])
        assert store.last_position() == 10
        assert store.stream_revision("s") == 9
        store.append("s", [NewEvent("Small", b"y")])
        assert [e.revision for e in store.read_stream("s")] == list(range(11))


def test_a_foreign_sqlite_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE t (x)")
    conn.commit()
    conn.close()
    with pytest.raises(StoreDamaged, match="not an unbroken event store"):
        open_store(f"embedded://{path}")


def _positions(path: Path) -> list[int]:
    with open_store(f"embedded://{path}") as store:
        return [e.position for e in store.read_all()]

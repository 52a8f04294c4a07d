"""Schema 2 of the embedded store: a stream's revision is its newest event's, so an append writes no streams row.

Before, every append also updated ``streams.revision``: one more page in the
write-ahead log per commit (the events table and its two indexes are the
rest). A version-1 file (same tables, that column kept current) is read as it
is and upgraded when opened for writing.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from eventstore import NewEvent, StoreDamaged, open_store
from eventstore._sqlite import PAGE_SIZE

WAL_FRAME = PAGE_SIZE + 24  # a WAL frame: its header and one page


def version_of(db: Path) -> int:
    with sqlite3.connect(db) as conn:
        return conn.execute("PRAGMA user_version").fetchone()[0]


def set_version(db: Path, version: int) -> None:
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute(f"PRAGMA user_version = {version}")
    conn.close()


def test_a_small_append_writes_three_pages_and_no_streams_row(tmp_path: Path) -> None:
    db = tmp_path / "events.db"
    with open_store(f"embedded://{db}") as store:
        store.append("meter-1", [NewEvent("Reading", b"{}") for _ in range(3)])
        before = Path(f"{db}-wal").stat().st_size
        result = store.append("meter-1", [NewEvent("Reading", b"{}")])
        frames = (Path(f"{db}-wal").stat().st_size - before) // WAL_FRAME
        assert frames == 3  # the events table, events_by_stream, events_by_id: all still one page each
        assert result.next_revision == 4 and store.stream_revision("meter-1") == 3


def test_a_version_1_file_is_read_as_it_is_and_upgraded_when_opened_for_writing(tmp_path: Path) -> None:
    db = tmp_path / "events.db"
    with open_store(f"embedded://{db}") as store:
        store.append("meter-1", [NewEvent("Reading", b"{}") for _ in range(3)])
    set_version(db, 1)
    with open_store(f"embedded://{db}", read_only=True) as store:
        assert store.stream_revision("meter-1") == 2
    assert version_of(db) == 1
    with open_store(f"embedded://{db}") as store:
        assert store.append("meter-1", [NewEvent("Reading", b"{}")]).next_revision == 4
    assert version_of(db) == 2


def test_a_newer_schema_is_refused_by_name(tmp_path: Path) -> None:
    db = tmp_path / "events.db"
    open_store(f"embedded://{db}").close()
    set_version(db, 3)
    with pytest.raises(StoreDamaged, match="schema version 3; this unbroken reads versions 1, 2"):
        open_store(f"embedded://{db}")

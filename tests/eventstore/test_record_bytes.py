"""The embedded store writes each record as the msgpack of its ``RecordedEvent``, byte for byte.

The writer encodes a plain tuple of the fields (faster than building the
struct); this pins that the stored bytes are exactly the struct's encoding,
so a field added to ``RecordedEvent`` cannot silently change what is stored.
"""

from __future__ import annotations

import sqlite3
import uuid
from pathlib import Path

from eventstore import NO_STREAM, Metadata, NewEvent, open_store
from eventstore._sqlite import RECORD_DECODER, RECORD_ENCODER


def test_stored_records_are_the_recorded_events_own_encoding(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    metadata = [None, Metadata(source="meter"), Metadata(correlation_id="c", causation_id="d", extra={"k": "v"})]
    with open_store(f"embedded://{db}") as store:
        for n, meta in enumerate(metadata):
            store.append(f"s-{n}", [NewEvent("T", b'{"n": %d}' % n, uuid.uuid4(), occurred_at=n or None,
                                             metadata=meta, recorded_at=None if n else 7)])
        store.append_multi([("a", [NewEvent("T", b"{}")], NO_STREAM)])
    with sqlite3.connect(db) as conn:
        records = [row[0] for row in conn.execute("SELECT record FROM events ORDER BY position")]
    conn.close()
    assert len(records) == 4
    for record in records:
        event = RECORD_DECODER.decode(record)
        assert RECORD_ENCODER.encode(event) == record

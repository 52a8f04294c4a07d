"""Contract cases: bad names and data are refused clearly; hostile names are stored safely."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest

from eventstore import InvalidEvent, ReadFilter, StoreClosed
from eventstore.validation import MAX_BATCH, MAX_DATA_BYTES

from .helpers import batch, ev, read_after

CLOSE_RACE_CHILD = Path(__file__).with_name("close_race_child.py")
BAD_STREAMS = {
    "empty": "",
    "NUL": "a\x00b",
    "newline": "a\nb",
    "DEL": "a\x7f",
    "C1 control": "a\x85b",
    "reserved $": "$all",
    "too long": "s" * 501,
    "too long in bytes": "é" * 251,  # 502 bytes of UTF-8
    "lone surrogate": "a\ud800",
}
BAD_TYPES = {"empty": "", "tab": "a\tb", "too long": "T" * 201, "escape": "\x1b[31m"}
HOSTILE = [
    "x'; DROP TABLE events;--",
    'x"; DROP TABLE events;--',
    "Robert'); DELETE FROM streams WHERE 1=1;--",
    "../../etc/passwd",
    "%", "_", "a%b_c", "*?[]", "\\", "--", "/*", "NULL", "null",
    " leading and trailing ",
    "名前-ストリーム", "emoji-🎉", "\u202ertl-override", "zero\u200bwidth",
    "s" * 500,
]


class ValidationCases:
    @pytest.mark.parametrize("why", sorted(BAD_STREAMS))
    def test_bad_stream_names_are_refused(self, store, why):
        base = store.last_position()
        with pytest.raises(InvalidEvent, match="stream name"):
            store.append(BAD_STREAMS[why], batch(1))
        assert store.last_position() == base

    @pytest.mark.parametrize("stream", [123, None, b"bytes"])
    def test_stream_names_must_be_text(self, store, stream):
        with pytest.raises(InvalidEvent, match="must be a string"):
            store.append(stream, batch(1))

    @pytest.mark.parametrize("why", sorted(BAD_TYPES))
    def test_bad_event_types_are_refused(self, store, ns, why):
        with pytest.raises(InvalidEvent, match="event type"):
            store.append(ns + "types", [ev(type=BAD_TYPES[why])])
        assert store.stream_revision(ns + "types") is None

    def test_hostile_names_are_stored_and_read_back_exactly(self, store, ns):
        base = store.last_position()
        for name in HOSTILE:
            stream = (ns + name)[:500]
            store.append(stream, [ev(type=name[:200], data=name.encode())])
        for name in HOSTILE:
            stream = (ns + name)[:500]
            [event] = store.read_stream(stream)
            assert (event.stream, event.type, event.data) == (stream, name[:200], name.encode())
            assert store.stream_revision(stream) == 0
        assert len(read_after(store, base)) == len(HOSTILE)
        only = read_after(store, base, filter=ReadFilter(types=("x'; DROP TABLE events;--",)))
        assert [e.stream for e in only] == [ns + "x'; DROP TABLE events;--"]

    def test_hostile_metadata_is_stored_and_read_back_exactly(self, store, ns):
        meta = {"source": "'; DROP TABLE events;--", "k'\"": "v\\%_"}
        store.append(ns + "meta-hostile", [ev(metadata=meta)])
        [event] = store.read_stream(ns + "meta-hostile")
        assert event.metadata.source == meta["source"]
        assert event.metadata.extra == {"k'\"": "v\\%_"}

    def test_control_characters_in_metadata_are_refused(self, store, ns):
        with pytest.raises(InvalidEvent, match="metadata"):
            store.append(ns + "meta-bad", [ev(metadata={"source": "a\x00b"})])

    def test_oversized_data_is_refused(self, store, ns):
        with pytest.raises(InvalidEvent, match=str(MAX_DATA_BYTES)):
            store.append(ns + "huge", [ev(data=bytes(MAX_DATA_BYTES + 1))])
        assert store.stream_revision(ns + "huge") is None

    def test_empty_and_oversized_batches_are_refused(self, store, ns):
        with pytest.raises(InvalidEvent, match="at least one event"):
            store.append(ns + "empty", [])
        with pytest.raises(InvalidEvent, match=f"limit {MAX_BATCH}"):
            store.append(ns + "big", batch(MAX_BATCH + 1))
        assert store.stream_revision(ns + "big") is None

    def test_a_single_event_instead_of_a_list_is_refused_clearly(self, store, ns):
        with pytest.raises(InvalidEvent, match="list"):
            store.append(ns + "not-a-list", ev())  # type: ignore[arg-type]

    @pytest.mark.parametrize("occurred_at", ["2024-01-01", 1.5, True])
    def test_occurred_at_must_be_integer_nanoseconds(self, store, ns, occurred_at):
        with pytest.raises(InvalidEvent, match="occurred_at"):
            store.append(ns + "occ", [ev(occurred_at=occurred_at)])


class ClosedCases:
    def test_a_closed_store_refuses_every_call(self, backend, ns):
        store = backend.open()
        store.append(ns + "c", batch(1))
        store.close()
        store.close()  # idempotent
        calls = {
            "append": lambda: store.append(ns + "c", batch(1)),
            "append_async": lambda: asyncio.run(store.append_async(ns + "c", batch(1))),
            "read_stream": lambda: list(store.read_stream(ns + "c")),
            "read_all": lambda: list(store.read_all()),
            "stream_revision": lambda: store.stream_revision(ns + "c"),
            "last_position": lambda: store.last_position(),
            "subscribe": lambda: store.subscribe().next_within(5.0),
        }
        worked = []
        for name, call in calls.items():
            try:
                call()
            except StoreClosed as e:
                assert "closed" in str(e), name
            else:
                worked.append(name)
        assert worked == [], f"these calls worked on a closed store: {worked}"

    def test_the_context_manager_closes_the_store(self, backend, ns):
        with backend.open() as store:
            store.append(ns + "cm", batch(1))
        with pytest.raises(StoreClosed):
            store.last_position()

    def test_calls_racing_close_end_in_store_closed_never_a_crash(self, backend, ns):
        if not backend.shareable:
            pytest.skip(f"{backend.name} lives in this process; the child process cannot open it")
        child = subprocess.run(
            [sys.executable, str(CLOSE_RACE_CHILD), backend.uri, "20", ns],
            capture_output=True, text=True, timeout=120)
        crashed = f"killed by signal {-child.returncode}" if child.returncode < 0 else ""
        assert child.returncode == 0 and "survived 20 cycles" in child.stdout, (
            f"close race child {crashed or 'failed'}:\n{child.stdout[-2000:]}{child.stderr[-3000:]}")

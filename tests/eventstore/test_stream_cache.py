"""The embedded writer's cache of its own last commit (``_group_commit.StreamCache``).

A write transaction takes the last position and its streams' revisions from
the cache only while ``PRAGMA data_version`` says no other connection has
committed since; these tests commit through other connections and other
processes, fail transactions half-way, and repeat ids, and check that every
append still lands at the right position and revision.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from eventstore import ANY, NO_STREAM, NewEvent, WrongExpectedVersion, open_store


def event(n: int) -> NewEvent:
    return NewEvent("Dose", n.to_bytes(4, "big"))


def test_two_connections_to_one_file_take_turns_and_each_sees_the_others_appends(tmp_path: Path) -> None:
    uri = f"embedded://{tmp_path / 'events.db'}"
    with open_store(uri) as first, open_store(uri) as second:
        for n in range(40):
            store = (first, second)[n % 2]
            result = store.append("pump-1", [event(n)], expected=n - 1 if n else NO_STREAM)
            assert (result.first_position, result.next_revision) == (2 * n + 1, n + 1)
            other = store.append(f"valve-{n % 3}", [event(n)])  # ANY: the position must still follow
            assert other.first_position == 2 * n + 2
        assert [e.revision for e in first.read_stream("pump-1")] == list(range(40))
        assert first.check_integrity() == []


def test_an_append_from_another_process_moves_what_this_writer_appends_on(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    with open_store(f"embedded://{path}") as store:
        store.append("pump-1", [event(0)])
        store.append("pump-1", [event(1)])  # the cache now holds pump-1 at revision 1, position 2
        child = (
            "import sys; from eventstore import NewEvent, open_store\n"
            f"with open_store('embedded://{path}') as s:\n"
            "    s.append('pump-1', [NewEvent('Dose', b'x')], expected=1)\n"
            "    s.append('pump-2', [NewEvent('Dose', b'y')])\n"
        )
        subprocess.run([sys.executable, "-c", child], check=True, timeout=60)
        with pytest.raises(WrongExpectedVersion):
            store.append("pump-1", [event(2)], expected=1)
        result = store.append("pump-1", [event(2)], expected=2)
        assert (result.first_position, result.next_revision) == (5, 4)
        new = store.append("pump-3", [event(3)], expected=NO_STREAM)
        assert new.first_position == 6
        assert [e.stream for e in store.read_all()] == ["pump-1", "pump-1", "pump-1", "pump-2", "pump-1", "pump-3"]
        assert store.check_integrity() == []


def test_a_failed_multi_append_leaves_nothing_behind_in_the_cache(tmp_path: Path) -> None:
    with open_store(f"embedded://{tmp_path / 'events.db'}") as store:
        store.append("pump-1", [event(0)])
        with pytest.raises(WrongExpectedVersion):
            store.append_multi([
                ("pump-new", [event(1), event(2)], NO_STREAM),  # would create a stream
                ("pump-1", [event(3)], 5),  # fails: all of it rolls back
            ])
        created = store.append("pump-new", [event(4)], expected=NO_STREAM)
        assert (created.first_position, created.next_revision) == (2, 1)
        again = store.append("pump-1", [event(5)], expected=0)
        assert (again.first_position, again.next_revision) == (3, 2)
        assert [(e.stream, e.revision) for e in store.read_all()] == [("pump-1", 0), ("pump-new", 0), ("pump-1", 1)]
        assert store.check_integrity() == []


def test_a_retried_append_gets_its_original_result_and_later_appends_follow_on(tmp_path: Path) -> None:
    with open_store(f"embedded://{tmp_path / 'events.db'}") as store:
        first = [event(0), event(1)]
        original = store.append("pump-1", first)
        store.append("pump-2", [event(2)])
        assert store.append("pump-1", first) == original  # a stored id: the one-by-one path
        result = store.append("pump-1", [event(3)], expected=1)
        assert (result.first_position, result.next_revision) == (4, 3)
        assert store.last_position() == 4


def test_a_warm_lone_append_looks_nothing_up(tmp_path: Path) -> None:
    """With the cache warm, a lone append is BEGIN, the version check, one INSERT and COMMIT."""
    with open_store(f"embedded://{tmp_path / 'events.db'}") as store:
        store.append("pump-1", [event(0)])
        statements: list[str] = []
        store._writer.set_trace_callback(statements.append)
        store.append("pump-1", [event(1)], expected=ANY)
        store._writer.set_trace_callback(None)
    kinds = [s.split()[0].upper() for s in statements]
    assert kinds == ["BEGIN", "PRAGMA", "INSERT", "COMMIT"], statements


def test_past_its_limit_the_cache_starts_again_and_appends_stay_right(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from eventstore._group_commit import StreamCache

    monkeypatch.setattr(StreamCache, "LIMIT", 3)
    with open_store(f"embedded://{tmp_path / 'events.db'}") as store:
        for n in range(12):
            result = store.append(f"pump-{n % 5}", [event(n)], expected=n // 5 - 1 if n >= 5 else NO_STREAM)
            assert (result.first_position, result.next_revision) == (n + 1, n // 5 + 1)
        assert len(store._cache.known) <= 3
        assert store.check_integrity() == []

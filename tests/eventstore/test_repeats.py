"""Groups that repeat stored ids (retries, re-imports) in the embedded store (``_group_commit.write_repeats``).

After the fast path meets a stored id, the group's ids are looked up at
once: exact repeats get their original results, partial ones conflict, and
only the new requests are written, positions following as if the repeats had
been left out. Requests that repeat each other's ids within one group still
go one by one (``write_each``).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from eventstore import ANY, DuplicateIdConflict, NewEvent, open_store


def event(n: int) -> NewEvent:
    return NewEvent("Dose", n.to_bytes(4, "big"))


def test_repeats_get_their_results_and_the_new_requests_follow_on_without_a_gap(tmp_path: Path) -> None:
    with open_store(f"embedded://{tmp_path / 'events.db'}") as store:
        first, second = [event(0), event(1)], [event(2)]
        original = store.append_multi([("pump-1", first, ANY), ("pump-2", second, ANY)])
        fresh = [event(3), event(4)]
        results = store.append_multi([("pump-2", second, ANY), ("pump-1", fresh, 1), ("pump-1", first, ANY)])
        assert results[0] == original[1] and results[2] == original[0]
        assert (results[1].first_position, results[1].last_position, results[1].next_revision) == (4, 5, 4)
        assert [(e.stream, e.revision, e.position) for e in store.read_all()] == [
            ("pump-1", 0, 1), ("pump-1", 1, 2), ("pump-2", 0, 3), ("pump-1", 2, 4), ("pump-1", 3, 5)]
        assert store.append("pump-1", [event(5)]).first_position == 6  # the cache was left right
        assert store.check_integrity() == []


def test_a_partial_repeat_among_repeats_fails_the_multi_append_naming_it(tmp_path: Path) -> None:
    with open_store(f"embedded://{tmp_path / 'events.db'}") as store:
        stored = [event(0), event(1)]
        store.append("pump-1", stored)
        with pytest.raises(DuplicateIdConflict) as refused:
            store.append_multi([("pump-1", stored, ANY), ("pump-1", [stored[0], event(2)], ANY)])
        assert refused.value.request_index == 1  # type: ignore[attr-defined]
        assert store.last_position() == 2


def test_ids_repeated_within_one_group_still_go_one_by_one(tmp_path: Path) -> None:
    with open_store(f"embedded://{tmp_path / 'events.db'}") as store:
        store.append("pump-0", [event(9)])  # a stored id somewhere, so repeats are looked for
        again = event(0)
        same = store.append_multi([("pump-1", [again], ANY), ("pump-1", [again], ANY)])
        assert same[0] == same[1] and same[0].first_position == 2
        other = event(1)
        with pytest.raises(DuplicateIdConflict):
            store.append_multi([("pump-1", [other], ANY), ("pump-2", [other], ANY)])
        assert [(e.stream, e.position) for e in store.read_all()] == [("pump-0", 1), ("pump-1", 2)]


def test_a_group_of_repeats_is_looked_up_in_one_pass_without_savepoints(tmp_path: Path) -> None:
    """A re-import's chunk: no savepoint per request, a lookup per 500 ids."""
    with open_store(f"embedded://{tmp_path / 'events.db'}") as store:
        requests = [(f"meter-{n % 50}", [event(n)], ANY) for n in range(1_200)]
        original = store.append_multi(requests)
        statements: list[str] = []
        store._writer.set_trace_callback(statements.append)
        assert store.append_multi(requests) == original
        store._writer.set_trace_callback(None)
    assert not [s for s in statements if s.upper().startswith("SAVEPOINT")]
    assert len([s for s in statements if "WHERE e.id IN" in s]) == 3  # 1,200 ids, 500 to a query

"""The embedded store inserts rows ``ROWS_PER_INSERT`` to a statement: every size lands whole and in order.

Sizes around the chunk boundary, a multi-stream append of one-event requests
crossing several chunks, and an id repeated past the first chunk (the whole
transaction is rolled back and written request by request) all read back as
appended.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from eventstore import ANY, DuplicateIdConflict, NewEvent, open_store
from eventstore._group_commit import ROWS_PER_INSERT

SIZES = [1, ROWS_PER_INSERT - 1, ROWS_PER_INSERT, ROWS_PER_INSERT + 1, 2 * ROWS_PER_INSERT + 3]


def events(n: int, tag: str) -> list[NewEvent]:
    return [NewEvent("Reading", f'{{"{tag}": {i}}}'.encode()) for i in range(n)]


@pytest.mark.parametrize("size", SIZES)
def test_a_batch_of_any_size_reads_back_whole_and_in_order(tmp_path: Path, size: int) -> None:
    with open_store(f"embedded://{tmp_path / 'events.db'}") as store:
        store.append("meter-0", events(3, "before"))
        batch = events(size, "batch")
        result = store.append("meter-1", batch)
        read = list(store.read_stream("meter-1"))
        assert [e.id for e in read] == [e.id for e in batch]
        assert [e.data for e in read] == [e.data for e in batch]
        assert [e.position for e in read] == list(range(4, 4 + size))
        assert [e.revision for e in read] == list(range(size))
        assert (result.first_position, result.last_position, result.next_revision) == (4, 3 + size, size)


def test_one_event_requests_across_chunks_keep_their_order_and_results(tmp_path: Path) -> None:
    batch = events(2 * ROWS_PER_INSERT + 5, "multi")
    with open_store(f"embedded://{tmp_path / 'events.db'}") as store:
        results = store.append_multi([(f"meter-{i % 7}", [e], ANY) for i, e in enumerate(batch)])
        read = list(store.read_all())
    assert [e.id for e in read] == [e.id for e in batch]
    assert [r.first_position for r in results] == [e.position for e in read] == list(range(1, len(batch) + 1))
    assert [e.revision for e in read] == [i // 7 for i in range(len(batch))]


def test_an_id_repeated_past_the_first_chunk_is_settled_request_by_request(tmp_path: Path) -> None:
    first = events(ROWS_PER_INSERT + 10, "first")
    with open_store(f"embedded://{tmp_path / 'events.db'}") as store:
        store.append("meter-1", first)
        again = store.append("meter-1", first)  # an exact retry: its original result, nothing written
        assert (again.first_position, again.last_position) == (1, len(first))
        with pytest.raises(DuplicateIdConflict):
            store.append("meter-2", [*events(ROWS_PER_INSERT, "fresh"), first[-1]])
        assert store.last_position() == len(first)

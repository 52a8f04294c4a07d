"""An imported event keeps the receive time its source gave it; a live one gets the store's."""

from __future__ import annotations

from pathlib import Path

import pytest

from eventstore import InvalidEvent, NewEvent, open_store


@pytest.fixture(params=["memory", "embedded"])
def store(request, tmp_path: Path):
    uri = "memory://" if request.param == "memory" else f"embedded://{tmp_path / 'events.db'}"
    with open_store(uri, clock=lambda: 9_000) as opened:
        yield opened


def test_a_given_recorded_at_is_kept_and_a_missing_one_is_stamped(store) -> None:
    store.append("meter-1", [NewEvent("Reading", b"1", recorded_at=1_000, occurred_at=900),
                             NewEvent("Reading", b"2", recorded_at=2_000),
                             NewEvent("Reading", b"3")])
    got = [(e.recorded_at, e.occurred_at) for e in store.read_stream("meter-1")]
    assert got == [(1_000, 900), (2_000, 2_000), (9_000, 9_000)]


@pytest.mark.parametrize("bad", [-1, 1.5, True, "2024-01-01"])
def test_a_recorded_at_that_is_not_nanoseconds_is_refused(store, bad) -> None:
    with pytest.raises(InvalidEvent, match="recorded_at must be non-negative integer nanoseconds"):
        store.append("meter-1", [NewEvent("Reading", b"1", recorded_at=bad)])
    assert store.last_position() == 0

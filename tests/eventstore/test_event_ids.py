"""Generated event ids: UUIDv7, time-ordered, unique; given ids are kept."""

from __future__ import annotations

import time
import uuid

from eventstore import NewEvent


def test_generated_ids_are_uuid7_and_follow_the_clock() -> None:
    first = NewEvent("T", b"").id
    deadline = time.monotonic() + 1.0
    while time.time_ns() // 1_000_000 == first.int >> 80 and time.monotonic() < deadline:
        pass  # wait for the millisecond to turn, so the next id must sort after
    second = NewEvent("T", b"").id
    assert first.version == 7 and first.variant == uuid.RFC_4122
    assert abs((first.int >> 80) - time.time_ns() // 1_000_000) < 5_000
    assert first < second


def test_generated_ids_are_unique_within_one_millisecond() -> None:
    ids = {NewEvent("T", b"").id for _ in range(10_000)}
    assert len(ids) == 10_000


def test_a_given_id_is_kept() -> None:
    given = uuid.uuid5(uuid.NAMESPACE_URL, "meter-7/line-12")
    assert NewEvent("T", b"", id=given).id == given

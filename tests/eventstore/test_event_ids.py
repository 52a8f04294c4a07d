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


def test_derived_ids_are_deterministic_time_ordered_uuid8s_that_behave_as_uuids() -> None:
    import hashlib
    import pickle

    from eventstore import derived_event_id

    at = 1_767_225_600_123_456_789
    digest = hashlib.sha1(b"meter-7/line-12").digest()
    made = derived_event_id(at, digest)
    value = (at // 1_000_000) << 80 | int.from_bytes(digest[:10], "big")
    value = value & ~(0xF << 76 | 0b11 << 62) | 0x8 << 76 | 0b10 << 62
    expected = uuid.UUID(int=value)
    assert type(made) is uuid.UUID and made == expected and derived_event_id(at, digest) == made
    assert (made.version, made.variant, str(made), hash(made)) == (8, uuid.RFC_4122, str(expected), hash(expected))
    assert made.is_safe is expected.is_safe and pickle.loads(pickle.dumps(made)) == expected
    assert made.int >> 80 == at // 1_000_000
    assert derived_event_id(at + 1_000_000, b"\x00" * 10) > made  # a millisecond later sorts later


def test_a_derived_id_needs_ten_bytes_of_digest() -> None:
    import pytest

    from eventstore import derived_event_id

    with pytest.raises(ValueError, match="at least 10 bytes"):
        derived_event_id(0, b"123456789")

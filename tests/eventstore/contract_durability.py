"""Contract cases for durable backends: what survives closing and opening again."""

from __future__ import annotations

import pytest

from eventstore import NO_STREAM, WrongExpectedVersion

from .helpers import ManualClock, assert_log_shape, batch, read_after


def _need_durable(backend) -> None:
    if not backend.durable:
        pytest.skip(f"{backend.name}:// keeps nothing after close(), by design")


class DurabilityCases:
    def test_events_survive_close_and_reopen(self, backend, ns):
        _need_durable(backend)
        with backend.open() as store:
            base = store.last_position()
            store.append(ns + "keep", batch(3))
            before = read_after(store, base)
        with backend.open() as store:
            assert read_after(store, base) == before
            assert store.stream_revision(ns + "keep") == 2
            assert store.last_position() == before[-1].position

    def test_positions_and_revisions_continue_after_reopen(self, backend, ns):
        _need_durable(backend)
        with backend.open() as store:
            base = store.last_position()
            store.append(ns + "cont", batch(2))
        with backend.open() as store:
            result = store.append(ns + "cont", batch(2, tag="f"), expected=1)
            events = read_after(store, base)
        assert result.next_revision == 4 and result.last_position == events[-1].position
        assert_log_shape(events)

    def test_idempotent_retry_and_expected_versions_survive_reopen(self, backend, ns):
        _need_durable(backend)
        events = batch(2)
        with backend.open() as store:
            original = store.append(ns + "dedupe", events, expected=NO_STREAM)
            store.append(ns + "dedupe", batch(1, tag="later"))
        with backend.open() as store:
            assert store.append(ns + "dedupe", events, expected=NO_STREAM) == original
            with pytest.raises(WrongExpectedVersion):
                store.append(ns + "dedupe", batch(1), expected=NO_STREAM)
            assert store.stream_revision(ns + "dedupe") == 2

    def test_recorded_at_stays_monotonic_across_reopen(self, backend, ns):
        _need_durable(backend)
        if not backend.own_clock:
            pytest.skip(f"{backend.name} sets recorded_at on its server")
        with backend.open(clock=ManualClock(50_000)) as store:
            store.append(ns + "clock", batch(1))
        with backend.open(clock=ManualClock(10_000)) as store:
            store.append(ns + "clock", batch(1))
            times = [e.recorded_at for e in store.read_stream(ns + "clock")]
        assert times == [50_000, 50_000]

    def test_two_store_objects_on_one_location_share_one_log(self, backend, ns):
        _need_durable(backend)
        events = batch(2)
        with backend.open() as first, backend.open() as second:
            base = first.last_position()
            original = first.append(ns + "both", events, expected=NO_STREAM)
            with pytest.raises(WrongExpectedVersion) as caught:
                second.append(ns + "both", batch(1), expected=NO_STREAM)
            assert caught.value.actual == 1
            assert second.append(ns + "both", events) == original  # retry through the other
            second.append(ns + "both", batch(1, tag="second"), expected=1)
            first.append(ns + "both", batch(1, tag="first"), expected=2)
            seen_by_first, seen_by_second = read_after(first, base), read_after(second, base)
        assert seen_by_first == seen_by_second
        assert [e.data for e in seen_by_first] == [b'{"e":0}', b'{"e":1}', b'{"second":0}', b'{"first":0}']
        assert_log_shape(seen_by_first)

    def test_a_subscription_sees_appends_made_through_another_store_object(self, backend, ns):
        _need_durable(backend)
        with backend.open() as reader, backend.open() as writer:
            sub = reader.subscribe(from_position=reader.last_position())
            writer.append(ns + "other-writer", batch(1))
            event = sub.next_within(10.0)
        assert event is not None and event.stream == ns + "other-writer"

    def test_wait_for_append_sees_events_written_through_another_handle(self, backend, ns):
        _need_durable(backend)
        with backend.open() as writer:
            base = writer.last_position()
            writer.append(ns + "elsewhere", batch(1))
        with backend.open() as waiter:  # reopened: it has committed nothing itself
            assert waiter.wait_for_append(base, 1.0) is True

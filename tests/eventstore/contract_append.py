"""Contract cases: appending, expected versions and idempotent retries."""

from __future__ import annotations

import pytest

from eventstore import (
    ANY,
    EXISTS,
    NO_STREAM,
    AppendResult,
    DuplicateIdConflict,
    EventStore,
    InvalidEvent,
    InvalidPayload,
    NewEvent,
    StoreError,
    WrongExpectedVersion,
)
from eventstore.validation import MAX_METADATA_BYTES
from projections.payloads import MeterReading

from .helpers import assert_log_shape, batch, ev, read_after


def _invalid_batches(stream: str) -> dict[str, list[NewEvent]]:
    """Batches whose last event is bad in one way each; the good ones before it must not land."""
    good = batch(2)
    return {
        "empty type": [*good, ev(type="")],
        "control char in type": [*good, ev(type="bad\x00type")],
        "data neither bytes nor payload": [*good, NewEvent("Thing", {"a": 1})],
        "payload of another type": [*good, NewEvent("PaymentReceived", MeterReading("m", "a", 1.0))],
        "metadata too large": [*good, ev(metadata={"source": "x" * (MAX_METADATA_BYTES + 1)})],
        "event names another stream": [*good, ev(stream=stream + "-other")],
        "same id twice": [*good, good[0]],
        "not a NewEvent": [*good, b"raw bytes"],  # type: ignore[list-item]
    }


class AppendCases:
    def test_append_one_event_returns_its_position_and_next_revision(self, store, ns):
        base = store.last_position()
        result = store.append(ns + "one", [ev(data=b'{"a":1}')])
        assert isinstance(result, AppendResult)
        assert result.first_position == result.last_position > base
        assert result.next_revision == 1
        [event] = read_after(store, base)
        assert (event.stream, event.revision, event.position) == (ns + "one", 0, result.first_position)
        assert event.data == b'{"a":1}'

    def test_append_batch_gets_gapless_revisions_and_increasing_positions(self, store, ns):
        base = store.last_position()
        first = store.append(ns + "b", batch(3))
        second = store.append(ns + "b", batch(2, tag="f"))
        events = list(store.read_stream(ns + "b"))
        assert [e.revision for e in events] == [0, 1, 2, 3, 4]
        assert_log_shape(events)
        assert (first.first_position, first.last_position, first.next_revision) == (
            events[0].position, events[2].position, 3)
        assert (second.first_position, second.last_position, second.next_revision) == (
            events[3].position, events[4].position, 5)
        assert first.first_position > base and second.first_position > first.last_position
        assert [e.data for e in events] == [b'{"e":0}', b'{"e":1}', b'{"e":2}', b'{"f":0}', b'{"f":1}']

    def test_batch_with_one_invalid_event_writes_nothing(self, store, ns):
        stream = ns + "atomic"
        store.append(stream, batch(1))
        base = store.last_position()
        for why, bad in _invalid_batches(stream).items():
            with pytest.raises((InvalidEvent, InvalidPayload)):
                store.append(stream, bad)
            assert store.stream_revision(stream) == 0, why
            assert store.last_position() == base, why
        assert read_after(store, base) == []

    def test_expected_no_stream_succeeds_once_then_reports_the_revision(self, store, ns):
        stream = ns + "ns"
        assert store.append(stream, batch(2), expected=NO_STREAM).next_revision == 2
        with pytest.raises(WrongExpectedVersion) as caught:
            store.append(stream, batch(1), expected=NO_STREAM)
        error = caught.value
        assert (error.stream, error.expected, error.actual) == (stream, NO_STREAM, 1)
        assert stream in str(error) and "NO_STREAM" in str(error) and "revision 1" in str(error)

    def test_expected_exists_fails_on_a_missing_stream(self, store, ns):
        stream = ns + "ex"
        with pytest.raises(WrongExpectedVersion) as caught:
            store.append(stream, batch(1), expected=EXISTS)
        assert (caught.value.expected, caught.value.actual) == (EXISTS, None)
        assert "no stream" in str(caught.value)
        assert store.stream_revision(stream) is None
        store.append(stream, batch(1))
        assert store.append(stream, batch(1), expected=EXISTS).next_revision == 2

    def test_expected_revision_must_be_the_last_event(self, store, ns):
        stream = ns + "rev"
        with pytest.raises(WrongExpectedVersion) as missing:
            store.append(stream, batch(1), expected=0)
        assert (missing.value.expected, missing.value.actual) == (0, None)
        store.append(stream, batch(3), expected=NO_STREAM)
        for wrong in (0, 1, 3, 99):
            with pytest.raises(WrongExpectedVersion) as caught:
                store.append(stream, batch(1), expected=wrong)
            assert (caught.value.stream, caught.value.expected, caught.value.actual) == (
                stream, wrong, 2)
            assert f"revision {wrong}" in str(caught.value)
        assert store.append(stream, batch(1), expected=2).next_revision == 4
        assert store.stream_revision(stream) == 3

    def test_expected_any_appends_whatever_the_state(self, store, ns):
        stream = ns + "any"
        assert store.append(stream, batch(1), expected=ANY).next_revision == 1
        assert store.append(stream, batch(1)).next_revision == 2

    def test_wrong_expected_version_writes_nothing(self, store, ns):
        stream = ns + "wev"
        store.append(stream, batch(1))
        base = store.last_position()
        for expected in (NO_STREAM, 5):
            with pytest.raises(WrongExpectedVersion):
                store.append(stream, batch(3), expected=expected)
        assert store.last_position() == base and store.stream_revision(stream) == 0

    @pytest.mark.parametrize("expected", [-1, True, "0", 1.5, None, "ANY"])
    def test_unusable_expected_values_are_refused(self, store, ns, expected):
        with pytest.raises(InvalidEvent, match="expected"):
            store.append(ns + "bad-expected", batch(1), expected=expected)
        assert store.stream_revision(ns + "bad-expected") is None

    @pytest.mark.parametrize("mode", ["ANY", "NO_STREAM", "EXISTS", "revision"])
    def test_retry_with_the_same_ids_returns_the_original_result(self, store, ns, mode):
        stream = ns + "retry"
        if mode in ("EXISTS", "revision"):
            store.append(stream, batch(1))
        expected = {"ANY": ANY, "NO_STREAM": NO_STREAM, "EXISTS": EXISTS, "revision": 0}[mode]
        events = batch(3)
        original = store.append(stream, events, expected=expected)
        assert store.append(stream, events, expected=expected) == original
        store.append(stream, batch(2, tag="later"))  # the stream moves on
        before = (store.last_position(), list(store.read_stream(stream)))
        retried = [NewEvent(e.type, e.data, id=e.id) for e in events]
        assert store.append(stream, retried, expected=expected) == original
        assert (store.last_position(), list(store.read_stream(stream))) == before

    def test_retry_of_a_single_event_is_idempotent(self, store, ns):
        event = ev()
        first = store.append(ns + "single", [event])
        assert store.append(ns + "single", [event], expected=NO_STREAM) == first
        assert len(list(store.read_stream(ns + "single"))) == 1

    def test_batch_repeating_some_stored_ids_is_a_conflict(self, store, ns):
        stream = ns + "partial"
        stored = batch(2)
        store.append(stream, stored)
        base = store.last_position()
        fresh = ev()
        with pytest.raises(DuplicateIdConflict) as caught:
            store.append(stream, [stored[1], fresh])
        assert caught.value.stream == stream
        assert str(stored[1].id) in caught.value.ids and str(fresh.id) not in caught.value.ids
        assert store.last_position() == base

    def test_stored_ids_in_another_order_are_a_conflict(self, store, ns):
        stored = batch(2)
        store.append(ns + "order", stored)
        base = store.last_position()
        with pytest.raises(DuplicateIdConflict):
            store.append(ns + "order", list(reversed(stored)))
        assert store.last_position() == base

    def test_ids_stored_in_another_stream_are_a_conflict(self, store, ns):
        stored = batch(2)
        store.append(ns + "first-home", stored)
        base = store.last_position()
        if not store.capabilities.global_unique_ids:  # declared: ids are checked within a stream only
            assert store.append(ns + "second-home", stored).next_revision == 2
            return
        with pytest.raises(DuplicateIdConflict, match="first-home") as caught:
            store.append(ns + "second-home", stored)
        assert caught.value.stream == ns + "second-home"
        assert store.last_position() == base
        assert store.stream_revision(ns + "second-home") is None

    def test_every_error_is_a_store_error(self):
        for error in (InvalidEvent, InvalidPayload, WrongExpectedVersion, DuplicateIdConflict):
            assert issubclass(error, StoreError)

    def test_events_given_as_a_generator_are_appended(self, store: EventStore, ns):
        result = store.append(ns + "gen", (e for e in batch(3)))
        assert result.next_revision == 3

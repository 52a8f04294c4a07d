"""Contract cases: ``append_multi``, many streams in one call, in order, all or nothing."""

from __future__ import annotations

import pytest

from eventstore import ANY, NO_STREAM, DuplicateIdConflict, InvalidEvent, WrongExpectedVersion

from .helpers import assert_log_shape, batch, ev, read_after


class MultiAppendCases:
    def test_append_multi_writes_requests_in_order_with_one_result_each(self, store, ns):
        base = store.last_position()
        results = store.append_multi([
            (ns + "m-a", batch(2), NO_STREAM),
            (ns + "m-b", batch(1, tag="b"), ANY),
            (ns + "m-a", batch(1, tag="a2"), 1),  # sees the revision the first request left
        ])
        events = read_after(store, base)
        assert [(e.stream, e.revision) for e in events] == [
            (ns + "m-a", 0), (ns + "m-a", 1), (ns + "m-b", 0), (ns + "m-a", 2)]
        assert_log_shape(events)
        assert [(r.first_position, r.last_position, r.next_revision) for r in results] == [
            (events[0].position, events[1].position, 2),
            (events[2].position, events[2].position, 1),
            (events[3].position, events[3].position, 3),
        ]

    def test_append_multi_is_idempotent_by_id(self, store, ns):
        requests = [(ns + "mi-a", batch(2), ANY), (ns + "mi-b", batch(2, tag="b"), ANY)]
        first = store.append_multi(requests)
        last = store.last_position()
        again = store.append_multi(requests)
        assert again == first
        assert store.last_position() == last

    def test_append_multi_partial_repeat_is_refused_naming_the_request(self, store, ns):
        events = batch(3)
        store.append(ns + "mp", events[:2])
        with pytest.raises(DuplicateIdConflict) as caught:
            store.append_multi([(ns + "mp-other", batch(1, tag="o"), ANY), (ns + "mp", events, ANY)])
        assert caught.value.request_index == 1

    def test_append_multi_fails_whole_when_one_request_fails_naming_it(self, store, ns):
        store.append(ns + "mf", [ev()])
        base = store.last_position()
        with pytest.raises(WrongExpectedVersion) as caught:
            store.append_multi([(ns + "mf-new", batch(2), NO_STREAM), (ns + "mf", [ev()], NO_STREAM)])
        assert caught.value.request_index == 1
        if store.capabilities.atomic_append_multi:
            assert store.last_position() == base, "an atomic append_multi wrote part of a failed call"
            assert store.stream_revision(ns + "mf-new") is None
        else:  # documented: requests before the failing one stay stored, in order
            assert store.stream_revision(ns + "mf-new") == 1

    def test_append_multi_with_an_invalid_request_writes_nothing(self, store, ns):
        base = store.last_position()
        with pytest.raises(InvalidEvent) as caught:
            store.append_multi([(ns + "mv", batch(2), ANY), (ns + "mv", [ev(type="")], ANY)])
        assert caught.value.request_index == 1
        assert store.last_position() == base

    def test_append_multi_refuses_what_is_not_a_list_of_requests(self, store, ns):
        with pytest.raises(InvalidEvent):
            store.append_multi("stream")
        with pytest.raises(InvalidEvent):
            store.append_multi([(ns + "x", batch(1))])  # no expected version

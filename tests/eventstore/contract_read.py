"""Contract cases: reading streams and the global log, filters, positions."""

from __future__ import annotations

import pytest

from eventstore import InvalidArgument, ReadFilter

from .helpers import assert_log_shape, batch, ev, read_after


def _datas(events) -> list[bytes]:
    return [e.data for e in events]


class ReadCases:
    def test_read_stream_forwards_from_a_revision_with_a_limit(self, store, ns):
        stream = ns + "rs"
        store.append(stream, batch(5))
        assert [e.revision for e in store.read_stream(stream)] == [0, 1, 2, 3, 4]
        assert [e.revision for e in store.read_stream(stream, from_revision=2)] == [2, 3, 4]
        assert [e.revision for e in store.read_stream(stream, from_revision=1, limit=2)] == [1, 2]
        assert list(store.read_stream(stream, limit=0)) == []
        assert list(store.read_stream(stream, from_revision=5)) == []

    def test_read_stream_backwards(self, store, ns):
        stream = ns + "rsb"
        store.append(stream, batch(5))
        assert [e.revision for e in store.read_stream(stream, backwards=True)] == [4, 3, 2, 1, 0]
        assert [e.revision for e in store.read_stream(stream, 2, backwards=True)] == [2, 1, 0]
        assert [e.revision for e in store.read_stream(stream, None, True, 2)] == [4, 3]
        assert [e.revision for e in store.read_stream(stream, 99, True, 1)] == [4]

    def test_read_stream_of_a_missing_stream_yields_nothing(self, store, ns):
        store.append(ns + "exists", batch(1))
        assert list(store.read_stream(ns + "missing")) == []
        assert list(store.read_stream(ns + "missing", backwards=True)) == []
        assert store.stream_revision(ns + "missing") is None

    def test_read_stream_only_sees_its_own_stream(self, store, ns):
        for i in range(3):
            store.append(ns + "left", [ev(data=b"L%d" % i)])
            store.append(ns + "left-2", [ev(data=b"R%d" % i)])
        assert _datas(store.read_stream(ns + "left")) == [b"L0", b"L1", b"L2"]
        assert _datas(store.read_stream(ns + "left-2")) == [b"R0", b"R1", b"R2"]

    @pytest.mark.parametrize("bad", [{"from_revision": -1}, {"limit": -1}, {"limit": "2"}])
    def test_read_stream_refuses_negative_arguments(self, store, ns, bad):
        with pytest.raises(InvalidArgument):
            list(store.read_stream(ns + "s", **bad))

    @pytest.mark.parametrize("bad", [{"from_position": -1}, {"limit": -5}, {"from_position": 1.5}])
    def test_read_all_refuses_negative_arguments(self, store, bad):
        with pytest.raises(InvalidArgument):
            list(store.read_all(**bad))

    def test_read_all_in_global_order_across_streams(self, store, ns):
        base = store.last_position()
        for i in range(4):
            store.append(ns + f"ga-{i % 2}", [ev(data=b"%d" % i)])
        events = read_after(store, base)
        assert _datas(events) == [b"0", b"1", b"2", b"3"]
        assert [(e.stream, e.revision) for e in events] == [
            (ns + "ga-0", 0), (ns + "ga-1", 0), (ns + "ga-0", 1), (ns + "ga-1", 1)]
        assert_log_shape(events)
        assert store.last_position() == events[-1].position

    def test_read_all_from_a_position_is_inclusive(self, store, ns):
        base = store.last_position()
        store.append(ns + "from", batch(5))
        events = read_after(store, base)
        middle = events[2].position
        assert _datas(store.read_all(from_position=middle))[:3] == _datas(events[2:])
        assert list(store.read_all(from_position=events[-1].position + 1)) == []

    def test_read_all_backwards_and_with_a_limit(self, store, ns):
        base = store.last_position()
        store.append(ns + "back", batch(5))
        events = read_after(store, base)
        assert list(store.read_all(backwards=True, limit=5)) == events[::-1]
        top = events[3].position
        assert list(store.read_all(from_position=top, backwards=True, limit=2)) == events[3:1:-1]
        assert read_after(store, base, limit=2) == events[:2]
        assert list(store.read_all(limit=0)) == []

    def test_read_all_filters_by_stream_prefix_and_type(self, store, ns):
        base = store.last_position()
        store.append(ns + "acct-1", [ev("Paid"), ev("Billed")])
        store.append(ns + "meter-1", [ev("Read")])
        store.append(ns + "acct-2", [ev("Billed")])
        by_prefix = read_after(store, base, filter=ReadFilter(stream_prefixes=(ns + "acct-",)))
        assert [(e.stream, e.type) for e in by_prefix] == [
            (ns + "acct-1", "Paid"), (ns + "acct-1", "Billed"), (ns + "acct-2", "Billed")]
        by_type = read_after(store, base, filter=ReadFilter(types=("Billed", "Read")))
        assert [e.type for e in by_type] == ["Billed", "Read", "Billed"]
        both = ReadFilter(stream_prefixes=(ns + "meter", ns + "acct-2"), types=("Billed",))
        assert [e.stream for e in read_after(store, base, filter=both)] == [ns + "acct-2"]
        backwards = store.read_all(backwards=True, limit=1, filter=ReadFilter(types=("Paid",)))
        assert [e.type for e in backwards] == ["Paid"]

    @pytest.mark.parametrize("prefix, matching", [
        ("a_", ["a_1"]),  # '_' is a LIKE wildcard, not here
        ("a%", ["a%1"]),  # '%' too
        ("a*", ["a*1"]),  # GLOB wildcards
        ("a[", ["a[1"]),
        ("a\\", ["a\\1"]),
        ("A", ["A1"]),  # prefixes are case-sensitive
        ("a'", ["a'1"]),
        ("é", ["é1"]),  # prefixes count characters, not bytes
        ("🎉", ["🎉1"]),
    ])
    def test_stream_prefix_is_matched_literally(self, store, ns, prefix, matching):
        base = store.last_position()
        names = ["a_1", "ab1", "a%1", "a*1", "a[1", "a\\1", "A1", "a1", "a'1", "abc", "é1", "e1", "🎉1"]
        for name in names:
            store.append(ns + name, [ev()])
        found = read_after(store, base, filter=ReadFilter(stream_prefixes=(ns + prefix,)))
        assert [e.stream for e in found] == [ns + m for m in matching]

    def test_read_all_pages_through_a_long_log(self, store, ns):
        base = store.last_position()
        for part in range(3):
            store.append(ns + "long", batch(900, tag=f"p{part}"))
        events = read_after(store, base)
        assert len(events) == 2700
        assert_log_shape(events)
        assert [e.revision for e in events] == list(range(2700))
        assert read_after(store, base, limit=1500) == events[:1500]
        assert list(store.read_all(backwards=True, limit=2700)) == events[::-1]
        assert list(store.read_stream(ns + "long", from_revision=1999, limit=2)) == events[1999:2001]

    def test_a_read_in_progress_sees_a_consistent_prefix_while_appends_go_on(self, store, ns):
        base = store.last_position()
        store.append(ns + "live", batch(1500))
        reader = store.read_all(from_position=base + 1)
        seen = [next(reader) for _ in range(10)]
        store.append(ns + "live", batch(1500, tag="more"))
        seen.extend(reader)
        assert_log_shape(seen)
        assert len(seen) in (1500, 3000)

    def test_stream_revision_and_last_position_follow_appends(self, store, ns, backend):
        if backend.fresh:
            assert store.last_position() == 0
        assert store.stream_revision(ns + "sr") is None
        result = store.append(ns + "sr", batch(3))
        assert store.stream_revision(ns + "sr") == 2
        assert store.last_position() == result.last_position
        assert store.stream_revision(ns + "sr-other") is None
        if backend.fresh:
            assert (result.first_position, result.last_position) == (1, 3)

    def test_streams_differing_only_in_case_or_spaces_are_distinct(self, store, ns):
        names = ["Case", "case", "case ", " case", "CASE"]
        for index, name in enumerate(names):
            store.append(ns + name, [ev(data=b"%d" % index)])
        for index, name in enumerate(names):
            assert [e.data for e in store.read_stream(ns + name)] == [b"%d" % index]

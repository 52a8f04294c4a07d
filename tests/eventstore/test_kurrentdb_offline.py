"""The KurrentDB backend's logic against the fake client (kurrentdb_fake.py), one defect per test.

Each test pins a way the backend once failed against KurrentDB's documented
behaviour (issue 17), so it cannot come back unseen. The whole contract suite
also runs on the fake (the ``kurrentdb-fake`` backend). What a real server
does beyond the fake's model is verified only when UNBROKEN_KURRENTDB_URI is set.
"""

from __future__ import annotations

import threading
import time

import pytest
from esdbclient.exceptions import BadRequestError

from eventstore import (
    ANY,
    DuplicateIdConflict,
    InvalidArgument,
    ReadFilter,
    StoreClosed,
    StoreUnavailable,
    open_store,
)
from eventstore.kurrentdb import KurrentDBStore, dotnet_literal, prefix_pattern

from .helpers import batch, ev
from .kurrentdb_fake import FakeClient, FakeServer


@pytest.fixture
def server() -> FakeServer:
    return FakeServer()


def connect(server: FakeServer) -> KurrentDBStore:
    return KurrentDBStore("kurrentdb://fake:2113?tls=false", client=FakeClient(server))


def test_positions_are_byte_offsets_and_reads_start_between_events(server):
    store = connect(server)
    result = store.append("s", batch(3))
    events = list(store.read_stream("s"))
    assert result.last_position - result.first_position > 2  # gaps: byte offsets, not 1, 2, 3
    with pytest.raises(BadRequestError):  # the server refuses a start inside a record
        list(FakeClient(server).read_all(commit_position=events[1].position - 1))
    fresh = connect(server)  # knows no boundary: reads from the start and skips
    assert list(fresh.read_all(from_position=events[1].position - 1)) == events[1:]
    assert list(store.read_all(from_position=events[0].position + 1)) == events[1:]


def test_backward_reads_include_their_start(server):
    store = connect(server)
    store.append("s", batch(4))
    events = list(store.read_stream("s"))
    assert list(store.read_all(from_position=events[2].position, backwards=True)) == events[2::-1]
    assert list(store.read_all(from_position=events[2].position + 1, backwards=True, limit=2)) == events[2:0:-1]


def test_limits_go_to_the_server_and_zero_asks_nothing(server):
    store = connect(server)
    store.append("s", batch(5))
    server.calls.clear()
    assert list(store.read_all(limit=0)) == [] and list(store.read_stream("s", limit=0)) == []
    assert server.calls == []
    assert len(list(store.read_stream("s", limit=2))) == 2
    assert len(list(store.read_all(backwards=True, limit=1))) == 1
    assert all(args["limit"] <= 500 for _, args in server.calls), server.calls


@pytest.mark.parametrize("prefix", ["a_", "a%", "a*", "a[", "a\\", "a'", "é", "🎉", "a.b", "a|b", "(x)"])
def test_prefix_filters_run_on_the_server_as_one_literal_pattern(server, prefix):
    store = connect(server)
    for name in [prefix + "1", prefix, "z" + prefix, prefix.upper() + "1" if prefix.upper() != prefix else "q"]:
        store.append(name, [ev()])
    server.calls.clear()
    found = [e.stream for e in store.read_all(filter=ReadFilter(stream_prefixes=(prefix,)))]
    assert found == [prefix + "1", prefix]
    [(_, args)] = [c for c in server.calls if c[0] == "read_all"]
    assert args["filter_include"] == (prefix_pattern((prefix,)),) and args["filter_by_stream_name"]


def test_dotnet_literals_escape_everything_but_word_characters():
    assert dotnet_literal("ab_9") == "ab_9"
    assert dotnet_literal("a.b") == "a\\u002Eb"
    assert dotnet_literal("🎉") == "\\uD83C\\uDF89"  # one UTF-16 unit per escape, as .NET reads it


def test_system_looking_types_are_read_back_from_all(server):
    store = connect(server)
    base = store.last_position()
    store.append("s", [ev("$custom"), ev("PersistentConfig1"), ev("Plain")])
    assert [e.type for e in store.read_all(from_position=base + 1)] == ["$custom", "PersistentConfig1", "Plain"]
    assert all(not e.stream.startswith("$") for e in store.read_all())  # system streams stay hidden


def test_wait_for_append_polls_and_wakes_promptly(server):
    store = connect(server)
    store.append("s", batch(1))
    last = store.last_position()
    timer = threading.Timer(0.1, lambda: connect(server).append("s", batch(1)))
    started = time.monotonic()
    timer.start()
    assert store.wait_for_append(last, 10.0) is True
    timer.join()
    assert time.monotonic() - started < 2.0  # woken by polling, not at the end of its timeout


def test_results_come_from_the_returned_position_not_a_search(server):
    store = connect(server)
    store.append("s", batch(2000))  # far more than any search window
    server.calls.clear()
    result = store.append("s", batch(2))
    assert result.next_revision == 2002
    assert [name for name, _ in server.calls] == ["append_to_stream", "read_all", "get_stream"]


def test_retry_past_the_id_cache_with_any_writes_again_and_says_where():
    server = FakeServer(cache_size=3)
    store = connect(server)
    events = batch(2)
    first = store.append("s", events)
    store.append("other", batch(5))  # pushes the ids out of the server's cache
    again = store.append("s", events, ANY)  # documented: durable only with an exact revision
    assert again.first_position > first.last_position and again.next_revision == 4


def test_exact_revision_retry_is_idempotent_even_past_the_cache():
    server = FakeServer(cache_size=1)
    store = connect(server)
    store.append("s", batch(1))
    events = batch(2)
    original = store.append("s", events, expected=0)
    store.append("noise", batch(5))
    assert store.append("s", events, expected=0) == original


def test_partial_and_reordered_repeats_are_duplicate_id_conflicts(server):
    store = connect(server)
    stored = batch(2)
    store.append("s", stored)
    with pytest.raises(DuplicateIdConflict) as partial:
        store.append("s", [stored[1], ev()])
    assert partial.value.ids == [str(stored[1].id)]
    with pytest.raises(DuplicateIdConflict, match="order"):
        store.append("s", list(reversed(stored)))
    assert store.stream_revision("s") == 1


@pytest.mark.parametrize("uri", ["kurrentdb://", "kurrentdb://host:2113", "kurrentdb://h:2113?tls=false&bogus=1"])
def test_bad_uris_are_invalid_arguments(uri):
    with pytest.raises(InvalidArgument):
        open_store(uri)


def test_after_close_calls_raise_store_closed_and_reopened_channels_are_closed(server):
    client = FakeClient(server)
    store = KurrentDBStore("kurrentdb://fake:2113?tls=false", client=client)
    store.append("s", batch(1))
    store.close()
    for call in (lambda: store.append("s", batch(1)), lambda: list(store.read_all()),
                 lambda: store.last_position(), lambda: list(store.read_stream("s"))):
        with pytest.raises(StoreClosed):
            call()
    assert client._connection.closed


def test_a_server_that_is_down_gives_store_unavailable(server):
    store = connect(server)
    server.down = True
    with pytest.raises(StoreUnavailable):
        store.append("s", batch(1))
    with pytest.raises(StoreUnavailable):
        store.last_position()

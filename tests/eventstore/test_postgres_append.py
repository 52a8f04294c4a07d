"""The PostgreSQL backend's two append paths: guessed (one statement) and locked (four round trips).

A store encodes its rows for the state it guesses from its own last commit;
one statement re-bases them on the real state (another writer's commit moves
positions, revisions and times, and rewrites records and CRCs), or leaves the
append to the locked path when the outcome depends on more than the guess
(the unique indexes refuse what the statement's snapshot missed). Either way the append must behave exactly as if the store
had never guessed: expected versions, idempotent retries, positions, times.
Also: a store of schema version 1 (a foreign key from events to streams) or 3
(a revision column in streams, the older append_events) is upgraded when opened
for writing and still readable when opened read-only.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import psycopg
import pytest

from eventstore import (
    ANY,
    NO_STREAM,
    DuplicateIdConflict,
    NewEvent,
    WrongExpectedVersion,
    open_store,
)
from eventstore.postgres import _APPEND_EVENTS_3, SCHEMA_VERSION

from .backends import drop_schema, postgres_server
from .helpers import assert_log_shape

pytestmark = pytest.mark.service


@pytest.fixture
def uri() -> Iterator[str]:
    """A fresh schema."""
    from eventstore.postgres import new_schema_name

    server = postgres_server()
    schema = new_schema_name()
    yield f"{server}{'&' if '?' in server else '?'}schema={schema}"
    drop_schema(server, schema)


def events(n: int) -> list[NewEvent]:
    return [NewEvent("T", b'{"k":%d}' % k) for k in range(n)]


def test_a_stale_guess_never_lets_a_wrong_expected_version_through(uri: str) -> None:
    with open_store(uri) as a, open_store(uri) as b:
        assert a.append("s", events(1), NO_STREAM).next_revision == 1  # a remembers revision 0
        assert b.append("s", events(2), 0).next_revision == 3  # behind a's back
        a.append("t", events(1))  # a's guess of the head is right again; of "s" still wrong
        with pytest.raises(WrongExpectedVersion):
            a.append("s", events(1), 0)  # right by a's memory, wrong by the store
        result = a.append("s", events(1), 2)  # the refused call moved the head and put it back
        assert (result.first_position, result.last_position, result.next_revision) == (5, 5, 4)
        assert a.check_integrity() == []
        assert b.append("u", events(1), NO_STREAM).first_position == 6  # b's guessed head was 3
        assert_log_shape(list(a.read_all()))


def test_a_retry_is_recognised_whichever_writer_made_the_first_try(uri: str) -> None:
    with open_store(uri) as a, open_store(uri) as b:
        batch = events(3)
        first = a.append("s", batch)
        a.append("other", events(1))
        assert b.append("s", batch) == first  # b guesses nothing stored: the guess misses
        assert a.append("s", batch) == first  # a's own retry
        assert a.append("s", batch, ANY) == first
        b.append("other", events(1))  # b's guess is right again (head, "other"); it knows no ids
        with pytest.raises(DuplicateIdConflict):
            b.append("other", batch)  # stored in "s": refused, as the locked path refuses it
        assert [e.id for e in a.read_stream("s")] == [e.id for e in batch]


def test_writers_taking_turns_keep_positions_gapless_and_in_order(uri: str) -> None:
    with open_store(uri) as a, open_store(uri) as b:
        for i in range(30):
            store = (a, b)[i % 3 == 0]
            result = store.append(f"s{i % 4}", events(1 + i % 5))
            assert result.last_position - result.first_position == i % 5
        log = list(a.read_all())
        assert [e.position for e in log] == list(range(1, len(log) + 1))
        assert_log_shape(log)
        assert a.last_position() == b.last_position() == len(log)


def _server_and_schema(uri: str) -> tuple[str, str]:
    server, schema = uri.rsplit("schema=", 1)
    return server.rstrip("?&"), schema


def _make_version_1(uri: str) -> None:
    """Turn a fresh store into what schema version 1 was: a foreign key from events to streams."""
    server, schema = _server_and_schema(uri)
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f'ALTER TABLE "{schema}".events ADD FOREIGN KEY (stream_id) REFERENCES "{schema}".streams')
        conn.execute(f'UPDATE "{schema}".head SET version = 1')


def _version_and_foreign_keys(uri: str) -> tuple[int, int]:
    server, schema = _server_and_schema(uri)
    with psycopg.connect(server, autocommit=True) as conn:
        version = conn.execute(f'SELECT version FROM "{schema}".head').fetchone()[0]
        keys = conn.execute("SELECT count(*) FROM pg_constraint WHERE contype = 'f' AND conrelid = %s::regclass",
                            (f'"{schema}".events',)).fetchone()[0]
        return version, keys


def test_a_version_1_store_is_upgraded_when_opened_for_writing(uri: str) -> None:
    with open_store(uri) as store:
        store.append("s", events(2))
    _make_version_1(uri)
    with open_store(uri, read_only=True) as reader:  # read-only: readable, left as it is
        assert len(list(reader.read_all())) == 2
    assert _version_and_foreign_keys(uri) == (1, 1)
    with open_store(uri, create=False) as store:  # writable, even if not allowed to create
        assert _version_and_foreign_keys(uri) == (SCHEMA_VERSION, 0)
        store.append("s", events(1), 1)
        store.append("s", events(1), 2)
        assert [e.revision for e in store.read_stream("s")] == [0, 1, 2, 3]


def _make_version_3(uri: str) -> None:
    """Turn a fresh store into what schema version 3 was: each stream's revision kept in ``streams``,
    and the server function ``append_events`` (a stand-in of its signature: the upgrade drops it)."""
    server, schema = _server_and_schema(uri)
    with psycopg.connect(server, autocommit=True, options=f"-c search_path={schema}") as conn:
        conn.execute("ALTER TABLE streams ADD COLUMN revision BIGINT")
        conn.execute("UPDATE streams s SET revision = (SELECT max(revision) FROM events e "
                     "WHERE e.stream_id = s.stream_id)")
        conn.execute("ALTER TABLE streams ALTER COLUMN revision SET NOT NULL")
        conn.execute(f"CREATE FUNCTION {_APPEND_EVENTS_3} RETURNS void LANGUAGE sql AS ''")
        conn.execute("UPDATE head SET version = 3")


def _version_columns_and_functions(uri: str) -> tuple[int, list[str], int]:
    """The schema version, the columns of ``streams``, and how many ``append_events`` there are."""
    server, schema = _server_and_schema(uri)
    with psycopg.connect(server, autocommit=True) as conn:
        version = conn.execute(f'SELECT version FROM "{schema}".head').fetchone()[0]
        columns = [row[0] for row in conn.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = %s AND table_name = 'streams' "
            "ORDER BY ordinal_position", (schema,))]
        functions = conn.execute("SELECT count(*) FROM pg_proc WHERE proname = 'append_events' "
                                 "AND pronamespace = %s::regnamespace", (schema,)).fetchone()[0]
        return version, columns, functions


def test_a_version_3_store_is_upgraded_when_opened_for_writing(uri: str) -> None:
    with open_store(uri) as store:
        store.append("s", events(2))
        store.append("t", events(1))
    _make_version_3(uri)
    assert _version_columns_and_functions(uri) == (3, ["stream_id", "name", "revision"], 1)
    with open_store(uri, read_only=True) as reader:  # read-only: readable, left as it is
        assert len(list(reader.read_all())) == 3
        assert reader.stream_revision("s") == 1
    assert _version_columns_and_functions(uri)[0] == 3
    with open_store(uri, create=False) as store:
        assert _version_columns_and_functions(uri) == (SCHEMA_VERSION, ["stream_id", "name"], 0)
        assert store.stream_revision("s") == 1
        assert store.append("s", events(1), 1).next_revision == 3
        with pytest.raises(WrongExpectedVersion):
            store.append("t", events(1), NO_STREAM)
        assert store.append("u", events(1), NO_STREAM).first_position == 5
        assert [e.revision for e in store.read_stream("s")] == [0, 1, 2]
        assert store.check_integrity() == []


def last_statement(uri: str, store) -> str:
    """The last statement the store's writer connection sent (from pg_stat_activity)."""
    server, _ = _server_and_schema(uri)
    with psycopg.connect(server, autocommit=True) as conn:
        return conn.execute("SELECT query FROM pg_stat_activity WHERE pid = %s",
                            (store._writer.info.backend_pid,)).fetchone()[0].strip()


ON_SERVER = "WITH guess AS ("


def test_every_plain_append_is_one_server_call_even_when_the_guess_is_wrong(uri: str) -> None:
    with open_store(uri) as a, open_store(uri) as b:
        a.append("s", events(1))  # nothing to guess from: guessed empty, which it is
        assert last_statement(uri, a).startswith(ON_SERVER)
        b.append("s", events(2))  # b guessed "s" new and the head at 0: both moved, re-based
        assert last_statement(uri, b).startswith(ON_SERVER)
        result = a.append("s", events(1))  # a's guess: head 1, "s" at 0; really 3 and 2
        assert last_statement(uri, a).startswith(ON_SERVER)
        assert (result.first_position, result.last_position, result.next_revision) == (4, 4, 4)
        log = list(a.read_all())  # every record and CRC as if encoded for the real state (else CorruptEvent)
        assert [(e.position, e.revision) for e in log] == [(1, 0), (2, 1), (3, 2), (4, 3)]
        assert_log_shape(log)


def test_one_event_to_a_remembered_stream_takes_the_scalar_statement_and_is_re_based(uri: str) -> None:
    """The commonest append (``_APPEND_ONE``): scalar parameters, the same re-basing as the array form."""
    with open_store(uri) as a, open_store(uri) as b:
        a.append("s", events(1))
        assert "SELECT u.k, u.name" in last_statement(uri, a)  # a stream it did not know yet: the array form
        a.append("s", events(1))
        one = last_statement(uri, a)  # (pg_stat_activity keeps the first 1,024 bytes)
        assert one.startswith(ON_SERVER) and "SELECT s.stream_id, coalesce(" in one and "u.k" not in one
        b.append("t", events(3))  # the head moves behind a's back; "s" does not
        b.append("s", events(2))  # now "s" moves too
        result = a.append("s", [NewEvent("T", b"{}", occurred_at=5)])  # ANY: re-based on the server
        assert last_statement(uri, a) == one
        assert (result.first_position, result.last_position, result.next_revision) == (8, 8, 5)
        log = list(a.read_all())  # every record and CRC as if encoded for the real state (else CorruptEvent)
        assert [(e.stream, e.revision) for e in log][-1] == ("s", 4) and log[-1].occurred_at == 5
        assert_log_shape(log)


def test_a_retry_or_a_refusal_is_decided_on_the_locked_path(uri: str) -> None:
    with open_store(uri) as store:
        batch = events(2)
        first = store.append("s", batch)
        assert store.append("s", batch) == first
        assert last_statement(uri, store) == "COMMIT"
        with pytest.raises(WrongExpectedVersion):
            store.append("s", events(1), 5)
        assert last_statement(uri, store) == "COMMIT"


def test_a_remembered_stream_that_is_gone_sends_the_append_to_the_locked_path(uri: str) -> None:
    """A store skips creating streams it remembers; if one is gone (the store was emptied behind
    its back), the guess is refused, and the locked path creates the stream again."""
    with open_store(uri) as store:
        store.append("s", events(2))
        server, schema = _server_and_schema(uri)
        with psycopg.connect(server, autocommit=True, options=f"-c search_path={schema}") as conn:
            conn.execute("DELETE FROM events")
            conn.execute("DELETE FROM streams")
            conn.execute("UPDATE head SET position = 0")
        result = store.append("s", events(1))
        assert last_statement(uri, store) == "COMMIT"
        assert (result.first_position, result.last_position, result.next_revision) == (1, 1, 1)
        assert [e.revision for e in store.read_stream("s")] == [0]
        assert store.append("s", events(1)).next_revision == 2  # remembered again: one statement
        assert last_statement(uri, store).startswith(ON_SERVER)


def test_re_based_times_never_go_back_and_imported_times_are_kept(uri: str) -> None:
    with open_store(uri, clock=lambda: 5_000) as ahead, open_store(uri, clock=lambda: 1_000) as behind:
        behind.append("s", events(1))
        ahead.append("s", events(1))  # the head's time is now 5,000
        behind.append("s", [NewEvent("T", b"{}"), NewEvent("T", b"{}", occurred_at=3),
                            NewEvent("T", b"{}", recorded_at=7), NewEvent("T", b"{}", recorded_at=8, occurred_at=9)])
        log = list(behind.read_all())
        assert [(e.recorded_at, e.occurred_at) for e in log] == [
            (1_000, 1_000), (5_000, 5_000), (5_000, 5_000), (5_000, 3), (7, 7), (8, 9)]
        assert [e.position for e in log] == list(range(1, 7))


def test_a_multi_append_is_re_based_as_a_whole(uri: str) -> None:
    with open_store(uri) as a, open_store(uri) as b:
        a.append("x", events(1))
        b.append("x", events(2))
        results = a.append_multi([("x", events(1), ANY), ("y", events(2), NO_STREAM)])
        assert [(r.first_position, r.last_position, r.next_revision) for r in results] == [(4, 4, 4), (5, 6, 2)]
        with pytest.raises(WrongExpectedVersion):  # a guessed "x" at 3, right; "y" moved behind its back
            b.append("y", events(1), NO_STREAM)
        assert [e.position for e in a.read_all()] == list(range(1, 7))


def test_stores_guessing_at_once_lose_nothing_and_keep_positions_gapless(uri: str) -> None:
    """Four stores (four server sessions) appending at once, each guessing every time: guesses
    race with commits, and every append must still succeed, once, at the positions it reports."""
    stores = [open_store(uri) for _ in range(4)]
    results: list[tuple[int, int, list]] = []
    failures: list[BaseException] = []

    def append_many(store, k: int) -> None:
        try:
            for i in range(40):
                batch = events(1 + (i + k) % 3)
                result = store.append(f"w{k}", batch)
                results.append((result.first_position, result.last_position, [e.id for e in batch]))
        except BaseException as error:  # reported below, on the test's thread
            failures.append(error)

    threads = [threading.Thread(target=append_many, args=(store, k)) for k, store in enumerate(stores)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
        assert not failures, failures[:3]
        log = list(stores[0].read_all())
        assert [e.position for e in log] == list(range(1, len(log) + 1))
        assert_log_shape(log)
        at = {e.position: e.id for e in log}
        for first, last, ids in results:
            assert [at[p] for p in range(first, last + 1)] == ids
        assert len(log) == sum(len(ids) for _, _, ids in results)
    finally:
        for store in stores:
            store.close()


def test_crc_rebase_gives_the_crc_of_the_rewritten_record(uri: str) -> None:
    """The server's CRC re-base equals zlib's CRC-32 of the record with its window rewritten."""
    import random
    import struct
    import zlib

    from eventstore.postgres import _zero_run_key

    window = struct.Struct(">BqBqBqBq")
    rng = random.Random(17)
    cases = []
    for _ in range(200):
        head, tail = rng.randbytes(rng.randint(0, 600)), rng.randbytes(rng.choice([0, 1, 7, 100, 70_000]))
        old = [rng.randint(-2**63, 2**63 - 1) for _ in range(4)]
        new = [rng.choice([value, rng.randint(-2**63, 2**63 - 1)]) for value in old]
        before = head + window.pack(0xD3, old[0], 0xD3, old[1], 0xD3, old[2], 0xD3, old[3]) + tail
        after = head + window.pack(0xD3, new[0], 0xD3, new[1], 0xD3, new[2], 0xD3, new[3]) + tail
        cases.append((zlib.crc32(before), _zero_run_key(len(tail)), [a ^ b for a, b in zip(old, new, strict=True)],
                      zlib.crc32(after)))
    with open_store(uri) as store, store._connection() as conn:
        for crc, key, deltas, expected in cases:
            assert conn.execute("SELECT crc_rebase(%s, %s, %s::bigint[])", (crc, key, deltas)).fetchone()[0] == expected

"""The PostgreSQL backend's two append paths: guessed (one statement) and locked (four round trips).

A store guesses the state it appends to from its own last commit; another
writer's commit makes the guess wrong, and the append must then take the locked
path and behave exactly as if it had never guessed: expected versions,
idempotent retries, positions. Also: a store of schema version 1 (before the
guessed path) is upgraded when opened for writing and still readable when
opened read-only.
"""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest

from eventstore import (
    ANY,
    NO_STREAM,
    DuplicateIdConflict,
    NewEvent,
    StoreError,
    WrongExpectedVersion,
    open_store,
)
from eventstore.postgres import SCHEMA_VERSION

from .backends import drop_schema, postgres_server
from .helpers import assert_log_shape

pytestmark = pytest.mark.service


@pytest.fixture
def uri(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A fresh schema; stores guess on every transaction, even right after a guess missed."""
    from eventstore import postgres
    from eventstore.postgres import new_schema_name

    monkeypatch.setattr(postgres, "LOCKED_AFTER_A_MISS", 0)
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
        result = a.append("s", events(1), 2)
        assert (result.first_position, result.last_position, result.next_revision) == (5, 5, 4)
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


def _make_version_1(uri: str) -> None:
    """Turn a fresh store into what schema version 1 was: no append_guessed(), a foreign key."""
    server, schema = uri.rsplit("schema=", 1)
    with psycopg.connect(server.rstrip("?&"), autocommit=True) as conn:
        conn.execute(f'SET search_path = "{schema}"')
        conn.execute("DROP FUNCTION append_guessed")
        conn.execute("ALTER TABLE events ADD FOREIGN KEY (stream_id) REFERENCES streams")
        conn.execute("UPDATE head SET version = 1")


def _version_and_function(uri: str) -> tuple[int, bool]:
    server, schema = uri.rsplit("schema=", 1)
    with psycopg.connect(server.rstrip("?&"), autocommit=True) as conn:
        version = conn.execute(f'SELECT version FROM "{schema}".head').fetchone()[0]
        function = conn.execute("SELECT to_regproc(%s)", (f"{schema}.append_guessed",)).fetchone()[0]
        return version, function is not None


def test_a_version_1_store_is_upgraded_when_opened_for_writing(uri: str) -> None:
    with open_store(uri) as store:
        store.append("s", events(2))
    _make_version_1(uri)
    with open_store(uri, read_only=True) as reader:  # read-only: readable, left as it is
        assert len(list(reader.read_all())) == 2
    assert _version_and_function(uri) == (1, False)
    with open_store(uri) as store:
        assert _version_and_function(uri) == (SCHEMA_VERSION, True)
        store.append("s", events(1), 1)
        store.append("s", events(1), 2)
        assert [e.revision for e in store.read_stream("s")] == [0, 1, 2, 3]


def test_an_append_after_the_stores_own_commit_is_one_call_of_append_guessed(uri: str) -> None:
    with open_store(uri) as store:
        store.append("s", events(1))  # nothing to guess from yet: the locked path
        server, schema = uri.rsplit("schema=", 1)
        with psycopg.connect(server.rstrip("?&"), autocommit=True) as conn:
            conn.execute(f'DROP FUNCTION "{schema}".append_guessed')
        with pytest.raises(StoreError, match="append_guessed"):  # proof that the next append calls it
            store.append("s", events(1))
        assert store.append("s", events(1)).first_position == 2  # after a failure: the locked path


def test_after_a_miss_a_store_takes_the_locked_path_for_a_few_transactions(
        uri: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from eventstore import postgres

    monkeypatch.setattr(postgres, "LOCKED_AFTER_A_MISS", 3)
    with open_store(uri) as a, open_store(uri) as b:
        a.append("s", events(1))
        b.append("s", events(1))
        a.append("s", events(1))  # guess misses (b moved the head)
        server, schema = uri.rsplit("schema=", 1)
        with psycopg.connect(server.rstrip("?&"), autocommit=True) as conn:
            conn.execute(f'DROP FUNCTION "{schema}".append_guessed')
        for _ in range(3):  # the locked path, which needs no function
            a.append("s", events(1))
        with pytest.raises(StoreError, match="append_guessed"):  # then it guesses again
            a.append("s", events(1))

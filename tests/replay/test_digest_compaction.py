"""Deliveries are hashed as they come, events encoded at once: the digest and snapshots do not change.

The reference below recomputes the documented format directly: a chain of
sha256(chain + msgpack(chunk columns)) over chunks of ``CHUNK`` rows, the
events column holding the event objects themselves.
"""

from __future__ import annotations

import hashlib

import msgspec
import pytest
from replay_helpers import LedgerProjection, payment_log

import replay.core._runner as runner_mod
from replay import deliveries_of, run
from replay.core._buffer import CHUNK, HASHED_TABLES, Digest, delivery_core


def reference_chain(core: list[list]) -> tuple[bytes, int, list[list] | None]:
    """(chain over the full chunks, rows hashed, the unfinished chunk's columns)."""
    chain, n = b"", len(core[0])
    full = n - n % CHUNK
    for i in range(0, full, CHUNK):
        chunk = [c[i : i + CHUNK] for c in core]
        chain = hashlib.sha256(chain + msgspec.msgpack.encode(chunk)).digest()
    return chain, full, ([c[full:] for c in core] if full < n else None)


@pytest.fixture(scope="module")
def core() -> list[list]:
    events = payment_log(n=60)
    events = (events * (CHUNK // len(events) + 2))[: CHUNK + 300]  # more than one chunk
    return delivery_core(list(range(len(events))), events, identity=True)


@pytest.mark.parametrize("pieces", [[1], [7, 300, 1], [4096], [5000]])
def test_deliveries_fed_in_any_pieces_hash_like_the_plain_columns(core, pieces):
    digest, i, k = Digest(), 0, 0
    while i < len(core[0]):
        step = pieces[k % len(pieces)]
        digest.update_deliveries([c[i : i + step] for c in core])
        i, k = i + step, k + 1
    chain, rows, carry = reference_chain(core)
    state = digest.state["deliveries"]
    assert state[:2] == [chain, rows]
    # the unfinished chunk, as a snapshot keeps it, encodes to the same bytes as with the objects
    assert msgspec.msgpack.encode(state[2]) == msgspec.msgpack.encode(carry)
    last = hashlib.sha256(chain + msgspec.msgpack.encode(carry)).digest() if carry else chain
    summary = [[t, len(core[0]), last] if t == "deliveries" else [t, 0, b""] for t in HASHED_TABLES]
    assert digest.hexdigest() == hashlib.sha256(msgspec.msgpack.encode(summary)).hexdigest()


def test_a_digest_restored_from_its_state_continues_identically(core):
    half = len(core[0]) // 2 + 11
    first, second = [c[:half] for c in core], [c[half:] for c in core]
    whole = Digest()
    whole.update_deliveries(core)
    saved = Digest()
    saved.update_deliveries(first)
    encoded = msgspec.msgpack.encode(saved.state)  # what a snapshot writes
    restored = Digest(msgspec.msgpack.decode(encoded))
    restored.update_deliveries(second)
    assert restored.hexdigest() == whole.hexdigest()
    assert msgspec.msgpack.encode(restored.state) == msgspec.msgpack.encode(whole.state)


@pytest.mark.parametrize("compact_rows", [1, 3, 256])
def test_compaction_size_does_not_change_the_digest(monkeypatch, compact_rows):
    events = payment_log(n=50)
    expected = run(list(deliveries_of(events)), LedgerProjection())
    monkeypatch.setattr(runner_mod, "COMPACT_ROWS", compact_rows)
    result = run(deliveries_of(events), LedgerProjection())
    assert result.digest == expected.digest
    assert result.tables["deliveries"].equals(expected.tables["deliveries"])


def _digest_in_child(core: list[list], expected: str, conn) -> None:
    digest = Digest()
    digest.update_deliveries(core)
    conn.send(digest.hexdigest() == expected)


def test_full_chunks_are_hashed_in_a_forked_child_too(core):
    """The hasher thread is per process: a child forked after it started gets its own."""
    import multiprocessing

    parent = Digest()
    parent.update_deliveries(core)  # more than one chunk: the parent's hasher thread is running
    expected = parent.hexdigest()
    ctx = multiprocessing.get_context("fork")
    receive, send = ctx.Pipe(duplex=False)
    child = ctx.Process(target=_digest_in_child, args=(core, expected, send), daemon=True)
    child.start()
    try:
        assert receive.poll(20), "the child's digest never finished (its hasher thread is missing)"
        assert receive.recv() is True
    finally:
        child.kill()
        child.join()

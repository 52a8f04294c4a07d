"""The store against a plain Python model, driven by Hypothesis (RuleBasedStateMachine).

Appends draw random expected versions (many of them wrong) and fresh, retried,
partly repeated, reordered or misplaced ids; after every step the whole log and
each stream must match the model. Durable backends are also closed and opened
again in the middle, and driven through two handles on one file in turn.
Derandomized, so CI runs the same examples every time.
"""

from __future__ import annotations

import itertools
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from eventstore import (
    ANY,
    EXISTS,
    NO_STREAM,
    AppendResult,
    DuplicateIdConflict,
    NewEvent,
    WrongExpectedVersion,
)

from .backends import Backend, backend_for

STREAMS = ("acct-1", "acct-2", "x'; DROP TABLE events;--")
COMMON = settings(
    deadline=None, derandomize=True, database=None, suppress_health_check=[HealthCheck.too_slow]
)
SETTINGS = {
    "memory": settings(COMMON, max_examples=60, stateful_step_count=30),
    "embedded": settings(COMMON, max_examples=30, stateful_step_count=30),
    "kurrentdb": settings(COMMON, max_examples=10, stateful_step_count=20),
}


@dataclass
class Model:
    """What the store should hold: each stream's events and every batch written."""

    streams: dict[str, list[NewEvent]] = field(default_factory=dict)
    log: list[tuple[str, NewEvent]] = field(default_factory=list)
    batches: list[tuple[str, list[NewEvent], AppendResult]] = field(default_factory=list)

    def revision(self, stream: str) -> int | None:
        events = self.streams.get(stream)
        return len(events) - 1 if events else None

    def accepts(self, stream: str, expected: object) -> bool:
        current = self.revision(stream)
        if expected is ANY:
            return True
        if expected is NO_STREAM:
            return current is None
        if expected is EXISTS:
            return current is not None
        return current == expected

    def write(self, stream: str, events: list[NewEvent], result: AppendResult) -> None:
        self.streams.setdefault(stream, []).extend(events)
        self.log.extend((stream, e) for e in events)
        self.batches.append((stream, events, result))


class StoreMachine(RuleBasedStateMachine):
    backend: Backend
    reopen_allowed: bool

    def __init__(self) -> None:
        super().__init__()
        # Durable backends get two handles on one location, used in turn: neither may
        # trust a cached revision or position when the other one has written.
        self.handles = [self.backend.open() for _ in range(2 if self.reopen_allowed else 1)]
        self.store = self.handles[0]
        self.model = Model()
        self.ids = (uuid.UUID(int=n) for n in itertools.count(1))
        self.base = self.store.last_position()
        self.ns = self.backend.namespace  # stream names of their own on a shared server

    def teardown(self) -> None:
        for handle in self.handles:
            handle.close()

    def _fresh(self, datas: list[bytes], type: str) -> list[NewEvent]:
        return [NewEvent(type, d, id=next(self.ids)) for d in datas]

    def _expected(self, stream: str, kind: str, delta: int) -> object:
        current = self.model.revision(stream)
        if kind == "revision":
            return max(0, (current if current is not None else 0) + delta)
        return {"ANY": ANY, "NO_STREAM": NO_STREAM, "EXISTS": EXISTS}[kind]

    @rule(
        stream=st.sampled_from(STREAMS),
        datas=st.lists(st.binary(max_size=12), min_size=1, max_size=4),
        type=st.sampled_from(["PaymentReceived", "Thing", "Vendor'\"--"]),
        kind=st.sampled_from(["ANY", "NO_STREAM", "EXISTS", "revision"]),
        delta=st.integers(-2, 2),
    )
    def append_new(self, stream, datas, type, kind, delta):
        events = self._fresh(datas, type)
        expected = self._expected(stream, kind, delta)
        if not self.model.accepts(stream, expected):
            with pytest.raises(WrongExpectedVersion) as caught:
                self.store.append(self.ns + stream, events, expected=expected)
            assert (caught.value.expected, caught.value.actual) == (expected, self.model.revision(stream))
            return
        result = self.store.append(self.ns + stream, events, expected=expected)
        previous = self.model.batches[-1][2].last_position if self.model.batches else self.base
        assert result.first_position > previous
        assert result.last_position - result.first_position >= len(events) - 1
        self.model.write(stream, events, result)
        assert result.next_revision == len(self.model.streams[stream])

    @precondition(lambda self: self.model.batches)
    @rule(data=st.data(), kind=st.sampled_from(["ANY", "NO_STREAM", "EXISTS", "revision"]),
          delta=st.integers(-2, 2))
    def retry_a_batch(self, data, kind, delta):
        stream, events, original = data.draw(st.sampled_from(self.model.batches))
        copies = [NewEvent(e.type, e.data, id=e.id) for e in events]
        assert self.store.append(self.ns + stream, copies, expected=self._expected(stream, kind, delta)) == original

    @precondition(lambda self: self.model.batches)
    @rule(data=st.data(), how=st.sampled_from(["partial", "reordered", "elsewhere"]))
    def repeat_ids_wrongly(self, data, how):
        stream, events, _ = data.draw(st.sampled_from(self.model.batches))
        if how == "partial":
            events = [events[0], *self._fresh([b"new"], "Thing")]
        elif how == "reordered" and len(events) > 1:
            events = list(reversed(events))
        else:
            stream = data.draw(st.sampled_from([s for s in STREAMS if s != stream]))
        with pytest.raises(DuplicateIdConflict):
            self.store.append(self.ns + stream, events)

    @precondition(lambda self: self.reopen_allowed)
    @rule()
    def close_and_reopen(self):
        index = self.handles.index(self.store)
        self.store.close()
        self.store = self.handles[index] = self.backend.open()

    @precondition(lambda self: len(self.handles) > 1)
    @rule()
    def switch_handle(self):
        self.store = self.handles[1 - self.handles.index(self.store)]

    @rule(stream=st.sampled_from(STREAMS), start=st.none() | st.integers(0, 8),
          backwards=st.booleans(), limit=st.none() | st.integers(0, 5))
    def read_a_stream(self, stream, start, backwards, limit):
        expected = list(enumerate(self.model.streams.get(stream, [])))
        if backwards:
            expected = [p for p in reversed(expected) if start is None or p[0] <= start]
        else:
            expected = [p for p in expected if start is None or p[0] >= start]
        expected = expected[:limit] if limit is not None else expected
        got = list(self.store.read_stream(self.ns + stream, start, backwards, limit))
        assert [(e.revision, e.id, e.data) for e in got] == [(r, e.id, e.data) for r, e in expected]

    @invariant()
    def log_matches_model(self):
        events = list(self.store.read_all(from_position=self.base + 1))
        assert [(e.stream, e.id, e.type, e.data) for e in events] == [
            (self.ns + s, e.id, e.type, e.data) for s, e in self.model.log]
        positions = [e.position for e in events]
        assert positions == sorted(set(positions))
        for stream, mine in self.model.streams.items():
            revisions = [e.revision for e in events if e.stream == self.ns + stream]
            assert revisions == list(range(len(mine)))
            assert self.store.stream_revision(self.ns + stream) == len(mine) - 1
        by_id = {e.id: e for e in events}
        for _, batch, result in self.model.batches:
            assert (by_id[batch[0].id].position, by_id[batch[-1].id].position) == (
                result.first_position, result.last_position)
        assert self.store.last_position() == (positions[-1] if positions else self.base)


@pytest.mark.parametrize("name", ["memory", "embedded", pytest.param("kurrentdb", marks=pytest.mark.service)])
def test_store_behaves_like_the_model(name: str, tmp_path: Path) -> None:
    files = itertools.count()

    class Machine(StoreMachine):
        def __init__(self) -> None:
            # Every example starts from an empty store: a new file for embedded.
            type(self).backend = backend_for(name, tmp_path / f"example-{next(files)}")
            super().__init__()

    Machine.backend = backend_for(name, tmp_path)  # skips here if the backend cannot run
    Machine.reopen_allowed = Machine.backend.durable
    run_state_machine_as_test(Machine, settings=SETTINGS[name])

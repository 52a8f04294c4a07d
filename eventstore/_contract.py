"""The event store contract that every backend implements.

The contract mirrors KurrentDB: streams with gapless 0-based revisions, one
global log with strictly increasing positions (starting at 1), optimistic
concurrency by expected version, idempotent appends by event id, and
catch-up-then-live subscriptions that resume from a checkpoint.
"""

from __future__ import annotations

import abc
import asyncio
from collections.abc import Iterable, Iterator
from typing import Final

import msgspec

from ._errors import InvalidArgument, StoreClosed
from ._errors import mark_request as mark_request
from ._filter import NO_FILTER, ReadFilter
from ._subscription import Subscription
from ._types import ANY, AppendResult, Expected, NewEvent, RecordedEvent

PAGE_SIZE: Final = 1000

AppendRequest = tuple[str, Iterable[NewEvent], Expected]
"""One stream's part of ``append_multi``: ``(stream, events, expected)``."""


class Capabilities(msgspec.Struct, frozen=True):
    """What a backend can promise beyond the contract every backend keeps.

    Callers ask ``store.capabilities`` instead of testing for a backend class.

    - ``atomic_append_multi``: ``append_multi`` commits every request in one
      transaction (all or nothing). When False it appends request by request
      in order, so a failure can leave a prefix of the requests stored (still
      in order, still idempotent to retry).
    - ``read_only``: the store was opened for reading only; appends raise
      ``StoreReadOnly``.

    Where a backend cannot keep part of the contract it says so here
    (KurrentDB: all three False; see eventstore/kurrentdb.py):

    - ``dense_positions``: positions run 1, 2, 3... with no gaps. When False
      they only increase strictly (KurrentDB: byte offsets in its log), so a
      position is a checkpoint to read after, never a count.
    - ``durable_idempotency``: a retry with the same ids is recognised in
      every expected-version mode, however long after. When False it is
      recognised for ever only with the same exact expected revision (or
      ``NO_STREAM``), and with ``ANY``/``EXISTS`` only while the server
      remembers the ids (KurrentDB's id cache).
    - ``global_unique_ids``: an event id is stored once in the whole store;
      a batch whose ids are stored in another stream is a
      ``DuplicateIdConflict``. When False that is checked within the stream
      only.
    - ``woken_by_appends``: ``wait_for_append`` is woken by the commit of an
      append (in any process). When False it polls.
    """

    atomic_append_multi: bool = False
    read_only: bool = False
    dense_positions: bool = True
    durable_idempotency: bool = True
    global_unique_ids: bool = True
    woken_by_appends: bool = True


class EventStore(abc.ABC):
    """A durable, append-only store of events in streams."""

    uri: str
    capabilities: Capabilities = Capabilities()

    # -- writing ----------------------------------------------------------
    @abc.abstractmethod
    def append(
        self, stream: str, events: Iterable[NewEvent], expected: Expected = ANY
    ) -> AppendResult:
        """Append ``events`` to ``stream`` atomically: all are stored or none.

        Raises ``WrongExpectedVersion`` if the stream is not at ``expected``
        (``ANY``, ``NO_STREAM``, ``EXISTS`` or the revision of its last event).
        Re-appending a batch whose ids are all stored already returns the
        original result and writes nothing; a batch that repeats only some
        stored ids raises ``DuplicateIdConflict``. Returns after the events
        are durable.
        """

    @abc.abstractmethod
    def append_multi(self, requests: Iterable[AppendRequest]) -> list[AppendResult]:
        """Append to many streams at once, in order: ``[(stream, events, expected), ...]``.

        The requests are applied one after another, in the order given, as
        ``append`` would apply them (a stream may appear more than once; each
        request sees the revisions the earlier ones left), so global positions
        follow the order of the requests. Returns one ``AppendResult`` per
        request. Each request's rules are ``append``'s: its ``expected``
        version, and idempotency by id (a request whose ids are all stored
        returns its original result and writes nothing; one that repeats
        only some stored ids raises ``DuplicateIdConflict``).

        With ``capabilities.atomic_append_multi`` (memory, embedded) it is all
        or nothing: every request is stored in one transaction, or, when any
        request fails (or the store is locked, full, unreachable), nothing is
        and the error is raised. Without it (KurrentDB) the requests are
        appended one by one in order and a failure leaves the requests before
        it stored. Either way the error raised for a failing request carries
        ``request_index``, the index of that request. Returns after the events
        are durable.
        """

    async def append_async(
        self, stream: str, events: Iterable[NewEvent], expected: Expected = ANY
    ) -> AppendResult:
        """``append`` for asyncio callers; never blocks the event loop."""
        batch = list(events)
        return await asyncio.to_thread(self.append, stream, batch, expected)

    # -- reading ----------------------------------------------------------
    @abc.abstractmethod
    def read_stream(
        self,
        stream: str,
        from_revision: int | None = None,
        backwards: bool = False,
        limit: int | None = None,
    ) -> Iterator[RecordedEvent]:
        """Events of one stream in revision order, starting at ``from_revision``.

        ``from_revision`` defaults to the first event (or the last, backwards)
        and is inclusive. A stream that does not exist yields nothing.
        """

    @abc.abstractmethod
    def read_all(
        self,
        from_position: int | None = None,
        backwards: bool = False,
        limit: int | None = None,
        filter: ReadFilter = NO_FILTER,
    ) -> Iterator[RecordedEvent]:
        """Every event in global order from ``from_position`` (inclusive).

        Reads lazily in pages, so memory does not grow with the log. Raises
        ``CorruptEvent`` on an event whose bytes fail their checksum.
        """

    @abc.abstractmethod
    def stream_revision(self, stream: str) -> int | None:
        """The revision of the stream's last event, or None if it has none."""

    @abc.abstractmethod
    def last_position(self) -> int:
        """The position of the newest event in the store, 0 when it is empty."""

    # -- subscriptions ----------------------------------------------------
    def subscribe(
        self, from_position: int | None = None, filter: ReadFilter = NO_FILTER
    ) -> Subscription:
        """Catch up on stored events, then follow new ones as they are appended.

        ``from_position`` is a checkpoint: the position of the last event the
        caller has processed; delivery starts after it (None: from the start).
        The subscription is a sync and an async iterator; its ``position`` is
        the checkpoint to save.
        """
        return Subscription(self, from_position or 0, filter)

    def read_after(self, checkpoint: int, limit: int, filter: ReadFilter = NO_FILTER) -> list[RecordedEvent]:
        """Up to ``limit`` events after ``checkpoint`` (a position already processed, or 0)."""
        return list(self.read_all(from_position=checkpoint + 1, limit=limit, filter=filter))

    def check_integrity(self) -> list[str]:
        """What is wrong with the store's storage, [] when nothing is (or the backend cannot tell).

        Cheaper than reading every event: the embedded store runs SQLite's
        ``quick_check``. Writers that must not add to a damaged store (an
        import) ask first.
        """
        check_open(getattr(self, "_closed", False), self.uri)
        return []

    @abc.abstractmethod
    def wait_for_append(self, after_position: int, timeout: float) -> bool:
        """Block until an event after ``after_position`` may exist or ``timeout`` passes.

        Returns True when woken by an append. Spurious wake-ups are allowed:
        callers re-read to see what is there.
        """

    async def wait_for_append_async(self, after_position: int, timeout: float) -> bool:
        """``wait_for_append`` for asyncio callers."""
        return await asyncio.to_thread(self.wait_for_append, after_position, timeout)

    # -- lifecycle --------------------------------------------------------
    @abc.abstractmethod
    def close(self) -> None:
        """Release resources; later calls raise ``StoreClosed``. Idempotent."""

    def __enter__(self) -> EventStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.uri}>"


def check_open(closed: bool, uri: str) -> None:
    """Raise ``StoreClosed`` when the store has been closed."""
    if closed:
        raise StoreClosed(f"store {uri} is closed")


def check_read_args(start: int | None, limit: int | None, what: str) -> None:
    """Reject negative starts and limits with a clear message."""
    if start is not None and (not isinstance(start, int) or start < 0):
        raise InvalidArgument(f"{what} must be a non-negative integer, got {start!r}")
    if limit is not None and (not isinstance(limit, int) or limit < 0):
        raise InvalidArgument(f"limit must be a non-negative integer, got {limit!r}")


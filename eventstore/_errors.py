"""One exception hierarchy for every backend.

Backends convert driver errors at their boundary (``raise X(...) from e``), so
callers only ever catch :class:`StoreError` subclasses.
"""

from __future__ import annotations


class UnbrokenError(Exception):
    """The root of every error unbroken raises on purpose.

    Each package keeps its own named errors under it (``StoreError``,
    ``ConfigError``, ``ReplayError``, ``LogError``, ``QueryError``...), so a
    caller can catch unbroken's errors, and nothing else, with one clause.
    """


class StoreError(UnbrokenError):
    """Base class of every error the event store raises."""


class InvalidEvent(StoreError, ValueError):
    """An event, stream name, type or metadata failed validation before storage."""


class InvalidArgument(StoreError, ValueError):
    """A store call was given an argument it cannot use (negative limit, bad URI...)."""


class WrongExpectedVersion(StoreError):
    """The stream was not at the revision the append expected."""

    def __init__(self, stream: str, expected: object, actual: int | None) -> None:
        self.stream = stream
        self.expected = expected
        self.actual = actual
        shown = "no stream" if actual is None else f"revision {actual}"
        super().__init__(
            f"stream {stream!r}: expected {_expected_text(expected)}, but it is at {shown}"
        )


class DuplicateIdConflict(StoreError):
    """A batch repeats some earlier event ids but not all, or repeats them elsewhere."""

    def __init__(self, stream: str, ids: list[str], detail: str) -> None:
        self.stream = stream
        self.ids = ids
        super().__init__(f"stream {stream!r}: {detail} (ids: {', '.join(ids[:5])})")


class CorruptEvent(StoreError):
    """A stored event's bytes do not match its checksum."""

    def __init__(self, position: int, detail: str = "checksum mismatch") -> None:
        self.position = position
        super().__init__(
            f"event at position {position} is corrupt: {detail}; "
            "run `unbroken store verify` to list every damaged event"
        )


class InvalidPayload(StoreError, ValueError):
    """A known event type's data does not match its payload struct."""

    def __init__(self, position: int | None, type: str, detail: str) -> None:
        self.position = position
        self.type = type
        where = "new event" if position is None else f"event at position {position}"
        super().__init__(f"{where} of type {type!r} has invalid data: {detail}")


class StoreClosed(StoreError):
    """The store was used after ``close()``."""


class StoreDamaged(StoreError):
    """The store file is damaged in a way that opening could lose acknowledged events."""


class StoreFull(StoreError):
    """The disk is full; the append was rolled back and the store stays usable."""


class StoreIOError(StoreError):
    """The operating system reported an I/O error; the append was rolled back."""


class StoreLocked(StoreError):
    """Another writer held the store's write lock past the busy timeout; nothing was written."""


class StoreReadOnly(StoreError):
    """The store was opened read-only (``create=False``, ``read_only=True``) and cannot be appended to."""


class StoreNotFound(StoreError):
    """No store at the path (or the path is a directory); a read-only open never creates one."""


class StoreUnavailable(StoreError):
    """A remote store could not be reached."""


def mark_request(error: BaseException, index: int) -> BaseException:
    """Tag ``error`` with the index of the ``append_multi`` request that failed; returns it."""
    try:
        error.request_index = index  # type: ignore[attr-defined]
    except AttributeError:  # pragma: no cover - exceptions with __slots__
        pass
    return error


def _expected_text(expected: object) -> str:
    if isinstance(expected, int):
        return f"revision {expected}"
    return str(expected)

"""Append rules shared by the backends: expected versions, idempotent retries, commit grouping."""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, NamedTuple

from ._errors import DuplicateIdConflict, InvalidEvent, WrongExpectedVersion
from ._types import ANY, EXISTS, NO_STREAM, AppendResult, Expected, ExpectedState


class StoredId(NamedTuple):
    """Where an already-stored event id lives."""

    stream: str
    revision: int
    position: int


def check_expected(stream: str, expected: Expected, current: int | None) -> None:
    """Raise ``WrongExpectedVersion`` unless ``current`` satisfies ``expected``."""
    if expected is ANY:
        return
    if expected is NO_STREAM:
        ok = current is None
    elif expected is EXISTS:
        ok = current is not None
    elif isinstance(expected, int) and not isinstance(expected, bool) and expected >= 0:
        ok = current == expected
    else:
        raise InvalidEvent(
            f"expected must be ANY, NO_STREAM, EXISTS or a revision >= 0, got {expected!r}"
        )
    if not ok:
        raise WrongExpectedVersion(stream, expected, current)


def validate_expected(expected: object) -> None:
    """Reject an unusable expected version before any work is done."""
    if isinstance(expected, ExpectedState):
        return
    if not isinstance(expected, int) or isinstance(expected, bool) or expected < 0:
        raise InvalidEvent(
            f"expected must be ANY, NO_STREAM, EXISTS or a revision >= 0, got {expected!r}"
        )


def repeated_result(
    stream: str, ids: Sequence[uuid.UUID], stored: Mapping[uuid.UUID, StoredId]
) -> AppendResult | None:
    """The original result if the batch is an exact retry; None if no id is stored.

    Raises ``DuplicateIdConflict`` when only some ids are stored, or they are
    stored in another stream or another order.
    """
    if not stored:
        return None
    found = [stored.get(i) for i in ids]
    if any(f is None for f in found):
        repeated = [str(i) for i in ids if i in stored]
        raise DuplicateIdConflict(stream, repeated, "batch repeats some stored event ids but not all")
    places = [f for f in found if f is not None]
    if any(p.stream != stream for p in places):
        others = sorted({p.stream for p in places if p.stream != stream})
        raise DuplicateIdConflict(
            stream, [str(i) for i in ids], f"ids are already stored in stream {others[0]!r}"
        )
    revisions = [p.revision for p in places]
    if revisions != list(range(revisions[0], revisions[0] + len(revisions))):
        raise DuplicateIdConflict(
            stream, [str(i) for i in ids], "ids are stored, but not as one batch in this order"
        )
    return AppendResult(places[0].position, places[-1].position, revisions[-1] + 1)


def transactions(queue: Sequence[Any], alone: type) -> Iterator[list]:
    """A drained commit queue as transactions, in queue order: runs of plain appends
    together, each request of type ``alone`` (an ``append_multi``) in one of its own."""
    run: list = []
    for request in queue:
        if isinstance(request, alone):
            if run:
                yield run
                run = []
            yield [request]
        else:
            run.append(request)
    if run:
        yield run

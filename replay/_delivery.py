"""What a replay is fed: deliveries of recorded events at virtual times, and drops."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import msgspec

from eventstore import RecordedEvent

PERTURBATIONS = frozenset(
    {"none", "delayed", "duplicate", "reordered", "skewed", "partitioned"}
)


class Delivery(msgspec.Struct, frozen=True, array_like=True):
    """One delivery of ``event`` to the projection at virtual time ``at`` (ns).

    ``copy`` is 0 for the first delivery of an event and 1.. for duplicates;
    ``perturbation`` and ``delay_ns`` say how the schedule moved it, and land
    in the ``deliveries`` trace table as they are.
    """

    event: RecordedEvent
    at: int
    copy: int = 0
    perturbation: str = "none"
    delay_ns: int = 0


class Drop(msgspec.Struct, frozen=True, array_like=True):
    """An event of the base log that the schedule never delivers, and why."""

    position: int
    event: RecordedEvent
    reason: str = "dropped"


def deliveries_of(events: Iterable[RecordedEvent]) -> Iterator[Delivery]:
    """The identity schedule: each event once, at its ``recorded_at``, in recorded order.

    Lazy, so a store's ``read_all()`` can be replayed without holding the log.
    """
    for event in events:
        yield Delivery(event, event.recorded_at)

"""What a replay is fed: deliveries of recorded events at virtual times, and drops."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import msgspec

from eventstore import RecordedEvent

PERTURBATIONS = frozenset(
    {"none", "delayed", "duplicate", "reordered", "skewed", "partitioned"}
)


class Delivery(msgspec.Struct, frozen=True, array_like=True, gc=False):
    """One delivery of ``event`` to the projection at virtual time ``at`` (ns).

    ``copy`` is 0 for the first delivery of an event and 1.. for duplicates;
    ``perturbation`` and ``delay_ns`` say how the schedule moved it, and land
    in the ``deliveries`` trace table as they are. (``gc=False``: it holds no
    containers that could form a cycle, so the collector need not track it.)
    """

    event: RecordedEvent
    at: int
    copy: int = 0
    perturbation: str = "none"
    delay_ns: int = 0


class Drop(msgspec.Struct, frozen=True, array_like=True, gc=False):
    """An event of the base log that the schedule never delivers, and why."""

    position: int
    event: RecordedEvent
    reason: str = "dropped"


class IdentitySchedule:
    """The identity schedule over ``events``: iterating gives one ``Delivery`` per event.

    ``run`` recognises it and reads the events directly, skipping a
    ``Delivery`` per event; the trace and digest are the same either way.
    """

    __slots__ = ("events",)

    def __init__(self, events: Iterable[RecordedEvent]) -> None:
        self.events = events

    def __iter__(self) -> Iterator[Delivery]:
        for event in self.events:
            yield Delivery(event, event.recorded_at)


def deliveries_of(events: Iterable[RecordedEvent]) -> IdentitySchedule:
    """The identity schedule: each event once, at its ``recorded_at``, in recorded order.

    Lazy, so a store's ``read_all()`` can be replayed without holding the log
    (and then, like any iterator, it can be iterated once).
    """
    return IdentitySchedule(events)

"""Delivery schedules: a short list of perturbations applied to a base log.

A ``Schedule`` is data (a frozen msgspec Struct, JSON round-trippable), so a
failing one can be saved next to its trace and replayed without Hypothesis.
It names events by their global ``position`` and sources by name, never by
index, so it stays meaningful when a counterexample log is cut down.

``Schedule()`` (no perturbations) is the identity: every event once, at its
``recorded_at``, in recorded order. Each perturbation moves one event or one
source; the cost of applying a schedule is one pass over the log plus a sort.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Final

import msgspec

from eventstore import RecordedEvent
from replay import Delivery, Drop

HOUR_NS: Final = 3_600_000_000_000


class Delay(msgspec.Struct, frozen=True, tag="delay"):
    """Deliver the event at ``position`` ``ns`` later than it was recorded (the largest delay wins)."""

    position: int
    ns: int


class Duplicate(msgspec.Struct, frozen=True, tag="duplicate"):
    """Deliver one extra copy of the event at ``position``, ``ns`` after it was recorded."""

    position: int
    ns: int


class DropEvent(msgspec.Struct, frozen=True, tag="drop"):
    """Never deliver the event at ``position`` (no copy of it arrives)."""

    position: int


class Reorder(msgspec.Struct, frozen=True, tag="reorder"):
    """Deliver the event at ``position`` just after the event ``by`` places later in the log."""

    position: int
    by: int


class Partition(msgspec.Struct, frozen=True, tag="partition"):
    """Silence ``source`` for ``[start, start + ns)``; on heal its traffic arrives at the end.

    ``source`` matches an event whose ``metadata.source`` equals it, or whose
    stream equals it or starts with it (a stream prefix such as ``account-``).
    Without ``heal`` the traffic of the window is lost.
    """

    source: str
    start: int
    ns: int
    heal: bool = True


class Skew(msgspec.Struct, frozen=True, tag="skew"):
    """Shift the source time (``occurred_at``) of every event of ``source`` by ``ns``."""

    source: str
    ns: int


Perturbation = Delay | Duplicate | DropEvent | Reorder | Partition | Skew

# Strongest label wins when a copy was moved by more than one perturbation.
_LABEL_RANK: Final = ("none", "skewed", "delayed", "reordered", "partitioned", "duplicate")


class Schedule(msgspec.Struct, frozen=True):
    """A delivery schedule: perturbations of a base log; empty means the identity."""

    perturbations: tuple[Perturbation, ...] = ()

    def apply(self, events: Sequence[RecordedEvent]) -> tuple[list[Delivery], list[Drop]]:
        """Deliveries of ``events`` under this schedule (in delivery order) and the drops.

        Guarantees: deterministic (same schedule and log, same result); the
        empty schedule gives exactly ``replay.deliveries_of(events)`` (when
        ``recorded_at`` never decreases; see ``arrival_times``); delivery
        times never decrease; every
        event of the log is either delivered at least once or listed in the
        drops; copy 0 is the first delivery of an event in delivery order.
        Raises ``ValueError`` naming the perturbation when it refers to a
        position that is not in ``events``.
        """
        return _Plan(events, self.perturbations).build()

    def to_json(self) -> bytes:
        """The schedule as JSON (what ``Schedule.from_json`` reads back)."""
        return msgspec.json.encode(self)

    @classmethod
    def from_json(cls, raw: bytes | str) -> Schedule:
        """Decode a schedule saved by ``to_json``; raises ``msgspec.ValidationError`` if malformed."""
        return msgspec.json.decode(raw, type=cls)

    def describe(self) -> list[str]:
        """One readable line per perturbation."""
        return [describe(p) for p in self.perturbations]

    def without(self, index: int) -> Schedule:
        """This schedule with perturbation ``index`` removed."""
        ps = self.perturbations
        return Schedule(ps[:index] + ps[index + 1 :])


IDENTITY: Final = Schedule()


def source_of(event: RecordedEvent) -> str:
    """The partition / clock-skew unit of an event: ``metadata.source``, else its stream."""
    return event.metadata.source or event.stream


def matches(source: str, event: RecordedEvent) -> bool:
    """True when a partition or skew naming ``source`` applies to ``event``."""
    return event.metadata.source == source or event.stream.startswith(source)


def describe(p: Perturbation) -> str:
    """A perturbation in words, with durations in readable units."""
    if isinstance(p, Delay):
        return f"delay event @{p.position} by {fmt_ns(p.ns)}"
    if isinstance(p, Duplicate):
        return f"duplicate event @{p.position}, extra copy {fmt_ns(p.ns)} after recording"
    if isinstance(p, DropEvent):
        return f"drop event @{p.position}"
    if isinstance(p, Reorder):
        return f"deliver event @{p.position} after the {p.by} event(s) that follow it"
    if isinstance(p, Partition):
        end = "then heal" if p.heal else "traffic lost"
        return f"partition {p.source!r} for {fmt_ns(p.ns)} from {fmt_utc(p.start)} ({end})"
    return f"skew {p.source!r} clock by {fmt_ns(p.ns, signed=True)}"


def fmt_utc(ns: int) -> str:
    """Nanoseconds UTC as ``2024-01-03 10:00:05``."""
    return datetime.fromtimestamp(ns / 1e9, tz=UTC).strftime("%Y-%m-%d %H:%M:%S")


def fmt_ns(ns: int, signed: bool = False) -> str:
    """``ns`` as e.g. ``2h03m``, ``41s`` or ``350ms``."""
    sign = ("-" if ns < 0 else "+") if signed else ("-" if ns < 0 else "")
    ns = abs(ns)
    if ns >= HOUR_NS:
        hours, rest = divmod(ns, HOUR_NS)
        return f"{sign}{hours}h{rest // 60_000_000_000:02d}m"
    if ns >= 1_000_000_000:
        return f"{sign}{ns / 1e9:.0f}s"
    if ns >= 1_000_000:
        return f"{sign}{ns / 1e6:.0f}ms"
    return f"{sign}{ns}ns"


class _Copy:
    """One planned delivery of an event; ``anchor``/``sub`` break ties at equal times."""

    __slots__ = ("event", "index", "at", "anchor", "sub", "label", "base")

    def __init__(self, event: RecordedEvent, index: int, base: int, sub: int, label: str) -> None:
        self.event = event
        self.index = self.anchor = index
        self.base = self.at = base
        self.sub = sub
        self.label = label

    def relabel(self, label: str) -> None:
        if _LABEL_RANK.index(label) > _LABEL_RANK.index(self.label):
            self.label = label

    def key(self) -> tuple[int, int, int, int]:
        return (self.at, self.anchor, self.sub, self.index)


def arrival_times(events: Sequence[RecordedEvent]) -> list[int]:
    """When each event arrives unperturbed: ``recorded_at``, never earlier than its predecessor.

    The replay clock never goes backwards, so an imported log whose
    ``recorded_at`` dips is delivered in log order at the running maximum.
    """
    out, high = [], None
    for e in events:
        high = e.recorded_at if high is None or e.recorded_at > high else high
        out.append(high)
    return out


class _Plan:
    """Working state of ``Schedule.apply`` for one log."""

    def __init__(self, events: Sequence[RecordedEvent], perturbations: Sequence[Perturbation]):
        self.events = list(events)
        self.base = arrival_times(self.events)
        self.perturbations = perturbations
        self.copies: dict[int, list[_Copy]] = {}
        self.dropped: dict[int, str] = {}
        self._index: dict[int, int] | None = None

    def build(self) -> tuple[list[Delivery], list[Drop]]:
        self._skew()
        for p in self.perturbations:
            self._move(p)
        for p in self.perturbations:
            if isinstance(p, Partition):
                self._partition(p)
        return self._deliveries(), self._drops()

    def _at(self, p: Perturbation) -> int:
        if self._index is None:
            self._index = {e.position: i for i, e in enumerate(self.events)}
        i = self._index.get(p.position)  # type: ignore[union-attr]
        if i is None:
            raise ValueError(
                f"schedule perturbation {p!r} names position {p.position}, "  # type: ignore[union-attr]
                "which is not in the log"
            )
        return i

    def _first(self, i: int) -> _Copy:
        copies = self.copies.get(i)
        if not copies:
            copies = self.copies[i] = [_Copy(self.events[i], i, self.base[i], 0, "none")]
        return copies[0]

    def _skew(self) -> None:
        for p in self.perturbations:
            if not isinstance(p, Skew):
                continue
            for i, e in enumerate(self.events):
                if matches(p.source, e):
                    shifted = msgspec.structs.replace(e, occurred_at=e.occurred_at + p.ns)
                    self.events[i] = shifted
                    for c in self.copies.get(i, ()):
                        c.event = shifted
                    self._first(i).relabel("skewed")

    def _move(self, p: Perturbation) -> None:
        if isinstance(p, (Skew, Partition)):
            return
        i = self._at(p)
        if isinstance(p, DropEvent):
            self.dropped[i] = "dropped"
        elif isinstance(p, Delay):
            first = self._first(i)
            # Two delays of one event do not add up: the larger wins, so lateness stays bounded.
            first.at = max(first.at, first.base + max(p.ns, 0))
            first.relabel("delayed")
        elif isinstance(p, Reorder):
            first = self._first(i)
            target = min(i + max(p.by, 0), len(self.events) - 1)
            first.anchor, first.sub = target, 1
            first.at = max(first.at, self.base[target])
            first.relabel("reordered")
        else:
            self._first(i)
            copies = self.copies[i]
            extra = _Copy(self.events[i], i, self.base[i], len(copies), "duplicate")
            extra.at += max(p.ns, 0)
            copies.append(extra)

    def _partition(self, p: Partition) -> None:
        start, end, base, copies = p.start, p.start + max(p.ns, 0), self.base, self.copies
        for i, e in enumerate(self.events):
            if not copies.get(i) and not start <= base[i] < end:
                continue  # untouched and outside the window: leave it on the fast path
            if i in self.dropped or not matches(p.source, e):
                continue
            kept = []
            for c in self.copies.get(i) or [self._first(i)]:
                if not p.start <= c.at < end:
                    kept.append(c)
                elif p.heal:
                    c.at = end
                    c.relabel("partitioned")
                    kept.append(c)
            self.copies[i] = kept
            if not kept:
                self.dropped[i] = "partition"

    def _deliveries(self) -> list[Delivery]:
        # Untouched events are already in delivery order; only moved copies need sorting,
        # so the cost stays one pass over the log plus a sort of the perturbed few.
        moved = sorted(
            (c for i, cs in self.copies.items() if i not in self.dropped for c in cs),
            key=_Copy.key,
        )
        seen: dict[int, int] = {}
        out: list[Delivery] = []
        skip = self.copies.keys() | self.dropped.keys()
        keys = [c.key() for c in moved]
        # The next moved copy's time: most events compare one int with it, not a tuple.
        m, n, next_at = 0, len(moved), keys[0][0] if moved else None
        base = self.base
        for i, e in enumerate(self.events):
            if i in skip:
                continue
            at = base[i]
            if next_at is not None and next_at <= at:
                while m < n and keys[m] < (at, i, 0, i):
                    out.append(self._emit(moved[m], seen))
                    m += 1
                next_at = keys[m][0] if m < n else None
            out.append(Delivery(e, at))
        out.extend(self._emit(c, seen) for c in moved[m:])
        return out

    @staticmethod
    def _emit(c: _Copy, seen: dict[int, int]) -> Delivery:
        copy = seen[c.index] = seen.get(c.index, -1) + 1
        label = c.label
        if copy:
            label = "duplicate"
        elif label == "duplicate":  # the original was lost; this copy arrives first
            label = "delayed" if c.at > c.base else "none"
        return Delivery(c.event, c.at, copy, label, c.at - c.base)

    def _drops(self) -> list[Drop]:
        return [
            Drop(self.events[i].position, self.events[i], reason)
            for i, reason in sorted(self.dropped.items())
        ]

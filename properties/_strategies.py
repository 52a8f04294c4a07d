"""Hypothesis strategies for delivery schedules, drawn sparsely.

A schedule is drawn as a short list of perturbations (which event or source,
what kind, how much), never as one choice per event: drawing costs grow with
the number of perturbations, not with the log's length, and Hypothesis
shrinks the list towards empty, i.e. towards "deliver everything once, in
order", and each amount towards its mildest value.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Sequence
from typing import Final

import msgspec
from hypothesis import strategies as st

from eventstore import RecordedEvent

from ._schedules import (
    HOUR_NS,
    IDENTITY,
    Delay,
    DropEvent,
    Duplicate,
    Partition,
    Reorder,
    Schedule,
    Skew,
    arrival_times,
    source_of,
)
from ._targets import Scope, Targets

# Mildest first: ``one_of`` shrinks towards its first branch.
KINDS: Final = ("delay", "reorder", "duplicate", "skew", "partition", "drop")


class SchedulePolicy(msgspec.Struct, frozen=True, kw_only=True):
    """Bounds on what a drawn schedule may do. Every knob is bounded; defaults in brackets.

    - ``max_perturbations`` (6): perturbations per schedule.
    - ``max_delay_ns`` (72 h): how late one event may arrive; covers a 48 h hold window.
    - ``max_duplicate_ns`` (72 h): how long after recording an extra copy may arrive.
    - ``max_reorder`` (8): how many later events one event may be delivered after.
    - ``max_partition_ns`` (72 h): how long one source may stay silent.
    - ``max_skew_ns`` (1 h): how far a source's clock may run ahead or behind.
    - ``kinds`` (all of ``KINDS``): which perturbations to draw; leave out ``drop``
      and ``partition`` to keep every event arriving (INV-5 is only judged then).
    """

    max_perturbations: int = 6
    max_delay_ns: int = 72 * HOUR_NS
    max_duplicate_ns: int = 72 * HOUR_NS
    max_reorder: int = 8
    max_partition_ns: int = 72 * HOUR_NS
    max_skew_ns: int = HOUR_NS
    kinds: tuple[str, ...] = KINDS

    def __post_init__(self) -> None:
        unknown = sorted(set(self.kinds) - set(KINDS))
        if unknown:
            raise ValueError(f"SchedulePolicy.kinds: unknown {unknown}; choose from {list(KINDS)}")
        for name in ("max_perturbations", "max_delay_ns", "max_duplicate_ns", "max_reorder",
                     "max_partition_ns", "max_skew_ns"):
            if getattr(self, name) < 0:
                raise ValueError(f"SchedulePolicy.{name} must be >= 0, got {getattr(self, name)}")


DEFAULT_POLICY: Final = SchedulePolicy()


def schedules(
    events: Sequence[RecordedEvent], policy: SchedulePolicy = DEFAULT_POLICY
) -> st.SearchStrategy[Schedule]:
    """Schedules for ``events`` within ``policy``; shrinks towards the identity schedule.

    Guarantees: every drawn schedule applies cleanly to ``events``; drawing
    one costs O(perturbations), whatever the log's length.
    """
    if not events or policy.max_perturbations == 0 or not policy.kinds:
        return st.just(IDENTITY)
    options = _perturbations(events, policy)
    branches = [options[k] for k in KINDS if k in policy.kinds]
    return st.lists(st.one_of(branches), max_size=policy.max_perturbations).map(
        lambda ps: Schedule(tuple(ps))
    )


def _perturbations(
    events: Sequence[RecordedEvent], policy: SchedulePolicy
) -> dict[str, st.SearchStrategy]:
    positions = [e.position for e in events]
    sources = sorted({source_of(e) for e in events})
    starts = sorted(set(arrival_times(events)))
    position = st.sampled_from(positions)
    source = st.sampled_from(sources)
    p = policy
    return {
        "delay": st.builds(Delay, position, _amount(1, p.max_delay_ns)),
        "reorder": st.builds(Reorder, position, _amount(1, p.max_reorder)),
        "duplicate": st.builds(Duplicate, position, _amount(0, p.max_duplicate_ns)),
        "skew": st.builds(Skew, source, st.integers(-p.max_skew_ns, p.max_skew_ns)),
        "partition": st.builds(
            Partition,
            source,
            st.sampled_from(starts),
            _amount(1, p.max_partition_ns),
            st.booleans().map(lambda lost: not lost),  # shrinks towards heal=True
        ),
        "drop": st.builds(DropEvent, position),
    }


def _amount(low: int, high: int) -> st.SearchStrategy[int]:
    return st.integers(low, max(low, high))


def search_schedules(
    events: Sequence[RecordedEvent], policy: SchedulePolicy = DEFAULT_POLICY, targets: Targets | None = None
) -> st.SearchStrategy[Schedule]:
    """Schedules for the search in ``check``: one draw of bytes per schedule, aimed.

    The same space as ``schedules``, at under half the drawing cost (the
    search's budget is examples per second): one fixed-size byte string, 8
    bytes saying how many perturbations (1 to ``max_perturbations``), whether
    the schedule loses nothing and where it aims, then 8 bytes per
    perturbation (kind, target, amount); all zero bytes, where Hypothesis
    shrinks to, is the identity. Aimed as ``_targets.py`` says: half the
    schedules at one subject's events, each perturbation at an event picked by
    type, by the unperturbed run's trace (``targets``, built from it) or
    uniformly. Half the delays, copies and silences are sized by the log
    itself (to just past a later event of the same scope, so a late payment
    lands among the events it could overtake); the other half spread evenly
    over orders of magnitude (1 s and 30 h equally likely). Hypothesis shrinks
    these poorly, which does not matter there: ``check`` shrinks each broken
    invariant itself. For your own ``@given`` tests use ``schedules``.
    """
    if not events or policy.max_perturbations == 0 or not policy.kinds:
        return st.just(IDENTITY)
    decoder = _Decoder(targets if targets is not None else Targets(events), policy)
    size = 8 * (1 + policy.max_perturbations)
    return st.binary(min_size=size, max_size=size).map(decoder.decode)


class _Decoder:
    """Turns one integer into one perturbation, mixed-radix: kind, target, amount."""

    def __init__(self, targets: Targets, policy: SchedulePolicy) -> None:
        self.targets = targets
        self.kinds = [k for k in KINDS if k in policy.kinds]
        self.lossless = [k for k in self.kinds if k not in ("drop", "skew")] or self.kinds
        self.p = policy

    def decode(self, raw: bytes) -> Schedule:
        """A schedule from the bytes ``search_schedules`` draws (all zero: the identity)."""
        head = int.from_bytes(raw[:8], "little") & _MASK
        if not head:
            return IDENTITY
        head, count = divmod(_mix(head), self.p.max_perturbations)
        codes = [int.from_bytes(raw[8 * n : 8 * n + 8], "little") & _MASK for n in range(1, count + 2)]
        return self.schedule(head, codes)

    def schedule(self, head: int, codes: list[int]) -> Schedule:
        """Perturbations from ``codes``; ``head`` says if they lose nothing (every other
        schedule: no drop, no skew, partitions heal; INV-5 is only judged when every event
        arrives) and where they aim (the whole log, or one subject: every other schedule)."""
        if not codes:
            return IDENTITY
        head, lossless = divmod(head, 2)
        head, whole = divmod(head, 2)
        scope = self.targets.whole if whole else self.targets.focus(head)
        return Schedule(tuple(self.perturbation(_mix(c), bool(lossless), scope) for c in codes))

    def perturbation(self, code: int, lossless: bool = False, scope: Scope | None = None):
        scope = scope or self.targets.whole
        kinds = self.lossless if lossless else self.kinds
        code, k = divmod(code, len(kinds))
        kind, p = kinds[k], self.p
        if kind == "skew":
            code, src = divmod(code, len(scope.sources))
            code, negative = divmod(code, 2)
            ns = _log_amount(code, 0, p.max_skew_ns)
            return Skew(scope.sources[src], -ns if negative else ns)
        if kind == "partition":
            code, src = divmod(code, len(scope.sources))
            code, start = divmod(code, len(scope.starts))
            code, lost = divmod(code, 4)  # healed three times in four
            at = scope.starts[start]
            ns = self._amount(code, scope, bisect_left(scope.arrivals, at), 1, p.max_partition_ns)
            return Partition(scope.sources[src], at, ns, heal=lossless or lost != 0)
        code, k = scope.pick(code)
        position = self.targets.events[scope.members[k]].position
        if kind == "drop":
            return DropEvent(position)
        if kind == "reorder":
            return Reorder(position, 1 + code % max(p.max_reorder, 1))
        if kind == "delay":
            return Delay(position, self._amount(code, scope, k, 1, p.max_delay_ns))
        return Duplicate(position, self._amount(code, scope, k, 0, p.max_duplicate_ns))

    @staticmethod
    def _amount(code: int, scope: Scope, k: int, low: int, high: int) -> int:
        """A log-scale amount, or (every other code) the gap to just past a later event of the scope."""
        code, by_log = divmod(code, 2)
        k = min(k, len(scope.arrivals) - 1)
        last = scope.reach(k, high)  # the furthest event of the scope within reach
        if by_log or last <= k:
            return _log_amount(code, low, high)
        j = k + 1 + code % (last - k)
        return min(max(scope.arrivals[j] - scope.arrivals[k] + 1, low), high)


_MASK = (1 << 62) - 1


def _mix(x: int) -> int:
    """A bijection of 62-bit integers that scatters nearby inputs (a splitmix64-style finaliser).

    Hypothesis favours small and boundary integers; decoded as they are, those
    would pile onto the first kinds, the first events and the smallest amounts.
    """
    x = ((x ^ (x >> 31)) * 0x7FB5D329728EA185) & _MASK
    x = ((x ^ (x >> 27)) * 0x81DADEF4BC2DD44D) & _MASK
    return x ^ (x >> 33)


def _log_amount(code: int, low: int, high: int, floor: int = 1_000_000) -> int:
    """An amount in [low, high]: ``low``, or one whose order of magnitude is uniform over [floor, high].

    Below ``floor`` (1 ms) amounts rarely change what a projection sees, so
    no draws are spent there; the shrinker still tries every amount down to ``low``.
    """
    if high <= low:
        return low
    first = max(floor, low, 1).bit_length()
    classes = max(high.bit_length() - first + 1, 1)
    code, which = divmod(code, classes + 1)
    if which == 0:
        return low
    base = 1 << (first + which - 2)
    return min(max(base + code % base, low), high)

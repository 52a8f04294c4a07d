"""The projection contract: a pure fold from events to state and decisions.

A projection never reads the wall clock, draws unseeded randomness or does
I/O. Time comes from ``ctx.now`` (the delivery time in virtual time);
decisions and timers go through ``ctx``. Replaying the same deliveries must
give the same decisions, byte for byte.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Generic, Protocol, TypeVar

import msgspec

from eventstore import RecordedEvent

S = TypeVar("S")


class Status(StrEnum):
    """Where a decision stands. Only ``RELEASED`` and ``SENT`` have external effect."""

    PROPOSED = "proposed"
    HELD = "held"
    RELEASED = "released"
    CANCELLED = "cancelled"
    BLOCKED = "blocked"
    SENT = "sent"


EFFECTIVE = frozenset({Status.RELEASED, Status.SENT})


class Decision(msgspec.Struct, frozen=True, kw_only=True):
    """One decision a projection made, with everything an invariant needs to judge it.

    ``reasons`` are stable reason codes (see ``projections.reasons``).
    ``inputs`` are the ids of the events it rests on. ``effect_key`` is the
    idempotency key of the external effect (same subject and period, same
    key). ``input_time`` is the source time of the freshest input it rests on
    and ``freshness_ns`` the bound that input must be within at ``at``.
    ``at`` is filled in by ``ctx.decide`` from ``ctx.now``.

    What the generic invariants (INV-1..INV-5, run against every projection
    by ``unbroken check``) require of a decision whose ``status`` is
    ``RELEASED`` or ``SENT``:

    - ``external=True`` or ``irreversible=True``: set ``input_time`` (ns UTC)
      and ``freshness_ns`` (ns); a decision that leaves either None breaks
      INV-1 ("freshness not stated"), as does one with
      ``at - input_time > freshness_ns``.
    - ``external=True``: ``confidence >= min_confidence``, and its
      ``min_confidence`` above that of every internal decision for the same
      ``subject`` (INV-2); and an ``effect_key`` (INV-4: one without breaks
      it, and two effects with the same key are a duplicate).
    - ``irreversible=True``: an earlier decision for the same effect
      (``effect_key``, else ``subject`` + ``action``) with status ``HELD``
      and a ``hold_until`` that has passed at ``at``, with no ``CANCELLED``
      one after it (INV-3).

    INV-5 compares final states, not decisions (a projection may narrow it
    with ``convergent(state)``). Decisions that are neither external nor
    irreversible need none of these fields. Field types are checked by
    ``ctx.decide``: text fields are ``str``, times and ``freshness_ns`` are
    ``int`` ns (int64) or None, ``reasons``/``inputs`` tuples of ``str``.
    """

    kind: str
    subject: str
    action: str
    status: Status
    reasons: tuple[str, ...] = ()
    confidence: float = 1.0
    min_confidence: float = 0.0
    inputs: tuple[str, ...] = ()
    at: int = 0
    effect_key: str | None = None
    external: bool = False
    irreversible: bool = False
    input_time: int | None = None
    freshness_ns: int | None = None
    hold_until: int | None = None


class Timer(msgspec.Struct, frozen=True):
    """A wake-up a projection asked for: at ``at`` (virtual ns), under ``key``."""

    key: str
    at: int
    payload: Any = None


class Context(Protocol):
    """What a projection may touch: the virtual time, decisions and timers."""

    @property
    def now(self) -> int:
        """The virtual time of the delivery or timer being handled (ns, UTC)."""
        ...

    def decide(self, decision: Decision) -> Decision:
        """Record ``decision`` at ``now``; returns it with ``at`` filled in."""
        ...

    def schedule(self, at: int, key: str, payload: Any = None) -> None:
        """Ask for ``on_timer`` at ``at``; re-scheduling a key replaces it."""
        ...

    def cancel(self, key: str) -> None:
        """Forget the timer under ``key``, if any."""
        ...


class Projection(Protocol, Generic[S]):
    """A deterministic fold. ``state_type`` lets snapshots decode the state."""

    name: str
    version: str
    state_type: type

    def initial(self) -> S:
        """The state before any event."""
        ...

    def apply(self, state: S, event: RecordedEvent, ctx: Context) -> S:
        """Fold one delivered event into the state."""
        ...

    def on_timer(self, state: S, timer: Timer, ctx: Context) -> S:
        """Handle a timer that came due."""
        ...

    def config(self) -> dict[str, Any]:
        """The configuration this instance runs with, for run metadata and diffs."""
        ...

"""The arrears projection's state: facts (order-independent) and notices (history).

Leaf structs are ``gc=False``: they hold no containers that could form a
cycle, and a replay keeps millions of them alive, which would otherwise make
every full garbage collection walk them all.

Event ids are kept as their 16 bytes (``EventId``; turned into text only when
a decision cites them): formatting a UUID costs more than the rest of a
reading's fold, and a ``uuid.UUID`` is an object the garbage collector tracks,
so tens of thousands of them in the state made every full collection walk
them all (a quarter of a million-event replay's GC time). Bytes order like
the UUIDs they come from, so comparisons by id are unchanged.

Every struct is mutable so ``apply`` can update in place (the fold returns the
same object; snapshots encode it). All of it is msgspec-encodable, so a
snapshot decodes back into ``ArrearsState``.
"""

from __future__ import annotations

import msgspec

EventId = bytes  # uuid.UUID.bytes: same order as the UUID, not tracked by the GC


class Reading(msgspec.Struct, array_like=True, gc=False):
    """A meter's reading as trusted: ``trusted_at`` is min(device time, arrival time)."""

    trusted_at: int
    occurred_at: int
    register_kwh: float
    estimated: bool
    clock_ahead: bool
    event_id: EventId


class Meter(msgspec.Struct, gc=False):
    """The latest reading by trusted time and the register's range (monotonic by max)."""

    latest: Reading
    min_register_kwh: float
    max_register_kwh: float


class Payment(msgspec.Struct, array_like=True, gc=False):
    amount_minor: int
    paid_at: int
    event_id: EventId


class Reversal(msgspec.Struct, array_like=True, gc=False):
    reversed_at: int
    event_id: EventId


class Balance(msgspec.Struct, array_like=True, gc=False):
    """A statement: it reflects every payment and reversal made at or before ``stated_at``."""

    balance_minor: int
    provisional: bool
    due_at: int
    stated_at: int
    period: str
    event_id: EventId


class Flag(msgspec.Struct, array_like=True, gc=False):
    active: bool
    at: int
    event_id: EventId


class Account(msgspec.Struct):
    """What is known about one account. ``debt_minor`` is derived from the rest."""

    balance: Balance | None = None
    payments: dict[str, Payment] = {}
    reversals: dict[str, Reversal] = {}
    meters: dict[str, Meter] = {}
    flags: dict[str, Flag] = {}
    acks: dict[str, str] = {}  # notice id -> strongest stage seen
    debt_minor: int = 0


class Facts(msgspec.Struct):
    """Everything learned from events; the same whatever the delivery order (INV-5)."""

    accounts: dict[str, Account] = {}
    calendar: dict[str, Flag] = {}  # ISO date -> holiday (active) as last stated


class Notice(msgspec.Struct, gc=False):
    """The arrears notice of one account and period, and where it stands.

    ``status`` is held | released | cancelled | blocked. ``waiting`` says what a
    held notice waits for beyond its window: "", "calendar" or "reconciliation".
    """

    period: str
    status: str
    opened_at: int
    hold_until: int
    debt_at_hold: int
    reasons: tuple[str, ...] = ()
    waiting: str = ""
    delivery: str = ""


class ArrearsState(msgspec.Struct):
    """Facts plus notices (account -> period -> notice).

    Notices record what was decided when, so they depend on timing by nature;
    convergence is judged on ``facts`` (see ``ArrearsProjection.convergent``).
    """

    facts: Facts = msgspec.field(default_factory=Facts)
    notices: dict[str, dict[str, Notice]] = {}

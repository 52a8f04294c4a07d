"""Folding payloads into facts. Every rule here is order-independent (INV-5).

Choices are made by keys, never by arrival: the latest reading is the one with
the greatest (trusted time, event id); a payment id keeps its earliest
(paid_at, event id); a balance, flag or calendar day keeps its greatest
(time, ...). Re-delivering an event changes nothing.
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime

from eventstore import RecordedEvent
from projections import reasons as R
from projections._contract import Context, Decision, Status
from projections.payloads import (
    AccountBalance,
    CalendarDay,
    CustomerFlag,
    MeterReading,
    NotificationAck,
    PaymentReceived,
    PaymentReversed,
)

from .state import Account, Balance, EventId, Facts, Flag, Meter, Payment, Reading, Reversal

ACK_RANK = {"accepted": 1, "failed": 2, "delivered": 3}
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


def account_of(facts: Facts, account_id: str) -> Account:
    """The account's facts, created empty on first mention."""
    account = facts.accounts.get(account_id)
    if account is None:
        account = facts.accounts[account_id] = Account()
    return account


def fold_reading(
    facts: Facts, p: MeterReading, event: RecordedEvent, now: int, tolerance_ns: int, ctx: Context
) -> Account:
    """Keep the meter's latest reading by trusted time; the register only ever rises.

    The trusted time of a reading is min(device time, arrival), where arrival is
    the store's ``recorded_at`` bounded by ``now``: a device clock cannot make a
    reading look fresher than the moment we learned of it. This is the hot path
    of a replay, so it builds a ``Reading`` only when the reading becomes latest.
    """
    account_id = p.account_id
    account = facts.accounts.get(account_id)
    if account is None:
        account = facts.accounts[account_id] = Account()
    recorded = event.recorded_at
    arrival = recorded if 0 < recorded < now else now
    occurred = event.occurred_at
    trusted = occurred if occurred < arrival else arrival
    ahead = occurred > arrival + tolerance_ns
    event_id = event.id.int.to_bytes(16)  # == event.id.bytes without the property's Python call
    if ahead:
        _observe(ctx, "reading", account_id, "trust-device-time", R.CLOCK_AHEAD, event.id)
    register = p.register_kwh
    meter = account.meters.get(p.meter_id)
    if meter is None:
        reading = Reading(trusted, occurred, register, p.estimated, ahead, event_id)
        account.meters[p.meter_id] = Meter(reading, register, register)
        return account
    latest = meter.latest
    top = meter.max_register_kwh
    if trusted > latest.trusted_at or (trusted == latest.trusted_at and event_id > latest.event_id):
        if register < top:
            _observe(ctx, "reading", account_id, "lower-register", R.REGISTER_DECREASE, event.id)
        meter.latest = Reading(trusted, occurred, register, p.estimated, ahead, event_id)
    elif event_id != latest.event_id:
        _observe(ctx, "reading", account_id, "replace-latest-reading", R.OUT_OF_ORDER_READING, event.id)
    if register > top:
        meter.max_register_kwh = register
    elif register < meter.min_register_kwh:
        meter.min_register_kwh = register
    return account


def fold_payment(facts: Facts, p: PaymentReceived, event: RecordedEvent, ctx: Context) -> Account | None:
    """Record a payment once per payment id; returns the account when its debt changed."""
    account = account_of(facts, p.account_id)
    payment = Payment(p.amount_minor, event.occurred_at, event.id.bytes)
    seen = account.payments.get(p.payment_id)
    account.payments[p.payment_id] = payment
    if seen is None:
        return _adjust_debt(account, None, payment, account.reversals.get(p.payment_id))
    _observe(ctx, "payment", p.account_id, "count-payment", R.DUPLICATE_PAYMENT, event.id)
    if (payment.paid_at, payment.event_id) >= (seen.paid_at, seen.event_id):
        account.payments[p.payment_id] = seen  # the earliest copy stays canonical
        return None
    return _refresh_debt(account)


def fold_reversal(facts: Facts, p: PaymentReversed, event: RecordedEvent) -> Account | None:
    """Record a reversal once per payment id; returns the account when its debt changed."""
    account = account_of(facts, p.account_id)
    reversal = Reversal(event.occurred_at, event.id.bytes)
    seen = account.reversals.get(p.payment_id)
    if seen is not None and (reversal.reversed_at, reversal.event_id) >= (seen.reversed_at, seen.event_id):
        return None
    account.reversals[p.payment_id] = reversal
    payment = account.payments.get(p.payment_id)
    if payment is None:
        return None  # a reversal of a payment not seen yet changes nothing until it arrives
    before = _effect(payment, seen, account.balance)
    return _adjust_debt(account, before, payment, reversal)


def _adjust_debt(account: Account, before: int | None, payment: Payment, reversal: Reversal | None) -> Account | None:
    """Move the cached debt by one payment's change of effect; None when it did not move."""
    delta = _effect(payment, reversal, account.balance) - (before or 0)
    if not delta:
        return None
    account.debt_minor += delta
    return account


def _effect(payment: Payment, reversal: Reversal | None, balance: Balance | None) -> int:
    """What one payment (and its reversal) adds to the statement's balance (see ``debt_of``)."""
    if balance is None:
        return 0
    stated = balance.stated_at
    if payment.paid_at > stated:
        return -payment.amount_minor if reversal is None else 0
    if reversal is not None and reversal.reversed_at > stated:
        return payment.amount_minor
    return 0


def fold_balance(
    facts: Facts, p: AccountBalance, event: RecordedEvent, offset_ns: int
) -> Account | None:
    """Keep the latest statement (reconciled beats provisional at the same time).

    Returns the account when the statement in force changed.
    """
    account = account_of(facts, p.account_id)
    stated = event.occurred_at
    due = stated if p.due_at is None else p.due_at
    new = Balance(p.balance_minor, p.provisional, due, stated, period_of(due, offset_ns), event.id.bytes)
    old = account.balance
    if old is not None and _balance_key(new) <= _balance_key(old):
        return None
    account.balance = new
    _refresh_debt(account)
    return account


def _balance_key(b: Balance) -> tuple[int, bool, EventId]:
    return (b.stated_at, not b.provisional, b.event_id)


def fold_flag(facts: Facts, p: CustomerFlag, event: RecordedEvent) -> Account | None:
    """Keep each flag as last stated by time; returns the account when it changed."""
    account = account_of(facts, p.account_id)
    new = Flag(p.active, event.occurred_at, event.id.bytes)
    old = account.flags.get(p.flag)
    if old is not None and (new.at, new.event_id) <= (old.at, old.event_id):
        return None
    account.flags[p.flag] = new
    return account if old is None or old.active != new.active else None


def fold_calendar(facts: Facts, p: CalendarDay, event: RecordedEvent) -> None:
    """Keep each day's holiday status as last stated by time."""
    if not _DATE.fullmatch(p.date):
        raise ValueError(
            f"CalendarDay at position {event.position} (stream {event.stream!r}): "
            f"date {p.date!r} is not ISO YYYY-MM-DD"
        )
    new = Flag(p.holiday, event.occurred_at, event.id.bytes)
    old = facts.calendar.get(p.date)
    if old is None or (new.at, new.event_id) > (old.at, old.event_id):
        facts.calendar[p.date] = new


def fold_ack(facts: Facts, p: NotificationAck) -> Account:
    """Keep the strongest stage seen per notice: delivered > failed > accepted."""
    account = account_of(facts, p.account_id)
    old = account.acks.get(p.notice_id)
    if old is None or ACK_RANK[p.stage] > ACK_RANK[old]:
        account.acks[p.notice_id] = p.stage
    return account


def _refresh_debt(account: Account) -> Account:
    account.debt_minor = debt_of(account)
    return account


def debt_of(account: Account) -> int:
    """The statement's balance adjusted by payments and reversals made after it.

    A statement reflects every payment and reversal made at or before it; a
    later payment lowers the debt unless reversed; a later reversal of a
    payment the statement had counted puts the amount back.
    """
    balance = account.balance
    if balance is None:
        return 0
    reversals = account.reversals
    return balance.balance_minor + sum(
        _effect(payment, reversals.get(payment_id), balance) for payment_id, payment in account.payments.items()
    )


def period_of(t: int, offset_ns: int) -> str:
    """The billing period (local ``YYYY-MM``) a due time falls in."""
    return datetime.fromtimestamp((t + offset_ns) // 1_000_000_000, tz=UTC).strftime("%Y-%m")


def _observe(ctx: Context, kind: str, subject: str, action: str, reason: str, event_id: uuid.UUID) -> None:
    """An internal decision refusing what an input would have done, with the reason."""
    ctx.decide(Decision(kind=kind, subject=subject, action=action, status=Status.BLOCKED,
                        reasons=(reason,), inputs=(str(event_id),)))

"""One simulated energy customer: meter, bills, payments, flags and notices.

Each account draws from its own ``random.Random`` seeded with (seed, account
index), so account 7 is the same whether the log has 10 accounts or 10,000,
and the whole file depends on nothing but the profile.
"""

from __future__ import annotations

import datetime as dt
import math
import random
from dataclasses import dataclass, field
from typing import Final

from projections.payloads import (
    AccountBalance,
    CustomerFlag,
    MeterReading,
    NotificationAck,
    PaymentReceived,
    PaymentReversed,
)

from ._calendar import day_start_ns
from ._jsonl import DAY, HOUR, MINUTE, NS, StreamWriter

UNIT_RATE_MINOR_PER_KWH: Final = 24.5
STANDING_MINOR_PER_DAY: Final = 53
DUE_AFTER: Final = 14 * DAY
NOTICE_THRESHOLD_MINOR: Final = 5_000  # the legacy system noticed debts over 50 GBP
REVERSAL_REASONS: Final = ("insufficient_funds", "direct_debit_recalled", "chargeback")


@dataclass(frozen=True)
class Shares:
    """How often each awkward case happens; the defaults resemble a real supplier's book."""

    arrears: float = 0.15  # customers who pay late, partly or not at all
    vulnerable: float = 0.04
    lagging_meter: float = 0.05  # meters whose head-end uploads in delayed batches
    clock_ahead: float = 0.01  # meters whose device clock runs ahead
    outage_per_day: float = 0.004  # chance a meter stops reporting (then estimates follow)
    late_retransmit: float = 0.003  # readings re-sent a day or two late: arrive out of order
    duplicate_payment: float = 0.02
    reversal: float = 0.015
    provisional: float = 0.10  # statements issued provisionally, reconciled days later


@dataclass
class Account:
    """The hidden truth about one customer, and the stream its events go to."""

    idx: int
    rng: random.Random
    start: dt.date
    days: int
    shares: Shares
    out: StreamWriter
    payer: str = "direct_debit"
    daily_kwh: list[float] = field(default_factory=list)

    @property
    def account_id(self) -> str:
        return f"AC{self.idx:06d}"

    @property
    def meter_id(self) -> str:
        return f"MTR{self.idx:06d}"

    def day_ns(self, d: int) -> int:
        return day_start_ns(self.start) + d * DAY


def simulate_account(seed: int, idx: int, start: dt.date, days: int, shares: Shares) -> StreamWriter:
    """Every event of account ``idx`` over ``days`` days from ``start``."""
    rng = random.Random(f"arrears:{seed}:{idx}")
    acct = Account(idx, rng, start, days, shares, StreamWriter(seed, f"account-{idx:06d}"))
    roll = rng.random()
    acct.payer = "arrears" if roll < shares.arrears else ("manual" if roll < 0.4 else "direct_debit")
    mean_kwh = rng.lognormvariate(math.log(8.0), 0.4)
    acct.daily_kwh = [rng.gammavariate(4.0, mean_kwh / 4.0) for _ in range(days)]
    _flags(acct)
    _meter(acct)
    _billing(acct)
    return acct.out


# -- customer flags -------------------------------------------------------
def _flags(acct: Account) -> None:
    rng = acct.rng
    if rng.random() >= acct.shares.vulnerable:
        return
    # Most vulnerability flags are on file before the window; some are raised during it.
    d = 0 if rng.random() < 0.7 else rng.randrange(acct.days)
    at = acct.day_ns(d) + rng.randrange(8 * HOUR, 18 * HOUR)
    _emit_flag(acct, at, active=True)
    if rng.random() < 0.1 and d + 7 < acct.days:
        off = acct.day_ns(rng.randrange(d + 7, acct.days)) + 12 * HOUR
        _emit_flag(acct, off, active=False)


def _emit_flag(acct: Account, at: int, active: bool) -> None:
    flag = CustomerFlag(account_id=acct.account_id, flag="vulnerable", active=active)
    acct.out.emit(flag, at, at + acct.rng.randrange(NS, 60 * NS), "crm")


# -- meter readings -------------------------------------------------------
def _meter(acct: Account) -> None:
    rng, shares = acct.rng, acct.shares
    lagging = rng.random() < shares.lagging_meter
    clock_ahead = rng.randrange(10 * MINUTE, 36 * HOUR) if rng.random() < shares.clock_ahead else 0
    register = round(rng.uniform(1_000, 40_000), 3)
    last_real: tuple[float, int] | None = None  # (register, day) of the last real reading
    outage_left, backlog_until = 0, -1
    for d in range(acct.days):
        register += acct.daily_kwh[d]
        true_at = acct.day_ns(d) + 30 * MINUTE + rng.randrange(20 * MINUTE)
        if outage_left == 0 and rng.random() < shares.outage_per_day:
            outage_left = rng.randint(3, 12)
        if outage_left:
            outage_left -= 1
            _estimate(acct, d, last_real, true_at)
            continue
        if lagging and backlog_until < d and rng.random() < 0.05:
            backlog_until = d + rng.randint(2, 10)  # head-end holds readings, then uploads them
        received = _reading_received(acct, true_at, d, backlog_until)
        reading = MeterReading(acct.meter_id, acct.account_id, round(register, 3))
        acct.out.emit(reading, true_at + clock_ahead, received, f"meter-{acct.meter_id}")
        last_real = (register, d)


def _reading_received(acct: Account, true_at: int, d: int, backlog_until: int) -> int:
    rng = acct.rng
    if d <= backlog_until:
        return acct.day_ns(backlog_until) + 9 * HOUR + rng.randrange(30 * MINUTE)
    if rng.random() < acct.shares.late_retransmit:
        return true_at + rng.randrange(DAY, 2 * DAY)
    # Usual head-end latency: a few minutes, long-tailed.
    return true_at + min(int(rng.lognormvariate(math.log(240), 1.0) * NS), 6 * HOUR)


def _estimate(acct: Account, d: int, last_real: tuple[float, int] | None, true_at: int) -> None:
    """The billing system's estimate for a day the meter did not report."""
    if last_real is None:
        return  # nothing real yet to estimate from
    register, since = last_real
    recent = acct.daily_kwh[max(0, since - 29) : since + 1]
    average = sum(recent) / len(recent)
    estimate = round(register + average * (d - since), 3)
    at = true_at + 6 * HOUR
    reading = MeterReading(acct.meter_id, acct.account_id, estimate, estimated=True)
    acct.out.emit(reading, at, at + acct.rng.randrange(NS, 120 * NS), "billing-estimate")


# -- statements, payments, reversals and notices --------------------------
@dataclass
class Ledger:
    balance: int
    payments: int = 0
    due: list[tuple[int, str, int]] = field(default_factory=list)  # (day, what, amount)
    reversals: list[tuple[int, int, str]] = field(default_factory=list)  # (day, amount, id)


def _billing(acct: Account) -> None:
    rng = acct.rng
    opening = rng.randint(8_000, 60_000) if acct.payer == "arrears" else rng.randint(-5_000, 3_000)
    ledger = Ledger(balance=opening)
    billing_day = rng.randint(1, 28)
    _statement(acct, ledger, 0, provisional=False)
    for d in range(acct.days):
        ledger.balance += round(acct.daily_kwh[d] * UNIT_RATE_MINOR_PER_KWH) + STANDING_MINOR_PER_DAY
        _settle(acct, ledger, d)
        if d > 0 and (acct.start + dt.timedelta(days=d)).day == billing_day:
            _statement(acct, ledger, d, provisional=rng.random() < acct.shares.provisional)
            _schedule_payment(acct, ledger, d)
            ledger.due.append((d + 17, "notice", 0))  # the legacy system chased overdue debts


def _statement(acct: Account, ledger: Ledger, d: int, provisional: bool) -> None:
    rng = acct.rng
    at = acct.day_ns(d) + 2 * HOUR + rng.randrange(HOUR)
    shown = round(ledger.balance * rng.uniform(0.92, 1.08)) if provisional else ledger.balance
    acct.out.emit(
        AccountBalance(acct.account_id, shown, provisional=provisional, due_at=at + DUE_AFTER),
        at, at + rng.randrange(NS, 30 * NS), "billing",
    )
    if provisional and d + 5 < acct.days:
        # Reconciliation replaces the provisional figure with the settled one.
        ledger.due.append((d + rng.randint(1, 5), "reconcile", 0))


def _schedule_payment(acct: Account, ledger: Ledger, d: int) -> None:
    rng, owed = acct.rng, ledger.balance
    if owed <= 0:
        return
    if acct.payer == "direct_debit":
        ledger.due.append((d + 14, "pay", owed))
    elif acct.payer == "manual":
        ledger.due.append((d + rng.randint(3, 20), "pay", round(owed, -2) or owed))
    elif rng.random() < 0.6:  # arrears: often nothing, otherwise part of it, late
        share = 1.0 if rng.random() < 0.35 else rng.uniform(0.2, 0.6)
        ledger.due.append((d + rng.randint(10, 35), "pay", max(100, round(owed * share))))


def _settle(acct: Account, ledger: Ledger, d: int) -> None:
    """Apply today's payments, reconciliations, notices and reversals."""
    for entry in [e for e in ledger.due if e[0] == d]:
        ledger.due.remove(entry)
        _, what, amount = entry
        if what == "pay":
            _pay(acct, ledger, d, amount)
        elif what == "reconcile":
            _statement(acct, ledger, d, provisional=False)
        else:
            _notice(acct, ledger, d)
    for entry in [e for e in ledger.reversals if e[0] == d]:
        ledger.reversals.remove(entry)
        _reverse(acct, ledger, d, entry)


def _pay(acct: Account, ledger: Ledger, d: int, amount: int) -> None:
    rng, shares = acct.rng, acct.shares
    ledger.payments += 1
    payment_id = f"PAY{acct.idx:06d}-{ledger.payments:03d}"
    hour = 6 if acct.payer == "direct_debit" else rng.randint(8, 21)
    at = acct.day_ns(d) + hour * HOUR + rng.randrange(HOUR)
    # Most arrive within two minutes; a few come in the processor's next-morning file.
    batch = rng.random() < 0.05
    received = acct.day_ns(d + 1) + 7 * HOUR if batch else at + rng.randrange(NS, 120 * NS)
    payment = PaymentReceived(acct.account_id, payment_id, amount)
    acct.out.emit(payment, at, received, "payments")
    if rng.random() < shares.duplicate_payment:  # the processor's webhook retried
        acct.out.emit(payment, at, received + rng.randrange(NS, 600 * NS), "payments")
    ledger.balance -= amount
    reversal = shares.reversal * (3 if acct.payer == "arrears" else 1)
    if rng.random() < reversal and d + 2 < acct.days:
        ledger.reversals.append((min(acct.days - 1, d + rng.randint(2, 8)), amount, payment_id))


def _reverse(acct: Account, ledger: Ledger, d: int, entry: tuple[int, int, str]) -> None:
    rng = acct.rng
    _, amount, payment_id = entry
    at = acct.day_ns(d) + 5 * HOUR + rng.randrange(HOUR)
    reason = rng.choice(REVERSAL_REASONS)
    reversal = PaymentReversed(acct.account_id, payment_id, reason)
    acct.out.emit(reversal, at, at + rng.randrange(NS, 300 * NS), "payments")
    ledger.balance += amount


def _notice(acct: Account, ledger: Ledger, d: int) -> None:
    """Acks for the legacy system's arrears notice; some never get a delivery record."""
    rng = acct.rng
    if ledger.balance < NOTICE_THRESHOLD_MINOR:
        return
    # The legacy system keyed notices as the arrears projection keys its effects
    # (kind:account:period), so a replay can match acks to the notices it releases.
    month = (acct.start + dt.timedelta(days=d)).strftime("%Y-%m")
    notice_id = f"arrears-notice:{acct.account_id}:{month}"
    sent = acct.day_ns(d) + 10 * HOUR + rng.randrange(2 * HOUR)
    accepted = sent + rng.randrange(NS, 30 * NS)
    _ack(acct, notice_id, accepted, "accepted")
    roll = rng.random()
    if roll < 0.85:
        _ack(acct, notice_id, accepted + rng.randrange(2 * MINUTE, 300 * MINUTE), "delivered")
    elif roll < 0.90:
        _ack(acct, notice_id, accepted + rng.randrange(MINUTE, 60 * MINUTE), "failed")
    # else: accepted, and no delivery record ever arrives (SM-AR-014)


def _ack(acct: Account, notice_id: str, at: int, stage: str) -> None:
    ack = NotificationAck(acct.account_id, notice_id, stage)  # type: ignore[arg-type]
    acct.out.emit(ack, at, at + acct.rng.randrange(NS, 20 * NS), "notify")

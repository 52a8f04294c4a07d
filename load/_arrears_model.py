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

# Situations a scenario account is built to contain (``--scenarios``), each with the
# catalogue ids (docs/scenarios.md) it exercises. Every scenario account is in arrears
# from day 0: its opening statement falls due on day 14, a notice is held then and, unless
# the scenario stops it, released on day 16 after its 48 h hold (at 08:00, the calendar's
# first allowed hour). Any release also exercises SM-AR-009, SM-AR-012 and SM-AR-013.
SCENARIOS: Final[dict[str, str]] = {
    "late_payment": "SM-AR-003: paid in full inside the hold window",
    "duplicate_payment": "SM-AR-004: a part payment inside the hold, delivered twice",
    "reversal": "SM-AR-005: paid inside the hold, the payment reversed the next day",
    "reversal_after_release": "SM-AR-005: paid after the notice went out, then reversed",
    "late_reading": "SM-AR-006: readings re-sent a day or two late arrive out of order",
    "lagging": "SM-AR-001, SM-AR-007: the head-end holds readings of days 10-17, then uploads",
    "outage": "SM-AR-002: the meter is silent on days 11-16; estimates cover it",
    "vulnerable": "SM-AR-008: flagged vulnerable from day 0, owing over twice the threshold",
    "vulnerable_in_hold": "SM-AR-008: flagged vulnerable on day 15, inside the hold",
    "clock_ahead": "SM-AR-010: the meter's clock runs 2-30 h ahead",
    "provisional": "SM-AR-011: the opening statement is provisional, reconciled 1-5 days later",
    "ack_accepted_only": "SM-AR-014: the notice is accepted, no delivery record ever comes",
    "ack_failed": "SM-AR-014: the notice is accepted, then delivery fails",
}
SCENARIO_NAMES: Final = tuple(SCENARIOS)
_QUIET: Final = dict(vulnerable=0.0, lagging_meter=0.0, clock_ahead=0.0, outage_per_day=0.0,
                     late_retransmit=0.0, duplicate_payment=0.0, reversal=0.0, provisional=0.0)


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
    scenario: str | None = None  # one of SCENARIOS: the account is built to contain it
    srng: random.Random | None = None  # the scenario's own draws (the model's stay as they are)

    @property
    def account_id(self) -> str:
        return f"AC{self.idx:06d}"

    @property
    def meter_id(self) -> str:
        return f"MTR{self.idx:06d}"

    def day_ns(self, d: int) -> int:
        return day_start_ns(self.start) + d * DAY


def simulate_account(seed: int, idx: int, start: dt.date, days: int, shares: Shares,
                     scenario: str | None = None) -> StreamWriter:
    """Every event of account ``idx`` over ``days`` days from ``start``.

    With a ``scenario`` (a key of ``SCENARIOS``) the account is in arrears from
    day 0, the random awkward cases are switched off for it and the scenario's
    situation is built in; without one, the account is exactly as before.
    """
    if scenario is not None and scenario not in SCENARIOS:
        raise ValueError(f"unknown scenario {scenario!r}; choose from {', '.join(SCENARIOS)}")
    rng = random.Random(f"arrears:{seed}:{idx}")
    if scenario is not None:
        shares = Shares(**{**shares.__dict__, **_QUIET,
                           "late_retransmit": 0.3 if scenario == "late_reading" else 0.0})
    acct = Account(idx, rng, start, days, shares, StreamWriter(seed, f"account-{idx:06d}"))
    roll = rng.random()
    acct.payer = "arrears" if roll < shares.arrears else ("manual" if roll < 0.4 else "direct_debit")
    if scenario is not None:
        acct.payer, acct.scenario = "arrears", scenario
        acct.srng = random.Random(f"arrears-scenario:{seed}:{idx}:{scenario}")
    mean_kwh = rng.lognormvariate(math.log(8.0), 0.4)
    acct.daily_kwh = [rng.gammavariate(4.0, mean_kwh / 4.0) for _ in range(days)]
    _flags(acct)
    _meter(acct)
    _billing(acct)
    return acct.out


# -- customer flags -------------------------------------------------------
def _flags(acct: Account) -> None:
    rng = acct.rng
    if acct.scenario in ("vulnerable", "vulnerable_in_hold"):
        d = 0 if acct.scenario == "vulnerable" else min(15, acct.days - 1)
        _emit_flag(acct, acct.day_ns(d) + 11 * HOUR, active=True)
        return
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
    if acct.scenario == "clock_ahead":
        clock_ahead = acct.srng.randrange(2 * HOUR, 30 * HOUR)  # type: ignore[union-attr]
    register = round(rng.uniform(1_000, 40_000), 3)
    last_real: tuple[float, int] | None = None  # (register, day) of the last real reading
    outage_left, backlog_until = 0, -1
    for d in range(acct.days):
        register += acct.daily_kwh[d]
        true_at = acct.day_ns(d) + 30 * MINUTE + rng.randrange(20 * MINUTE)
        if outage_left == 0 and rng.random() < shares.outage_per_day:
            outage_left = rng.randint(3, 12)
        if acct.scenario == "outage" and d == 11:
            outage_left = 6
        if acct.scenario == "lagging" and d == 10:
            backlog_until = 17
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
    if acct.scenario is not None:
        # In debt from day 0, next statement after the first notice's release (day 16).
        opening = ledger.balance = acct.srng.randint(12_000, 30_000)  # type: ignore[union-attr]
        billing_day = acct.srng.randint(26, 28)  # type: ignore[union-attr]
        ledger.due.extend(_scenario_entries(acct.scenario))
    _statement(acct, ledger, 0, provisional=acct.scenario == "provisional")
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
    if provisional and (d + 5 < acct.days or acct.scenario == "provisional"):
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
        elif what.startswith("scenario:"):
            _scenario_event(acct, ledger, d, what.partition(":")[2])
        elif what == "reconcile":
            _statement(acct, ledger, d, provisional=False)
        else:
            _notice(acct, ledger, d)
    for entry in [e for e in ledger.reversals if e[0] == d]:
        ledger.reversals.remove(entry)
        _reverse(acct, ledger, d, entry)


def _scenario_entries(scenario: str) -> list[tuple[int, str, int]]:
    """The ledger entries (day, what, 0) that build a scenario's situation in."""
    days = {"late_payment": 14, "duplicate_payment": 15, "reversal": 14,
            "reversal_after_release": 18, "ack_accepted_only": 17, "ack_failed": 17}
    return [(days[scenario], f"scenario:{scenario}", 0)] if scenario in days else []


def _scenario_event(acct: Account, ledger: Ledger, d: int, scenario: str) -> None:
    """Day ``d`` of a scenario: its payment (maybe twice, maybe reversed) or its notice's acks."""
    if scenario.startswith("ack_"):
        _notice(acct, ledger, d, stage="accepted" if scenario == "ack_accepted_only" else "failed",
                month=(acct.start + dt.timedelta(days=14)).strftime("%Y-%m"))
        return
    amount = ledger.balance if scenario != "duplicate_payment" else max(100, ledger.balance * 2 // 5)
    reverse_on = {"reversal": d + 1, "reversal_after_release": d + 2}.get(scenario)
    _pay(acct, ledger, d, amount, twice=scenario == "duplicate_payment", reverse_on=reverse_on)


def _pay(acct: Account, ledger: Ledger, d: int, amount: int, *, twice: bool = False,
         reverse_on: int | None = None) -> None:
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
    if rng.random() < shares.duplicate_payment or twice:  # the processor's webhook retried
        acct.out.emit(payment, at, received + rng.randrange(NS, 600 * NS), "payments")
    ledger.balance -= amount
    reversal = shares.reversal * (3 if acct.payer == "arrears" else 1)
    if rng.random() < reversal and d + 2 < acct.days:
        ledger.reversals.append((min(acct.days - 1, d + rng.randint(2, 8)), amount, payment_id))
    if reverse_on is not None and reverse_on < acct.days:
        ledger.reversals.append((reverse_on, amount, payment_id))


def _reverse(acct: Account, ledger: Ledger, d: int, entry: tuple[int, int, str]) -> None:
    rng = acct.rng
    _, amount, payment_id = entry
    at = acct.day_ns(d) + 5 * HOUR + rng.randrange(HOUR)
    reason = rng.choice(REVERSAL_REASONS)
    reversal = PaymentReversed(acct.account_id, payment_id, reason)
    acct.out.emit(reversal, at, at + rng.randrange(NS, 300 * NS), "payments")
    ledger.balance += amount


def _notice(acct: Account, ledger: Ledger, d: int, stage: str | None = None,
            month: str | None = None) -> None:
    """Acks for the legacy system's arrears notice; some never get a delivery record.

    A scenario names the ``stage`` it ends at and the ``month`` of the period.
    """
    rng = acct.rng
    if ledger.balance < NOTICE_THRESHOLD_MINOR:
        return
    # The legacy system keyed notices as the arrears projection keys its effects
    # (kind:account:period), so a replay can match acks to the notices it releases.
    month = month or (acct.start + dt.timedelta(days=d)).strftime("%Y-%m")
    notice_id = f"arrears-notice:{acct.account_id}:{month}"
    sent = acct.day_ns(d) + 10 * HOUR + rng.randrange(2 * HOUR)
    accepted = sent + rng.randrange(NS, 30 * NS)
    _ack(acct, notice_id, accepted, "accepted")
    roll = rng.random()
    if stage is not None:
        roll = 0.95 if stage == "accepted" else 0.87
    if roll < 0.85:
        _ack(acct, notice_id, accepted + rng.randrange(2 * MINUTE, 300 * MINUTE), "delivered")
    elif roll < 0.90:
        _ack(acct, notice_id, accepted + rng.randrange(MINUTE, 60 * MINUTE), "failed")
    # else: accepted, and no delivery record ever arrives (SM-AR-014)


def _ack(acct: Account, notice_id: str, at: int, stage: str) -> None:
    ack = NotificationAck(acct.account_id, notice_id, stage)  # type: ignore[arg-type]
    acct.out.emit(ack, at, at + acct.rng.randrange(NS, 20 * NS), "notify")

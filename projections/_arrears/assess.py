"""Judging an account at one instant: debt, due time, input freshness, flags, confidence."""

from __future__ import annotations

import uuid

import msgspec

from projections import reasons as R

from .config import ArrearsConfig, hours_ns
from .state import Account, Meter

# Reasons that stop a notice outright; PROVISIONAL_BALANCE only stops release.
NO_DEBT = frozenset({R.NO_BALANCE, R.DEBT_BELOW_THRESHOLD})
BAD_INPUT = frozenset({R.NO_READING, R.STALE_READING, R.ESTIMATED_CONSUMPTION})


class Assessment(msgspec.Struct, frozen=True):
    """What an account looks like at ``at``. ``blockers`` empty means a notice may be held."""

    @property
    def inputs(self) -> tuple[str, ...]:
        """Ids of the events the judgement rests on; built only when a decision cites them."""
        return inputs_of(self.account)

    at: int
    period: str | None
    debt_minor: int
    threshold_minor: int
    due_time: int | None
    blockers: tuple[str, ...]
    notes: tuple[str, ...]  # reasons that lower confidence without blocking
    confidence: float
    base_confidence: float  # confidence once a provisional balance is reconciled
    input_time: int | None
    account: Account  # the facts judged, for ``inputs``
    vulnerable: bool
    paid_since_statement: bool  # payments after the statement lowered the debt


class Assessor:
    """Applies one config's thresholds; holds the config's times in nanoseconds."""

    def __init__(self, config: ArrearsConfig) -> None:
        self.c = config
        self.freshness_ns = hours_ns(config.freshness_hours)
        self.grace_ns = hours_ns(config.overdue_grace_hours)
        self.vulnerable_threshold = int(config.debt_threshold_minor * config.vulnerable_multiplier)

    def threshold(self, account: Account) -> int:
        """The debt from which a notice is considered; stricter for vulnerable customers."""
        return self.vulnerable_threshold if is_vulnerable(account) else self.c.debt_threshold_minor

    def assess(self, account: Account, now: int) -> Assessment:
        """Everything a hold or a release depends on, judged at ``now``."""
        blockers: list[str] = []
        notes: list[str] = []
        vulnerable = is_vulnerable(account)
        if vulnerable:
            blockers.append(R.VULNERABLE_CUSTOMER)
        threshold = self.threshold(account)
        balance = account.balance
        due_time = None
        if balance is None:
            blockers.append(R.NO_BALANCE)
        elif account.debt_minor < threshold:
            blockers.append(R.DEBT_BELOW_THRESHOLD)
        else:
            due_time = balance.due_at + self.grace_ns
            if now < due_time:
                blockers.append(R.NOT_YET_DUE)
            if balance.provisional:
                notes.append(R.PROVISIONAL_BALANCE)
        input_time, base = self._readings(account, now, blockers, notes)
        factor = base * self.c.provisional_factor if R.PROVISIONAL_BALANCE in notes else base
        return Assessment(
            at=now,
            period=None if balance is None else balance.period,
            debt_minor=account.debt_minor,
            threshold_minor=threshold,
            due_time=due_time,
            blockers=tuple(blockers),
            notes=tuple(notes),
            confidence=round(factor, 6),
            base_confidence=round(base, 6),
            input_time=input_time,
            account=account,
            vulnerable=vulnerable,
            paid_since_statement=balance is not None and account.debt_minor < balance.balance_minor,
        )

    def bad_inputs(self, account: Account, now: int) -> tuple[str, ...]:
        """The ``BAD_INPUT`` blockers ``assess(account, now)`` would find, in its order.

        The same rules as ``_readings`` without an assessment: cheap enough to
        run on every reading of an account whose notice waits for its readings.
        """
        if not account.meters:
            return (R.NO_READING,)
        oldest, estimated, _ = _scan(account.meters)
        stale = now - min(oldest, now) > self.freshness_ns
        if stale:
            return (R.STALE_READING, R.ESTIMATED_CONSUMPTION) if estimated else (R.STALE_READING,)
        return (R.ESTIMATED_CONSUMPTION,) if estimated else ()

    def _readings(self, account: Account, now: int, blockers: list, notes: list) -> tuple[int | None, float]:
        """The oldest of the meters' latest trusted times, and the confidence it allows."""
        if not account.meters:
            blockers.append(R.NO_READING)
            return None, 0.0
        oldest, estimated, clock_ahead = _scan(account.meters)
        input_time = min(oldest, now)
        age = now - input_time
        factor = 1.0 if age <= self.freshness_ns else 0.5 * self.freshness_ns / age
        if age > self.freshness_ns:
            blockers.append(R.STALE_READING)
        if estimated:
            blockers.append(R.ESTIMATED_CONSUMPTION)
            factor *= self.c.estimated_factor
        if clock_ahead:
            notes.append(R.CLOCK_AHEAD)
            factor *= self.c.clock_ahead_factor
        return input_time, factor


def _scan(meters: dict[str, Meter]) -> tuple[int, bool, bool]:
    """Over the meters' latest readings: the oldest trusted time, any estimated, any clock ahead."""
    if len(meters) == 1:  # the usual account: skip the generators
        for meter in meters.values():
            r = meter.latest
            return r.trusted_at, r.estimated, r.clock_ahead
    latest = [m.latest for m in meters.values()]
    return (min(r.trusted_at for r in latest), any(r.estimated for r in latest),
            any(r.clock_ahead for r in latest))


def is_vulnerable(account: Account) -> bool:
    """The vulnerable flag as last stated is active."""
    flag = account.flags.get("vulnerable")
    return flag is not None and flag.active


def inputs_of(account: Account) -> tuple[str, ...]:
    """Ids of the events the account's current picture rests on, sorted."""
    ids = [m.latest.event_id for m in account.meters.values()]
    if account.balance is not None:
        ids.append(account.balance.event_id)
        stated = account.balance.stated_at
        for payment_id, payment in account.payments.items():
            reversal = account.reversals.get(payment_id)
            if payment.paid_at > stated or (reversal is not None and reversal.reversed_at > stated):
                ids.append(payment.event_id)
                if reversal is not None:
                    ids.append(reversal.event_id)
    ids.extend(f.event_id for f in account.flags.values())
    return tuple(str(uuid.UUID(bytes=i)) for i in sorted(ids))  # bytes sort as their UUID text

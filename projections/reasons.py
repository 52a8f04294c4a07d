"""Stable reason codes carried by ``Decision.reasons``.

Traces, invariants and dashboards match on these strings, so a code is never
renamed or reused for another meaning; new codes are only added. Each value
equals its name in lower case so SQL over the ``decisions`` table reads well
(``WHERE list_contains(reasons, 'stale_reading')``).
"""

from __future__ import annotations

from typing import Final

# -- inputs: freshness, estimates, clocks -----------------------------------
STALE_READING: Final = "stale_reading"
"""The freshest trusted reading of the account is older than the freshness bound."""

NO_READING: Final = "no_reading"
"""The account has no meter reading at all, so nothing vouches for its consumption."""

ESTIMATED_CONSUMPTION: Final = "estimated_consumption"
"""The latest reading of a meter is an estimate; no hard notice rests on estimates."""

CLOCK_AHEAD: Final = "clock_ahead"
"""A device stamped a reading later than the trusted arrival time plus the tolerance."""

REGISTER_DECREASE: Final = "register_decrease"
"""A newer reading shows a lower register than one already seen; the register is kept monotonic."""

OUT_OF_ORDER_READING: Final = "out_of_order_reading"
"""A reading older (by trusted time) than the latest one arrived late; it does not replace it."""

# -- money ------------------------------------------------------------------
DEBT_OVER_THRESHOLD: Final = "debt_over_threshold"
"""The account owes at least the (possibly stricter) threshold and the debt is overdue."""

DEBT_BELOW_THRESHOLD: Final = "debt_below_threshold"
"""The account owes less than its threshold; no notice."""

NOT_YET_DUE: Final = "not_yet_due"
"""The debt is over the threshold but its due time (plus grace) has not passed."""

NO_BALANCE: Final = "no_balance"
"""No account balance statement is known, so there is no debt to act on."""

LATE_PAYMENT_CANCELLED: Final = "late_payment_cancelled"
"""A payment that arrived while a notice was held brought the debt under the threshold."""

DUPLICATE_PAYMENT: Final = "duplicate_payment"
"""A payment id seen before arrived again; it is counted once."""

PAYMENT_REVERSED: Final = "payment_reversed"
"""A reversal put a payment's amount back on the debt."""

PROVISIONAL_BALANCE: Final = "provisional_balance"
"""The balance awaits reconciliation; the notice stays held (reversible) until it arrives."""

STATEMENT_SUPERSEDED: Final = "statement_superseded"
"""A newer statement moved the account to another billing period than the held notice."""

# -- customer -------------------------------------------------------------------
VULNERABLE_CUSTOMER: Final = "vulnerable_customer"
"""The customer is flagged vulnerable: stricter threshold, no automatic hard notice."""

MANUAL_REVIEW: Final = "manual_review"
"""The case goes to a person instead of an automatic notice."""

# -- release: hold, calendar, confidence -------------------------------------
HOLD_WINDOW: Final = "hold_window"
"""The notice is held for its window before it may be released."""

HOLD_RESTARTED: Final = "hold_restarted"
"""A new balance statement arrived while held; the hold window starts again."""

RECHECKED_AT_RELEASE: Final = "rechecked_at_release"
"""Every condition was checked again against all facts known at release time."""

HOLIDAY_WAIT: Final = "holiday_wait"
"""Release fell on a holiday (from CalendarDay events); it waits for the next allowed time."""

OUTSIDE_ALLOWED_HOURS: Final = "outside_allowed_hours"
"""Release fell outside the allowed weekdays or send hours; it waits for the next allowed time."""

LOW_CONFIDENCE: Final = "low_confidence"
"""Confidence is under the minimum for this kind of decision."""

ALREADY_NOTIFIED: Final = "already_notified"
"""A notice for this account and period was already released; no second one."""

# -- delivery of notices ------------------------------------------------------
ACK_NOT_DELIVERY: Final = "ack_not_delivery"
"""The notification service accepted the notice; that is not proof of delivery."""

DELIVERY_CONFIRMED: Final = "delivery_confirmed"
"""A delivery record (stage "delivered") exists: only this marks a notice delivered."""

DELIVERY_FAILED: Final = "delivery_failed"
"""The notification service reported that delivery failed."""

UNKNOWN_NOTICE: Final = "unknown_notice"
"""An acknowledgement names a notice this projection never released."""

ALL: Final[frozenset[str]] = frozenset(
    value for name, value in dict(globals()).items() if name.isupper() and isinstance(value, str)
)
"""Every reason code defined here."""

__all__ = sorted(name for name, value in dict(globals()).items() if name.isupper() and name != "Final")

"""Small hand-made logs for the property tests, each account set up for one flaw to show."""

from __future__ import annotations

from eventstore import RecordedEvent
from projections.payloads import AccountBalance, MeterReading, PaymentReceived
from properties import LogBuilder
from properties._logs import DAY, HOUR, MINUTE, SECOND, START


def _account(b: LogBuilder, a: int, debt: int, reading_days: int) -> tuple[str, str]:
    account, meter, stream = f"AC{a:06d}", f"MTR{a:06d}", f"account-{a:06d}"
    at = START + 2 * HOUR  # statements fall due a day later: day 1, 02:00
    b.add(stream, AccountBalance(account, debt, due_at=at + DAY), at, at + SECOND, "billing")
    for d in range(reading_days):
        t = START + d * DAY + 30 * MINUTE
        b.add(stream, MeterReading(meter, account, 1000.0 + 8 * d), t, t + 4 * MINUTE, f"meter-{meter}")
    return account, stream


def flaw_log() -> list[RecordedEvent]:
    """Four accounts in arrears; unperturbed, the correct projection and every flawed variant agree.

    - AC000000: 60.00 owed, readings all week: a notice is held on day 1 and released on day 3.
    - AC000001: readings stop after day 1, which keeps them just fresh at release (55 h
      old, the bound is 72 h); if the day-1 reading is late or lost they are stale at
      send time, though fresh when the notice was held (SM-AR-012).
    - AC000002: paid in full on day 0, before the notice could be held; delivered late,
      the payment lands inside the hold window (SM-AR-003).
    - AC000003: owes 90.00 and pays 30.00 on day 2, inside the hold; counted twice, that would
      bring the debt under the threshold (SM-AR-004).
    """
    b = LogBuilder()
    _account(b, 0, 6000, 5)
    _account(b, 1, 6000, 2)
    account, stream = _account(b, 2, 6000, 5)
    t = START + 10 * HOUR
    b.add(stream, PaymentReceived(account, "PAY-2", 6000), t, t + MINUTE, "payments")
    account, stream = _account(b, 3, 9000, 5)
    t = START + 2 * DAY + 10 * HOUR
    b.add(stream, PaymentReceived(account, "PAY-3", 3000), t, t + MINUTE, "payments")
    return b.build()

"""A fast arrears-shaped log of any size, for replay and store benchmarks.

Lines are formatted from templates instead of through the simulation in
``_arrears_model``: a million events take a few seconds. The shape is simpler
(round-robin daily readings, payments, statements, a little of everything
else) but every line is valid against the payload structs.
"""

from __future__ import annotations

import datetime as dt
import random
import uuid
from collections.abc import Iterator

from ._calendar import day_start_ns
from ._jsonl import DAY, NS

_HEAD = '{{"id":"{id}","stream":"{stream}","type":"{type}","occurred_at":{at},"data":'
_TAIL = ',"metadata":{{"source":"{source}","received_at":"{received}"}}}}\n'


def bulk_lines(events: int, seed: int, accounts: int | None = None, start: str = "2024-01-01") -> Iterator[str]:
    """``events`` JSON Lines in receive order; the same arguments give the same lines."""
    rng = random.Random(f"bulk:{seed}")
    accounts = accounts or max(1, events // 400)
    registers = [rng.uniform(1_000, 40_000) for _ in range(accounts)]
    step = max(1, DAY // accounts)  # each account reports about once a day
    t0 = day_start_ns(dt.date.fromisoformat(start))
    payments = 0
    last_payment: list[str | None] = [None] * accounts
    for i in range(events):
        received = t0 + i * step
        r = rng.random()
        acct = i % accounts if r < 0.90 else rng.randrange(accounts)
        account_id = f"AC{acct:06d}"
        if r < 0.90:
            registers[acct] += 2.0 + 12.0 * rng.random()
            kind, source, lag = "MeterReading", f"meter-MTR{acct:06d}", int(240 * NS * (0.2 + r))
            data = (
                f'{{"meter_id":"MTR{acct:06d}","account_id":"{account_id}",'
                f'"register_kwh":{registers[acct]:.3f},"estimated":{"true" if r < 0.009 else "false"}}}'
            )
        elif r < 0.94:
            payments += 1
            kind, source, lag = "PaymentReceived", "payments", 30 * NS
            amount = 1_000 + int(20_000 * rng.random())
            last_payment[acct] = f"BP{payments:08d}"
            data = (
                f'{{"account_id":"{account_id}","payment_id":"{last_payment[acct]}",'
                f'"amount_minor":{amount},"currency":"GBP"}}'
            )
        elif r < 0.97:
            kind, source, lag = "AccountBalance", "billing", 10 * NS
            provisional = "true" if r < 0.943 else "false"
            balance = int(40_000 * rng.random()) - 5_000
            data = (
                f'{{"account_id":"{account_id}","balance_minor":{balance},'
                f'"provisional":{provisional},"due_at":{received + 14 * DAY}}}'
            )
        else:
            kind, source, lag, data = _rare(rng, r, account_id, last_payment[acct], received)
        head = _HEAD.format(
            id=uuid.UUID(int=rng.getrandbits(128), version=4),
            stream="calendar" if kind == "CalendarDay" else f"account-{acct:06d}",
            type=kind,
            at=received - lag,
        )
        yield head + data + _TAIL.format(source=source, received=received)


def _rare(
    rng: random.Random, r: float, account_id: str, payment_id: str | None, now: int
) -> tuple[str, str, int, str]:
    """Reversals (of the account's last payment), acks, flags and calendar days: 3% of the mix."""
    if r < 0.98 and payment_id:
        data = f'{{"account_id":"{account_id}","payment_id":"{payment_id}","reason":"insufficient_funds"}}'
        return "PaymentReversed", "payments", 60 * NS, data
    if r < 0.99:
        stage = ("accepted", "delivered", "failed")[int(rng.random() * 3)]
        data = f'{{"account_id":"{account_id}","notice_id":"N-{account_id}-{now // DAY}","stage":"{stage}"}}'
        return "NotificationAck", "notify", 5 * NS, data
    if r < 0.995:
        active = "true" if rng.random() < 0.8 else "false"
        data = f'{{"account_id":"{account_id}","flag":"vulnerable","active":{active}}}'
        return "CustomerFlag", "crm", 5 * NS, data
    date = dt.datetime.fromtimestamp(now // NS, dt.UTC).date() + dt.timedelta(days=7)
    data = f'{{"date":"{date.isoformat()}","holiday":false,"name":""}}'
    return "CalendarDay", "calendar", 0, data

"""A fast arrears-shaped log of any size, for replay and store benchmarks.

Lines are formatted from templates instead of through the simulation in
``_arrears_model``: a million events take a few seconds. Meters upload a
day's 48 half-hourly readings at once (as smart meters do), so the log has
runs of one stream, between single payments, statements, reversals, acks,
flags and calendar days. About 90% of events are readings. Every line is
valid against the payload structs.
"""

from __future__ import annotations

import datetime as dt
import random
import uuid
from collections.abc import Iterator

from ._calendar import day_start_ns
from ._jsonl import DAY, MINUTE, NS

_HEAD = '{{"id":"{id}","stream":"{stream}","type":"{type}","occurred_at":{at},"recorded_at":{received},"data":'
_TAIL = ',"metadata":{{"source":"{source}"}}}}\n'
READS_PER_UPLOAD = 48
# Chance that the next item is an upload (48 readings) rather than one other event,
# chosen so that readings are 90% of events: 48p / (48p + 1 - p) = 0.9.
UPLOAD_SHARE = 0.9 / (READS_PER_UPLOAD - 0.9 * (READS_PER_UPLOAD - 1))


class _Bulk:
    """Running state of one bulk log: registers, payment ids, the clock."""

    def __init__(self, seed: int, accounts: int, start: str) -> None:
        self.rng = random.Random(f"bulk:{seed}")
        self.accounts = accounts
        self.registers = [self.rng.uniform(1_000, 40_000) for _ in range(accounts)]
        self.last_payment: list[str | None] = [None] * accounts
        self.payments = 0
        self.next_upload = 0
        self.now = day_start_ns(dt.date.fromisoformat(start)) + DAY
        # One upload per account per day, on average.
        self.gap = max(1, int(DAY * UPLOAD_SHARE / accounts))

    def line(self, acct: int, kind: str, at: int, source: str, data: str) -> str:
        self.now += 1  # recorded times strictly increase: file order is receive order
        head = _HEAD.format(
            id=uuid.UUID(int=self.rng.getrandbits(128), version=4),
            stream="calendar" if kind == "CalendarDay" else f"account-{acct:06d}",
            type=kind, at=at, received=self.now,
        )
        return head + data + _TAIL.format(source=source)

    def upload(self, limit: int) -> Iterator[str]:
        acct = self.next_upload
        self.next_upload = (acct + 1) % self.accounts
        day_start = self.now - DAY - self.now % (30 * MINUTE)
        for k in range(min(READS_PER_UPLOAD, limit)):
            self.registers[acct] += 0.05 + 0.5 * self.rng.random()
            estimated = "true" if self.rng.random() < 0.01 else "false"
            data = (
                f'{{"meter_id":"MTR{acct:06d}","account_id":"AC{acct:06d}",'
                f'"register_kwh":{self.registers[acct]:.3f},"estimated":{estimated}}}'
            )
            yield self.line(acct, "MeterReading", day_start + k * 30 * MINUTE, f"meter-MTR{acct:06d}", data)

    def single(self) -> str:
        """One of the other event types: payments 40%, statements 30%, the rest 30%."""
        rng = self.rng
        r, acct = rng.random(), rng.randrange(self.accounts)
        account_id = f"AC{acct:06d}"
        if r < 0.4:
            self.payments += 1
            payment_id = self.last_payment[acct] = f"BP{self.payments:08d}"
            amount = 1_000 + int(20_000 * rng.random())
            data = f'{{"account_id":"{account_id}","payment_id":"{payment_id}","amount_minor":{amount},"currency":"GBP"}}'
            return self.line(acct, "PaymentReceived", self.now - 30 * NS, "payments", data)
        if r < 0.7:
            provisional = "true" if r < 0.43 else "false"
            balance = int(40_000 * rng.random()) - 5_000
            due = self.now + 14 * DAY
            data = f'{{"account_id":"{account_id}","balance_minor":{balance},"provisional":{provisional},"due_at":{due}}}'
            return self.line(acct, "AccountBalance", self.now - 10 * NS, "billing", data)
        return self._rare(r, acct, account_id)

    def _rare(self, r: float, acct: int, account_id: str) -> str:
        payment_id = self.last_payment[acct]
        if r < 0.8 and payment_id:
            data = f'{{"account_id":"{account_id}","payment_id":"{payment_id}","reason":"insufficient_funds"}}'
            return self.line(acct, "PaymentReversed", self.now - 60 * NS, "payments", data)
        if r < 0.9:
            stage = ("accepted", "delivered", "failed")[int(self.rng.random() * 3)]
            notice = f"N-{account_id}-{self.now // DAY}"
            data = f'{{"account_id":"{account_id}","notice_id":"{notice}","stage":"{stage}"}}'
            return self.line(acct, "NotificationAck", self.now - 5 * NS, "notify", data)
        if r < 0.95:
            active = "true" if self.rng.random() < 0.8 else "false"
            data = f'{{"account_id":"{account_id}","flag":"vulnerable","active":{active}}}'
            return self.line(acct, "CustomerFlag", self.now - 5 * NS, "crm", data)
        date = dt.datetime.fromtimestamp(self.now // NS, dt.UTC).date() + dt.timedelta(days=7)
        data = f'{{"date":"{date.isoformat()}","holiday":false,"name":""}}'
        return self.line(acct, "CalendarDay", self.now, "calendar", data)


def bulk_lines(events: int, seed: int, accounts: int | None = None, start: str = "2024-01-01") -> Iterator[str]:
    """``events`` JSON Lines in receive order; the same arguments give the same lines."""
    bulk = _Bulk(seed, accounts or max(1, events // 400), start)
    written = 0
    while written < events:
        bulk.now += bulk.gap
        if bulk.rng.random() < UPLOAD_SHARE:
            for line in bulk.upload(events - written):
                written += 1
                yield line
        else:
            written += 1
            yield bulk.single()

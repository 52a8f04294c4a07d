"""Domain logs as recorded events: a small builder and Hypothesis strategies per domain.

Logs follow the conventions of ``load/`` (streams ``account-000001``,
sources ``billing``, ``payments``, ``meter-MTR000001``, ``crm``), so
invariants and partitions written for generated logs apply to drawn ones.
Each strategy draws a handful of facts per subject rather than one choice
per event, and shrinks towards fewer subjects, fewer facts, smaller amounts.
"""

from __future__ import annotations

import uuid
from typing import Final

from hypothesis import strategies as st

from eventstore import Metadata, RecordedEvent, type_of
from eventstore.payloads import Heartbeat, Payload, encode_payload
from projections.payloads import (
    AccountBalance,
    CustomerFlag,
    MarketTick,
    MeterReading,
    OrderFill,
    PaymentReceived,
    PaymentReversed,
    TradeSignal,
)

SECOND: Final = 1_000_000_000
MINUTE: Final = 60 * SECOND
HOUR: Final = 60 * MINUTE
DAY: Final = 24 * HOUR
START: Final = 1_704_067_200 * SECOND  # Monday 2024-01-01 00:00 UTC
_NAMESPACE: Final = uuid.UUID("0b7e3d1c-6a55-4c57-9a7e-5f1f2a3c4d5e")


class LogBuilder:
    """Collects payloads with their times and hands back a log of ``RecordedEvent``.

    ``build`` orders events by ``recorded_at`` (ties keep insertion order),
    numbers positions from 1 and revisions per stream from 0, and derives
    ids with uuid5 from (stream, per-stream counter), so the same calls give
    the same log, byte for byte.
    """

    def __init__(self) -> None:
        self._items: list[tuple[int, int, str, Payload, int, str | None]] = []

    def add(
        self,
        stream: str,
        payload: Payload,
        occurred_at: int,
        recorded_at: int | None = None,
        source: str | None = None,
    ) -> None:
        """Add one event; ``recorded_at`` defaults to ``occurred_at`` (no ingest lag)."""
        recorded = occurred_at if recorded_at is None else recorded_at
        self._items.append((recorded, len(self._items), stream, payload, occurred_at, source))

    def build(self) -> list[RecordedEvent]:
        """The log, in recorded order (see the class docstring)."""
        revisions: dict[str, int] = {}
        counters: dict[str, int] = {}
        ids = {}
        for _, order, stream, *_ in self._items:  # ids follow insertion, not arrival
            ids[order] = counters.get(stream, 0)
            counters[stream] = ids[order] + 1
        out = []
        for recorded, order, stream, payload, occurred, source in sorted(self._items, key=_key):
            revision = revisions.get(stream, 0)
            revisions[stream] = revision + 1
            out.append(
                RecordedEvent(
                    id=uuid.uuid5(_NAMESPACE, f"{stream}/{ids[order]}"),
                    stream=stream,
                    revision=revision,
                    position=len(out) + 1,
                    recorded_at=recorded,
                    occurred_at=occurred,
                    type=type_of(payload),
                    data=encode_payload(payload),
                    metadata=Metadata(source=source),
                )
            )
        return out


def _key(item: tuple) -> tuple[int, int]:
    return item[0], item[1]


# -- arrears ------------------------------------------------------------------
_PAYMENT = st.tuples(
    st.integers(0, 4),  # day it is paid: before, inside or after the hold window
    st.integers(1, 8).map(lambda k: k * 1_000),  # amount, minor units: round figures
    st.booleans(),  # the processor's webhook retried: the same payment twice in the log
    st.booleans(),  # reversed two days later
)


@st.composite
def arrears_logs(draw, max_accounts: int = 3, days: int = 6) -> list[RecordedEvent]:
    """Accounts with a statement, daily meter readings, payments, reversals and flags.

    Shrinks towards one account, no debt, no payments. Statements fall due on
    day 1; readings arrive a few minutes after the device time.
    """
    log = LogBuilder()
    for a in range(draw(st.integers(1, max_accounts))):
        _account(draw, log, a, days)
    return log.build()


def _account(draw, log: LogBuilder, a: int, days: int) -> None:
    account, meter, stream = f"AC{a:06d}", f"MTR{a:06d}", f"account-{a:06d}"
    # Steps of 15.00 either side of the 50.00 threshold: a plain integer draw favours
    # small numbers and would leave almost every account out of arrears.
    debt = draw(st.integers(0, 8)) * 1_500
    at = START + 2 * HOUR
    log.add(stream, AccountBalance(account, debt, due_at=at + DAY), at, at + SECOND, "billing")
    if draw(st.integers(0, 9)) == 9:  # one customer in ten; shrinks to not vulnerable
        flag = CustomerFlag(account, "vulnerable")
        log.add(stream, flag, START + HOUR, START + HOUR + SECOND, "crm")
    register = 1_000.0
    for d in range(days):
        register += 8.0
        t = START + d * DAY + 30 * MINUTE
        reading = MeterReading(meter, account, register)
        log.add(stream, reading, t, t + 4 * MINUTE, f"meter-{meter}")
    for n, (day, amount, twice, reversed_) in enumerate(draw(st.lists(_PAYMENT, max_size=2))):
        _payment(log, stream, account, n, min(day, days - 1), amount, twice, reversed_)


def _payment(log: LogBuilder, stream: str, account: str, n: int, day: int, amount: int,
             twice: bool, reversed_: bool) -> None:
    pay_id = f"PAY-{account}-{n}"
    t = START + day * DAY + 10 * HOUR
    payment = PaymentReceived(account, pay_id, amount)
    log.add(stream, payment, t, t + MINUTE, "payments")
    if twice:
        log.add(stream, payment, t, t + 5 * MINUTE, "payments")
    if reversed_:
        log.add(stream, PaymentReversed(account, pay_id, "chargeback"), t + 2 * DAY,
                t + 2 * DAY + MINUTE, "payments")


# -- trading --------------------------------------------------------------------
@st.composite
def trading_logs(draw, max_symbols: int = 2, max_ticks: int = 20) -> list[RecordedEvent]:
    """Per symbol: ticks one second apart, with signals and fills among them."""
    log = LogBuilder()
    for s in range(draw(st.integers(1, max_symbols))):
        symbol, price = f"SYM{s}", 100.0
        moves = draw(st.lists(st.floats(-0.05, 0.05, allow_nan=False), min_size=1,
                              max_size=max_ticks))
        for i, move in enumerate(moves):
            price = max(0.01, round(price * (1 + move), 4))
            t = START + i * SECOND
            log.add(f"symbol-{symbol}", MarketTick(symbol, price, 10.0), t, t + 5_000_000,
                    "exchange")
            if draw(st.integers(0, 9)) == 0:
                side = draw(st.sampled_from(["buy", "sell"]))
                log.add(f"symbol-{symbol}", TradeSignal(f"SIG{s}-{i}", symbol, side, 1.0),
                        t, t + 1_000_000, "strategy")
                fill = OrderFill(f"ORD{s}-{i}", symbol, side, 1.0, price)
                log.add(f"symbol-{symbol}", fill, t + 50_000_000, t + 60_000_000, "oms")
    return log.build()


# -- grid visibility ------------------------------------------------------------------
@st.composite
def heartbeat_logs(draw, max_nodes: int = 4, beats: int = 10) -> list[RecordedEvent]:
    """Nodes reporting every 10 s, each with a few silent gaps (missing beats)."""
    log = LogBuilder()
    for n in range(draw(st.integers(1, max_nodes))):
        node = f"node-{n}"
        silent = set(draw(st.lists(st.integers(0, beats - 1), max_size=3)))
        for b in range(beats):
            if b in silent:
                continue
            t = START + b * 10 * SECOND
            log.add(node, Heartbeat(node, float(b)), t, t + 20_000_000, node)
    return log.build()

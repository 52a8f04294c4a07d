"""A seeded trading log: ticks with a flash crash, fills, a signal flood, rate-limit errors, resets.

The timeline (minutes from ``start``, defaults in ``TradingProfile``)::

    0        fills build long positions (``invested`` of the capital, spread over the symbols)
    0..end   one tick per symbol per second, a small seeded random walk
    flood    ``flood_signals`` signals in 5 s (TR-004), the first ten filled
    limits   five signals 12 s apart; the exchange refuses the first 0..4 attempts of each
             with -1003 or -1015, at the times the default retry backoff sends them (TR-003)
    crash    every price falls ``crash_pct`` linearly over 60 s (TR-001), then stays low
    crash+2  signals and an early operator reset (refused: the cooldown is not over)
    crash+7  the operator resets (after the cooldown) and new signals follow (TR-005)

Prices are whole cents (``price_minor`` is sent with the float), quantities whole
units, so the drawdown a test computes from the log with ``fractions`` is the one
the projection must find. Same profile, same bytes.
"""

from __future__ import annotations

import datetime as dt
import os
import random
from collections.abc import Iterator
from pathlib import Path

import msgspec

from projections.payloads.trading import (
    MarketTick,
    OperatorReset,
    OrderFill,
    OrderRejected,
    TradeSignal,
)

from ._jsonl import MINUTE, NS, StreamWriter

MS = NS // 1000
SYMBOLS = ("AAPL", "MSFT", "NVDA", "AMZN", "GOOG", "META", "TSLA", "AMD")
CAPITAL_MINOR = 100_000_000  # the projection's default capital: 1,000,000.00


class TradingProfile(msgspec.Struct, frozen=True, kw_only=True):
    """What to generate: symbols, minutes, where each phase starts, the seed."""

    symbols: int = 4
    minutes: int = 20
    seed: int = 0
    start: str = "2024-03-01T14:00:00"
    invested: float = 0.9
    crash_pct: float = 15.0
    crash_at: int = 10
    flood_at: int = 2
    flood_signals: int = 50
    limits_at: int = 5
    cooldown_s: int = 300

    def __post_init__(self) -> None:
        if not 1 <= self.symbols <= len(SYMBOLS):
            raise ValueError(f"symbols must be 1..{len(SYMBOLS)}, got {self.symbols}")
        if not 0 < self.invested <= 1 or not 0 <= self.crash_pct < 100:
            raise ValueError("invested must be in (0, 1] and crash_pct in [0, 100)")
        if self.flood_signals < 0:
            raise ValueError(f"flood_signals must be >= 0, got {self.flood_signals}")
        last = self.crash_at + 1 + (self.cooldown_s + 119) // 60
        if not self.flood_at < self.limits_at < self.crash_at or self.minutes <= last:
            raise ValueError(f"phases must be ordered flood < limits < crash and minutes > {last}")
        dt.datetime.fromisoformat(self.start)


class _Log:
    def __init__(self, profile: TradingProfile) -> None:
        self.p = profile
        self.rng = random.Random(f"trading/{profile.seed}")
        start = dt.datetime.fromisoformat(profile.start).replace(tzinfo=dt.UTC)
        self.t0 = int(start.timestamp()) * NS
        self.ticks = StreamWriter(profile.seed, "trading-ticks")
        self.orders = StreamWriter(profile.seed, "trading-orders")
        self.ops = StreamWriter(profile.seed, "trading-ops")

    def lag(self) -> int:
        return self.rng.randrange(2, 40) * MS

    def at(self, minute: float) -> int:
        return self.t0 + round(minute * MINUTE)


def _prices(log: _Log, symbols: tuple[str, ...]) -> dict[str, list[int]]:
    """Cents per symbol per second: a random walk, then the crash, then a low plateau."""
    p, rng = log.p, log.rng
    seconds = p.minutes * 60
    crash0, crash1 = p.crash_at * 60, p.crash_at * 60 + 60
    out: dict[str, list[int]] = {}
    for s in symbols:
        price = rng.randrange(50_00, 500_00)
        series = []
        for sec in range(seconds):
            if sec < crash0 or sec >= crash1:
                price = max(1, price + round(price * rng.uniform(-2e-4, 2e-4)))
                series.append(price)
            else:
                series.append(price)
        base = series[crash0 - 1]
        for sec in range(crash0, seconds):
            k = min(sec - crash0 + 1, 60)
            drop = round(base * p.crash_pct * k / 6000)
            series[sec] = base - drop if sec < crash1 else min(series[sec], base - drop)
        out[s] = series
    return out


def _ticks_and_positions(log: _Log, prices: dict[str, list[int]]) -> None:
    p = log.p
    per_symbol = CAPITAL_MINOR * p.invested / len(prices)
    for s, series in prices.items():
        qty = int(per_symbol // series[0])
        t = log.t0 + 200 * MS
        log.orders.emit(OrderFill(order_id=f"init-{s}", symbol=s, side="buy", quantity=float(qty),
                                  price=series[0] / 100, price_minor=series[0], fill_id="0"),
                        t, t + log.lag(), "exchange")
        for sec, cents in enumerate(series):
            t = log.t0 + sec * NS + 500 * MS
            log.ticks.emit(MarketTick(symbol=s, price=cents / 100, size=100.0, price_minor=cents),
                           t, t + log.lag(), "feed")


def _signal(log: _Log, signal_id: str, symbol: str, t: int) -> None:
    log.orders.emit(TradeSignal(signal_id=signal_id, symbol=symbol, side="buy", quantity=1.0),
                    t, t + log.lag(), "strategy")


def _flood(log: _Log, symbols: tuple[str, ...], prices: dict[str, list[int]]) -> None:
    p = log.p
    t0 = log.at(p.flood_at)
    for i in range(p.flood_signals):
        t = t0 + i * (5 * NS // max(p.flood_signals, 1))
        s = symbols[i % len(symbols)]
        _signal(log, f"flood-{i:03d}", s, t)
        if i < 10:  # the first ten go out at once and are filled
            cents = prices[s][(t - log.t0) // NS]
            fill = t + 300 * MS
            log.orders.emit(OrderFill(order_id=f"flood-{i:03d}", symbol=s, side="buy",
                                      quantity=1.0, price=cents / 100, price_minor=cents),
                            fill, fill + log.lag(), "exchange")


def _rate_limits(log: _Log, symbols: tuple[str, ...], prices: dict[str, list[int]]) -> None:
    """Signals whose first k attempts the exchange refuses; k = 4 exhausts 3 retries."""
    refusals = [0, 1, 2, 3, 4]
    log.rng.shuffle(refusals)
    for i, k in enumerate(refusals):
        s = symbols[i % len(symbols)]
        sent = log.at(log.p.limits_at) + i * 12 * NS
        _signal(log, f"limit-{i}", s, sent)
        received = sent + 10 * MS  # the time the projection sees it: before the lag below
        attempt_at = received
        for attempt in range(k):
            code = (-1003, -1015)[log.rng.randrange(2)]
            answer = attempt_at + 100 * MS
            log.orders.emit(OrderRejected(order_id=f"limit-{i}", symbol=s, code=code,
                                          attempt=attempt, message="Too many requests"),
                            answer, answer, "exchange")
            attempt_at = answer + NS * 2 ** attempt
        if k <= 3:
            fill = attempt_at + 200 * MS
            cents = prices[s][(fill - log.t0) // NS]
            log.orders.emit(OrderFill(order_id=f"limit-{i}", symbol=s, side="buy", quantity=1.0,
                                      price=cents / 100, price_minor=cents, fill_id=str(k)),
                            fill, fill, "exchange")


def _after_crash(log: _Log, symbols: tuple[str, ...]) -> None:
    p = log.p
    for i in range(3):
        _signal(log, f"tripped-{i}", symbols[i % len(symbols)], log.at(p.crash_at + 1.5) + i * NS)
    early = log.at(p.crash_at + 2)
    log.ops.emit(OperatorReset(operator="risk-desk", reason="too early"), early, early + log.lag(),
                 "operator")
    reset_min = p.crash_at + 1 + (p.cooldown_s + 59) // 60
    late = log.at(reset_min)
    log.ops.emit(OperatorReset(operator="risk-desk", reason="after cooldown"), late,
                 late + log.lag(), "operator")
    for i in range(3):
        _signal(log, f"reset-{i}", symbols[i % len(symbols)], log.at(reset_min + 0.5) + i * NS)


def trading_lines(profile: TradingProfile) -> Iterator[bytes]:
    """The lines of the trading log in receive order (what ``generate_trading`` writes)."""
    log = _Log(profile)
    symbols = SYMBOLS[: profile.symbols]
    prices = _prices(log, symbols)
    _ticks_and_positions(log, prices)
    _flood(log, symbols, prices)
    _rate_limits(log, symbols, prices)
    _after_crash(log, symbols)
    items = sorted(log.ticks.items + log.orders.items + log.ops.items)
    for _, _, _, line in items:
        yield line


def generate_trading(out: str | os.PathLike, profile: TradingProfile):
    """Write the trading log for ``profile`` to ``out``; the same profile gives the same bytes."""
    from .generators import _write

    return _write(Path(out), profile.seed, trading_lines(profile))

"""The trading projection's state: facts folded order-independently, then the switch and queues.

All amounts are integers: prices in minor units, quantities in units of
10**-qty_scale, so cash and equity are in "minor units x 10**-qty_scale" and a
drawdown compares exactly.
"""

from __future__ import annotations

import msgspec

ARMED = "armed"
TRIPPED = "tripped"
COOLED = "cooled"  # tripped, cooldown over, waiting for an operator reset


class Quote(msgspec.Struct):
    """The newest price of a symbol by source time (ties: the higher position wins)."""

    price: int
    occurred_at: int
    position: int


class Order(msgspec.Struct):
    """An order released from a signal and the state of its attempts."""

    symbol: str
    side: str
    quantity: int
    input_time: int  # the signal's source time
    event_id: str
    attempt: int = 0
    phase: str = "sent"  # sent | retrying | done | abandoned | blocked


class Queued(msgspec.Struct):
    """A signal waiting for the flood limit."""

    signal_id: str
    symbol: str
    side: str
    quantity: int
    input_time: int
    arrived_at: int
    event_id: str


class TradingState(msgspec.Struct):
    """Everything the trading projection knows."""

    quotes: dict[str, Quote] = {}
    positions: dict[str, int] = {}
    cash: int = 0  # scaled: minor units x 10**qty_scale, from fills only
    fills: dict[str, int] = {}  # fill key -> position of the event that counted it
    peak: int = 0  # high-water mark of equity since the switch was armed (scaled)
    equity: int = 0
    max_drawdown_bp: int = 0
    switch: str = ARMED
    tripped_at: int = 0
    cooldown_until: int = 0
    trips: int = 0
    alert_pending: bool = False  # tripped on a stale price: page on the next fresh one
    signals: dict[str, str] = {}  # signal id -> what became of it
    intents: list[int] = []  # times of released new intents (last minute)
    requests: list[int] = []  # times of requests sent (last request window)
    queue: list[Queued] = []
    orders: dict[str, Order] = {}

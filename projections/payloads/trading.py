"""Trading payloads: market ticks, order fills and trade signals."""

from __future__ import annotations

from typing import Literal

from eventstore.payloads import Payload, register_payloads


class MarketTick(Payload, tag="MarketTick"):
    symbol: str
    price: float
    size: float = 0.0


class OrderFill(Payload, tag="OrderFill"):
    order_id: str
    symbol: str
    side: Literal["buy", "sell"]
    quantity: float
    price: float


class TradeSignal(Payload, tag="TradeSignal"):
    signal_id: str
    symbol: str
    side: Literal["buy", "sell"]
    quantity: float
    strength: float = 1.0


register_payloads(MarketTick, OrderFill, TradeSignal)

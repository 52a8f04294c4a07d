"""Trading payloads: market ticks, order fills, trade signals, exchange errors, operator resets.

Prices arrive as floats from most feeds; the exact integer form ``price_minor``
(the price in minor units, e.g. cents) is preferred when a producer can send it,
and the trading projection converts a float through its shortest decimal text,
never through binary arithmetic. Every field added after the first release has
a default, so events stored before still decode.
"""

from __future__ import annotations

from typing import Final, Literal

from eventstore.payloads import Payload, register_payloads

RATE_LIMIT_CODES: Final = (-1003, -1015)
"""Exchange error codes meaning "too many requests" (-1003) and "too many new orders" (-1015)."""


class MarketTick(Payload, tag="MarketTick"):
    """A trade or quote price of ``symbol``; ``price_minor`` (if set) is the exact price."""

    symbol: str
    price: float
    size: float = 0.0
    price_minor: int | None = None


class OrderFill(Payload, tag="OrderFill"):
    """An execution of an order; ``fill_id`` tells partial fills of one order apart."""

    order_id: str
    symbol: str
    side: Literal["buy", "sell"]
    quantity: float
    price: float
    price_minor: int | None = None
    fill_id: str = ""


class TradeSignal(Payload, tag="TradeSignal"):
    """A strategy asking to trade; the projection turns it into at most one order intent."""

    signal_id: str
    symbol: str
    side: Literal["buy", "sell"]
    quantity: float
    strength: float = 1.0


class OrderRejected(Payload, tag="OrderRejected"):
    """The exchange refused attempt ``attempt`` of an order with an error ``code``.

    Codes -1003 and -1015 are rate limits (retry later); any other code is final.
    """

    order_id: str
    symbol: str
    code: int
    attempt: int = 0
    message: str = ""


class OperatorReset(Payload, tag="OperatorReset"):
    """A person asked to re-arm the kill switch (refused before its cooldown is over)."""

    operator: str
    reason: str = ""


register_payloads(MarketTick, OrderFill, TradeSignal, OrderRejected, OperatorReset)

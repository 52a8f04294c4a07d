"""Deliberately flawed variants of the trading projection's kill switch and order handling,
each a one-line bug of a different class that ``unbroken check`` finds and shrinks:

- ``reset_ignores_cooldown`` (state machine): an operator reset re-arms the switch at any
  time, cooldown or not (breaks TR-005 on the generated log: its first reset is too early).
- ``counts_duplicate_fills`` (idempotency): every delivery of a fill moves the position, so a
  fill the exchange reported twice doubles it (breaks INV-5 under a Duplicate schedule).
- ``last_delivered_price_wins`` (ordering): a symbol's price is whatever tick arrived last,
  not the newest by source time, so a late tick rolls the price back (breaks INV-5 under a
  Delay or Reorder schedule).
- ``one_retry_too_many`` (off by one): a rate-limited order is retried while its attempt is
  <= max_retries, one more than the policy allows (breaks TR-003).

Use them by spec: ``unbroken check --log LOG --projection
examples/flawed_trading.py:counts_duplicate_fills``. They reach into the projection's private
parts on purpose: a flaw is a one-line change.
"""

from __future__ import annotations

from typing import Any

import msgspec

import projections
from projections._trading.projection import TradingProjection, exact
from projections._trading.state import ARMED, Quote


class _ResetIgnoresCooldown(TradingProjection):
    def _on_reset(self, state, p, event, ctx) -> None:
        state.cooldown_until = min(state.cooldown_until, ctx.now)  # the flaw: no cooldown
        super()._on_reset(state, p, event, ctx)


class _CountsDuplicateFills(TradingProjection):
    def _on_fill(self, state, p, event, ctx) -> None:
        # The flaw: the fill key includes the delivery, so a repeated fill is a new one.
        key = f"{p.fill_id}@{len(state.fills)}"
        super()._on_fill(state, msgspec.structs.replace(p, fill_id=key), event, ctx)


class _LastDeliveredPriceWins(TradingProjection):
    def _on_price(self, state, symbol, price, minor, event, ctx) -> None:
        super()._on_price(state, symbol, price, minor, event, ctx)
        value = minor if minor is not None else exact(price, self._c.price_scale)
        state.quotes[symbol] = Quote(value, event.occurred_at, event.position)  # the flaw
        if state.switch == ARMED:
            state.equity = self.equity(state)


class _OneRetryTooMany(TradingProjection):
    def __init__(self, config) -> None:
        super().__init__(config)
        self._told = config
        # The flaw: the retry bound is checked one too late (`>` where `>=` belongs).
        self._c = msgspec.structs.replace(config, max_retries=config.max_retries + 1)

    def config(self) -> dict[str, Any]:
        return msgspec.to_builtins(self._told)  # the policy it claims to follow


def _variant(name: str, cls: type[TradingProjection], **config: Any) -> TradingProjection:
    real = projections.get("trading", **config)
    variant = cls(real._c)
    variant.name = name
    return variant


def reset_ignores_cooldown(**config: Any) -> TradingProjection:
    """Trading, except an operator reset re-arms the switch before the cooldown is over."""
    return _variant("trading-reset-ignores-cooldown", _ResetIgnoresCooldown, **config)


def counts_duplicate_fills(**config: Any) -> TradingProjection:
    """Trading, except a fill delivered twice is counted twice."""
    return _variant("trading-counts-duplicate-fills", _CountsDuplicateFills, **config)


def last_delivered_price_wins(**config: Any) -> TradingProjection:
    """Trading, except the last tick delivered sets the price, however old it is."""
    return _variant("trading-last-delivered-price-wins", _LastDeliveredPriceWins, **config)


def one_retry_too_many(**config: Any) -> TradingProjection:
    """Trading, except a rate-limited order gets max_retries + 1 retries."""
    return _variant("trading-one-retry-too-many", _OneRetryTooMany, **config)

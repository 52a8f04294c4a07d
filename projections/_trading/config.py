"""The trading projection's settings: capital, units, kill switch, flood policy, retries."""

from __future__ import annotations

import msgspec

from projections._config import ConfigError

SECOND_NS = 1_000_000_000


class TradingConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Settings of the trading projection. Money is integer minor units; times are seconds.

    - ``capital_minor`` (100,000,000 = 1,000,000.00): the account's cash before any fill.
    - ``price_scale`` (2): minor units per major unit as a power of ten (2: cents).
    - ``qty_scale`` (0): quantities are counted in units of 10**-qty_scale.
    - ``drawdown_limit_bp`` (1000 = 10%): the kill switch trips when the drawdown from the
      high-water mark is strictly above this, in basis points (compared exactly).
    - ``cooldown_s`` (300): a tripped switch cannot be reset before this has passed.
    - ``max_intents_per_minute`` (10): new order intents released in any 60 s window.
    - ``max_queue`` (10): signals waiting for the flood limit; more are cancelled.
    - ``max_signal_age_s`` (90): a signal older than this (by its source time) is never
      sent; it bounds the queue lag and is the freshness bound of every order decision.
    - ``max_retries`` (3): retries of one order after rate-limit errors (-1003, -1015).
    - ``backoff_s`` (1.0): the first retry waits this long, each next one twice as long.
    - ``request_limit`` (10) per ``request_window_s`` (10): requests (new and retried
      orders) the exchange allows; the projection stays under it.
    - ``alert_freshness_s`` (3600): how old the price behind a kill-switch alert may be.
    - ``min_confidence_external`` (0.9): the bar of orders and alerts.
    """

    capital_minor: int = 100_000_000
    price_scale: int = 2
    qty_scale: int = 0
    drawdown_limit_bp: int = 1000
    cooldown_s: float = 300.0
    max_intents_per_minute: int = 10
    max_queue: int = 10
    max_signal_age_s: float = 90.0
    max_retries: int = 3
    backoff_s: float = 1.0
    request_limit: int = 10
    request_window_s: float = 10.0
    alert_freshness_s: float = 3600.0
    min_confidence_external: float = 0.9

    def __post_init__(self) -> None:
        checks = (
            ("capital_minor", self.capital_minor > 0, "must be > 0"),
            ("price_scale", 0 <= self.price_scale <= 12, "must be 0..12"),
            ("qty_scale", 0 <= self.qty_scale <= 12, "must be 0..12"),
            ("drawdown_limit_bp", 0 < self.drawdown_limit_bp < 10_000, "must be 1..9999"),
            ("cooldown_s", self.cooldown_s >= 0, "must be >= 0"),
            ("max_intents_per_minute", self.max_intents_per_minute >= 1, "must be >= 1"),
            ("max_queue", self.max_queue >= 0, "must be >= 0"),
            ("max_signal_age_s", self.max_signal_age_s > 0, "must be > 0"),
            ("max_retries", self.max_retries >= 0, "must be >= 0"),
            ("backoff_s", self.backoff_s > 0, "must be > 0"),
            ("request_limit", self.request_limit >= 1, "must be >= 1"),
            ("request_window_s", self.request_window_s > 0, "must be > 0"),
            ("alert_freshness_s", self.alert_freshness_s > 0, "must be > 0"),
            ("min_confidence_external", 0 < self.min_confidence_external <= 1, "must be in (0, 1]"),
        )
        for key, ok, what in checks:
            if not ok:
                raise ConfigError(f"trading: {key} {what}, got {getattr(self, key)!r}")

    def ns(self, seconds: float) -> int:
        """``seconds`` as integer nanoseconds."""
        return round(seconds * SECOND_NS)

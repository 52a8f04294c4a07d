"""Stable reason codes of the trading projection (never renamed or reused; only added)."""

from __future__ import annotations

from typing import Final

DRAWDOWN_OVER_LIMIT: Final = "drawdown_over_limit"
"""The drawdown from the high-water mark went strictly above the limit: the switch trips."""

STALE_PRICE: Final = "stale_price"
"""The price behind a kill-switch alert is older than alert_freshness_s; the page waits for a
fresh price (the switch itself trips at once)."""

KILL_SWITCH_TRIPPED: Final = "kill_switch_tripped"
"""An order was not sent because the kill switch is tripped."""

COOLDOWN_ELAPSED: Final = "cooldown_elapsed"
"""The cooldown after a trip is over; an operator may now reset the switch."""

RESET_BEFORE_COOLDOWN: Final = "reset_before_cooldown"
"""An operator reset arrived before the cooldown was over; refused."""

NOT_TRIPPED: Final = "not_tripped"
"""An operator reset arrived while the switch was armed; nothing to do."""

OPERATOR_RESET: Final = "operator_reset"
"""An operator re-armed the switch after the cooldown; the high-water mark restarts."""

SIGNAL_ACCEPTED: Final = "signal_accepted"
"""A signal became an order intent within the flood and request limits."""

FLOOD_LIMIT_QUEUED: Final = "flood_limit_queued"
"""A signal waits: the policy's intents per minute are used up."""

QUEUE_FULL: Final = "queue_full"
"""A signal was dropped: the flood queue is full."""

SIGNAL_EXPIRED: Final = "signal_expired"
"""A signal got older than the largest signal age before it could be sent."""

RATE_LIMITED: Final = "rate_limited"
"""The exchange answered a rate-limit error; the order waits for its backoff."""

RATE_LIMIT_RETRY: Final = "rate_limit_retry"
"""A retry of an order after its backoff."""

RETRIES_EXHAUSTED: Final = "retries_exhausted"
"""The exchange kept refusing an order for rate limits after every allowed retry."""

ORDER_REJECTED: Final = "order_rejected"
"""The exchange refused an order with an error that is not a rate limit."""

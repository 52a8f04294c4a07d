"""The arrears and customer-notification projection (scenarios SM-AR-001..014).

How it works, in order:

1. Facts. Each input folds into per-account facts by order-independent rules
   (see ``facts.py``): the statement in force is the latest ``AccountBalance``
   by statement time (``occurred_at``); payments are kept by ``payment_id``, so
   a duplicate counts once (SM-AR-004); reversals by payment id; the debt is
   the statement's balance minus payments made after it, plus reversals made
   after it of payments it included. Each meter keeps its latest reading by
   *trusted time* = min(device time, arrival), where arrival is the store's
   ``recorded_at`` bounded by ``ctx.now``; a device time ahead of arrival by
   more than the tolerance is flagged ``CLOCK_AHEAD`` (SM-AR-010); an older
   reading arriving late never replaces a newer one and the register is the
   running maximum, so consumption is never negative (SM-AR-006). Flags and
   calendar days keep their latest statement by time. Acks keep the strongest
   stage per notice (delivered > failed > accepted).
2. Evaluation runs when a balance, payment, reversal or flag changes the
   facts, when a due time passes (a ``due:`` timer), and on a reading only for
   accounts whose notice was blocked or cancelled for their readings (stale,
   missing, estimated), so readings stay cheap. The billing period is the local month of the statement's due time.
3. A notice needs: debt >= threshold (x ``vulnerable_multiplier`` for
   vulnerable customers, who only ever get a manual-review proposal, SM-AR-008),
   the debt overdue, readings of every meter of the account with a trusted time
   within ``freshness_hours`` (SM-AR-001, SM-AR-007: only the lagging account is
   affected), no estimated latest reading (SM-AR-002), and enough confidence.
   Otherwise a BLOCKED decision says why (once, until the reasons change).
4. It is never sent at once: it is HELD until ``now + hold_hours`` (a
   ``release:`` timer). A payment inside the window that takes the debt under
   the threshold cancels it at once (SM-AR-003); a new statement restarts the
   window. A reversal after a cancellation re-evaluates and opens a new hold
   (SM-AR-005).
5. At release everything is checked again against the facts known then
   (SM-AR-012). A provisional balance keeps it HELD until reconciliation
   arrives (SM-AR-011). The calendar comes next: on a holiday or outside the
   allowed weekdays/hours it stays HELD until the next allowed time (SM-AR-009).
   Then it is RELEASED (external, irreversible, effect key
   ``arrears-notice:{account}:{period}``) or CANCELLED with reasons. A released
   period never gets a second notice (SM-AR-013, ``ALREADY_NOTIFIED``).
6. Acks: "accepted" only records ``ACK_NOT_DELIVERY``; only "delivered" marks
   the notice delivered (SM-AR-014).

Confidence = freshness factor (1 when fresh, else 0.5 x bound / age) x
``estimated_factor`` x ``clock_ahead_factor`` x ``provisional_factor`` where
they apply. Notice decisions carry ``min_confidence_external``; internal ones
``min_confidence_internal`` (lower) or none for plain observations.

State is updated in place and returned (the fold's result is the same object);
take ``convergent(state)`` or an encoded snapshot to keep a copy. Input is
decoded and validated before anything is changed, so an event the projection
refuses (a payload that does not decode, a malformed calendar date) raises
with its position and leaves the state as it was.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec

from eventstore import RecordedEvent
from eventstore.payloads import decode_payload
from projections import reasons as R
from projections._config import config_dict
from projections._contract import Context, Timer

from .assess import Assessor
from .config import ArrearsConfig
from .facts import (
    fold_ack,
    fold_balance,
    fold_calendar,
    fold_flag,
    fold_payment,
    fold_reading,
    fold_reversal,
)
from .notices import Notices
from .state import Account, ArrearsState

_STOPPED = frozenset({"blocked", "cancelled"})
# Reasons a newer reading can lift.
INPUT_REASONS = frozenset({R.NO_READING, R.STALE_READING, R.ESTIMATED_CONSUMPTION, R.LOW_CONFIDENCE})
_SORTED = msgspec.json.Encoder(order="sorted")


class ArrearsProjection:
    """Arrears notices held, re-checked and released (or cancelled) per account and period."""

    name = "arrears"
    domain = "arrears"  # variants keep it: the arrears invariants judge them too
    version = "2"  # 2: event ids in the state are bytes (snapshots of version 1 do not decode)
    state_type = ArrearsState

    def __init__(self, config: ArrearsConfig | None = None) -> None:
        self._config = config if config is not None else ArrearsConfig()
        self._assessor = Assessor(self._config)
        self._notices = Notices(self._config, self._assessor)
        self._threshold = self._config.debt_threshold_minor  # the lowest threshold (vulnerable is higher)
        self._tolerance_ns = int(self._config.clock_ahead_tolerance_s * 1_000_000_000)
        self._offset_ns = self._config.utc_offset_minutes * 60_000_000_000
        self._handlers: dict[str, Callable[[ArrearsState, Any, RecordedEvent, Context], None]] = {
            "PaymentReceived": self._on_payment,
            "PaymentReversed": self._on_reversal,
            "AccountBalance": self._on_balance,
            "CustomerFlag": self._on_flag,
            "CalendarDay": self._on_calendar,
            "NotificationAck": self._on_ack,
        }

    def initial(self) -> ArrearsState:
        """A fresh, empty state (a new object on every call)."""
        return ArrearsState()

    def apply(self, state: ArrearsState, event: RecordedEvent, ctx: Context) -> ArrearsState:
        """Fold one delivered event; other event types pass through untouched."""
        if event.type == "MeterReading":  # nine events in ten: skip the dispatch
            p = decode_payload(event)
            account = fold_reading(state.facts, p, event, ctx.now, self._tolerance_ns, ctx)  # type: ignore[arg-type]
            if account.debt_minor >= self._threshold:
                self._after_reading(state, p.account_id, account, ctx)  # type: ignore[union-attr]
            return state
        handler = self._handlers.get(event.type)
        if handler is not None:
            handler(state, decode_payload(event), event, ctx)
        return state

    def on_timer(self, state: ArrearsState, timer: Timer, ctx: Context) -> ArrearsState:
        """``due:`` re-evaluates an account; ``release:`` re-checks and releases a held notice."""
        kind, account_id, *rest = timer.payload
        account = state.facts.accounts.get(account_id)
        if account is None:
            return state
        if kind == "due":
            self._notices.evaluate(state, account_id, account, ctx, "timer")
        elif kind == "release":
            self._notices.release(state, account_id, rest[0], ctx)
        return state

    def config(self) -> dict[str, Any]:
        """The settings in force, as plain values."""
        return config_dict(self._config)

    @staticmethod
    def convergent(state: ArrearsState) -> bytes:
        """The order-independent part of the state (the facts), canonically encoded.

        INV-5: once every event has arrived, this is byte-identical whatever the
        delivery order or timing. Notices are history and are not part of it.
        """
        return _SORTED.encode(state.facts)

    # -- handlers -----------------------------------------------------------------
    def _after_reading(self, state: ArrearsState, account_id: str, account: Account, ctx: Context) -> None:
        """Re-evaluate an indebted account whose notice waits for better readings.

        Only a notice blocked or cancelled for its readings (stale, missing,
        estimated) can change with a reading: debt and due time have their own
        events and the ``due:`` timer, and held notices are re-checked at release.
        """
        notices = state.notices.get(account_id)
        if notices is None or account.balance is None:
            return
        notice = notices.get(account.balance.period)
        if (notice is not None and notice.status in _STOPPED and not INPUT_REASONS.isdisjoint(notice.reasons)
                and not self._notices.unchanged_by_reading(notices, notice, account, ctx.now)):
            self._notices.evaluate(state, account_id, account, ctx, "reading")

    def _on_payment(self, state: ArrearsState, p: Any, event: RecordedEvent, ctx: Context) -> None:
        account = fold_payment(state.facts, p, event, ctx)
        if account is not None:
            self._notices.evaluate(state, p.account_id, account, ctx, "payment")

    def _on_reversal(self, state: ArrearsState, p: Any, event: RecordedEvent, ctx: Context) -> None:
        account = fold_reversal(state.facts, p, event)
        if account is not None:
            self._notices.evaluate(state, p.account_id, account, ctx, "reversal")

    def _on_balance(self, state: ArrearsState, p: Any, event: RecordedEvent, ctx: Context) -> None:
        account = fold_balance(state.facts, p, event, self._offset_ns)
        if account is not None:
            self._notices.evaluate(state, p.account_id, account, ctx, "balance")

    def _on_flag(self, state: ArrearsState, p: Any, event: RecordedEvent, ctx: Context) -> None:
        account = fold_flag(state.facts, p, event)
        if account is not None:
            self._notices.evaluate(state, p.account_id, account, ctx, "flag")

    def _on_calendar(self, state: ArrearsState, p: Any, event: RecordedEvent, ctx: Context) -> None:
        fold_calendar(state.facts, p, event)

    def _on_ack(self, state: ArrearsState, p: Any, event: RecordedEvent, ctx: Context) -> None:
        fold_ack(state.facts, p)
        self._notices.acknowledge(state, p.account_id, p.notice_id, p.stage, str(event.id), ctx)

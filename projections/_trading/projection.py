"""The trading projection: exact PnL and drawdown, the kill switch, rate-limit retries, flood limit.

Facts are folded so that delivery order does not change them: the price of a
symbol is the newest by source time, a fill counts once by its key, a signal
once by its id, a rejection once per attempt. The kill switch follows
ARMED -> TRIPPED -> (cooldown over) COOLED -> operator reset -> ARMED; it trips
when the drawdown from the high-water mark is strictly above the limit, and
while it is not armed no order intent is released. See docs/trading.md.
"""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

import msgspec

from eventstore import RecordedEvent
from eventstore.payloads import decode_payload
from projections._config import ConfigError
from projections._contract import Context, Decision, Status, Timer
from projections.payloads.trading import (
    RATE_LIMIT_CODES,
    MarketTick,
    OperatorReset,
    OrderFill,
    OrderRejected,
    TradeSignal,
)

from . import reasons as R
from .config import TradingConfig
from .state import ARMED, COOLED, TRIPPED, Order, Queued, Quote, TradingState

MINUTE_NS = 60_000_000_000
PORTFOLIO = "portfolio"
COOLDOWN_TIMER = "cooldown"
FLOOD_TIMER = "flood"


def exact(value: float, scale: int) -> int:
    """``value`` (a float read from JSON) in units of 10**-scale, via its shortest decimal text."""
    units = Decimal(repr(float(value))).scaleb(scale)
    return int(units.quantize(Decimal(1), rounding=ROUND_HALF_EVEN))


class TradingProjection:
    """Positions, PnL, drawdown and the kill switch over ticks, fills, signals and errors."""

    name = "trading"
    domain = "trading"
    version = "1"
    state_type = TradingState

    def __init__(self, config: TradingConfig | None = None) -> None:
        self._c = config or TradingConfig()
        c = self._c
        self._unit = 10 ** c.qty_scale
        self._age_ns = c.ns(c.max_signal_age_s)
        self._window_ns = c.ns(c.request_window_s)

    # -- the contract ------------------------------------------------------------
    def initial(self) -> TradingState:
        """No positions, the whole capital in cash, the switch armed."""
        start = self._c.capital_minor * self._unit
        return TradingState(peak=start, equity=start)

    def config(self) -> dict[str, Any]:
        """The settings, for the runs table."""
        return msgspec.to_builtins(self._c)

    def apply(self, state: TradingState, event: RecordedEvent, ctx: Context) -> TradingState:
        """Fold one event; prices and fills may trip the switch, signals may become orders."""
        p = decode_payload(event)
        if isinstance(p, MarketTick):
            self._on_price(state, p.symbol, p.price, p.price_minor, event, ctx)
        elif isinstance(p, OrderFill):
            self._on_fill(state, p, event, ctx)
        elif isinstance(p, TradeSignal):
            self._on_signal(state, p, event, ctx)
        elif isinstance(p, OrderRejected):
            self._on_rejected(state, p, ctx)
        elif isinstance(p, OperatorReset):
            self._on_reset(state, p, event, ctx)
        return state

    def on_timer(self, state: TradingState, timer: Timer, ctx: Context) -> TradingState:
        """Cooldown over, a flood slot free, or an order's backoff over."""
        if timer.key == COOLDOWN_TIMER:
            if state.switch == TRIPPED:
                state.switch = COOLED
                self._switch(ctx, "cooldown-over", Status.RELEASED, R.COOLDOWN_ELAPSED)
        elif timer.key == FLOOD_TIMER:
            self._drain_queue(state, ctx)
        elif timer.key.startswith("retry:"):
            self._retry(state, timer.key[len("retry:"):], ctx)
        return state

    @staticmethod
    def convergent(state: TradingState) -> Any:
        """What INV-5 compares: prices, positions and cash (not the switch, which is history)."""
        return {
            "quotes": {s: q.price for s, q in sorted(state.quotes.items())},
            "positions": dict(sorted((s, n) for s, n in state.positions.items() if n)),
            "cash": state.cash,
        }

    # -- prices, fills, equity ---------------------------------------------------------
    def _on_price(self, state: TradingState, symbol: str, price: float, minor: int | None,
                  event: RecordedEvent, ctx: Context) -> None:
        value = minor if minor is not None else exact(price, self._c.price_scale)
        if value <= 0:
            raise ValueError(f"price of {symbol} must be > 0, got {price!r} at {event.position}")
        old = state.quotes.get(symbol)
        if old is None or (event.occurred_at, event.position) > (old.occurred_at, old.position):
            state.quotes[symbol] = Quote(value, event.occurred_at, event.position)
        self._mark(state, event, ctx)

    def _on_fill(self, state: TradingState, p: OrderFill, event: RecordedEvent, ctx: Context) -> None:
        key = f"{p.order_id}/{p.fill_id}"
        qty = exact(p.quantity, self._c.qty_scale)
        price = p.price_minor if p.price_minor is not None else exact(p.price, self._c.price_scale)
        if qty <= 0 or price <= 0:
            raise ValueError(f"fill {key}: quantity and price must be > 0 at {event.position}")
        if key not in state.fills:
            state.fills[key] = event.position
            signed = qty if p.side == "buy" else -qty
            state.positions[p.symbol] = state.positions.get(p.symbol, 0) + signed
            state.cash -= signed * price
            order = state.orders.get(p.order_id)
            if order is not None and order.phase in ("sent", "retrying"):
                order.phase = "done"
        self._on_price(state, p.symbol, p.price, p.price_minor, event, ctx)

    def equity(self, state: TradingState) -> int:
        """Capital + cash + marked positions, in minor units x 10**qty_scale (exact)."""
        marked = sum(n * state.quotes[s].price for s, n in state.positions.items() if s in state.quotes)
        return self._c.capital_minor * self._unit + state.cash + marked

    def _mark(self, state: TradingState, event: RecordedEvent, ctx: Context) -> None:
        state.equity = self.equity(state)
        if state.switch != ARMED:
            if state.alert_pending and self._fresh(event, ctx):
                self._alert(state, event, ctx, Status.RELEASED)
            return
        state.peak = max(state.peak, state.equity)
        loss = state.peak - state.equity
        state.max_drawdown_bp = max(state.max_drawdown_bp, loss * 10_000 // state.peak)
        if loss * 10_000 > self._c.drawdown_limit_bp * state.peak:
            self._trip(state, event, ctx)

    # -- the kill switch -----------------------------------------------------------
    def _trip(self, state: TradingState, event: RecordedEvent, ctx: Context) -> None:
        c = self._c
        state.switch, state.tripped_at = TRIPPED, ctx.now
        state.cooldown_until = ctx.now + c.ns(c.cooldown_s)
        state.trips += 1
        self._switch(ctx, "trip", Status.RELEASED, R.DRAWDOWN_OVER_LIMIT, inputs=(str(event.id),))
        # The switch trips on any price (blocking is the safe side); the page goes out on a
        # fresh one, else it waits for the next fresh price (INV-1).
        self._alert(state, event, ctx, Status.RELEASED if self._fresh(event, ctx) else Status.HELD)
        ctx.schedule(state.cooldown_until, COOLDOWN_TIMER)
        for q in state.queue:
            self._order(ctx, q.signal_id, 0, Status.BLOCKED, R.KILL_SWITCH_TRIPPED, q.input_time,
                        q.event_id)
            state.signals[q.signal_id] = "blocked"
        state.queue.clear()
        ctx.cancel(FLOOD_TIMER)
        for signal_id, order in state.orders.items():
            if order.phase == "retrying":
                order.phase = "blocked"
                ctx.cancel(f"retry:{signal_id}")
                self._order(ctx, signal_id, order.attempt + 1, Status.BLOCKED,
                            R.KILL_SWITCH_TRIPPED, order.input_time, order.event_id)

    def _fresh(self, event: RecordedEvent, ctx: Context) -> bool:
        return ctx.now - event.occurred_at <= self._c.ns(self._c.alert_freshness_s)

    def _alert(self, state: TradingState, event: RecordedEvent, ctx: Context,
               status: Status) -> None:
        c = self._c
        state.alert_pending = status == Status.HELD
        reasons = (R.DRAWDOWN_OVER_LIMIT,) if status == Status.RELEASED else (
            R.DRAWDOWN_OVER_LIMIT, R.STALE_PRICE)
        ctx.decide(Decision(
            kind="alert", subject=PORTFOLIO, action="page-risk-desk", status=status,
            reasons=reasons, inputs=(str(event.id),), external=True,
            min_confidence=c.min_confidence_external, effect_key=f"alert:trip:{state.trips}",
            input_time=event.occurred_at, freshness_ns=c.ns(c.alert_freshness_s),
        ))

    def _on_reset(self, state: TradingState, p: OperatorReset, event: RecordedEvent,
                  ctx: Context) -> None:
        inputs = (str(event.id),)
        if state.switch == ARMED:
            self._switch(ctx, "reset", Status.BLOCKED, R.NOT_TRIPPED, inputs=inputs)
        elif ctx.now < state.cooldown_until:
            self._switch(ctx, "reset", Status.BLOCKED, R.RESET_BEFORE_COOLDOWN, inputs=inputs)
        else:
            state.switch = ARMED
            ctx.cancel(COOLDOWN_TIMER)
            state.equity = self.equity(state)
            state.peak = state.equity  # the high-water mark restarts from here
            self._switch(ctx, "reset", Status.RELEASED, R.OPERATOR_RESET, inputs=inputs)

    def _switch(self, ctx: Context, action: str, status: Status, reason: str,
                inputs: tuple[str, ...] = ()) -> None:
        ctx.decide(Decision(kind="kill-switch", subject=PORTFOLIO, action=action, status=status,
                            reasons=(reason,), inputs=inputs))

    # -- signals, the flood limit and requests ---------------------------------------
    def _on_signal(self, state: TradingState, p: TradeSignal, event: RecordedEvent,
                   ctx: Context) -> None:
        if p.signal_id in state.signals:
            return  # a duplicate or replayed signal: it was answered once
        qty = exact(p.quantity, self._c.qty_scale)
        if qty <= 0:
            raise ValueError(f"signal {p.signal_id}: quantity must be > 0 at {event.position}")
        q = Queued(p.signal_id, p.symbol, p.side, qty, event.occurred_at, ctx.now, str(event.id))
        if state.switch != ARMED:
            state.signals[p.signal_id] = "blocked"
            self._order(ctx, q.signal_id, 0, Status.BLOCKED, R.KILL_SWITCH_TRIPPED, q.input_time,
                        q.event_id)
        elif not state.queue and self._room(state, ctx.now):
            self._send(state, q, ctx)
        elif len(state.queue) < self._c.max_queue:
            state.signals[p.signal_id] = "queued"
            state.queue.append(q)
            self._order(ctx, q.signal_id, 0, Status.HELD, R.FLOOD_LIMIT_QUEUED, q.input_time,
                        q.event_id, hold_until=self._next_slot(state, ctx.now))
            ctx.schedule(self._next_slot(state, ctx.now), FLOOD_TIMER)
        else:
            state.signals[p.signal_id] = "dropped"
            self._order(ctx, q.signal_id, 0, Status.CANCELLED, R.QUEUE_FULL, q.input_time,
                        q.event_id)

    def _prune(self, state: TradingState, now: int) -> None:
        state.intents = [t for t in state.intents if t > now - MINUTE_NS]
        state.requests = [t for t in state.requests if t > now - self._window_ns]

    def _room(self, state: TradingState, now: int, new: bool = True) -> bool:
        self._prune(state, now)
        if new and len(state.intents) >= self._c.max_intents_per_minute:
            return False
        return len(state.requests) < self._c.request_limit

    def _next_slot(self, state: TradingState, now: int, new: bool = True) -> int:
        """The earliest time a request (a new intent if ``new``) fits under both limits."""
        self._prune(state, now)
        at = now
        if new and len(state.intents) >= self._c.max_intents_per_minute:
            at = max(at, state.intents[-self._c.max_intents_per_minute] + MINUTE_NS)
        if len(state.requests) >= self._c.request_limit:
            at = max(at, state.requests[-self._c.request_limit] + self._window_ns)
        return at

    def _drain_queue(self, state: TradingState, ctx: Context) -> None:
        while state.queue and state.switch == ARMED and self._room(state, ctx.now):
            q = state.queue.pop(0)
            if ctx.now - q.input_time > self._age_ns:
                state.signals[q.signal_id] = "expired"
                self._order(ctx, q.signal_id, 0, Status.CANCELLED, R.SIGNAL_EXPIRED, q.input_time,
                            q.event_id)
                continue
            self._send(state, q, ctx)
        if state.queue and state.switch == ARMED:
            ctx.schedule(self._next_slot(state, ctx.now), FLOOD_TIMER)

    def _send(self, state: TradingState, q: Queued, ctx: Context) -> None:
        if ctx.now - q.input_time > self._age_ns:
            state.signals[q.signal_id] = "expired"
            self._order(ctx, q.signal_id, 0, Status.CANCELLED, R.SIGNAL_EXPIRED, q.input_time,
                        q.event_id)
            return
        state.signals[q.signal_id] = "sent"
        state.intents.append(ctx.now)
        state.requests.append(ctx.now)
        state.orders[q.signal_id] = Order(q.symbol, q.side, q.quantity, q.input_time, q.event_id)
        self._order(ctx, q.signal_id, 0, Status.RELEASED, R.SIGNAL_ACCEPTED, q.input_time,
                    q.event_id)

    # -- exchange errors and retries ----------------------------------------------------
    def _on_rejected(self, state: TradingState, p: OrderRejected, ctx: Context) -> None:
        order = state.orders.get(p.order_id)
        if order is None or order.phase != "sent" or p.attempt != order.attempt:
            return  # unknown, stale or repeated: it answers nothing we are waiting for
        if p.code not in RATE_LIMIT_CODES:
            order.phase = "abandoned"
            self._order(ctx, p.order_id, order.attempt, Status.CANCELLED, R.ORDER_REJECTED,
                        order.input_time, order.event_id)
        elif order.attempt >= self._c.max_retries:
            order.phase = "abandoned"
            self._order(ctx, p.order_id, order.attempt, Status.CANCELLED, R.RETRIES_EXHAUSTED,
                        order.input_time, order.event_id)
        else:
            order.phase = "retrying"
            due = ctx.now + round(self._c.ns(self._c.backoff_s) * 2 ** order.attempt)
            ctx.schedule(due, f"retry:{p.order_id}")
            self._order(ctx, p.order_id, order.attempt + 1, Status.HELD, R.RATE_LIMITED,
                        order.input_time, order.event_id, hold_until=due)

    def _retry(self, state: TradingState, signal_id: str, ctx: Context) -> None:
        order = state.orders[signal_id]
        if order.phase != "retrying":
            return
        attempt = order.attempt + 1
        if state.switch != ARMED:
            order.phase = "blocked"
            self._order(ctx, signal_id, attempt, Status.BLOCKED, R.KILL_SWITCH_TRIPPED,
                        order.input_time, order.event_id)
        elif ctx.now - order.input_time > self._age_ns:
            order.phase = "abandoned"
            self._order(ctx, signal_id, attempt, Status.CANCELLED, R.SIGNAL_EXPIRED,
                        order.input_time, order.event_id)
        elif not self._room(state, ctx.now, new=False):
            ctx.schedule(self._next_slot(state, ctx.now, new=False), f"retry:{signal_id}")
        else:
            order.attempt, order.phase = attempt, "sent"
            state.requests.append(ctx.now)
            self._order(ctx, signal_id, attempt, Status.RELEASED, R.RATE_LIMIT_RETRY,
                        order.input_time, order.event_id)

    def _order(self, ctx: Context, signal_id: str, attempt: int, status: Status, reason: str,
               input_time: int, event_id: str, hold_until: int | None = None) -> None:
        ctx.decide(Decision(
            kind="order", subject=signal_id, action="place-order", status=status,
            reasons=(reason,), inputs=(event_id,), external=True,
            min_confidence=self._c.min_confidence_external, effect_key=f"order:{signal_id}#{attempt}",
            input_time=input_time, freshness_ns=self._age_ns, hold_until=hold_until,
        ))


def build(**config: Any) -> TradingProjection:
    """A trading projection from keyword settings (the ``--projection trading`` factory)."""
    try:
        return TradingProjection(msgspec.convert(config, TradingConfig))
    except msgspec.ValidationError as e:
        raise ConfigError(f"trading: {e}") from e

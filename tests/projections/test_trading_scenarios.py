"""The trading failure-simulation scenarios TR-001..TR-005 on the generated log and on small
hand-built ones, with exact arithmetic checked against an independent computation."""

from __future__ import annotations

import uuid
from fractions import Fraction

import msgspec
import pytest

import properties
import replay
from eventstore import NewEvent, RecordedEvent, open_store
from eventstore.payloads import decode_payload
from load._trading_model import TradingProfile, trading_lines
from projections import Status, TradingConfig, TradingProjection
from projections.payloads import MarketTick, OperatorReset, OrderFill, OrderRejected, TradeSignal

NS = 1_000_000_000
T0 = 1_709_301_600 * NS  # 2024-03-01T14:00Z
SMALL = TradingProfile(symbols=3, minutes=16, crash_at=7, flood_at=1, limits_at=3)


def generated(profile: TradingProfile = SMALL) -> list[RecordedEvent]:
    """The generated log for ``profile``, recorded into a memory store (recorded_at kept)."""
    lines = [msgspec.json.decode(line) for line in trading_lines(profile)]
    store = open_store("memory://")
    for d in lines:
        payload = msgspec.json.encode({"type": d["type"], **d["data"]})
        store.append(d["stream"], [NewEvent(d["type"], payload, id=uuid.UUID(d["id"]),
                                            occurred_at=d["occurred_at"],
                                            recorded_at=d["recorded_at"])])
    return list(store.read_all())


class Log:
    """A hand-built log: each payload at a time (s after T0), recorded when it happened."""

    def __init__(self) -> None:
        self.store = open_store("memory://")

    def add(self, seconds: float, payload) -> None:
        at = T0 + round(seconds * NS)
        self.store.append("t", [NewEvent.of(payload, occurred_at=at, recorded_at=at)])

    def events(self) -> list[RecordedEvent]:
        return list(self.store.read_all())


def run(events, **config):
    projection = TradingProjection(TradingConfig(**config))
    return replay.run(replay.deliveries_of(events), projection)


def decided(result, kind: str | None = None, action: str | None = None, status=None):
    return [d for d in result.decisions if (kind is None or d.kind == kind)
            and (action is None or d.action == action) and (status is None or d.status == status)]


def reference_trip(events) -> tuple[str | None, Fraction]:
    """Independently, with Fractions: the id of the event whose drawdown first goes over 10%,
    and the largest drawdown seen while armed."""
    capital = Fraction(1_000_000)
    cash, peak, worst = Fraction(0), capital, Fraction(0)
    positions: dict[str, Fraction] = {}
    prices: dict[str, Fraction] = {}
    for e in events:
        p = decode_payload(e)
        if isinstance(p, OrderFill):
            q = Fraction(p.quantity) * (1 if p.side == "buy" else -1)
            positions[p.symbol] = positions.get(p.symbol, Fraction(0)) + q
            cash -= q * Fraction(p.price_minor, 100)
        if isinstance(p, (MarketTick, OrderFill)):
            prices[p.symbol] = Fraction(p.price_minor, 100)
            equity = capital + cash + sum(n * prices[s] for s, n in positions.items())
            peak = max(peak, equity)
            worst = max(worst, (peak - equity) / peak)
            if (peak - equity) / peak > Fraction(1, 10):
                return str(e.id), worst
    return None, worst


@pytest.mark.case("TR-001")
def test_TR_001_flash_crash_trips_on_the_exact_tick_and_blocks_orders():
    """15% over 60 s across symbols: the trip is on the first tick whose exact drawdown is over
    10% (checked with Fractions), an alert is recorded, and no order is released while tripped."""
    events = generated()
    trip_id, worst = reference_trip(events)
    assert trip_id is not None and worst > Fraction(1, 10)
    result = run(events)
    (trip,) = decided(result, "kill-switch", "trip")
    assert trip.inputs == (trip_id,) and trip.reasons == ("drawdown_over_limit",)
    (alert,) = decided(result, "alert")
    assert alert.status == Status.RELEASED and alert.external and alert.at == trip.at
    (reset,) = decided(result, "kill-switch", "reset", Status.RELEASED)
    during = [d for d in decided(result, "order") if trip.at <= d.at < reset.at]
    assert during and all(d.status != Status.RELEASED for d in during)
    assert {d.reasons[0] for d in during if d.subject.startswith("tripped-")} == {"kill_switch_tripped"}


@pytest.mark.case("TR-001")
def test_TR_001_exactly_at_the_limit_does_not_trip_one_cent_more_does():
    """Drawdown exactly 10.00% holds (the limit is strict); one cent below that price trips.
    Prices with binary-unfriendly decimals (0.1, 0.2) are converted exactly."""
    for last, trips in ((90.0, False), (89.99, True)):
        log = Log()
        log.add(0, OrderFill(order_id="o", symbol="X", side="buy", quantity=10_000.0, price=100.0))
        log.add(1, MarketTick(symbol="X", price=100.0))  # the peak: 1,000,000.00
        log.add(2, MarketTick(symbol="X", price=last))  # 10,000 x 10.00 = 100,000.00 = 10%
        result = run(log.events())
        assert bool(decided(result, "kill-switch", "trip")) is trips, last
        assert result.state.max_drawdown_bp == (1001 if trips else 1000)  # 10.01% / 10.00%
    log = Log()
    log.add(0, OrderFill(order_id="o", symbol="X", side="buy", quantity=3.0, price=0.1))
    log.add(1, MarketTick(symbol="X", price=0.2))
    state = run(log.events(), price_scale=2).state
    assert state.cash == -30 and state.equity == 100_000_000 + 30  # 3 x 0.10 out, 3 x 0.20 marked


@pytest.mark.case("TR-003")
def test_TR_003_rate_limited_orders_retry_at_most_three_times_with_exponential_backoff():
    """-1003/-1015 answers: retries after 1 s, 2 s, 4 s; a fourth refusal gives up; request rate
    stays under its limit; rate-limit errors alone never trip the switch."""
    log = Log()
    log.add(0, TradeSignal(signal_id="s", symbol="X", side="buy", quantity=1.0))
    t = 0.1
    for attempt in range(4):
        log.add(t, OrderRejected(order_id="s", symbol="X", code=(-1003, -1015)[attempt % 2],
                                 attempt=attempt))
        log.add(t, OrderRejected(order_id="s", symbol="X", code=-1003, attempt=attempt))  # twice
        t += 2 ** attempt + 0.1
    result = run(log.events())
    sent = decided(result, "order", "place-order", Status.RELEASED)
    assert [d.effect_key for d in sent] == ["order:s#0", "order:s#1", "order:s#2", "order:s#3"]
    gaps = [(b.at - a.at) / NS for a, b in zip(sent, sent[1:], strict=False)]
    assert gaps == [1.1, 2.1, 4.1]  # the answer 0.1 s after each send, then 1, 2, 4 s
    (gave_up,) = decided(result, "order", status=Status.CANCELLED)
    assert gave_up.reasons == ("retries_exhausted",)
    assert not decided(result, "kill-switch")


@pytest.mark.case("TR-003")
def test_TR_003_request_rate_held_under_the_limit_when_retries_pile_up():
    """Ten orders refused at once: their retries are spread so no 10 s window holds more than
    request_limit requests."""
    log = Log()
    for i in range(10):
        log.add(i * 0.01, TradeSignal(signal_id=f"s{i}", symbol="X", side="buy", quantity=1.0))
    for i in range(10):
        log.add(0.5, OrderRejected(order_id=f"s{i}", symbol="X", code=-1015))
    result = run(log.events(), request_limit=10, request_window_s=10.0)
    times = [d.at for d in decided(result, "order", "place-order", Status.RELEASED)]
    assert len(times) == 20
    assert max(sum(1 for u in times if t - 10 * NS < u <= t) for t in times) <= 10


@pytest.mark.case("TR-004")
def test_TR_004_signal_flood_held_to_ten_intents_per_minute_with_bounded_lag():
    """50 signals in 5 s: at most 10 intents in any minute, the rest queued (lag recorded as
    at - input_time, never over max_signal_age_s) or dropped when the queue is full."""
    log = Log()
    for i in range(50):
        log.add(i * 0.1, TradeSignal(signal_id=f"f{i:02d}", symbol="X", side="buy", quantity=1.0))
    log.add(200, MarketTick(symbol="X", price=1.0))
    result = run(log.events())
    sent = decided(result, "order", "place-order", Status.RELEASED)
    times = [d.at for d in sent]
    assert max(sum(1 for u in times if t - 60 * NS < u <= t) for t in times) == 10
    lags = [(d.at - d.input_time) / NS for d in sent]
    assert len(sent) == 20 and max(lags) <= 90 and lags[10] > 50  # the queued ten waited a minute
    reasons = [d.reasons[0] for d in decided(result, "order") if d.status != Status.RELEASED]
    assert reasons.count("flood_limit_queued") == 10 and reasons.count("queue_full") == 30
    answered = {d.subject for d in decided(result, "order") if d.status != Status.HELD}
    assert answered == {f"f{i:02d}" for i in range(50)}  # nothing lost


@pytest.mark.case("TR-005")
def test_TR_005_trip_cooldown_manual_reset_rearms_and_early_reset_is_refused():
    """ARMED -> TRIPPED -> cooldown -> manual reset -> ARMED; orders blocked while tripped,
    allowed after the reset; a reset before the cooldown is refused."""
    log = Log()
    log.add(0, OrderFill(order_id="o", symbol="X", side="buy", quantity=10_000.0, price=100.0))
    log.add(1, MarketTick(symbol="X", price=85.0))  # 15% of the capital lost: trip
    log.add(2, TradeSignal(signal_id="blocked", symbol="X", side="buy", quantity=1.0))
    log.add(60, OperatorReset(operator="ann", reason="too early"))
    log.add(400, OperatorReset(operator="ann", reason="cooldown over"))
    log.add(401, TradeSignal(signal_id="allowed", symbol="X", side="buy", quantity=1.0))
    log.add(402, MarketTick(symbol="X", price=84.0))  # 1% below the new high-water mark
    result = run(log.events(), cooldown_s=300)
    switch = [(d.action, d.status, d.reasons[0]) for d in decided(result, "kill-switch")]
    assert switch == [("trip", Status.RELEASED, "drawdown_over_limit"),
                      ("reset", Status.BLOCKED, "reset_before_cooldown"),
                      ("cooldown-over", Status.RELEASED, "cooldown_elapsed"),
                      ("reset", Status.RELEASED, "operator_reset")]
    orders = {d.subject: d for d in decided(result, "order")}
    assert orders["blocked"].status == Status.BLOCKED
    assert orders["allowed"].status == Status.RELEASED
    assert result.state.switch == "armed" and result.state.trips == 1


@pytest.mark.case("EF-003")
def test_EF_003_duplicated_fills_signals_and_rejections_apply_once():
    """The same fill, signal and rejection delivered twice change nothing the second time."""
    log = Log()
    fill = OrderFill(order_id="o", symbol="X", side="buy", quantity=5.0, price=10.0, fill_id="1")
    log.add(0, fill)
    log.add(0.5, fill)
    log.add(1, TradeSignal(signal_id="s", symbol="X", side="buy", quantity=1.0))
    log.add(1.1, TradeSignal(signal_id="s", symbol="X", side="buy", quantity=1.0))
    result = run(log.events())
    assert result.state.positions == {"X": 5} and result.state.cash == -5000
    assert len(decided(result, "order")) == 1


@pytest.mark.parametrize("case", ["TR-001", "TR-002", "TR-003", "TR-004", "TR-005"])
def test_TR_invariants_hold_on_the_generated_log_and_under_schedules(case, request):
    """Each TR invariant (and INV-1..5) holds unperturbed and under delays, duplicates, drops,
    reorders, partitions and skew drawn by Hypothesis (fixed seed)."""
    request.node.add_marker(pytest.mark.case(case))
    report = properties.check(generated(), TradingProjection(), examples=25, seed=13,
                              invariants=[case, "INV-1", "INV-2", "INV-3", "INV-4"])
    assert report.ok, report.render()
    assert {r.id for r in report.results} >= {case} and all(r.examples >= 25 for r in report.results)

"""Small projections and logs for the replay tests (real parts: memory store, real payloads)."""

from __future__ import annotations

import uuid

import msgspec

from eventstore import NewEvent, RecordedEvent, open_store
from eventstore.payloads import Fault, decode_payload
from projections._contract import Decision, Status, Timer
from projections.payloads import PaymentReceived, PaymentReversed

SECOND = 1_000_000_000


class Ledger(msgspec.Struct):
    """Balances per account and the payments already counted."""

    balances: dict[str, int] = {}
    seen: list[str] = []
    reminders: int = 0


class LedgerProjection:
    """Sums payments per account; a payment holds a notice that a timer releases.

    A reversal cancels the pending release. ``hold_ns`` is configurable, so
    two configurations can be diffed.
    """

    name = "ledger"
    version = "1"
    state_type = Ledger

    def __init__(self, hold_ns: int = 10 * SECOND, threshold: int = 0) -> None:
        self.hold_ns = hold_ns
        self.threshold = threshold

    def config(self) -> dict:
        return {"hold_ns": self.hold_ns, "threshold": self.threshold}

    def initial(self) -> Ledger:
        return Ledger()

    def apply(self, state: Ledger, event: RecordedEvent, ctx) -> Ledger:
        payload = decode_payload(event)
        if isinstance(payload, PaymentReceived):
            if payload.payment_id in state.seen:
                return state
            balances = dict(state.balances)
            balances[payload.account_id] = balances.get(payload.account_id, 0) + payload.amount_minor
            if payload.amount_minor > self.threshold:
                ctx.decide(Decision(kind="notice", subject=payload.account_id, action="thank",
                                    status=Status.HELD, reasons=("payment",),
                                    inputs=(str(event.id),)))
                ctx.schedule(ctx.now + self.hold_ns, f"release:{payload.account_id}",
                             payload.payment_id)
            return Ledger(balances, [*state.seen, payload.payment_id], state.reminders)
        if isinstance(payload, PaymentReversed):
            ctx.cancel(f"release:{payload.account_id}")
            ctx.decide(Decision(kind="notice", subject=payload.account_id, action="thank",
                                status=Status.CANCELLED, reasons=("reversed",)))
        return state

    def on_timer(self, state: Ledger, timer: Timer, ctx) -> Ledger:
        ctx.decide(Decision(kind="notice", subject=timer.key.split(":", 1)[1], action="thank",
                            status=Status.RELEASED, reasons=("hold_elapsed",), external=True,
                            effect_key=f"{timer.key}:{timer.payload}"))
        return Ledger(state.balances, state.seen, state.reminders + 1)


class StepClock:
    """A store clock that ticks ``step`` ns per append: recorded times are reproducible."""

    def __init__(self, start: int = 1_700_000_000 * SECOND, step: int = SECOND) -> None:
        self.t = start
        self.step = step

    def __call__(self) -> int:
        self.t += self.step
        return self.t


def _id(kind: str, i: int) -> uuid.UUID:
    return uuid.uuid5(uuid.NAMESPACE_URL, f"replay-tests/{kind}/{i}")


def payment_log(n: int = 20, accounts: int = 3, step: int = SECOND,
                reversals: bool = True, faults: bool = False) -> list[RecordedEvent]:
    """``n`` payments over ``accounts`` accounts, a reversal every 7th, recorded ``step`` apart.

    Ids and times are fixed, so two calls give byte-identical logs.
    """
    store = open_store("memory://", clock=StepClock(step=step))
    for i in range(n):
        account = f"acct-{i % accounts}"
        store.append(account, [NewEvent.of(PaymentReceived(
            account_id=account, payment_id=f"p{i}", amount_minor=100 + i), id=_id("pay", i))])
        if reversals and i % 7 == 6:
            store.append(account, [NewEvent.of(PaymentReversed(
                account_id=account, payment_id=f"p{i}"), id=_id("rev", i))])
        if faults and i % 5 == 4:
            store.append("faults", [NewEvent.of(Fault(
                source="meter-7", kind="timeout", detail=f"poll {i}"), id=_id("fault", i))])
    events = list(store.read_all())
    store.close()
    return events

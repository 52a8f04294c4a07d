"""The runner: ordering, timers, the tie rule, faults, counts and in-memory tables."""

from __future__ import annotations

import msgspec
import polars as pl
import pytest
from replay_helpers import SECOND, LedgerProjection, payment_log

from eventstore import NewEvent, open_store
from projections._contract import Decision, Status
from projections.payloads import PaymentReceived
from replay import Delivery, Drop, ReplayError, deliveries_of, run
from replay.trace._schema import TABLES


def test_identity_replay_sums_payments_and_releases_after_hold():
    events = payment_log(n=9, accounts=3, reversals=False)
    result = run(list(deliveries_of(events)), LedgerProjection(hold_ns=SECOND // 2))
    assert result.state.balances == {
        f"acct-{a}": sum(100 + i for i in range(9) if i % 3 == a) for a in range(3)
    }
    released = [d for d in result.decisions if d.status == Status.RELEASED]
    assert len(released) == 9
    # every release happens exactly hold_ns after the payment that scheduled it
    held = [d for d in result.decisions if d.status == Status.HELD]
    assert [r.at - h.at for h, r in zip(held, released, strict=True)] == [SECOND // 2] * 9
    assert result.counts == {"events": 9, "deliveries": 9, "drops": 0, "decisions": 18,
                             "timers": 9, "faults": 0}


def test_tables_have_exactly_the_schema_columns_even_when_empty():
    result = run(list(deliveries_of(payment_log(n=3))), LedgerProjection())
    for table, row_type in TABLES.items():
        frame = result.tables[table]
        assert frame.columns == list(row_type.__struct_fields__), table
    assert result.tables["violations"].height == 0
    assert result.tables["deliveries"]["seq"].to_list() == [0, 1, 2]
    assert result.tables["runs"]["digest"].to_list() == [result.digest]


def test_due_timer_fires_before_a_delivery_at_the_same_time():
    events = payment_log(n=3, accounts=3, step=SECOND, reversals=False)
    result = run(list(deliveries_of(events)), LedgerProjection(hold_ns=SECOND))
    deliveries = result.tables["deliveries"]
    timers = result.tables["timers"].sort("fired_seq")
    # the release of payment 0 is due exactly when payment 1 is delivered: timer first
    first_fire = timers.row(0, named=True)
    assert first_fire["due_at"] == deliveries["delivered_at"][1]
    assert first_fire["fired_seq"] == 1
    assert deliveries["seq"].to_list() == [0, 2, 4]


def test_timers_among_themselves_fire_by_due_time_then_scheduling_order():
    class Multi(LedgerProjection):
        def apply(self, state, event, ctx):
            for key, delta in (("b", 5), ("a", 5), ("c", 1)):
                ctx.schedule(ctx.now + delta, f"{key}:{event.position}")
            return state

        def on_timer(self, state, timer, ctx):
            ctx.decide(Decision(kind="t", subject=timer.key, action="x", status=Status.PROPOSED))
            return state

    result = run(list(deliveries_of(payment_log(n=1))), Multi())
    assert [d.subject for d in result.decisions] == ["c:1", "b:1", "a:1"]


def test_rescheduling_a_key_replaces_it_and_cancel_forgets_it():
    events = payment_log(n=7, accounts=1, step=SECOND, reversals=True)
    result = run(list(deliveries_of(events)), LedgerProjection(hold_ns=10 * SECOND))
    outcomes = result.tables["timers"]["outcome"].value_counts().sort("outcome")
    assert dict(outcomes.iter_rows()) == {"cancelled": 1, "replaced": 6}
    assert not [d for d in result.decisions if d.status == Status.RELEASED]


def test_pending_timers_after_last_delivery_fire_in_order():
    events = payment_log(n=2, accounts=2, reversals=False)
    result = run(list(deliveries_of(events)), LedgerProjection(hold_ns=1000 * SECOND))
    assert [d.status for d in result.decisions[-2:]] == [Status.RELEASED, Status.RELEASED]
    assert result.decisions[-1].at == events[-1].recorded_at + 1000 * SECOND


def test_runaway_timer_chain_raises_a_clear_error():
    class Forever(LedgerProjection):
        def on_timer(self, state, timer, ctx):
            ctx.schedule(ctx.now + 1, timer.key)
            return state

    with pytest.raises(ReplayError, match="re-schedules forever"):
        run(list(deliveries_of(payment_log(n=1))), Forever(), max_timer_chain=500)


def test_deliveries_are_processed_by_time_then_input_order():
    events = payment_log(n=3, reversals=False)
    late = Delivery(events[0], events[2].recorded_at + 5, perturbation="delayed", delay_ns=5)
    tie = Delivery(events[1], events[2].recorded_at, perturbation="reordered")
    result = run([late, tie, Delivery(events[2], events[2].recorded_at)], LedgerProjection())
    deliveries = result.tables["deliveries"]
    assert deliveries["position"].to_list() == [2, 3, 1]
    assert deliveries["perturbation"].to_list() == ["reordered", "none", "delayed"]


def test_an_iterator_out_of_time_order_is_refused_with_the_position():
    events = payment_log(n=2, reversals=False)
    backwards = iter([Delivery(events[1], 10), Delivery(events[0], 5)])
    with pytest.raises(ReplayError, match="position 1 at 5 ns"):
        run(backwards, LedgerProjection())


def test_duplicates_and_drops_are_counted_and_traced():
    events = payment_log(n=3, reversals=False)
    schedule = [Delivery(events[0], events[0].recorded_at),
                Delivery(events[0], events[1].recorded_at, copy=1, perturbation="duplicate"),
                Delivery(events[2], events[2].recorded_at)]
    result = run(schedule, LedgerProjection(), drops=[Drop(2, events[1])])
    assert result.counts["events"] == 3
    assert result.counts["deliveries"] == 3
    assert result.tables["drops"]["position"].to_list() == [2]
    assert result.tables["deliveries"]["copy"].to_list() == [0, 1, 0]
    assert len(result.state.seen) == 2  # the duplicate counted once


def test_fault_events_are_recorded_in_faults():
    events = payment_log(n=10, faults=True, reversals=False)
    result = run(list(deliveries_of(events)), LedgerProjection())
    faults = result.tables["faults"]
    assert faults["source"].to_list() == ["meter-7", "meter-7"]
    assert faults["detail"].to_list() == ["poll 4", "poll 9"]


class Fragile(LedgerProjection):
    """Raises on the third payment, after deciding and scheduling."""

    def apply(self, state, event, ctx):
        new = super().apply(state, event, ctx)
        if event.position == 3:
            raise ValueError("bad amount")
        return new


def test_a_raising_projection_is_recorded_and_the_step_undone():
    events = payment_log(n=5, reversals=False)
    result = run(list(deliveries_of(events)), Fragile(hold_ns=100 * SECOND))
    fault = result.tables["faults"].row(0, named=True)
    assert fault["kind"] == "projection_error"
    assert "position 3" in fault["detail"] and "bad amount" in fault["detail"]
    assert "p2" not in result.state.seen and len(result.state.seen) == 4
    assert "acct-2" not in {d.subject for d in result.decisions}
    assert result.tables["timers"].filter(pl.col("key") == "release:acct-2").height == 0


def test_strict_mode_raises_naming_the_position():
    with pytest.raises(ReplayError, match="position 3"):
        run(list(deliveries_of(payment_log(n=5))), Fragile(), strict=True)


def test_a_lazy_store_read_is_replayed_without_a_list():
    store = open_store("memory://")
    for i in range(50):
        store.append("s", [NewEvent.of(PaymentReceived(account_id="a", payment_id=str(i),
                                                       amount_minor=1))])
    result = run(deliveries_of(store.read_all()), LedgerProjection(), collect=False)
    assert result.tables is None
    assert result.state.balances == {"a": 50}
    assert result.counts["deliveries"] == 50


def test_state_is_a_msgspec_struct_of_the_declared_type():
    result = run(list(deliveries_of(payment_log(n=2))), LedgerProjection())
    assert isinstance(result.state, LedgerProjection.state_type)
    assert msgspec.msgpack.decode(msgspec.msgpack.encode(result.state),
                                  type=LedgerProjection.state_type) == result.state


class FreezeWatcher(LedgerProjection):
    """Records how many objects the collector had frozen while the run applied events."""

    def __init__(self) -> None:
        super().__init__()
        self.frozen: list[int] = []

    def apply(self, state, event, ctx):
        import gc

        self.frozen.append(gc.get_freeze_count())
        return super().apply(state, event, ctx)


def test_objects_older_than_the_run_are_frozen_during_it_and_thawed_after():
    import gc

    assert gc.get_freeze_count() == 0
    watcher = FreezeWatcher()
    run(deliveries_of(payment_log(n=5)), watcher)
    assert min(watcher.frozen) > 1000  # the imported modules' objects, at least
    assert gc.get_freeze_count() == 0


def test_a_run_leaves_objects_frozen_by_someone_else_as_they_were():
    import gc

    gc.freeze()
    try:
        before = gc.get_freeze_count()
        watcher = FreezeWatcher()
        run(deliveries_of(payment_log(n=5)), watcher)
        # The run neither froze more (the count would jump by every live object) nor thawed
        # (it would drop to 0). Frozen objects may still die meanwhile: other tests' threads
        # let go of theirs, so the count can fall by a few.
        assert all(0 < count <= before for count in watcher.frozen), (before, watcher.frozen)
        assert 0 < gc.get_freeze_count() <= before
    finally:
        gc.unfreeze()

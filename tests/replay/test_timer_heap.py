"""Replaced and cancelled timers leave dead heap entries; ``settle`` keeps them bounded.

A projection that re-schedules a key on every event (a hold that restarts, a
"due" timer moved forward) leaves one dead entry per re-schedule. Without
pruning the heap grows with the log's length (a 1M-event arrears replay held
36,000 entries for 2,500 live timers); pruning must not change which timers
fire, in what order, or what an undone step restores.
"""

from __future__ import annotations

import random

import pytest
from replay_helpers import SECOND, LedgerProjection, payment_log

import replay.core._context as context_mod
import replay.core._runner as runner_mod
from replay import deliveries_of, run
from replay.core._context import PRUNE_SLACK, ReplayContext


def test_settle_keeps_a_constantly_rescheduled_heap_bounded():
    ctx = ReplayContext()
    for i in range(20 * PRUNE_SLACK):
        ctx.now = i
        ctx.schedule(10**15 + i, f"due:{i % 3}")  # far in the future: never reaches the top
        if i % 256 == 255:
            ctx.settle()
    assert len(ctx.active) == 3
    assert len(ctx.heap) <= 2 * 3 + PRUNE_SLACK + 256
    assert sorted(e[context_mod.KEY] for e in ctx.heap if e[context_mod.ALIVE]) == ["due:0", "due:1", "due:2"]
    assert [ctx.next_due(), ctx.pop_timer(0).key] == [10**15 + 20 * PRUNE_SLACK - 3, "due:2"]


def test_timers_fire_in_due_then_scheduling_order_after_a_prune():
    rng = random.Random(7)
    ctx = ReplayContext()
    for _ in range(3 * PRUNE_SLACK):
        ctx.schedule(rng.randrange(10**6), f"k{rng.randrange(300)}")  # most keys replaced, dues shuffled
    ctx.settle()
    assert len(ctx.heap) == len(ctx.active) == 300
    expected = sorted((e[context_mod.DUE], e[context_mod.ORDER]) for e in ctx.active.values())
    fired = []
    while ctx.next_due() is not None:
        entry = ctx.heap[0]
        fired.append((entry[context_mod.DUE], entry[context_mod.ORDER]))
        ctx.pop_timer(len(fired))
    assert fired == expected


def test_settle_forgets_the_journal_of_finished_steps():
    ctx = ReplayContext()
    ctx.cause = 1
    ctx.schedule(5, "a")
    ctx.cancel("a")
    ctx.settle()
    assert ctx.journal == []


class FragileLedger(LedgerProjection):
    """Raises on every 5th payment after scheduling, so its step is undone (a revived timer)."""

    def apply(self, state, event, ctx):
        new = super().apply(state, event, ctx)
        if event.position % 5 == 0:
            raise ValueError("refused")
        return new


@pytest.mark.parametrize("projection", [LedgerProjection, FragileLedger])
def test_pruning_after_every_step_changes_nothing_in_the_trace(monkeypatch, projection):
    events = payment_log(n=600, accounts=2)
    monkeypatch.setattr(context_mod.ReplayContext, "settle", lambda self: self.journal.clear())
    unpruned = run(deliveries_of(events), projection(hold_ns=30 * SECOND))
    monkeypatch.undo()
    monkeypatch.setattr(context_mod, "PRUNE_SLACK", 0)
    monkeypatch.setattr(runner_mod, "COMPACT_ROWS", 1)  # settle between every two deliveries
    pruned = run(deliveries_of(events), projection(hold_ns=30 * SECOND))
    assert pruned.counts["timers"] > 100  # re-schedules, cancels and firings all happened
    assert pruned.digest == unpruned.digest
    assert pruned.state == unpruned.state

"""Each grid invariant catches the flaw it is about: five flawed variants of the grid
projection, each run by ``properties.check`` on a log where the real projection holds."""

from __future__ import annotations

import pytest

import properties
from load._grid_model import GridProfile
from projections import Decision, GridConfig, GridProjection, Status

from .test_grid_scenarios import generated

NS = 1_000_000_000


class ShedsOnPartialView(GridProjection):
    """Takes the full protection action while degraded (NF-001's mistake)."""

    def _protect(self, state, ctx):
        mode, state.mode = state.mode, "normal" if state.mode == "degraded" else state.mode
        try:
            super()._protect(state, ctx)
        finally:
            state.mode = mode

    def _release(self, state, ctx):
        mode, state.mode = state.mode, "normal" if state.mode == "degraded" else state.mode
        try:
            super()._release(state, ctx)
        finally:
            state.mode = mode


class SlotsByArrival(GridProjection):
    """Places frequency samples in the interval they arrive in, not their own (NF-002's mistake)."""

    def _sample(self, state, node_id, start, length, freq, event_id, end):
        now = self._now
        super()._sample(state, node_id, now - now % length, length, freq, event_id, end)

    def apply(self, state, event, ctx):
        self._now = ctx.now
        return super().apply(state, event, ctx)


class NoHysteresis(GridProjection):
    """A silent node is visible again on its first report (NF-003's mistake)."""

    def _heard(self, state, node_id, own, ctx, role=""):
        super()._heard(state, node_id, own, ctx, role)
        node = state.nodes[node_id]
        if node.state == "recovering":
            ctx.cancel(f"recover:{node_id}")
            self._set(state, node_id, node, "visible", "recovered_after_hysteresis", ctx)


class NoBlindMode(GridProjection):
    """Calls a grid with no visible node merely degraded (NF-004's mistake)."""

    def _mode(self, state, ctx):
        visible = sum(1 for n in state.nodes.values() if n.state == "visible")
        mode = "normal" if visible == len(state.nodes) else "degraded"
        if mode != state.mode:
            state.mode = mode
            ctx.decide(Decision(kind="grid-mode", subject="grid", action=mode, status=Status.RELEASED))
            self._protect(state, ctx)


class CountsDuplicates(GridProjection):
    """Adds a reading's energy again when it is delivered twice (GRID-001's mistake)."""

    def _reading(self, state, p, event, ctx):
        rows = state.readings.setdefault(p.node_id, {})
        old = rows.pop(str(p.interval_start), None)
        super()._reading(state, p, event, ctx)
        if old is not None:
            rows[str(p.interval_start)].energy_wh += old.energy_wh


CASES = [
    ("NF-1", ShedsOnPartialView, GridProfile(nodes=6, hours=4, seed=5, dip_at_h=3.0, dip_intervals=4,
                                             silent_fraction=0.34, silent_from_h=1.5), {}),
    ("NF-2", SlotsByArrival, GridProfile(nodes=6, hours=3, seed=5, dip_at_h=1.5, dip_intervals=1,
                                         dip_hz=48.8, late_fraction=0.5, late_s=350), {}),
    ("NF-3", NoHysteresis, GridProfile(nodes=6, hours=6, seed=2, lossy_p=0.5), {}),
    ("NF-4", NoBlindMode, GridProfile(nodes=6, hours=3, seed=5, silent_fraction=1.0, silent_from_h=1.0,
                                      silent_until_h=2.0), {}),
    ("GRID-1", CountsDuplicates, GridProfile(nodes=6, hours=3, seed=9), {}),
]


@pytest.mark.slow
@pytest.mark.parametrize(("invariant", "flawed", "profile", "config"), CASES, ids=[c[0] for c in CASES])
def test_each_grid_invariant_catches_its_flawed_variant(invariant, flawed, profile, config):
    events = list(generated(profile))
    real = properties.check(events, GridProjection(GridConfig(**config)), examples=15, seed=4,
                            invariants=[invariant])
    assert real.ok, real.render()
    report = properties.check(events, flawed(GridConfig(**config)), examples=15, seed=4,
                              invariants=[invariant], shrink_budget_s=2.0)
    [result] = report.results
    assert result.status == "broken", report.render()

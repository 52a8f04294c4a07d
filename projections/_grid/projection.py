"""The grid visibility projection (NF-001..NF-004, GRID-001).

Reports are placed by their own time: a node's liveness is the newest source
time heard from it (never the arrival time), and a reading lands in the slot of
its own interval. A node with nothing newer than ``stale_s`` is silent; a
silent node that reports again recovers only after ``recover_s`` of reports
(hysteresis). The grid's mode follows: normal (every known node visible),
degraded (some silent) or blind (none visible), each an explicit decision.

Under-frequency protection (load shedding) holds, re-checks and releases only
in normal mode, on ``confirm_intervals`` consecutive recent intervals whose
median frequency is under ``trip_hz``. On partial loss it is blocked (NF-001);
blind, nothing is done automatically (NF-004). A late report completes an old
interval but never makes it recent (NF-002). Each UTC day's energy balance is
judged ``settle_s`` after it ends: produced = consumed + losses + storage
change within ``balance_tolerance`` (GRID-001). See docs/grid.md.
"""

from __future__ import annotations

from typing import Any

import msgspec

from eventstore import RecordedEvent
from eventstore.payloads import Heartbeat, decode_payload, fault_source_field
from projections._config import ConfigError
from projections._contract import Context, Decision, Status, Timer
from projections.payloads.grid import CONSUMERS, PRODUCERS, GridReading
from projections.payloads.modbus import ModbusFrame

from . import reasons as R
from .config import GridConfig
from .state import (
    BLIND,
    DEGRADED,
    NORMAL,
    RECOVERING,
    SILENT,
    UNKNOWN,
    VISIBLE,
    Balance,
    GridState,
    Node,
    Reading,
    Shed,
    Slot,
)

DAY_NS = 86_400_000_000_000
GRID = "grid"
SHED_TIMER = "shed"
KEEP_SLOTS = 48  # frequency slots kept behind the newest (older ones cannot be recent)


class GridProjection:
    """Node visibility, grid modes, under-frequency protection and the daily energy balance."""

    name = "grid"
    domain = "grid"
    version = "1"
    state_type = GridState

    def __init__(self, config: GridConfig | None = None) -> None:
        self._c = config or GridConfig()
        c = self._c
        self._stale = c.ns(c.stale_s)
        self._recover = c.ns(c.recover_s)
        self._slot = c.ns(c.slot_s)
        self._hold = c.ns(c.hold_s)
        self._settle = c.ns(c.settle_s)

    def initial(self) -> GridState:
        state = GridState()
        for node in self._c.expected_nodes:
            state.nodes[node] = Node()
        return state

    def config(self) -> dict[str, Any]:
        return msgspec.to_builtins(self._c)

    @staticmethod
    def convergent(state: GridState) -> dict[str, Any]:
        """The facts, independent of delivery order: readings by node and interval, and each
        node's newest own time (modes and decisions depend on timing, so they are left out)."""
        return {
            "readings": {n: sorted((k, r.role, r.energy_wh) for k, r in rs.items())
                         for n, rs in sorted(state.readings.items())},
            "nodes": sorted(state.nodes),
        }

    # -- events -------------------------------------------------------------------------
    def apply(self, state: GridState, event: RecordedEvent, ctx: Context) -> GridState:
        p = decode_payload(event)
        own = min(event.occurred_at, ctx.now)  # a clock ahead never makes a node look fresher
        if isinstance(p, GridReading):
            self._heard(state, p.node_id, own, ctx, role=p.role)
            self._reading(state, p, event, ctx)
            self._sample(state, p.node_id, p.interval_start, p.interval_s * 1_000_000_000,
                         p.frequency_hz, str(event.id), event.occurred_at)
            self._protect(state, ctx)
        elif isinstance(p, Heartbeat):
            self._heard(state, p.node_id, own, ctx)
        elif isinstance(p, ModbusFrame):
            self._heard(state, p.device, own, ctx)
            freq = p.decoded.get("frequency_hz")
            if isinstance(freq, int | float) and not isinstance(freq, bool) and "frequency_hz" not in p.invalid:
                start = event.occurred_at - event.occurred_at % self._slot
                self._sample(state, p.device, start, self._slot, float(freq), str(event.id),
                             event.occurred_at)
                self._protect(state, ctx)
        elif not isinstance(p, bytes) and (field := fault_source_field(event.type)):
            node = str(getattr(p, field, "") or "")
            if node:
                self._node(state, node, ctx).faults += 1
        return state

    def on_timer(self, state: GridState, timer: Timer, ctx: Context) -> GridState:
        kind, _, key = timer.key.partition(":")
        if kind == "stale":
            self._on_stale(state, key, ctx)
        elif kind == "recover":
            self._on_recover(state, key, ctx)
        elif kind == SHED_TIMER:
            self._release(state, ctx)
        elif kind == "balance":
            self._judge(state, int(key), ctx)
        return state

    # -- liveness ------------------------------------------------------------------------
    def _node(self, state: GridState, node_id: str, ctx: Context, *, heard: bool = False) -> Node:
        node = state.nodes.get(node_id)
        if node is None:
            node = state.nodes[node_id] = Node(since=ctx.now)
            if not heard:  # named by a fault, never heard: it is not visible, the mode changes
                self._mode(state, ctx)
        return node

    def _heard(self, state: GridState, node_id: str, own: int, ctx: Context, role: str = "") -> None:
        new = node_id not in state.nodes
        node = self._node(state, node_id, ctx, heard=True)
        node.reports += 1
        if role:
            node.role = role
        if own > node.last_seen:
            node.last_seen = own
            ctx.schedule(own + self._stale, f"stale:{node_id}")
        if ctx.now - node.last_seen >= self._stale:
            if new:
                self._mode(state, ctx)  # first heard through a stale report: known, not visible
            return  # a late report, stale by its own time: the node is not back
        if node.state == UNKNOWN:
            self._set(state, node_id, node, VISIBLE, R.FIRST_REPORT, ctx)
        elif node.state == SILENT:
            self._set(state, node_id, node, RECOVERING, R.NODE_REPORTING_AGAIN, ctx)
            ctx.schedule(ctx.now + self._recover, f"recover:{node_id}")

    def _on_stale(self, state: GridState, node_id: str, ctx: Context) -> None:
        node = state.nodes.get(node_id)
        if node is None or ctx.now - node.last_seen < self._stale:
            return
        if node.state in (VISIBLE, RECOVERING):
            ctx.cancel(f"recover:{node_id}")
            self._set(state, node_id, node, SILENT, R.NODE_STALE, ctx)

    def _on_recover(self, state: GridState, node_id: str, ctx: Context) -> None:
        node = state.nodes.get(node_id)
        if node is not None and node.state == RECOVERING and ctx.now - node.last_seen < self._stale:
            self._set(state, node_id, node, VISIBLE, R.RECOVERED_AFTER_HYSTERESIS, ctx)

    def _set(self, state: GridState, node_id: str, node: Node, new: str, reason: str, ctx: Context) -> None:
        node.state, node.since = new, ctx.now
        ctx.decide(Decision(
            kind="grid-node", subject=node_id, action=new, status=Status.RELEASED, reasons=(reason,),
            input_time=node.last_seen if node.last_seen >= 0 else None, freshness_ns=self._stale,
        ))
        self._mode(state, ctx)

    def _mode(self, state: GridState, ctx: Context) -> None:
        visible = sum(1 for n in state.nodes.values() if n.state == VISIBLE)
        mode = NORMAL if visible == len(state.nodes) else (BLIND if visible == 0 else DEGRADED)
        if mode == state.mode:
            return
        state.mode = mode
        reason = {NORMAL: R.FULL_VISIBILITY, DEGRADED: R.PARTIAL_VISIBILITY, BLIND: R.BLIND}[mode]
        ctx.decide(Decision(kind="grid-mode", subject=GRID, action=mode, status=Status.RELEASED,
                            reasons=(reason,), confidence=visible / max(1, len(state.nodes))))
        self._protect(state, ctx)

    # -- protection ----------------------------------------------------------------------
    def _sample(self, state: GridState, node_id: str, start: int, length: int, freq: float,
                event_id: str, end: int) -> None:
        slot = state.slots.get(str(start))
        if slot is None:
            slot = state.slots[str(start)] = Slot(length=max(1, length))
        if node_id not in slot.freqs:  # the first sample of a node and interval counts
            slot.freqs[node_id], slot.ids[node_id], slot.ends[node_id] = freq, event_id, end
        if len(state.slots) > KEEP_SLOTS:
            newest = max(int(k) for k in state.slots)
            for k in [k for k, s in state.slots.items() if int(k) < newest - KEEP_SLOTS * s.length]:
                del state.slots[k]

    def _condition(self, state: GridState, ctx: Context) -> tuple[list[str], int, int] | None:
        """The confirming intervals' event ids, newest source time and first interval start, when
        the under-frequency condition holds on recent intervals (by their own time); else None."""
        need = max(1, -(-int(self._c.quorum * 1000) * len(state.nodes) // 1000))
        judged = sorted((int(k), s) for k, s in state.slots.items() if len(s.freqs) >= need)
        if not judged:
            return None
        newest, slot = judged[-1]
        if ctx.now - (newest + slot.length) >= self._stale:
            return None  # the newest judged interval is old: late reports never make it recent
        run = [slot]
        by_start = dict(judged)
        while len(run) < self._c.confirm_intervals:
            prev = by_start.get(newest - run[-1].length * len(run))
            if prev is None:
                return None
            run.append(prev)
        if any(_median(list(s.freqs.values())) >= self._c.trip_hz for s in run):
            return None
        ids = sorted(i for s in run for i in s.ids.values())
        first = newest - sum(s.length for s in run[1:])
        return ids, max(e for s in run for e in s.ends.values()), first

    def _protect(self, state: GridState, ctx: Context) -> None:
        shed = state.shed
        found = self._condition(state, ctx)
        if found is None:
            if shed.stage == "held":
                ctx.cancel(SHED_TIMER)
                self._shed(ctx, shed, Status.CANCELLED, R.CONDITION_CLEARED)
            state.shed = Shed()
            return
        ids, newest, first = found
        if not shed.key:
            shed.key = f"shed:{first}"
        shed.inputs, shed.input_time = ids, newest
        if shed.key in state.released:
            shed.stage = "released"  # this episode's action was taken: never a second time
            return
        if state.mode == NORMAL and shed.stage in ("", "blocked"):
            shed.stage = "held"
            until = ctx.now + self._hold
            ctx.schedule(until, SHED_TIMER)
            self._shed(ctx, shed, Status.HELD, R.UNDER_FREQUENCY, hold_until=until)
        elif state.mode != NORMAL and shed.stage in ("", "held"):
            if shed.stage == "held":
                ctx.cancel(SHED_TIMER)
            shed.stage = "blocked"
            self._shed(ctx, shed, Status.BLOCKED, R.BLIND if state.mode == BLIND else R.PARTIAL_VISIBILITY)

    def _release(self, state: GridState, ctx: Context) -> None:
        shed = state.shed
        if shed.stage != "held":
            return
        found = self._condition(state, ctx)
        if found is None:
            self._shed(ctx, shed, Status.CANCELLED, R.CONDITION_CLEARED)
            state.shed = Shed()
            return
        shed.inputs, shed.input_time = found[0], found[1]
        if state.mode != NORMAL:
            shed.stage = "blocked"
            self._shed(ctx, shed, Status.BLOCKED, R.BLIND if state.mode == BLIND else R.PARTIAL_VISIBILITY)
            return
        shed.stage = "released"
        state.released.append(shed.key)
        self._shed(ctx, shed, Status.RELEASED, R.RECHECKED_AT_RELEASE, external=True, irreversible=True,
                   confidence=1.0, min_confidence=self._c.min_confidence_external)

    def _shed(self, ctx: Context, shed: Shed, status: Status, reason: str, **extra: Any) -> None:
        ctx.decide(Decision(
            kind="protection", subject=GRID, action="load-shed", status=status, reasons=(reason,),
            inputs=tuple(shed.inputs), effect_key=shed.key, input_time=shed.input_time,
            freshness_ns=self._stale, **extra,
        ))

    # -- energy balance ------------------------------------------------------------------
    def _reading(self, state: GridState, p: GridReading, event: RecordedEvent, ctx: Context) -> None:
        rows = state.readings.setdefault(p.node_id, {})
        key = str(p.interval_start)
        if key in rows:
            return  # a duplicate (or a second reading of the interval) counts once
        rows[key] = Reading(p.role, float(p.energy_wh))
        day = p.interval_start // DAY_NS
        ctx.schedule(max(ctx.now, (day + 1) * DAY_NS + self._settle), f"balance:{day}")

    def _judge(self, state: GridState, day: int, ctx: Context) -> None:
        b = Balance()
        intervals: dict[str, set[str]] = {}
        for node_id, rows in state.readings.items():
            for key, r in rows.items():
                if int(key) // DAY_NS != day:
                    continue
                intervals.setdefault(node_id, set()).add(key)
                if r.role in PRODUCERS:
                    b.produced += r.energy_wh
                elif r.role in CONSUMERS:
                    b.consumed += r.energy_wh
                elif r.role == "line":
                    b.losses += r.energy_wh
                elif r.role == "storage":
                    b.storage += r.energy_wh
        sets = list(intervals.values())
        b.complete = bool(sets) and all(s == sets[0] for s in sets)
        b.residual = b.produced - b.consumed - b.losses - b.storage
        if not b.complete:
            b.verdict = R.BALANCE_INCOMPLETE
        elif abs(b.residual) <= self._c.balance_tolerance * abs(b.produced):
            b.verdict = R.BALANCE_CLOSED
        else:
            b.verdict = R.BALANCE_OFF
        state.days[str(day)] = b
        ctx.decide(Decision(kind="energy-balance", subject=f"day:{day}", action="close",
                            status=Status.RELEASED, reasons=(b.verdict,)))


def _median(values: list[float]) -> float:
    values = sorted(values)
    mid = len(values) // 2
    return values[mid] if len(values) % 2 else (values[mid - 1] + values[mid]) / 2


def build(**config: Any) -> GridProjection:
    """The factory behind ``--projection grid``: --config values arrive here."""
    try:
        return GridProjection(msgspec.convert(config, GridConfig))
    except msgspec.ValidationError as e:
        raise ConfigError(f"grid: {e}") from e

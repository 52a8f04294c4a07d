"""The ``Context`` a projection sees during a replay: virtual now, decisions and timers.

Timers live in a heap of mutable entries ``[due, order, key, payload,
scheduled_at, alive]``; ``(due, order)`` is unique, so the heap never compares
further. Replacing or cancelling a timer marks its entry dead instead of
searching the heap (lazy deletion); between steps the runner calls ``settle``,
which drops dead entries once they outnumber the live ones, so a projection
that keeps re-scheduling far-future timers does not grow the heap with the
length of the log. Every schedule/cancel is journalled with
the seq of the step that made it, so a step whose projection raised can be
undone and the run continues from the previous state.
"""

from __future__ import annotations

import heapq
import operator
from typing import Any

import msgspec

from projections import Decision, Timer
from replay._errors import ReplayError

from ._clock import VirtualClock

DUE, ORDER, KEY, PAYLOAD, SCHEDULED_AT, ALIVE = range(6)
MAX_NS = 2**63 - 1  # the trace stores times as int64 ns
MIN_NS = -(2**63)
PRUNE_SLACK = 1024  # dead entries tolerated beyond the live count: pruning a small heap is not worth it


class ReplayContext(VirtualClock):
    """``projections.Context`` backed by the runner's buffers; it is the run's virtual clock.

    ``now`` is a plain attribute (cheap for projections to read); the runner
    moves it with ``advance_to`` or, in its hot loop, with the same
    never-backwards check inlined. ``cause`` is the seq of the step being handled.
    """

    __slots__ = (
        "cause", "heap", "active", "order", "timer_rows", "journal",
        "decision_objs", "decision_causes", "decisions", "keep_decisions",
    )

    def __init__(self, keep_decisions: bool = True) -> None:
        super().__init__(0)
        self.keep_decisions = keep_decisions
        self.cause = -1
        self.heap: list[list] = []
        self.active: dict[str, list] = {}
        self.order = 0
        # (key, scheduled_at, due_at, fired_seq, outcome), emitted once the outcome is known
        self.timer_rows: list[tuple] = []
        self.journal: list[tuple] = []
        self.decision_objs: list[Decision] = []  # the trace buffer; flushed in batches
        self.decision_causes: list[int] = []
        # every decision of the run, for RunResult; not kept when the trace streams to disk only
        self.decisions: list[Decision] = []

    # -- the Context protocol ---------------------------------------------
    def decide(self, decision: Decision) -> Decision:
        """Record ``decision`` at ``now``; returns it with ``at`` filled in.

        A decision whose fields do not fit the ``decisions`` table (a number
        where text belongs, a time beyond int64 ns...) raises ``ReplayError``
        naming the field and value, here, inside the step that made it, so
        the step becomes a fault row instead of a crash at the next flush.
        """
        if not isinstance(decision, Decision):
            raise ReplayError(f"ctx.decide takes a projections.Decision, got {type(decision).__name__}")
        check_decision(decision)
        if decision.at != self.now:
            decision = msgspec.structs.replace(decision, at=self.now)
        self.decision_objs.append(decision)
        self.decision_causes.append(self.cause)
        if self.keep_decisions:
            self.decisions.append(decision)
        return decision

    def schedule(self, at: int, key: str, payload: Any = None) -> None:
        """Ask for ``on_timer`` at ``at`` (ns); re-scheduling ``key`` replaces the old timer.

        ``at`` must be integer ns UTC within 0 .. 2**63 - 1 and ``key`` a
        string; anything else (NaN, inf, a float, a negative or too large
        time, a string) raises ``ReplayError`` naming the key and the value.
        A time before ``now`` is allowed: the timer fires at once.
        """
        if type(at) is not int or not 0 <= at <= MAX_NS or type(key) is not str:
            at = _timer_time(at, key)
        old = self.active.get(key)
        if old is not None:
            self._retire(old, "replaced")
        entry = [at, self.order, key, payload, self.now, True]
        self.order += 1
        self.active[key] = entry
        heapq.heappush(self.heap, entry)
        self.journal.append((self.cause, key, old, entry, len(self.timer_rows)))

    def cancel(self, key: str) -> None:
        """Forget the timer under ``key``; a key with no timer is a no-op."""
        old = self.active.pop(key, None)
        if old is not None:
            rows_before = len(self.timer_rows)
            self._retire(old, "cancelled")
            self.journal.append((self.cause, key, old, None, rows_before))

    # -- used by the runner -----------------------------------------------
    def _retire(self, entry: list, outcome: str) -> None:
        entry[ALIVE] = False
        self.timer_rows.append((entry[KEY], entry[SCHEDULED_AT], entry[DUE], None, outcome))

    def settle(self) -> None:
        """Between steps: forget the journal of finished steps, prune the heap's dead entries.

        Only the step being handled can be undone, so earlier journal entries
        (and the heap entries they hold) are dead weight. Dead heap entries
        are dropped once they outnumber the live ones; live entries are
        exactly ``active``'s, so the firing order, which depends only on
        (due, order), is unchanged. Within a step an undo may revive an entry
        that step retired, so this never runs inside one.
        """
        self.journal.clear()
        heap = self.heap
        if len(heap) > 2 * len(self.active) + PRUNE_SLACK:
            heap[:] = [e for e in heap if e[ALIVE]]  # in place: the runner holds the list
            heapq.heapify(heap)

    def next_due(self) -> int | None:
        """The due time of the earliest live timer, dropping dead heads on the way."""
        heap = self.heap
        while heap and not heap[0][ALIVE]:
            heapq.heappop(heap)
        return heap[0][DUE] if heap else None

    def pop_timer(self, seq: int) -> Timer:
        """Take the earliest live timer off the queue and record it as fired at ``seq``."""
        entry = heapq.heappop(self.heap)
        entry[ALIVE] = False
        del self.active[entry[KEY]]
        self.timer_rows.append((entry[KEY], entry[SCHEDULED_AT], entry[DUE], seq, "fired"))
        return Timer(entry[KEY], entry[DUE], entry[PAYLOAD])

    def undo_step(self, seq: int, decisions_before: int) -> None:
        """Forget the decisions and timer changes the step ``seq`` made (its projection raised)."""
        extra = len(self.decisions) - decisions_before
        if extra:
            del self.decisions[-extra:]
            del self.decision_objs[-extra:]
            del self.decision_causes[-extra:]
        journal = self.journal
        rows_before = None
        while journal and journal[-1][0] == seq:
            _, key, old, new, rows_before = journal.pop()
            if new is not None:
                new[ALIVE] = False
                self.active.pop(key, None)
            if old is not None:
                old[ALIVE] = True
                self.active[key] = old
        if rows_before is not None:
            del self.timer_rows[rows_before:]

    def pending_rows(self) -> list[tuple]:
        """Rows for timers still pending at the end, in (due, scheduling) order."""
        live = sorted(self.active.values(), key=lambda e: (e[DUE], e[ORDER]))
        return [(e[KEY], e[SCHEDULED_AT], e[DUE], None, "pending") for e in live]


def _timer_time(at: Any, key: Any) -> int:
    """``at`` as int ns for ``ctx.schedule``, or ``ReplayError`` naming the key and the value."""
    if not isinstance(key, str):
        raise ReplayError(f"ctx.schedule(key=...) must be a string, got {type(key).__name__} {key!r} "
                          f"(timer due at {at!r})")
    if isinstance(at, bool) or isinstance(at, float) or not hasattr(at, "__index__"):
        raise ReplayError(f"ctx.schedule: timer {key!r} has due time {at!r} ({type(at).__name__}); "
                          "it must be integer ns UTC (e.g. ctx.now + 3_600_000_000_000)")
    value = operator.index(at)
    if not 0 <= value <= MAX_NS:
        raise ReplayError(f"ctx.schedule: timer {key!r} has due time {value!r} ns, outside "
                          f"0 .. {MAX_NS} (1970 to 2262 in ns UTC)")
    return value


_TEXT = ("kind", "subject", "action")
_NUMBERS = ("confidence", "min_confidence")
_TIMES = ("at", "input_time", "freshness_ns", "hold_until")


def check_decision(d: Decision) -> None:
    """Raise ``ReplayError`` naming the first field of ``d`` the ``decisions`` table cannot hold."""
    if (type(d.kind) is str and type(d.subject) is str and type(d.action) is str
            and isinstance(d.status, str) and type(d.confidence) in (float, int)
            and type(d.min_confidence) in (float, int) and _time_ok(d.input_time)
            and _time_ok(d.freshness_ns) and _time_ok(d.hold_until)
            and (d.effect_key is None or type(d.effect_key) is str)
            and type(d.external) is bool and type(d.irreversible) is bool
            and _texts_ok(d.reasons) and _texts_ok(d.inputs)):
        return
    for name in _TEXT:
        _need(d, name, isinstance(getattr(d, name), str), "a string")
    _need(d, "status", isinstance(d.status, str), "a projections.Status")
    for name in _NUMBERS:
        value = getattr(d, name)
        _need(d, name, isinstance(value, (int, float)) and not isinstance(value, bool), "a number")
    for name in _TIMES[1:]:
        _need(d, name, _time_ok(getattr(d, name)), "None or an int64 number of ns")
    _need(d, "effect_key", d.effect_key is None or isinstance(d.effect_key, str), "None or a string")
    for name in ("external", "irreversible"):
        _need(d, name, isinstance(getattr(d, name), bool), "True or False")
    for name in ("reasons", "inputs"):
        _need(d, name, _texts_ok(getattr(d, name)), "a tuple of strings")


def _time_ok(value: Any) -> bool:
    return value is None or (type(value) is int and MIN_NS <= value <= MAX_NS)


def _texts_ok(values: Any) -> bool:
    return isinstance(values, (tuple, list)) and all(type(v) is str for v in values)


def _need(d: Decision, name: str, ok: bool, what: str) -> None:
    if not ok:
        value = getattr(d, name)
        raise ReplayError(f"ctx.decide: Decision.{name} must be {what}, got {type(value).__name__} "
                          f"{value!r:.80} (decision {d.kind!r:.40} for {d.subject!r:.40})")

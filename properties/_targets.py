"""Where the search aims: which events and sources a perturbation picks, guided by the log and its trace.

Picking the event to perturb uniformly over the log wastes the search on what
is common: nine events in ten of a production log are readings, and the one
event a bug depends on (an account's reconciliation statement, a payment that
lands inside a hold) is one in thousands. So, as coverage-guided fuzzers
steer towards new behaviour, the search aims:

- by event type: a type is picked first, then an event of it, so a rare type
  is as likely as a common one;
- by the trace of the unperturbed run: the events decisions cite as inputs
  (``decisions.inputs``) and the ones that caused them (``cause_seq``), the
  events just before those in the same stream and of the same type (late, they
  overtake them), and the last event of each stream and type;
- by subject: where the projection's state is per subject (an account, a
  device, a symbol: ``SUBJECT_FIELDS`` of the payload, else the stream) half
  the schedules aim every perturbation at one subject's events, sources and
  arrival times, so a 2,000-event log of 60 accounts is searched like 60 logs
  of 35 events, and several perturbations can meet in one account;
- first of all, single perturbations the trace points at (``priority``): for
  every subject with decisions, in turn, drop each event its external
  decisions cite, silence its source for the longest partition allowed up to
  just after the decision (its inputs go stale), deliver the one before it
  late enough to overtake it, delay it past the decision, and deliver a
  second copy just after it.

Aiming only changes which schedules are drawn: a schedule is still plain data
naming events by position, so every counterexample replays exactly and
shrinks as before. Building the targets costs one pass over the log and the
base trace; drawing a perturbation stays O(1) whatever the log's length.
"""

from __future__ import annotations

from bisect import bisect_right
from collections import Counter, defaultdict
from collections.abc import Sequence
from typing import Any, Final

import msgspec

from eventstore import RecordedEvent

from ._schedules import Delay, DropEvent, Duplicate, Partition, Schedule, arrival_times, source_of

SUBJECT_FIELDS: Final = ("account_id", "device_id", "device", "symbol", "subject")
_RELEASED: Final = frozenset({"released", "sent"})


class _Subject(msgspec.Struct):
    account_id: Any = None
    device_id: Any = None
    device: Any = None
    symbol: Any = None
    subject: Any = None


_SUBJECT = msgspec.json.Decoder(_Subject)


def subject_of(event: RecordedEvent) -> str | None:
    """What the event is about: the first of ``SUBJECT_FIELDS`` in its payload, or None."""
    try:
        s = _SUBJECT.decode(event.data)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None
    for name in SUBJECT_FIELDS:
        value = getattr(s, name)
        if isinstance(value, str) and value:
            return value
    return None


class Scope:
    """The events one schedule may aim at: the whole log or one subject's part of it.

    ``members`` are indices into the log in log (arrival) order; pools hold
    positions in ``members`` (``k``), so an amount can be sized by the scope's
    own arrival times.
    """

    def __init__(self, events: Sequence[RecordedEvent], arrivals: Sequence[int],
                 members: list[int], guided: set[int]) -> None:
        self.members = members
        self.arrivals = [arrivals[i] for i in members]
        by_type: dict[str, list[int]] = defaultdict(list)
        last: dict[tuple[str, str], int] = {}
        for k, i in enumerate(members):
            e = events[i]
            by_type[e.type].append(k)
            last[(e.stream, e.type)] = k
        self.by_type = [by_type[t] for t in sorted(by_type)]
        self.guided = [k for k, i in enumerate(members) if i in guided]
        self.last = sorted(last.values())
        self.sources = sorted({source_of(events[i]) for i in members})
        self.starts = sorted(set(self.arrivals))

    def pick(self, code: int) -> tuple[int, int]:
        """(code left, k): one member, from a pool chosen by ``code``."""
        code, pool = divmod(code, 4)
        if pool == 1:
            code, t = divmod(code, len(self.by_type))
            group = self.by_type[t]
            code, j = divmod(code, len(group))
            return code, group[j]
        chosen = self.guided if pool == 2 else self.last if pool == 3 else None
        if not chosen:  # pool 0, or an empty pool: any member
            code, k = divmod(code, len(self.members))
            return code, k
        code, j = divmod(code, len(chosen))
        return code, chosen[j]

    def reach(self, k: int, high: int) -> int:
        """The last member arriving within ``high`` ns of member ``k``."""
        return bisect_right(self.arrivals, self.arrivals[k] + high) - 1


class Targets:
    """The scopes and priority schedules for one log (and, if given, its unperturbed run)."""

    def __init__(self, events: Sequence[RecordedEvent], guide: Any = None) -> None:
        self.events = list(events)
        self.arrivals = arrival_times(self.events)
        self._index = {str(e.id): i for i, e in enumerate(self.events)}
        members: dict[str, list[int]] = defaultdict(list)
        for i, e in enumerate(self.events):
            members[subject_of(e) or e.stream].append(i)
        self._members = members
        decisions = _decisions(guide)
        self.cited = self._cited(decisions)
        guided = self._guided(decisions, guide)
        self.whole = Scope(self.events, self.arrivals, list(range(len(self.events))), guided)
        wanted = [s for s in dict.fromkeys(d["subject"] for d in decisions) if s in members]
        self.focus_names = wanted or sorted(members)
        self._guided_set = guided
        self._scopes: dict[str, Scope] = {}

    def focus(self, code: int) -> Scope:
        """One subject's scope (subjects with decisions in the unperturbed run, if any)."""
        name = self.focus_names[code % len(self.focus_names)]
        scope = self._scopes.get(name)
        if scope is None:
            scope = self._scopes[name] = Scope(self.events, self.arrivals, self._members[name],
                                               self._guided_set)
        return scope

    # -- the trace's pointers ------------------------------------------------
    def _cited(self, decisions: list[dict]) -> dict[str, list[tuple[int, int]]]:
        """Per subject: (event index, time of the first external decision citing it), released first."""
        ranked = sorted(
            (d for d in decisions if d["external"] and d["inputs"]),
            key=lambda d: (d["status"] not in _RELEASED, d["seq"]),
        )
        out: dict[str, dict[int, int]] = defaultdict(dict)
        for d in ranked:
            for event_id in d["inputs"]:
                i = self._index.get(event_id)
                if i is not None:
                    out[d["subject"]].setdefault(i, d["at"])
        return {s: list(found.items()) for s, found in out.items()}

    def _guided(self, decisions: list[dict], guide: Any) -> set[int]:
        """Events cited by decisions or causing them, and the ones just before those in their stream."""
        picked: set[int] = set()
        for d in decisions:
            picked.update(i for i in (self._index.get(x) for x in d["inputs"] or ()) if i is not None)
        causes = _causes(guide, decisions)
        picked.update(i for i in causes if 0 <= i < len(self.events))
        before = self._before()
        picked.update(before[i] for i in list(picked) if before.get(i) is not None)
        return picked

    def _before(self) -> dict[int, int]:
        """Index -> the previous event of the same stream and type."""
        seen: dict[tuple[str, str], int] = {}
        out: dict[int, int] = {}
        for i, e in enumerate(self.events):
            key = (e.stream, e.type)
            if key in seen:
                out[i] = seen[key]
            seen[key] = i
        return out

    def priority(self, policy: Any) -> list[Schedule]:
        """Single perturbations the trace points at, subjects taking turns (see the module docstring)."""
        before = self._before()
        types: Counter[str] = Counter(e.type for e in self.events)
        queues = []
        for subject, cited in self.cited.items():
            members = self._members.get(subject) or range(len(self.events))
            busy: Counter[str] = Counter(source_of(self.events[i]) for i in members)
            queues.append(self._queue(cited, before, types, busy, policy))
        out: list[Schedule] = []
        seen: set[bytes] = set()
        for turn in range(max((len(q) for q in queues), default=0)):
            for q in queues:
                if turn < len(q):
                    key = q[turn].to_json()
                    if key not in seen:
                        seen.add(key)
                        out.append(q[turn])
        return out

    def _queue(self, cited: list[tuple[int, int]], before: dict[int, int], types: Counter,
               busy: Counter, policy: Any) -> list[Schedule]:
        """One subject's moves, kinds taking turns: drop, silence, overtake, delay, copy.

        Events go rarest type first (the one statement before the thirty readings);
        sources busiest first within the subject (silencing a meter is what makes
        readings stale), up to just after the foremost decision citing them.
        """
        events, arrivals, kinds = self.events, self.arrivals, policy.kinds
        rare = sorted(cited, key=lambda c: (types[events[c[0]].type], c[0]))
        lists: list[list[Any]] = [[], [], [], [], []]
        if "drop" in kinds:
            lists[0] = [DropEvent(events[i].position) for i, _ in rare]
        if "partition" in kinds and policy.max_partition_ns > 0:
            window = policy.max_partition_ns
            first: dict[str, int] = {}  # source -> time of the foremost decision citing it
            for i, at in cited:
                first.setdefault(source_of(events[i]), at)
            lists[1] = [Partition(src, first[src] - window + 1, window, heal=True)
                        for src in sorted(first, key=lambda src: (-busy[src], src))]
        for i, at in rare:
            prev, past = before.get(i), at - arrivals[i] + 1
            if "delay" in kinds and prev is not None and 0 < arrivals[i] - arrivals[prev] + 1 <= policy.max_delay_ns:
                lists[2].append(Delay(events[prev].position, arrivals[i] - arrivals[prev] + 1))
            if "delay" in kinds and 0 < past <= policy.max_delay_ns:
                lists[3].append(Delay(events[i].position, past))
            if "duplicate" in kinds and 0 <= past <= policy.max_duplicate_ns:
                lists[4].append(Duplicate(events[i].position, past))
        return [Schedule((m,)) for turn in range(max(map(len, lists)))
                for moves in lists if turn < len(moves) for m in (moves[turn],)]


def _decisions(guide: Any) -> list[dict]:
    """The unperturbed run's decisions as dicts (seq, at, subject, status, external, inputs)."""
    tables = getattr(guide, "tables", None)
    if tables is None:
        return []
    try:
        frame = tables["decisions"]
    except (KeyError, TypeError, ValueError):
        return []
    columns = ["seq", "cause_seq", "at", "subject", "status", "external", "inputs"]
    return frame.select(columns).to_dicts()


def _causes(guide: Any, decisions: list[dict]) -> list[int]:
    """Log indices of the deliveries that caused decisions (identity run: delivery order = log order)."""
    if not decisions:
        return []
    frame = guide.tables["deliveries"]
    seq_to_index = {seq: n for n, seq in enumerate(frame.get_column("seq").to_list())}
    return [seq_to_index[d["cause_seq"]] for d in decisions if d["cause_seq"] in seq_to_index]

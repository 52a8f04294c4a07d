"""The replay runner: deliveries in, state, decisions and a trace out."""

from __future__ import annotations

import gc
import math
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec

from eventstore.payloads import decode_payload, fault_source_field, fault_types
from replay._delivery import Delivery, Drop, IdentitySchedule
from replay._errors import ReplayError
from replay.trace import TraceWriter

from ._buffer import Digest, TraceBuffer, drop_rows
from ._context import ReplayContext
from ._pacing import Pacer, Pacing, Progress
from ._snapshot import Snapshots, SnapshotStore
from ._watchdog import EventTimeout, Where, check_limit, current_watch, watching

BATCH_ROWS = 65_536  # deliveries per flush: one Parquet row group, bounded memory
# Deliveries per compaction (hashed, events let go): short-lived events keep the GC's old generation small.
COMPACT_ROWS = 256
MAX_TIMER_CHAIN = 100_000
COUNTED = ("deliveries", "drops", "decisions", "timers", "faults")  # runs-row order


class RunResult(msgspec.Struct, frozen=True, kw_only=True):
    """What a replay produced.

    ``decisions`` are the decisions of this run with ``at`` set (for a resumed
    run: those after the snapshot); empty when the run wrote a trace without
    collecting it, so memory stays flat: read them from the trace instead. ``counts`` holds the row counts of the
    whole run as in the ``runs`` row: events, deliveries, drops, decisions,
    timers, faults. ``digest`` is sha256 over every trace row
    but ``runs``; identical replays give identical digests, resumed or not.
    ``projection_faults`` counts the steps the projection failed (it raised,
    returned None, or a timer came due without ``on_timer``), each a
    ``faults`` row with source ``projection:<name>``; ``first_fault`` describes
    the first of them (seq, virtual time, the event or timer, the error). Fault
    *events* of the log (``Fault`` payloads) are ``faults`` rows too but are
    not counted here. For a resumed run both cover the part after the snapshot.
    ``tables`` maps table name to a polars DataFrame (built on first access)
    when the run collected its trace, else None.
    """

    run_id: str
    projection: str
    state: Any
    decisions: list
    counts: dict[str, int]
    digest: str
    tables: Mapping[str, Any] | None = None
    trace_dir: Path | None = None
    resumed_from: int | None = None
    projection_faults: int = 0
    first_fault: str | None = None


def run(
    deliveries: Iterable[Delivery],
    projection: Any,
    *,
    drops: Iterable[Drop] = (),
    run_id: str = "run",
    source: str = "",
    seed: int | None = None,
    schedule_desc: str = "identity",
    trace_dir: str | Path | None = None,
    collect: bool = True,
    snapshots: Snapshots | None = None,
    pacing: Pacing | None = None,
    progress: Callable[[int, int | None], None] | None = None,
    strict: bool = False,
    max_timer_chain: int = MAX_TIMER_CHAIN,
    event_timeout: float | None = None,
) -> RunResult:
    """Replay ``deliveries`` through ``projection`` in virtual time and trace every step.

    1. Order. A list or tuple of deliveries is sorted by ``at``, stably (ties
       keep input order); any other iterable is consumed lazily and must
       already be in ``at`` order (else ``ReplayError``).
    2. Resume. With ``snapshots=Snapshots(resume=True)`` the newest snapshot
       restores state, pending timers, counters and the digest, and the
       deliveries it covers are skipped (checked against the snapshot).
    3. Drops. ``drops`` become ``drops`` rows; they are never delivered.
    4. Timers, then the delivery. Before a delivery at ``t``, every timer due
       at or before ``t`` fires, in (due time, scheduling order); a timer
       fires at ``max(due, now)``. So at equal times timers fire before the
       delivery. Each firing and each delivery takes the next ``seq``.
    5. Apply. The clock moves to ``at``; ``projection.apply(state, event,
       ctx)`` folds the event; ``ctx.decide``/``schedule``/``cancel`` land in
       the trace. Events whose payload declares ``fault_source_field``
       (``Fault``, ``ModbusFault``...) are also ``faults`` rows.
    6. Errors. A projection that raises (any exception, ``SystemExit`` and
       ``GeneratorExit`` included; only ``KeyboardInterrupt`` ends the run),
       returns None instead of a state, or has a timer come due without an
       ``on_timer`` method gets a ``faults`` row naming the position (counted
       in ``RunResult.projection_faults``); with ``strict`` the run stops with
       ``ReplayError``, otherwise the step is undone (its decisions and timer
       changes dropped) and the run continues from the previous state. A timer
       at an impossible time or a decision that does not fit the trace raises
       ``ReplayError`` inside the step, so it is such a fault too.
    7. Drain. After the last delivery, timers keep firing until none is left.
       More than ``max_timer_chain`` firings beyond those pending when a
       chain began, with no delivery between, raise ``ReplayError``.
    8. Trace. Rows are flushed every ``BATCH_ROWS`` deliveries into the digest,
       the Parquet files under ``trace_dir`` (if given) and, with ``collect``,
       memory. Every ``snapshots.every`` deliveries a snapshot is saved.
    9. Finish. Pending timers become ``pending`` rows, the ``runs`` row
       records metadata and the digest, and files are published atomically.

    ``pacing=Pacing(k)`` replays at k times real speed; ``progress(done,
    total)`` is called now and then. ``event_timeout`` (seconds) bounds each
    ``apply``/``on_timer`` in real time: a step that takes longer is named on
    stderr and the run stops with ``EventTimeout`` (a ``ReplayError``); it
    uses a watching thread (see ``_watchdog.py``), as does an enclosing
    ``watching(...)`` block, which then covers every run inside it.
    A projection that cannot start (no ``apply``/``initial``, ``initial()``
    or ``config()`` failing) raises ``ReplayError`` naming it.
    """
    limit = check_limit(event_timeout)
    with _older_objects_frozen(), ExitStack() as stack:  # fewer objects for full collections to walk
        watch = current_watch()
        if limit is not None and (watch is None or watch.limit_s != limit):
            watch = stack.enter_context(watching(limit))
        meta = _metadata(projection, source, seed, schedule_desc)
        snapshots = snapshots or Snapshots()
        snaps = _snapshots(snapshots.every, snapshots.directory, trace_dir, snapshots.resume, meta)
        runner = _Runner(
            projection, run_id=run_id, trace_dir=trace_dir, collect=collect,
            strict=strict, max_timer_chain=max_timer_chain,
        )
        if watch is not None:
            watch.attach(runner)
            stack.callback(watch.detach, runner)
        try:
            ordered, total, identity = _ordered(deliveries)
            runner.buf.identity = identity
            skipped = runner.resume(snaps, ordered) if snapshots.resume else 0
            if not skipped:
                runner.emit_drops(list(drops))
            runner.pacer = pacing.pacer() if pacing else None
            runner.progress = Progress(progress, total) if progress else None
            runner.total = total
            runner.loop(ordered, skipped, snaps, bare=identity)
            runner.fire_until(math.inf)
            return runner.finish(meta, skipped)
        except KeyboardInterrupt:
            runner.abort()
            if runner.timed_out is not None:
                raise EventTimeout(runner.timed_out) from None
            raise
        except BaseException:
            runner.abort()
            raise


@contextmanager
def _older_objects_frozen() -> Iterator[None]:
    """Keep the objects that existed before the run out of the garbage collector's scans.

    A full collection walks every tracked object; in a process that has
    imported polars, pyarrow and DuckDB that is most of the heap, and a
    million-event replay triggers several. ``gc.freeze`` moves them to the
    permanent generation for the run and ``gc.unfreeze`` puts them back (a
    cycle among them that became garbage meanwhile is collected afterwards).
    Left alone when something else already froze objects (a pre-fork server
    keeping pages shared) or the collector is off.
    """
    if gc.get_freeze_count() or not gc.isenabled():
        yield
        return
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def _ordered(deliveries: Iterable[Delivery]) -> tuple[Iterator, int | None, bool]:
    """The items to loop over, their number if known, and whether they are bare events."""
    if isinstance(deliveries, IdentitySchedule):
        events = deliveries.events
        total = len(events) if isinstance(events, (list, tuple)) else None
        return iter(events), total, True
    if isinstance(deliveries, (list, tuple)):
        return iter(sorted(deliveries, key=_at)), len(deliveries), False
    return iter(deliveries), None, False


def _at(d: Delivery) -> int:
    return d.at


def _metadata(projection: Any, source: str, seed: int | None, schedule: str) -> dict:
    name = _name(projection)
    for method in ("apply", "initial"):
        if not callable(getattr(projection, method, None)):
            raise ReplayError(f"projection {name!r} ({type(projection).__name__}) has no {method}() "
                              "method: a projection needs initial() and apply(state, event, ctx)")
    try:
        config = projection.config() if hasattr(projection, "config") else {}
        config_json = msgspec.json.encode(config, order="sorted").decode()
    except KeyboardInterrupt:
        raise
    except BaseException as e:
        raise ReplayError(f"projection {name!r}: config() failed or returned what JSON cannot "
                          f"hold: {type(e).__name__}: {e}") from e
    return {
        "projection": name,
        "version": str(getattr(projection, "version", "")),
        "config": config_json,
        "source": str(source),
        "seed": seed,
        "schedule": schedule,
    }


def _snapshots(every, directory, trace_dir, resume, meta):
    if not every and not resume:
        return None
    if every is not None and (not isinstance(every, int) or every <= 0):
        raise ReplayError(f"snapshot_every must be a positive integer, got {every!r}")
    if directory is None:
        if trace_dir is None:
            raise ReplayError("snapshots need a directory (Snapshots(directory=...)) or a trace_dir, whose snapshots/ is used")
        directory = Path(trace_dir) / "snapshots"
    return SnapshotStore(directory, every, meta)


def _name(projection: Any) -> str:
    return str(getattr(projection, "name", None) or type(projection).__name__)


class _Runner:
    """One run's moving parts; ``run`` above is the story, this is the machinery."""

    def __init__(self, projection, *, run_id, trace_dir, collect, strict, max_timer_chain):
        self.projection = projection
        self.name = _name(projection)
        try:
            self.state = projection.initial()
        except KeyboardInterrupt:
            raise
        except BaseException as e:
            raise ReplayError(f"projection {self.name!r}: initial() raised "
                              f"{type(e).__name__}: {e}") from e
        self.on_timer = getattr(projection, "on_timer", None)
        self.faults = 0  # projection faults (steps that failed), see RunResult
        self.first_fault: str | None = None
        # Read by the watchdog thread (_watchdog.py): where the run is, whether it is stuck.
        self.paused = False  # outside the projection: pacing, flushing, publishing
        self.timed_out: str | None = None
        self.timer: tuple[int, Any] | None = None  # (seq, Timer) of the last timer fired
        self.done = 0  # deliveries handled, as of the last checkpoint
        self.total: int | None = None
        # A trace streamed to disk and not collected keeps memory flat: decisions live on disk.
        self.ctx = ReplayContext(keep_decisions=collect or trace_dir is None)
        self.now = -math.inf  # no delivery yet: the first may be at any time
        self.run_id = run_id
        self.trace_dir = Path(trace_dir) if trace_dir is not None else None
        self.writer = TraceWriter(self.trace_dir) if self.trace_dir is not None else None
        self.buf = TraceBuffer(run_id, self.writer, collect, Digest())
        self.strict = strict
        self.max_timer_chain = max_timer_chain
        self.pacer: Pacer | None = None
        self.progress: Progress | None = None

    # -- the hot loop -----------------------------------------------------
    def loop(self, items: Iterator, done: int, snaps, bare: bool) -> None:
        """Deliver every item (steps 4 to 6, and 8's checkpoints).

        ``items`` are ``Delivery`` objects, or with ``bare`` the events
        themselves, delivered at their ``recorded_at`` (the identity schedule,
        without a ``Delivery`` per event).
        """
        ctx, buf, apply = self.ctx, self.buf, self.projection.apply
        heap, fault_kinds = ctx.heap, fault_types()
        add_seq, add_item = buf.delivery_seqs.append, buf.delivery_items.append
        state, now, pacer = self.state, self.now, self.pacer
        checkpoint = self._next_checkpoint(done, snaps)
        for item in items:
            if bare:
                event = item
                at = event.recorded_at
            else:
                event = item.event
                at = item.at
            if at < now:
                self.state = state
                raise ReplayError(_out_of_order(event, at, now, bare))
            if heap and heap[0][0] <= at:  # the earliest timer (live or not) is due
                self.state = state
                state = self.fire_until(at)
            if pacer is not None:
                self.paused = True
                pacer.wait(at)
                self.paused = False
            now = ctx.now = at
            seq = ctx.cause = ctx.cause + 1
            add_seq(seq)
            add_item(item)
            if event.type in fault_kinds:
                self._event_fault(event, seq, at)
            try:
                new = apply(state, event, ctx)
            except Exception as e:
                self._failed(e, seq, at, _event_where(event))
            except KeyboardInterrupt:  # the user's Ctrl-C (or the watchdog's): the run ends
                self.state = state
                raise
            except BaseException as e:  # SystemExit, GeneratorExit...: the projection's fault
                self._failed(e, seq, at, _event_where(event))
            else:
                if new is None and state is not None:
                    self._failed(ReturnedNone("apply"), seq, at, _event_where(event))
                else:
                    state = new
            done += 1
            if done >= checkpoint:
                self.state, self.now = state, now
                self._checkpoint(done, (event.position, at), snaps)
                checkpoint = self._next_checkpoint(done, snaps)
        self.state, self.now = state, now

    def fire_until(self, t: float) -> Any:
        """Fire every timer due at or before ``t``, in order (steps 4 and 7)."""
        ctx, on_timer = self.ctx, self.on_timer
        state = self.state
        fired, bound = 0, self.max_timer_chain + len(ctx.active)
        while (due := ctx.next_due()) is not None and due <= t:
            if fired >= bound:
                raise ReplayError(_runaway(self.name, fired, ctx))
            fired += 1
            at = ctx.advance_to(max(due, ctx.now))
            if self.pacer is not None:
                self.paused = True
                self.pacer.wait(at)
                self.paused = False
            seq = ctx.cause = ctx.cause + 1
            timer = ctx.pop_timer(seq)
            self.timer = (seq, timer)
            where = f"timer {timer.key!r} due at {timer.at}"
            self.state = state
            if on_timer is None:
                self._failed(NoOnTimer(self.name, timer), seq, at, where)
                continue
            try:
                new = on_timer(state, timer, ctx)
            except KeyboardInterrupt:
                raise
            except BaseException as e:  # any failure of the projection's code is its fault
                self._failed(e, seq, at, where)
            else:
                if new is None and state is not None:
                    self._failed(ReturnedNone("on_timer"), seq, at, where)
                else:
                    state = new
            self.state = state
        return state

    # -- faults -----------------------------------------------------------
    def _event_fault(self, event, seq: int, at: int) -> None:
        try:
            payload = decode_payload(event)
            source = getattr(payload, fault_source_field(event.type))
            row = (seq, at, source, payload.kind, payload.detail)
        except Exception as e:  # a fault we cannot read is still a fault
            row = (seq, at, event.stream, "undecodable", f"position {event.position}: {e}")
        self.buf.fault_rows.append(row)

    def _failed(self, error: BaseException, seq: int, at: int, where: str) -> None:
        kind = getattr(error, "fault_kind", "projection_error")
        detail = f"{where}: {type(error).__name__}: {error}"
        self.buf.fault_rows.append((seq, at, f"projection:{self.name}", kind, detail))
        self.faults += 1
        if self.first_fault is None:
            self.first_fault = f"seq {seq} at {_iso(at)}: {detail}"
        if self.strict:
            raise ReplayError(f"projection {self.name!r} raised on {where} (seq {seq}): "
                              f"{type(error).__name__}: {error}") from error
        self._undo(seq)

    def _undo(self, seq: int) -> None:
        ctx = self.ctx
        causes = ctx.decision_causes
        n = 0
        while n < len(causes) and causes[-1 - n] == seq:
            n += 1
        ctx.undo_step(seq, len(ctx.decisions) - n)

    # -- checkpoints: flush, snapshot, progress ----------------------------
    def _next_checkpoint(self, done: int, snaps) -> int:
        """The next delivery count at which to flush, snapshot or report progress."""
        periods = [BATCH_ROWS, COMPACT_ROWS]
        if snaps is not None and snaps.every:
            periods.append(snaps.every)
        if self.progress is not None:
            periods.append(self.progress.every)
        return min(done - done % p + p for p in periods)

    def _checkpoint(self, done: int, last: tuple[int, int], snaps) -> None:
        self.done = done
        self.paused = True
        try:
            self._checkpoint_io(done, last, snaps)
        finally:
            self.paused = False

    def _checkpoint_io(self, done: int, last: tuple[int, int], snaps) -> None:
        self.ctx.settle()
        if done % BATCH_ROWS == 0:
            self.buf.flush(self.ctx)
        elif done % COMPACT_ROWS == 0:
            self.buf.compact()
        if snaps is not None and snaps.every and done % snaps.every == 0:
            self.buf.flush(self.ctx)
            snaps.save(self, done, last)
        if self.progress is not None:
            self.progress.update(done)

    def resume(self, snaps, deliveries: Iterator[Delivery]) -> int:
        """Restore from the newest snapshot and skip what it covers (step 2)."""
        if snaps is None:
            raise ReplayError("resume=True needs snapshot_dir or trace_dir")
        return snaps.restore(self, deliveries, self.buf.identity)

    def emit_drops(self, drops: list[Drop]) -> None:
        """Record the schedule's drops (step 3)."""
        if drops:
            rows = drop_rows(drops)
            self.buf.emit("drops", [list(c) for c in zip(*rows, strict=True)])

    # -- the end ----------------------------------------------------------
    def finish(self, meta: dict, resumed_from: int) -> RunResult:
        """Pending timers, last flush, digest, ``runs`` row, publish (step 9)."""
        self.paused = True
        ctx, buf = self.ctx, self.buf
        ctx.timer_rows.extend(ctx.pending_rows())
        buf.flush(ctx)
        digest = buf.digest.hexdigest()
        rows = buf.rows
        events = buf.first_deliveries + rows["drops"]
        counts = {"events": events, **{t: rows[t] for t in COUNTED}}
        run_row = [meta["projection"], meta["version"], meta["config"], meta["source"],
                   meta["seed"], meta["schedule"], *counts.values(), digest]
        buf.emit("runs", [[v] for v in run_row])
        if self.writer is not None:
            self.writer.close()
        if self.progress is not None:
            self.progress.update(rows["deliveries"], final=True)
        return RunResult(
            run_id=self.run_id, projection=self.name, state=self.state,
            decisions=ctx.decisions, counts=counts, digest=digest,
            tables=buf.frames() if buf.collected is not None else None,
            trace_dir=self.trace_dir, resumed_from=resumed_from or None,
            projection_faults=self.faults, first_fault=self.first_fault,
        )

    def where(self, stuck_s: float = 0.0) -> Where:
        """What the run is doing now, for the watchdog's thread (a best-effort reading)."""
        seq, buf = self.ctx.cause, self.buf
        step = f"step {seq}"
        try:
            if buf.delivery_seqs and buf.delivery_seqs[-1] == seq:
                item = buf.delivery_items[-1]
                event = item if buf.identity else item.event
                step = f"event at position {event.position} (type {event.type}, stream {event.stream!r})"
            elif self.timer is not None and self.timer[0] == seq:
                timer = self.timer[1]
                step = f"timer {timer.key!r} due at {_iso(timer.at)}"
        except (IndexError, AttributeError):  # the run moved on while we looked
            pass
        done = self.done + len(buf.delivery_seqs)
        return Where(done=done, total=self.total, step=step, now=self.ctx.now, stuck_s=stuck_s)

    def abort(self) -> None:
        """The run failed: close files without publishing them."""
        if self.writer is not None:
            self.writer.abort()


class ReturnedNone(Exception):
    """apply/on_timer returned None: almost always a missing ``return state``."""

    fault_kind = "projection_returned_none"

    def __init__(self, method: str) -> None:
        super().__init__(f"{method} returned None instead of the new state "
                         "(a missing `return state`?); the step was undone")


class NoOnTimer(Exception):
    """A timer came due and the projection has no ``on_timer``."""

    fault_kind = "timer_without_on_timer"

    def __init__(self, name: str, timer: Any) -> None:
        super().__init__(f"projection {name!r} scheduled timer {timer.key!r} but has no "
                         "on_timer(state, timer, ctx) method to handle it")


def _iso(ns: float) -> str:
    """Virtual ns as an ISO timestamp (UTC), for messages; the raw value when out of range."""
    try:
        return datetime.fromtimestamp(ns / 1e9, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    except (OverflowError, ValueError, OSError):
        return f"{ns} ns"


def _event_where(event) -> str:
    return (f"event at position {event.position} (id {event.id}, type {event.type}, "
            f"stream {event.stream!r})")


def _out_of_order(event, at: int, now: float, bare: bool) -> str:
    if bare:
        return _received_out_of_order(event, at, now)
    return (f"delivery of position {event.position} at {at} ns comes after one at {now} ns; "
            "an iterator of deliveries must be in `at` order (pass a list to have it sorted; "
            "an identity schedule needs events in recorded order)")


def _received_out_of_order(event, at: int, now: float) -> str:
    return (f"event at position {event.position} (stream {event.stream!r}) was received at {at} ns, "
            f"before the event delivered ahead of it ({now} ns): an identity replay delivers events "
            "in stored order at their receive times (recorded_at), so they must not go back. A store "
            "imported with --order stream keeps only each stream's order: import the log in file "
            "order (the default), or sort the events by recorded_at before replaying them")


def _runaway(name: str, fired: int, ctx: ReplayContext) -> str:
    keys = sorted(ctx.active)[:3]
    return (f"projection {name!r} fired {fired} timers without a delivery in between and keeps "
            f"scheduling more (pending keys include {keys}, virtual time {ctx.now}); it probably "
            "re-schedules forever. Fix on_timer, or raise max_timer_chain if this is intended.")

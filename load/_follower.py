"""The live projection process of a soak: follows the store and folds each event once.

It reads the store after its checkpoint, fires the projection's timers that
came due before each event (as ``replay.run`` does, on a
``replay.ReplayContext``), applies the event, and appends the event's id and
the wall time it was applied to ``projected.bin`` (24 bytes a record). Every
``checkpoint_s`` it fsyncs that file and writes a checkpoint atomically: the
position, the state (MessagePack), the live timers and the length of
``projected.bin``. Killed with SIGKILL and started again, it truncates
``projected.bin`` to the checkpoint's length and goes on from the checkpoint's
position, so each stored event is in ``projected.bin`` exactly once, unless
the fold itself is wrong (what the loss accounting would then show).

When the file ``finish`` exists in its directory as it stops (SIGTERM), the
input has ended: it fires every pending timer first, as ``replay.run`` does
after the last delivery, so its final state is comparable with a replay's.
"""

from __future__ import annotations

import os
import signal
import struct
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec

RECORD = struct.Struct("<16sq")  # event id bytes, applied wall ns


class Checkpoint(msgspec.Struct):
    """What the follower needs to resume: position, state, timers, counters."""

    position: int = 0
    applied: int = 0
    ids_bytes: int = 0
    now: int = 0
    cause: int = -1
    order: int = 0
    state: bytes = b""
    timers: list[tuple[int, int, str, Any, int]] = []
    decisions: int = 0
    faults: int = 0
    restarts: int = 0


@dataclass(slots=True)
class FollowerStats:
    """Live counters (read by the metrics endpoint)."""

    applied: int = 0
    position: int = 0
    head: int = 0
    decisions: int = 0
    faults: int = 0


def read_checkpoint(directory: Path) -> Checkpoint | None:
    """The follower's last checkpoint in ``directory``, or None."""
    path = directory / "checkpoint.msgpack"
    if not path.exists():
        return None
    return msgspec.msgpack.decode(path.read_bytes(), type=Checkpoint)


def read_projected(directory: Path, limit_bytes: int | None = None) -> list[tuple[bytes, int]]:
    """``(event id bytes, applied ns)`` of every applied event, in order."""
    path = directory / "projected.bin"
    if not path.exists():
        return []
    data = path.read_bytes()
    if limit_bytes is not None:
        data = data[:limit_bytes]
    data = data[: len(data) - len(data) % RECORD.size]
    return list(RECORD.iter_unpack(data))


class Follower:
    """Folds the store's events through a projection, checkpointing, until stopped."""

    def __init__(self, store_uri: str, projection: str, directory: Path, *,
                 checkpoint_s: float = 1.0, batch: int = 1000, metrics: Any = None) -> None:
        self.store_uri, self.directory = store_uri, Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.projection_name = projection
        self.checkpoint_s, self.batch, self.metrics = checkpoint_s, batch, metrics
        self.stats = FollowerStats()
        self.stopping = False

    def run(self, duration: float | None = None) -> int:
        """Follow until SIGTERM/SIGINT (or ``duration``); returns the applied count."""
        import replay
        from eventstore import open_store
        from projections import get

        signal.signal(signal.SIGTERM, self._stop)
        signal.signal(signal.SIGINT, self._stop)
        self.projection = get(self.projection_name)
        self.ctx = replay.ReplayContext(keep_decisions=False)
        cp = read_checkpoint(self.directory) or Checkpoint()
        self.cp = cp
        self.state = self._restore(cp)
        self.ids = (self.directory / "projected.bin").open("ab")
        self.ids.truncate(cp.ids_bytes)
        self.ids.seek(cp.ids_bytes)
        self.stats.applied, self.stats.position = cp.applied, cp.position
        self.stats.decisions, self.stats.faults = cp.decisions, cp.faults
        cp.restarts += 1
        store = self._open(open_store)
        end = None if duration is None else time.monotonic() + duration
        last_cp = time.monotonic()
        try:
            while not self.stopping and (end is None or time.monotonic() < end):
                events = self._read(store, open_store)
                if events:
                    self._fold(events)
                else:
                    time.sleep(0.01)
                if time.monotonic() - last_cp >= self.checkpoint_s:
                    self._checkpoint()
                    last_cp = time.monotonic()
        finally:
            if (self.directory / "finish").exists():  # end of input: drain timers as replay.run does
                self.state = self._fire_until(self.state, 2**63 - 1, limit=1_000_000)
            self._checkpoint()
            self.ids.close()
            store.close()
        return self.stats.applied

    def _stop(self, *_: Any) -> None:
        self.stopping = True

    def _open(self, open_store: Any) -> Any:
        while True:
            try:
                return open_store(self.store_uri)
            except Exception:
                if self.stopping:
                    raise
                time.sleep(0.2)

    def _read(self, store: Any, open_store: Any) -> list:
        try:
            self.stats.head = store.last_position()
            events = store.read_after(self.stats.position, self.batch)
        except Exception:  # a store hiccup: reopen and try again
            time.sleep(0.2)
            return []
        if self.metrics is not None:
            self.metrics.lag(self.stats.head - self.stats.position)
        return events

    def _restore(self, cp: Checkpoint) -> Any:
        ctx = self.ctx
        ctx.now, ctx.cause, ctx.order = cp.now, cp.cause, cp.order
        ctx.heap = sorted([due, order, key, payload, at, True]
                          for due, order, key, payload, at in cp.timers)
        ctx.active = {e[2]: e for e in ctx.heap}
        if not cp.state:
            return self.projection.initial()
        state_type = getattr(self.projection, "state_type", Any)
        return msgspec.msgpack.decode(cp.state, type=state_type)

    def _fold(self, events: list) -> None:
        ctx, projection = self.ctx, self.projection
        state, out = self.state, bytearray()
        for event in events:
            at = max(event.recorded_at, ctx.now)
            state = self._fire_until(state, at)
            ctx.advance_to(at)
            ctx.cause += 1
            try:
                new = projection.apply(state, event, ctx)
                state = state if new is None else new
            except Exception:  # the projection's failure: counted, the event stays applied-once
                self.stats.faults += 1
            applied = time.time_ns()
            out += RECORD.pack(event.id.bytes, applied)
            self.stats.applied += 1
            self.stats.position = event.position
            if self.metrics is not None:
                self.metrics.processed(event, applied)
        self.stats.decisions += len(ctx.decision_objs)
        ctx.decision_objs.clear()
        ctx.decision_causes.clear()
        ctx.timer_rows.clear()
        ctx.settle()
        self.ids.write(out)
        self.state = state

    def _fire_until(self, state: Any, t: int, limit: int | None = None) -> Any:
        ctx = self.ctx
        on_timer = getattr(self.projection, "on_timer", None)
        fired = 0
        while (due := ctx.next_due()) is not None and due <= t:
            fired += 1
            if limit is not None and fired > limit:
                break
            ctx.advance_to(max(due, ctx.now))
            ctx.cause += 1
            timer = ctx.pop_timer(ctx.cause)
            if on_timer is None:
                continue
            try:
                new = on_timer(state, timer, ctx)
                state = state if new is None else new
            except Exception:
                self.stats.faults += 1
        return state

    def _checkpoint(self) -> None:
        self.ids.flush()
        os.fsync(self.ids.fileno())
        ctx, cp = self.ctx, self.cp
        cp.position, cp.applied, cp.ids_bytes = self.stats.position, self.stats.applied, self.ids.tell()
        cp.now, cp.cause, cp.order = ctx.now, ctx.cause, ctx.order
        cp.state = msgspec.msgpack.encode(self.state)
        cp.timers = [tuple(e[:5]) for e in ctx.heap if e[5]]
        cp.decisions, cp.faults = self.stats.decisions, self.stats.faults
        tmp = self.directory / "checkpoint.msgpack.tmp"
        with tmp.open("wb") as f:
            f.write(msgspec.msgpack.encode(cp))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.directory / "checkpoint.msgpack")

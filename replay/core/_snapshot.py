"""Snapshots: checkpoint a run every N deliveries, resume from the newest one.

A snapshot holds what the rest of the run depends on: the projection state
(msgspec-encoded, decoded with ``projection.state_type``), the pending
timers, the seq and row counters, and the digest's running state. A resumed
run therefore ends with the same state, decisions and digest as a full
replay; its trace tables hold the rows from the snapshot on.

Timer payloads round-trip through MessagePack: keep them to builtins (str,
int, float, list, dict) or they come back as their builtin form.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec

from replay._errors import ReplayError

from ._context import ALIVE

FORMAT = 1
KEEP = 2  # snapshots kept on disk; older ones are removed after a newer one is written


@dataclass(frozen=True)
class Snapshots:
    """How a run checkpoints: every ``every`` deliveries into ``directory``
    (default: ``snapshots/`` under the trace directory); ``resume`` starts from
    the newest snapshot there."""

    every: int | None = None
    directory: str | Path | None = None
    resume: bool = False


class Snapshot(msgspec.Struct, frozen=True, kw_only=True):
    """One checkpoint of a run, after ``delivered`` deliveries."""

    format: int
    meta: dict[str, Any]
    delivered: int
    last_position: int
    last_at: int
    seq: int
    now: int
    state: bytes
    timers: list[tuple[int, int, str, Any, int]]  # due, order, key, payload, scheduled_at
    timer_order: int
    rows: dict[str, int]
    first_deliveries: int
    digest: dict[str, list]


class SnapshotStore:
    """The snapshots of one run configuration in ``directory``."""

    def __init__(self, directory: str | Path, every: int | None, meta: dict) -> None:
        self.directory = Path(directory)
        self.every = every
        self.meta = dict(meta)

    def save(self, runner: Any, delivered: int, last: tuple[int, int]) -> Path:
        """Write a snapshot of ``runner`` after ``delivered`` deliveries, atomically."""
        ctx, buf = runner.ctx, runner.buf
        where = f"after {delivered} deliveries (position {last[0]})"
        state = _encode(runner.state, f"projection {runner.name!r}: its state", where)
        timers = [tuple(e[:5]) for e in ctx.heap if e[ALIVE]]
        for timer in timers:
            _encode(timer[3], f"projection {runner.name!r}: the payload of timer {timer[2]!r}", where)
        snap = Snapshot(
            format=FORMAT, meta=self.meta, delivered=delivered,
            last_position=last[0], last_at=last[1], seq=ctx.cause, now=ctx.now,
            state=state, timers=timers,
            timer_order=ctx.order, rows=buf.rows, first_deliveries=buf.first_deliveries,
            digest=buf.digest.state,
        )
        path = self.directory / f"snapshot-{delivered:012d}.msgpack"
        tmp = path.with_suffix(".tmp")
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            with open(tmp, "wb") as f:
                f.write(msgspec.msgpack.encode(snap))
                f.flush()
                os.fsync(f.fileno())
            tmp.replace(path)
        except OSError as e:
            raise ReplayError(f"cannot write snapshot {path}: {e}") from e
        for old in self._paths()[:-KEEP]:
            old.unlink(missing_ok=True)
        return path

    def _paths(self) -> list[Path]:
        return sorted(self.directory.glob("snapshot-*.msgpack"))

    def newest(self) -> Snapshot | None:
        """The newest readable snapshot, or None when there is none."""
        paths = self._paths()
        if not paths:
            return None
        try:
            return msgspec.msgpack.decode(paths[-1].read_bytes(), type=Snapshot)
        except msgspec.DecodeError as e:
            raise ReplayError(f"snapshot {paths[-1]} is unreadable ({e}); delete it to resume "
                              "from the one before, or replay from the start") from e

    def restore(self, runner: Any, deliveries, identity: bool) -> int:
        """Load the newest snapshot into ``runner`` and consume the deliveries it covers.

        Returns how many deliveries were skipped (0 when there is no snapshot).
        Refuses a snapshot taken by another projection, configuration or schedule.
        """
        snap = self.newest()
        if snap is None:
            return 0
        if snap.format != FORMAT:
            raise ReplayError(
                f"snapshot in {self.directory} has format {snap.format}; this unbroken resumes "
                f"format {FORMAT} only: replay from the start (or delete the old snapshots)")
        self._check_meta(snap)
        last = _skip(deliveries, snap.delivered, identity)
        if last != (snap.last_position, snap.last_at):
            raise ReplayError(
                f"snapshot in {self.directory} was taken after delivery {snap.delivered} "
                f"(position {snap.last_position} at {snap.last_at}), but these deliveries differ "
                "there; resume with the same log and schedule, or replay from the start")
        _restore_runner(runner, snap)
        return snap.delivered

    def _check_meta(self, snap: Snapshot) -> None:
        for key in ("projection", "version", "config", "schedule"):
            if snap.meta.get(key) != self.meta.get(key):
                raise ReplayError(
                    f"snapshot in {self.directory} is for {key} {snap.meta.get(key)!r}, "
                    f"this run has {self.meta.get(key)!r}; use another snapshot_dir")


def _skip(items, n: int, identity: bool) -> tuple[int, int] | None:
    """Consume ``n`` items; (position, at) of the last one, or None if there were fewer."""
    last = None
    for _ in range(n):
        last = next(items, None)
        if last is None:
            return None
    if last is None:
        return None
    return (last.position, last.recorded_at) if identity else (last.event.position, last.at)


def _restore_runner(runner: Any, snap: Snapshot) -> None:
    state_type = getattr(runner.projection, "state_type", Any)
    try:
        runner.state = msgspec.msgpack.decode(snap.state, type=state_type)
    except msgspec.ValidationError as e:
        raise ReplayError(f"snapshot state does not decode as {state_type}: {e}") from e
    ctx = runner.ctx
    ctx.cause, ctx.now, ctx.order = snap.seq, snap.now, snap.timer_order
    runner.now = snap.last_at
    ctx.heap = sorted([due, order, key, payload, at, True]
                      for due, order, key, payload, at in snap.timers)
    ctx.active = {e[2]: e for e in ctx.heap}
    runner.buf.restore_counts(snap.rows, snap.first_deliveries)
    runner.buf.digest.state = {t: list(v) for t, v in snap.digest.items()}


def _encode(value: Any, what: str, where: str) -> bytes:
    """``value`` as MessagePack, or ``ReplayError`` naming what could not be encoded and its type."""
    try:
        return msgspec.msgpack.encode(value)
    except (TypeError, ValueError, OverflowError, RecursionError) as e:
        raise ReplayError(
            f"cannot snapshot {where}: {what} holds a value of a type MessagePack cannot encode "
            f"({type(value).__name__}: {e}). Snapshots need state made of msgspec Structs, "
            "dataclasses, dicts, lists, str, int, float, bool, bytes and None (set state_type so "
            "it decodes back); or replay without --snapshot-every") from e

"""Watching a run from the side: a per-step time limit, and where a run is while it runs.

A ``Watch`` is a thread that samples the run on its thread a few times a
second. It never touches the hot loop: it reads the seq of the step being
handled (``ctx.cause``) and, when that has not moved for longer than the
limit, the step is stuck. It then says on stderr which event or timer it
is, and interrupts the run's thread (``_thread.interrupt_main`` on the main
thread, an asynchronous ``KeyboardInterrupt`` on another). ``run`` turns
that interrupt into ``EventTimeout`` naming the step; a Ctrl-C of the user
stays a ``KeyboardInterrupt``.

Time spent outside the projection (pacing waits, trace flushes, snapshots,
publishing the trace) does not count: the runner marks it as ``paused``.
The same thread can report progress (``on_tick``) every ``tick_s`` seconds
with where the run is, so a run that hangs shows on which event.
"""

from __future__ import annotations

import _thread
import ctypes
import math
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from replay._errors import ReplayError


class EventTimeout(ReplayError):
    """One step of a run (an ``apply`` or an ``on_timer``) took longer than the time limit."""


@dataclass(frozen=True)
class Where:
    """What a watched run is doing: steps done, the step being handled, for how long."""

    done: int  # deliveries handled so far (approximate between checkpoints)
    total: int | None
    step: str  # "event at position 7 (type T, stream 's')" or "timer 'k' due at ..."
    now: float  # the run's virtual time, ns
    stuck_s: float  # seconds the current step has been running


_local = threading.local()


def current_watch() -> Watch | None:
    """The watch covering runs started on this thread, if any."""
    return getattr(_local, "watch", None)


@contextmanager
def watching(
    limit_s: float | None = None,
    on_tick: Callable[[Where], None] | None = None,
    tick_s: float = 1.0,
    report: Callable[[str], None] | None = None,
) -> Iterator[Watch | None]:
    """Watch every ``run`` started on this thread inside the block.

    ``limit_s`` bounds each step in real seconds (None: no limit);
    ``on_tick(where)`` is called every ``tick_s`` seconds while a run is
    going; ``report(message)`` gets the "stuck" message (default: stderr).
    With neither a limit nor a tick, nothing is started.
    """
    if limit_s is None and on_tick is None:
        yield None
        return
    watch = Watch(limit_s, on_tick, tick_s, report)
    previous = current_watch()
    _local.watch = watch
    try:
        yield watch
    finally:
        _local.watch = previous
        watch.stop()


def check_limit(limit_s: Any) -> float | None:
    """``limit_s`` as a positive finite float, or ``ReplayError``."""
    if limit_s is None:
        return None
    if isinstance(limit_s, bool) or not isinstance(limit_s, (int, float)) or not (
        math.isfinite(limit_s) and limit_s > 0
    ):
        raise ReplayError(f"the per-event time limit must be a positive number of seconds, got {limit_s!r}")
    return float(limit_s)


class Watch:
    """The watching thread of one ``watching`` block (see the module docstring)."""

    def __init__(self, limit_s, on_tick, tick_s, report) -> None:
        self.limit_s = check_limit(limit_s)
        self.on_tick = on_tick
        self.tick_s = max(float(tick_s), 0.01)
        self.report = report or _stderr
        self.thread_id = threading.get_ident()
        self.on_main = threading.current_thread() is threading.main_thread()
        self.runner: Any = None
        self._stop = threading.Event()
        interval = self.tick_s if on_tick is not None else math.inf
        if self.limit_s is not None:
            interval = min(interval, self.limit_s / 5, 0.2)
        self.interval = max(interval, 0.005)
        self._thread = threading.Thread(target=self._loop, name="unbroken-watchdog", daemon=True)
        self._thread.start()

    def attach(self, runner: Any) -> None:
        """Start watching ``runner`` (called by ``run`` on this watch's thread)."""
        self.runner = runner

    def detach(self, runner: Any) -> None:
        """Stop watching ``runner``."""
        if self.runner is runner:
            self.runner = None

    def stop(self) -> None:
        """End the watching thread."""
        self._stop.set()
        self._thread.join()

    def _loop(self) -> None:
        last: tuple[Any, int] | None = None
        since = next_tick = time.monotonic()
        while not self._stop.wait(self.interval):
            runner = self.runner
            now = time.monotonic()
            if runner is None:
                last = None
                continue
            key = (runner, runner.ctx.cause)
            if key != last or runner.paused:
                last, since = key, now
            stuck = now - since
            if self.limit_s is not None and stuck >= self.limit_s:
                self._interrupt(runner, key, stuck)
                since = now  # a projection that swallows the interrupt gets another one later
            if self.on_tick is not None and now >= next_tick:
                next_tick = now + self.tick_s
                try:
                    self.on_tick(runner.where(stuck))
                except Exception:  # noqa: S112 - progress is best effort; the run goes on
                    continue

    def _interrupt(self, runner: Any, key: tuple[Any, int], stuck: float) -> None:
        where = runner.where(stuck)
        if (runner, runner.ctx.cause) != key or self.runner is not runner:
            return  # it moved on meanwhile
        message = (f"projection {runner.name!r} spent more than {self.limit_s:g} s on the {where.step} "
                   f"(seq {key[1]}); stopped it: the per-event time limit is {self.limit_s:g} s. "
                   "A busy loop or a blocking call in apply/on_timer? Raise the limit "
                   "(--event-timeout) if the step is meant to be this slow.")
        if runner.timed_out is None:
            runner.timed_out = message
            self.report(f"unbroken: {message}")
        if self.on_main:
            _thread.interrupt_main()
        else:
            ctypes.pythonapi.PyThreadState_SetAsyncExc(
                ctypes.c_ulong(self.thread_id), ctypes.py_object(KeyboardInterrupt))


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)

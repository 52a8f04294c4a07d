"""Run every device's poller into one store until stopped, with a status line.

``Ingest`` owns the recorder and one ``DevicePoller`` per device. ``stop()``
(or SIGINT/SIGTERM in ``ingest``) ends polling; in-flight reads end within
their bound, then everything queued is stored before it returns, so every
exchange counted as stored is in the store.

While it polls, the collector's young generation waits for ``YOUNG_GC_THRESHOLD``
net new objects instead of Python's 700: every queued exchange is a handful of
live containers until its batch is appended, so at 700 the collector ran every
hundred or so exchanges, each time walking the whole queue and promoting it (50-100 ms
of collection in a 5 s run of 50 devices, 2-4 us an exchange). ``wait()`` restores it.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import signal
import time
from collections.abc import Callable
from typing import Any

from eventstore import EventStore

from .devices import Device
from .poller import DevicePoller, _wait
from .recorder import Recorder

YOUNG_GC_THRESHOLD = 20_000


class Ingest:
    """Pollers for ``devices`` appending to ``store`` (stream ``stream``) in one session."""

    def __init__(self, devices: list[Device], store: EventStore, *, stream: str = "modbus",
                 session: str | None = None, seed: int = 0, flush_every: float = 0.05,
                 max_batch: int = 1000) -> None:
        self.session = session or f"{time.time_ns():x}"
        self.recorder = Recorder(store, stream, flush_every=flush_every, max_batch=max_batch)
        # Each device's first round is due at its own fraction of its interval: n devices at
        # the same interval poll evenly spread instead of all at once (bursts make rounds late).
        self.pollers = {d.name: DevicePoller(d, self.recorder, self.session, seed=seed,
                                             phase=i / len(devices) * d.interval)
                        for i, d in enumerate(devices)}
        self.stopping = asyncio.Event()
        self.extra_status: list[Callable[[], str]] = []  # e.g. a live controller's doses
        self._tasks: list[asyncio.Task] = []
        self._gc_threshold: tuple[int, int, int] | None = None

    def start(self) -> None:
        """Start the recorder and every poller on the running loop."""
        self.recorder.start()
        self._gc_threshold = threshold = gc.get_threshold()
        gc.set_threshold(max(threshold[0], YOUNG_GC_THRESHOLD), *threshold[1:])
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(p.run(self.stopping), name=f"poll-{name}")
                       for name, p in self.pollers.items()]

    def stop(self) -> None:
        """Ask every poller to stop after its current exchange."""
        self.stopping.set()

    async def wait(self) -> None:
        """Wait for the pollers to stop, close their connections, store everything queued."""
        try:
            await asyncio.gather(*self._tasks, return_exceptions=True)
            for p in self.pollers.values():
                p.close()
            await self.recorder.close()
        finally:
            if self._gc_threshold is not None:
                gc.set_threshold(*self._gc_threshold)
                self._gc_threshold = None

    def status(self) -> dict[str, Any]:
        """Counts so far: exchanges and faults stored, devices down, and which."""
        down = sorted(n for n, p in self.pollers.items() if p.stats.down)
        return {
            "exchanges": sum(p.stats.exchanges for p in self.pollers.values()),
            "faults": sum(p.stats.faults for p in self.pollers.values()),
            "devices": len(self.pollers), "down": down, "stored": self.recorder.stored,
        }

    def status_line(self) -> str:
        """The one-line status ``unbroken ingest modbus`` prints."""
        s = self.status()
        names = f" ({', '.join(s['down'][:5])}{', ...' if len(s['down']) > 5 else ''})" if s["down"] else ""
        extra = "".join(f"  {part()}" for part in self.extra_status)
        return (f"exchanges {s['exchanges']}  faults {s['faults']}  "
                f"devices down {len(s['down'])}/{s['devices']}{names}  stored {s['stored']}{extra}")


async def ingest(devices: list[Device], store: EventStore, *, duration: float | None = None,
                 status_every: float = 5.0, print_status: Callable[[str], None] = print,
                 stream: str = "modbus", seed: int = 0, session: str | None = None,
                 controller: Callable[[Ingest], Any] | None = None, handle_signals: bool = True) -> Ingest:
    """Poll ``devices`` into ``store`` until ``duration`` passes or SIGINT/SIGTERM; returns the run.

    ``controller(run)`` may build a live controller (``control.LiveController``): it is
    run beside the pollers and allowed to finish what it started before the store closes.
    """
    run = Ingest(devices, store, stream=stream, seed=seed, session=session)
    loop = asyncio.get_running_loop()
    if handle_signals:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, run.stop)
    run.start()
    control = controller(run) if controller is not None else None
    extra = None
    if control is not None:
        run.extra_status.append(control.status)
        extra = loop.create_task(control.run(), name="live-controller")
    deadline = None if duration is None else loop.time() + duration
    try:
        while not run.stopping.is_set():
            step = status_every if deadline is None else min(status_every, deadline - loop.time())
            await _wait(run.stopping, max(step, 0.0))
            if deadline is not None and loop.time() >= deadline:
                run.stop()
            if status_every > 0:
                print_status(run.status_line())
    finally:
        run.stop()
        if extra is not None:
            extra.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await extra
            await control.stop()
        await run.wait()
        if handle_signals:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)
    return run

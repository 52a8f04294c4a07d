"""A live controller: a projection run on what the store holds, its released doses carried out.

``LiveController`` first folds every event already in the store (so its state,
the daily runtime included, derives from events and survives restarts,
HY-006), then follows each batch the recorder stores. Time is each event's
receive time; timers fire when the wall clock passes them. Decisions made
while catching up are history and are not carried out again; decisions made
live are: a RELEASED dose becomes a relay pulse (on, with the dose's effect
key and duration recorded in the command event, then off), and a RELEASED
safe state switches every pump relay off. The commands go through the
poller, so each is a command, a result and a read-back event.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import time
from typing import Any

from eventstore import EventStore, ReadFilter

from .ingest import Ingest


class _Context:
    """The projection's view of time, decisions and timers (``projections.Context``)."""

    def __init__(self) -> None:
        self.now = 0
        self.decisions: list[Any] = []
        self._timers: dict[str, tuple[int, int, Any]] = {}
        self._heap: list[tuple[int, int, str]] = []
        self._seq = 0

    def decide(self, decision: Any) -> Any:
        import msgspec

        made = msgspec.structs.replace(decision, at=self.now)
        self.decisions.append(made)
        return made

    def schedule(self, at: int, key: str, payload: Any = None) -> None:
        self._seq += 1
        self._timers[key] = (at, self._seq, payload)
        heapq.heappush(self._heap, (at, self._seq, key))

    def cancel(self, key: str) -> None:
        self._timers.pop(key, None)

    def due(self, until: int) -> tuple[str, int, Any] | None:
        """The next timer due at or before ``until`` (removed), or None."""
        while self._heap and self._heap[0][0] <= until:
            at, seq, key = heapq.heappop(self._heap)
            entry = self._timers.get(key)
            if entry is not None and entry[1] == seq:
                del self._timers[key]
                return key, at, entry[2]
        return None


class LiveController:
    """Runs ``projection`` over ``store`` (stream ``stream``) and acts through ``ingest``'s pollers."""

    def __init__(self, projection: Any, store: EventStore, ingest: Ingest, *, stream: str = "modbus",
                 tick: float = 0.01) -> None:
        self.projection = projection
        self.store = store
        self.ingest = ingest
        self.filter = ReadFilter(stream_prefixes=(stream,))
        self.tick = tick
        self.ctx = _Context()
        self.state = projection.initial()
        self.position = 0
        self.live = False
        self.executed: list[Any] = []
        self.commanded: set[str] = set()  # effect keys already carried out (from the store too)
        self._wake = asyncio.Event()
        self._tasks: set[asyncio.Task] = set()

    def catch_up(self) -> int:
        """Fold every stored event, then fire the timers that came due while no controller ran;
        returns how many events. Nothing decided here is carried out: a dose whose release fell
        while the controller was down never ran (and the replay counts it, on the safe side)."""
        count = 0
        for event in self.store.read_all(filter=self.filter):
            self._apply(event)
            count += 1
        self._fire(time.time_ns())
        self.ctx.decisions.clear()
        return count

    def _apply(self, event: Any) -> None:
        if event.type == "ModbusWriteCommand":
            from eventstore.payloads import decode_payload

            key = getattr(decode_payload(event), "effect_key", "")
            if key:
                self.commanded.add(key)
        self._fire(event.recorded_at)
        self.ctx.now = max(self.ctx.now, event.recorded_at)
        self.state = self.projection.apply(self.state, event, self.ctx)
        self.position = max(self.position, event.position)

    def _fire(self, until: int) -> None:
        from projections import Timer

        while (due := self.ctx.due(until)) is not None:
            key, at, payload = due
            self.ctx.now = max(self.ctx.now, at)
            self.state = self.projection.on_timer(self.state, Timer(key, at, payload), self.ctx)

    async def run(self) -> None:
        """Catch up, then follow the recorder until cancelled, carrying out live decisions."""
        self.catch_up()
        self.live = True
        await self._safe_start()
        self.ingest.recorder.listeners.append(lambda _position: self._wake.set())
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.tick)
            self._wake.clear()
            for event in self.store.read_after(self.position, 10_000, self.filter):
                self._apply(event)
            self._fire(time.time_ns())
            self._act()

    def _act(self) -> None:
        decisions, self.ctx.decisions = self.ctx.decisions, []
        for d in decisions:
            if str(d.status) != "released":
                continue
            task = asyncio.get_running_loop().create_task(self._carry_out(d))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _safe_start(self) -> None:
        """Switch every pump relay off first: a pulse cut short by a crash may have left one on."""
        config = self.projection.config()
        for poller in self.ingest.pollers.values():
            for relay in (config["nutrient_relay"], config["ph_relay"]):
                try:
                    poller.device.register(relay)
                except KeyError:
                    continue
                await poller.write(relay, False, reason="startup")

    async def _carry_out(self, decision: Any) -> None:
        key = decision.effect_key or ""
        if decision.kind == "dose" and key in self.commanded:
            return  # carried out already (by this process or one before it)
        self.commanded.add(key)
        self.executed.append(decision)
        config = self.projection.config()
        if decision.kind == "dose":
            device, pump = decision.subject.split("/", 1)
            relay = config["nutrient_relay"] if pump == "nutrient" else config["ph_relay"]
            poller = self.ingest.pollers.get(device)
            if poller is None:
                return
            duration_ms = int(config["dose_s"] * 1000)
            back = await poller.write(relay, True, effect_key=decision.effect_key or "",
                                      duration_ms=duration_ms, reason="dose")
            if back is not None:
                await asyncio.sleep(duration_ms / 1000)  # the pulse itself
            await poller.write(relay, False, reason="dose end")
        elif decision.kind == "safe-state":
            poller = self.ingest.pollers.get(decision.subject)
            if poller is not None:
                for relay in (config["nutrient_relay"], config["ph_relay"]):
                    await poller.write(relay, False, reason="safe state")

    async def stop(self) -> None:
        """Let pulses in progress finish (their off command included)."""
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    def status(self) -> str:
        """A short status for the ingest status line."""
        doses = sum(1 for d in self.executed if d.kind == "dose")
        safe = sum(1 for d in self.executed if d.kind == "safe-state")
        return f"doses {doses}  safe-state {safe}"

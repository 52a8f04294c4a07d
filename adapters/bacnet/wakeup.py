"""Prompt cross-process wake-ups for a live follower of the embedded store.

A subscription in one process sees another process's append only at its next
poll (50 ms). Every commit to the embedded store writes its SQLite WAL file
(``<db>-wal``, beside the database file), so an inotify watch on the
directory wakes the follower within a millisecond of any writer's commit,
whichever process it is, with no cooperation from the writer. The poll stays
as the fallback (no inotify: another OS, or a memory/KurrentDB store).

``PromptFollow(store)`` wraps a store for ``eventstore.Subscription``: the
subscription calls its ``wait_for_append_async`` between empty pages, and it
returns as soon as the WAL file changes.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import os
import struct
import time
from pathlib import Path
from typing import Any

from eventstore import NO_FILTER, EventStore, ReadFilter, RecordedEvent, Subscription

_IN_MODIFY = 0x00000002
_IN_CLOSE_WRITE = 0x00000008
_IN_CREATE = 0x00000100
_IN_MOVED_TO = 0x00000080
_IN_NONBLOCK = 0o4000
_IN_CLOEXEC = 0o2000000
_HEADER = struct.Struct("iIII")
SETTLE_SECONDS = 0.02
"""After a WAL write, how long to keep looking again for its commit."""
SETTLE_POLL = 0.001
"""The first look again; each next one waits twice as long (1, 2, 4, 8 ms...): with a writer
committing every 10 ms, looking every millisecond meant a thread hop and an empty read per
millisecond, all the time."""


def _libc() -> Any:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        libc = ctypes.CDLL(name, use_errno=True)
        libc.inotify_init1  # noqa: B018 - the symbol exists only on Linux
    except (OSError, AttributeError):
        return None
    return libc


class WalWatch:
    """An inotify watch on the directory of a SQLite database, firing on its ``-wal`` file."""

    def __init__(self, db_path: Path) -> None:
        self.db_path = Path(db_path).resolve()
        self.names = {self.db_path.name + "-wal", self.db_path.name}
        self.fd = -1
        self.wakeups = 0
        libc = _libc()
        if libc is None:
            return
        fd = libc.inotify_init1(_IN_NONBLOCK | _IN_CLOEXEC)
        if fd < 0:
            return
        mask = _IN_MODIFY | _IN_CLOSE_WRITE | _IN_CREATE | _IN_MOVED_TO
        if libc.inotify_add_watch(fd, str(self.db_path.parent).encode(), mask) < 0:
            os.close(fd)
            return
        self.fd = fd

    @property
    def active(self) -> bool:
        """True when the watch works (Linux with inotify)."""
        return self.fd >= 0

    def drain(self) -> bool:
        """Read pending inotify events; True if one concerned the database or its WAL."""
        hit = False
        while True:
            try:
                data = os.read(self.fd, 65536)
            except (BlockingIOError, InterruptedError):
                return hit
            except OSError:
                return hit
            offset = 0
            while offset + _HEADER.size <= len(data):
                _wd, _mask, _cookie, length = _HEADER.unpack_from(data, offset)
                raw = data[offset + _HEADER.size: offset + _HEADER.size + length]
                offset += _HEADER.size + length
                if raw.rstrip(b"\0").decode(errors="replace") in self.names:
                    hit = True

    def close(self) -> None:
        """Stop watching."""
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class PromptFollow:
    """A store as ``eventstore.Subscription`` sees it, woken at once by a WAL write."""

    def __init__(self, store: EventStore) -> None:
        self.store = store
        path = getattr(store, "path", None)
        self.watch = WalWatch(Path(path)) if isinstance(path, Path) else None
        if self.watch is not None and not self.watch.active:
            self.watch = None
        self._event: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._woken_at = 0.0
        self._settle = SETTLE_POLL

    @property
    def prompt(self) -> bool:
        """True when cross-process appends wake the follower (else it polls)."""
        return self.watch is not None

    def subscribe(self, from_position: int | None = None,
                  filter: ReadFilter = NO_FILTER) -> Subscription:
        """``store.subscribe`` with prompt wake-ups: catch up, then follow live."""
        return Subscription(self, from_position or 0, filter)

    # -- what Subscription asks ---------------------------------------------
    def last_position(self) -> int:
        """The store's newest position."""
        return self.store.last_position()

    def read_after(self, checkpoint: int, limit: int, filter: ReadFilter) -> list[RecordedEvent]:
        """Up to ``limit`` events after ``checkpoint``."""
        return self.store.read_after(checkpoint, limit, filter)

    def wait_for_append(self, after_position: int, timeout: float) -> bool:
        """The store's own wait (used by the sync iterator)."""
        return self.store.wait_for_append(after_position, timeout)

    async def wait_for_append_async(self, after_position: int, timeout: float) -> bool:
        """Wait for a WAL write (any process) or ``timeout``; True when woken."""
        if self.watch is None:
            return await self.store.wait_for_append_async(after_position, timeout)
        event = self._ensure_reader()
        if self.watch.drain():
            self._woken()
            return True
        if time.monotonic() - self._woken_at < SETTLE_SECONDS:
            # A WAL write may come a moment before the commit is visible to readers:
            # look again shortly instead of waiting for the next write or the poll.
            timeout = min(timeout, self._settle)
            self._settle *= 2
        event.clear()
        try:
            await asyncio.wait_for(event.wait(), timeout)
        except TimeoutError:
            return False
        return True

    def _ensure_reader(self) -> asyncio.Event:
        loop = asyncio.get_running_loop()
        if self._event is None or self._loop is not loop:
            self._event = asyncio.Event()
            self._loop = loop
            loop.add_reader(self.watch.fd, self._on_readable)
        return self._event

    def _on_readable(self) -> None:
        if self.watch is not None and self.watch.drain() and self._event is not None:
            self.watch.wakeups += 1
            self._woken()
            self._event.set()

    def _woken(self) -> None:
        self._woken_at = time.monotonic()
        self._settle = SETTLE_POLL

    def close(self) -> None:
        """Stop watching (the store stays open)."""
        if self.watch is not None:
            if self._loop is not None and not self._loop.is_closed():
                try:
                    self._loop.remove_reader(self.watch.fd)
                except (RuntimeError, ValueError):
                    pass
            self.watch.close()
            self.watch = None

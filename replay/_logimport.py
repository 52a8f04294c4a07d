"""``import_log``: a production log into an event store, idempotently, in batches."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterable
from typing import Final, Literal

from eventstore import ANY, EventStore
from eventstore._validation import MAX_BATCH

from ._logio import _REJECTED_BY_STORE, ImportReport, _parse, _Pending, _prepare, _Tally
from ._logread import unit_of
from ._logreject import Rejection

ORDERS: Final = ("file", "stream")


def import_log(
    path: str | os.PathLike[str],
    store: EventStore,
    mapping: object = None,
    quarantine: str | os.PathLike[str] | None = None,
    batch: int = 1000,
    progress: Callable[[ImportReport], None] | None = None,
    *,
    format: str | None = None,
    order: Literal["file", "stream"] = "file",
) -> ImportReport:
    """Append every good line of ``path`` to ``store``; quarantine the rest; return the counts.

    Event ids are deterministic (see ``_logrecord``), and the store dedupes ids
    durably, so importing the same file again adds nothing (``imported == 0``)
    and an import cut short can simply be run again. Lines are read ``batch`` at
    a time and appended with ``expected=ANY``. ``order="file"`` (the default)
    appends runs of consecutive lines of one stream, so global positions keep
    the file's order across streams (which replays depend on); ``"stream"``
    groups each batch by stream for fewer, larger appends, reordering lines of
    different streams within a batch. Bad lines (and lines the store refuses)
    go to ``quarantine`` (default: ``<log>.rejected.jsonl``, created only when
    needed). ``progress`` is called with the counts after every batch. Store
    errors other than refusals of one event (disk full, unreachable) propagate.
    """
    if not isinstance(batch, int) or isinstance(batch, bool) or not 1 <= batch <= MAX_BATCH:
        raise ValueError(f"batch must be an integer from 1 to {MAX_BATCH}, got {batch!r}")
    if order not in ORDERS:
        raise ValueError(f"order must be one of {ORDERS}, got {order!r}")
    target = quarantine if quarantine is not None else f"{os.fspath(path)}.rejected.jsonl"
    source, mapping_, format_, sink = _prepare(path, mapping, format, target)
    tally = _Tally(source, sink)
    appender = _Appender(store, tally, unit_of(format_))
    with sink:
        chunk: list[_Pending] = []
        for item in _parse(source, mapping_, format_, tally):
            chunk.append(item)
            if len(chunk) >= batch:
                appender.flush(chunk, order, progress)
        appender.flush(chunk, order, progress)
    return tally.report()


class _Appender:
    """Appends chunks of good lines, counting new and already-present events."""

    def __init__(self, store: EventStore, tally: _Tally, unit: str) -> None:
        self.store, self.tally, self.unit = store, tally, unit

    def flush(self, chunk: list[_Pending], order: str, progress: Callable[[ImportReport], None] | None) -> None:
        if chunk:
            for group in _groups(chunk, order):
                self._append(group)
            chunk.clear()
        if progress is not None:
            progress(self.tally.report())

    def _append(self, group: list[_Pending]) -> None:
        stream = group[0].log_event.event.stream or ""
        before = self.store.last_position()
        try:
            result = self.store.append(stream, [p.log_event.event for p in group], ANY)
        except _REJECTED_BY_STORE:
            # Partly repeated ids (a re-import batched differently) or one refused
            # event: settle each line on its own so only the culprit is rejected.
            for item in group:
                self._append_one(stream, item)
            return
        self._count(result.first_position > before, len(group))

    def _append_one(self, stream: str, item: _Pending) -> None:
        before = self.store.last_position()
        try:
            result = self.store.append(stream, [item.log_event.event], ANY)
        except _REJECTED_BY_STORE as e:
            source = str(self.tally.source)
            self.tally.reject(Rejection(source, item.where, self.unit, f"the store refused it: {e}", item.raw))
            return
        self._count(result.first_position > before, 1)

    def _count(self, written: bool, n: int) -> None:
        # A repeated batch returns its original positions, all at or before `before`.
        if written:
            self.tally.imported += n
        else:
            self.tally.present += n


def _groups(chunk: list[_Pending], order: str) -> Iterable[list[_Pending]]:
    """Runs of one stream, split where an id repeats (one append may not hold an id twice)."""
    items = chunk
    if order == "stream":
        first: dict[str, int] = {}
        for index, item in enumerate(chunk):
            first.setdefault(item.log_event.event.stream or "", index)
        items = sorted(chunk, key=lambda p: first[p.log_event.event.stream or ""])
    group: list[_Pending] = []
    ids: set[uuid.UUID] = set()
    for item in items:
        event = item.log_event.event
        if group and (event.stream != group[0].log_event.event.stream or event.id in ids):
            yield group
            group, ids = [], set()
        group.append(item)
        ids.add(event.id)  # type: ignore[arg-type]
    if group:
        yield group

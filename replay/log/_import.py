"""``import_log``: a production log into an event store, idempotently, in batches."""

from __future__ import annotations

import asyncio
import hashlib
import os
import uuid
from collections.abc import Callable, Iterable
from typing import Final, Literal

from eventstore import ANY, AppendResult, EventStore, InvalidEvent, NewEvent
from eventstore.payloads import Rejected
from eventstore.validation import MAX_BATCH, check_stream

from ._mapping import LogError
from ._parse import REJECTED_BY_STORE, ImportReport, PendingLine, Tally, open_log, parse_lines
from ._read import unit_of
from ._record import NAMESPACE
from ._reject import Rejection

ORDERS: Final = ("file", "stream")
MAX_REJECTED_RAW: Final = 8 * 1024 * 1024  # base64 in the Rejected payload stays under the data limit


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
    rejected_stream: str | None = None,
) -> ImportReport:
    """Append every good line of ``path`` to ``store``; quarantine the rest; return the counts.

    Event ids are deterministic (see ``_logrecord``), and the store dedupes ids
    durably, so importing the same file again adds nothing (``imported == 0``)
    and an import cut short can simply be run again. Lines are read ``batch`` at
    a time and appended with ``expected=ANY``. ``order="file"`` (the default)
    appends runs of consecutive lines of one stream, so global positions keep
    the file's order across streams (which replays depend on); ``"stream"``
    groups each batch by stream for fewer, larger appends, reordering lines of
    different streams within a batch. On the embedded store the appends of a
    batch are submitted together and share one commit. Lines that repeat an id
    within a batch, or belong to an append the store refused as a whole, are
    settled one by one after the rest of their batch. Bad lines (and lines the store refuses)
    go to ``quarantine`` (default: ``<log>.rejected.jsonl``, created only when
    needed). With ``rejected_stream``, each bad line is also appended there as a
    ``Rejected`` event (raw bytes, reason, ``where``; id derived from the file,
    line and bytes, so re-import adds none twice), at the moment it is found.
    ``progress`` is called with the counts after every batch. Store
    errors other than refusals of one event (disk full, unreachable) propagate.
    """
    if not isinstance(batch, int) or isinstance(batch, bool) or not 1 <= batch <= MAX_BATCH:
        raise ValueError(f"batch must be an integer from 1 to {MAX_BATCH}, got {batch!r}")
    if order not in ORDERS:
        raise ValueError(f"order must be one of {ORDERS}, got {order!r}")
    target = quarantine if quarantine is not None else f"{os.fspath(path)}.rejected.jsonl"
    source, mapping_, format_, sink = open_log(path, mapping, format, target)
    keep = None if rejected_stream is None else _rejected_events(store, rejected_stream)
    tally = Tally(source, sink, on_reject=keep)
    appender = _Appender(store, tally, unit_of(format_))
    with sink:
        chunk: list[PendingLine] = []
        for item in parse_lines(source, mapping_, format_, tally):
            chunk.append(item)
            if len(chunk) >= batch:
                appender.flush(chunk, order, progress)
        appender.flush(chunk, order, progress)
    return tally.report()


class _Appender:
    """Appends chunks of good lines, counting new and already-present events."""

    def __init__(self, store: EventStore, tally: Tally, unit: str) -> None:
        self.store, self.tally, self.unit = store, tally, unit
        self.pipelined = _commits_in_submission_order(store)

    def flush(self, chunk: list[PendingLine], order: str, progress: Callable[[ImportReport], None] | None) -> None:
        if chunk:
            first, later = _split_repeats(chunk)
            groups = list(_groups(first, order))
            # Fresh writes land after `before`; a repeated batch returns its original positions.
            before = self.store.last_position()
            for group, outcome in zip(groups, self._submit(groups), strict=True):
                if isinstance(outcome, REJECTED_BY_STORE):
                    later.extend(group)  # settled line by line, so only the culprit is rejected
                elif isinstance(outcome, BaseException):
                    raise outcome
                else:
                    self._count(outcome.first_position > before, len(group))
            for item in sorted(later, key=lambda p: p.where):
                self._append_one(item)
            chunk.clear()
        if progress is not None:
            progress(self.tally.report())

    def _submit(self, groups: list[list[PendingLine]]) -> list[AppendResult | BaseException]:
        requests = [(g[0].log_event.event.stream or "", [p.log_event.event for p in g]) for g in groups]
        if self.pipelined and len(requests) > 1:
            return asyncio.run(_append_all(self.store, requests))
        outcomes: list[AppendResult | BaseException] = []
        for stream, events in requests:
            try:
                outcomes.append(self.store.append(stream, events, ANY))
            except REJECTED_BY_STORE as e:
                outcomes.append(e)
        return outcomes

    def _append_one(self, item: PendingLine) -> None:
        before = self.store.last_position()
        event = item.log_event.event
        try:
            result = self.store.append(event.stream or "", [event], ANY)
        except REJECTED_BY_STORE as e:
            source = str(self.tally.source)
            self.tally.reject(Rejection(source, item.where, self.unit, f"the store refused it: {e}", item.raw))
            return
        self._count(result.first_position > before, 1)

    def _count(self, written: bool, n: int) -> None:
        if written:
            self.tally.imported += n
        else:
            self.tally.present += n


def _rejected_events(store: EventStore, stream: str) -> Callable[[Rejection], None]:
    """Appends each rejection to ``stream`` as a ``Rejected`` event with a deterministic id."""
    try:
        check_stream(stream)
    except InvalidEvent as e:
        raise LogError(f"rejected stream: {e}") from e

    def keep(rejection: Rejection) -> None:
        raw = rejection.raw[:MAX_REJECTED_RAW]
        reason = rejection.reason
        if len(raw) < len(rejection.raw):
            reason += f" (raw bytes cut to {len(raw)} of {len(rejection.raw)}; the source file has them all)"
        where = f"{rejection.unit} {rejection.where}"
        name = "\x00".join(("rejected", rejection.source, where, hashlib.sha256(rejection.raw).hexdigest()))
        payload = Rejected(rejection.source, reason, raw, where=where)
        store.append(stream, [NewEvent.of(payload, id=uuid.uuid5(NAMESPACE, name))], ANY)

    return keep


def _commits_in_submission_order(store: EventStore) -> bool:
    """True for stores whose concurrent ``append_async`` calls commit in the order they were made.

    The embedded store queues requests in call order and its committer writes
    them in that order, one transaction per queue drain: many appends share an
    fsync and positions still follow the file. Other stores append one at a
    time (their default ``append_async`` runs on threads, which may reorder).
    """
    try:
        from eventstore.embedded import EmbeddedStore
    except ImportError:
        return False
    return isinstance(store, EmbeddedStore)


async def _append_all(
    store: EventStore, requests: list[tuple[str, list[NewEvent]]]
) -> list[AppendResult | BaseException]:
    # Tasks take their first step in creation order, so the store sees the requests in file order.
    tasks = [asyncio.ensure_future(store.append_async(stream, events, ANY)) for stream, events in requests]
    return await asyncio.gather(*tasks, return_exceptions=True)


def _split_repeats(chunk: list[PendingLine]) -> tuple[list[PendingLine], list[PendingLine]]:
    """Lines whose id first appears here, and later repeats of an id within the chunk."""
    seen: set[uuid.UUID] = set()
    first: list[PendingLine] = []
    later: list[PendingLine] = []
    for item in chunk:
        event_id = item.log_event.event.id
        (later if event_id in seen else first).append(item)
        seen.add(event_id)  # type: ignore[arg-type]
    return first, later


def _groups(chunk: list[PendingLine], order: str) -> Iterable[list[PendingLine]]:
    """Runs of consecutive lines of one stream (ids are unique within the chunk by now)."""
    items = chunk
    if order == "stream":
        first: dict[str, int] = {}
        for index, item in enumerate(chunk):
            first.setdefault(item.log_event.event.stream or "", index)
        items = sorted(chunk, key=lambda p: first[p.log_event.event.stream or ""])
    group: list[PendingLine] = []
    for item in items:
        if group and item.log_event.event.stream != group[0].log_event.event.stream:
            yield group
            group = []
        group.append(item)
    if group:
        yield group

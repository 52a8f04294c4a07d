"""``import_log``: a production log into an event store, idempotently, in batches."""

from __future__ import annotations

import contextlib
import gc
import hashlib
import os
import uuid
from collections.abc import Callable, Iterator
from typing import Final, Literal

from eventstore import ANY, EventStore, InvalidEvent, NewEvent, StoreDamaged
from eventstore.payloads import Rejected
from eventstore.validation import MAX_BATCH, MAX_MULTI_EVENTS, check_stream

from ._ahead import good_lines
from ._mapping import LogError
from ._parse import REJECTED_BY_STORE, ImportReport, PendingLine, Tally, open_log
from ._read import unit_of
from ._record import NAMESPACE
from ._reject import Rejection

ORDERS: Final = ("file", "stream")
# Lines per append_multi, one transaction each. An interleaved log's random ids and streams dirty pages all
# over two indexes; the pages a transaction writes stop growing once it touches most of them, so bigger
# transactions write fewer pages per line (raw SQLite over 1M lines: 14.7 CPU-s in 10,000-line
# transactions, 9.6 in 50,000-line ones; bench_import). Memory holds one batch (~1 KB a line).
DEFAULT_BATCH: Final = 50_000
MAX_REJECTED_RAW: Final = 8 * 1024 * 1024  # base64 in the Rejected payload stays under the data limit


def import_log(
    path: str | os.PathLike[str],
    store: EventStore,
    mapping: object = None,
    quarantine: str | os.PathLike[str] | None = None,
    batch: int = DEFAULT_BATCH,
    progress: Callable[[ImportReport], None] | None = None,
    *,
    format: str | None = None,
    order: Literal["file", "stream"] = "file",
    rejected_stream: str | None = None,
    read_ahead: bool | None = None,
) -> ImportReport:
    """Append every good line of ``path`` to ``store``; quarantine the rest; return the counts.

    Event ids are deterministic (see ``_logrecord``), and the store dedupes ids
    durably, so importing the same file again adds nothing (``imported == 0``)
    and an import cut short can simply be run again. Lines are read ``batch`` at
    a time and appended with ``expected=ANY``. ``order="file"`` (the default)
    appends runs of consecutive lines of one stream, so global positions keep
    the file's order across streams (which replays depend on); ``"stream"``
    groups each batch by stream for fewer, larger appends, reordering lines of
    different streams within a batch. Each batch is one ``append_multi``: on
    stores with ``capabilities.atomic_append_multi`` (memory, embedded) one
    transaction, so an import that fails (a locked or full store) or is killed
    leaves whole batches, a prefix of the file, and running it again ends with
    the store a clean import gives. Lines the store refuses are settled one
    by one within their batch (see ``_Appender``). Bad lines (and lines the store refuses)
    go to ``quarantine`` (default: ``<log>.rejected.jsonl``, created only when
    needed). With ``rejected_stream``, each bad line is also appended there as a
    ``Rejected`` event (raw bytes, reason, ``where``; id derived from the file,
    line and bytes, so re-import adds none twice), at the moment it is found.
    ``progress`` is called with the counts after every batch. Python's
    cyclic garbage collector is paused while the lines are imported (see
    ``cyclic_gc_paused``). ``read_ahead``
    reads and converts the lines in a second process (``_ahead``; same lines,
    rejections and errors); by default for logs of ``_ahead.MIN_BYTES`` or
    more when a second CPU is there. Store
    errors other than refusals of one event (disk full, unreachable) propagate.
    """
    if not isinstance(batch, int) or isinstance(batch, bool) or not 1 <= batch <= MAX_MULTI_EVENTS:
        raise ValueError(f"batch must be an integer from 1 to {MAX_MULTI_EVENTS}, got {batch!r}")
    if order not in ORDERS:
        raise ValueError(f"order must be one of {ORDERS}, got {order!r}")
    target = quarantine if quarantine is not None else f"{os.fspath(path)}.rejected.jsonl"
    source, mapping_, format_, sink = open_log(path, mapping, format, target)
    keep = None if rejected_stream is None else _rejected_events(store, rejected_stream)
    tally = Tally(source, sink, on_reject=keep)
    problems = store.check_integrity()
    if problems:
        raise StoreDamaged(
            f"{store.uri} is damaged ({'; '.join(problems[:3])}); refusing to import into it. "
            "Run `unbroken store verify` for details and `unbroken store salvage` to recover its events"
        )
    appender = _Appender(store, tally, unit_of(format_))
    with sink, cyclic_gc_paused():
        chunk: list[PendingLine] = []
        for item in good_lines(source, mapping_, format_, tally, read_ahead):
            chunk.append(item)
            if len(chunk) >= batch:
                appender.flush(chunk, order, progress)
        appender.flush(chunk, order, progress)
    return tally.report()


@contextlib.contextmanager
def cyclic_gc_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector for the block (reference counting still frees everything).

    An import allocates several container objects per line and keeps a
    whole batch of them alive, none of them in a reference cycle; with the
    collector on, it scanned those objects again and again as they piled up
    (~40% of the importing process's CPU on a 200k-line log). Cycles made
    meanwhile (by any thread) are only collected later. The collector's state
    is restored afterwards, so a caller that had it off keeps it off.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


class _Appender:
    """Appends chunks of good lines, counting new and already-present events.

    Each chunk is one ``append_multi``: its runs of one stream's lines in
    file order, one transaction on stores that have ``atomic_append_multi``.
    When the store refuses one request (a line repeating an id stored in
    another stream, or a run that repeats only some stored ids because an
    earlier import was cut short inside it), that run is split into single
    lines and the chunk is tried again; a single line the store refuses is
    quarantined and the chunk tried without it. Nothing is written by a
    refused attempt, so positions always follow the file.
    """

    def __init__(self, store: EventStore, tally: Tally, unit: str) -> None:
        self.store, self.tally, self.unit = store, tally, unit

    def flush(self, chunk: list[PendingLine], order: str, progress: Callable[[ImportReport], None] | None) -> None:
        if chunk:
            first, later = _split_repeats(chunk)
            # Repeats of an id already in this chunk write nothing (present, or refused): settle them after it.
            self._commit(_groups(first, order))
            self._commit([[item] for item in later])
            chunk.clear()
        if progress is not None:
            progress(self.tally.report())

    def _commit(self, groups: list[list[PendingLine]]) -> None:
        # Fresh writes land after `before`; a repeated run returns its original positions. Fixed for the
        # whole chunk: on a store without atomic append_multi a failed try may have stored a prefix, which
        # the next try returns as a repeat and must still count as imported.
        before = self.store.last_position()
        requests = [_request(g) for g in groups]
        while groups:
            try:
                results = self.store.append_multi(requests)
            except REJECTED_BY_STORE as e:
                index = getattr(e, "request_index", None)
                if index is None or not 0 <= index < len(groups):
                    raise
                culprit = groups[index]
                if len(culprit) > 1:
                    groups[index : index + 1] = [[item] for item in culprit]
                    requests[index : index + 1] = [_request([item]) for item in culprit]
                else:
                    del groups[index], requests[index]
                    self._reject(culprit[0], e)
                continue
            written = sum([len(g) for g, r in zip(groups, results, strict=True) if r.first_position > before])
            self.tally.imported += written
            self.tally.present += sum(map(len, groups)) - written
            return

    def _reject(self, item: PendingLine, error: BaseException) -> None:
        source = str(self.tally.source)
        self.tally.reject(Rejection(source, item.where, self.unit, f"the store refused it: {error}", item.raw))



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


def _request(group: list[PendingLine]) -> tuple[str, list[NewEvent], object]:
    """The ``append_multi`` request of one run of lines."""
    return (group[0].log_event.event.stream or "", [p.log_event.event for p in group], ANY)


def _split_repeats(chunk: list[PendingLine]) -> tuple[list[PendingLine], list[PendingLine]]:
    """Lines whose id first appears here, and later repeats of an id within the chunk."""
    seen: set[int] = set()  # the ids' ints: they hash in C, a UUID's hash is Python code
    first: list[PendingLine] = []
    later: list[PendingLine] = []
    for item in chunk:
        event_id = item.log_event.event.id.int  # type: ignore[union-attr]
        (later if event_id in seen else first).append(item)
        seen.add(event_id)
    return first, later


def _groups(chunk: list[PendingLine], order: str) -> list[list[PendingLine]]:
    """Runs of consecutive lines of one stream, at most ``MAX_BATCH`` each (ids are unique within the chunk by now)."""
    items = chunk
    if order == "stream":
        first: dict[str, int] = {}
        for index, item in enumerate(chunk):
            first.setdefault(item.log_event.event.stream or "", index)
        items = sorted(chunk, key=lambda p: first[p.log_event.event.stream or ""])
    groups: list[list[PendingLine]] = []
    group: list[PendingLine] = []
    stream = None
    for item in items:
        this = item.log_event.event.stream
        if this != stream or len(group) >= MAX_BATCH:
            group = [item]
            groups.append(group)
            stream = this
        else:
            group.append(item)
    return groups

"""What reading a log for replay and importing it into a store share.

Each line of the file becomes a ``PendingLine`` (a validated event with its
receive time and raw bytes) or a rejection counted by a ``Tally`` and sent,
whole, to the quarantine file.
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Callable, Iterator
from itertools import count
from operator import attrgetter
from pathlib import Path
from typing import Final

import msgspec

from eventstore import DuplicateIdConflict, InvalidEvent, InvalidPayload, Metadata, RecordedEvent

from ._mapping import LogError, LogMapping, load_mapping
from ._read import JsonBlock, detect_format, read_lines, unit_of
from ._record import BadRecord, LogEvent, RecordConverter, TypedLines
from ._reject import Quarantine, Rejection, check_output_path

MAX_SHOWN_REJECTIONS: Final = 20
EMPTY_METADATA: Final = Metadata()
REJECTED_BY_STORE: Final = (DuplicateIdConflict, InvalidEvent, InvalidPayload)


class ImportReport(msgspec.Struct, frozen=True):
    """What happened to each line of a log.

    ``read`` = ``imported`` + ``already_present`` + ``rejected``. Lines already
    in the store (an earlier import, or a repeat within the file) count as
    ``already_present``; re-importing a file gives ``imported == 0``.
    """

    source: str
    read: int = 0
    imported: int = 0
    already_present: int = 0
    rejected: int = 0
    quarantine: str | None = None
    first_rejections: tuple[str, ...] = ()


class Tally:
    """Mutable counts behind an ``ImportReport``."""

    def __init__(
        self,
        source: Path,
        quarantine: Quarantine,
        on_reject: Callable[[Rejection], None] | None = None,
        strict: bool = False,
    ) -> None:
        self.source, self.quarantine = source, quarantine
        self.on_reject, self.strict = on_reject, strict
        self.read = self.imported = self.present = self.rejected = 0
        self.shown: list[str] = []

    def reject(self, rejection: Rejection) -> None:
        """Count one bad line and send it to the quarantine (or fail, when strict)."""
        if self.strict:
            raise LogError(f"{rejection.describe()} (pass quarantine= or on_reject= to skip bad lines)")
        if self.on_reject is not None:
            self.on_reject(rejection)
        self.rejected += 1
        if len(self.shown) < MAX_SHOWN_REJECTIONS:
            self.shown.append(rejection.describe())
        self.quarantine.write(rejection)

    def report(self) -> ImportReport:
        """The counts so far as an ``ImportReport``."""
        written = self.quarantine.path if self.quarantine.written else None
        return ImportReport(
            str(self.source), self.read, self.imported, self.present, self.rejected,
            None if written is None else str(written), tuple(self.shown),
        )


class PendingLine(msgspec.Struct):
    """A good line waiting for its append: kept with its raw bytes in case the store refuses it."""

    log_event: LogEvent
    where: int
    raw: bytes


def parse_lines(path: Path, mapping: LogMapping, format: str, tally: Tally) -> Iterator[PendingLine]:
    """Good lines in file order, each with its ``recorded_at`` set; bad ones go to ``tally.reject``.

    A line's recorded time is its ``recorded_at``, else its ``occurred_at``,
    else one nanosecond after the previous line's, and never earlier than the
    previous line's (``FileOrder.stamps``): ``read_log`` and ``import_log``
    both take it from here, so replaying a log file and replaying the store it
    was imported into agree.
    """
    order = FileOrder(tally, unit_of(format))
    for item in _parsed(path, mapping, format, tally, order):
        if type(item) is PendingLine:
            yield item
            continue
        typed: TypedLines = item.taken
        events = typed.new_events(order.stamps(typed.recorded, typed.occurred))
        for line in map(PendingLine, map(LogEvent, events, typed.recorded), item.numbers, item.raws):
            tally.read += 1
            yield line


def recorded_runs(path: Path, mapping: LogMapping, format: str, tally: Tally) -> Iterator[list[RecordedEvent]]:
    """The events a store would hold after importing the log, in file order and in runs (``read_log``'s events).

    Positions are 1-based in file order and revisions 0-based per stream
    (``FileOrder.numbered``). A block of lines taken whole
    (``TypedLines``) goes from its columns to ``RecordedEvent``s with no
    other object per line; any other line goes through ``PendingLine``.
    Counts move a run at a time, before the run is handed on.
    """
    order = FileOrder(tally, unit_of(format))
    for item in _parsed(path, mapping, format, tally, order):
        if type(item) is PendingLine:
            event = item.log_event.event
            yield from order.numbered(
                TypedLines([event.id], [event.stream or ""], [event.type], [event.data],  # type: ignore[list-item]
                           [event.occurred_at], [None], [event.metadata]),  # type: ignore[list-item]
                [event.recorded_at], [item.where], [item.raw], read=False)  # type: ignore[list-item]
        else:
            typed = item.taken
            yield from order.numbered(typed, order.stamps(typed.recorded, typed.occurred), item.numbers, item.raws)


def _parsed(
    path: Path, mapping: LogMapping, format: str, tally: Tally, order: FileOrder
) -> Iterator[PendingLine | JsonBlock]:
    """Good lines as ``PendingLine``s (stamped, counted read) and blocks taken whole (neither), in file order."""
    converter, unit, source = RecordConverter(mapping), unit_of(format), str(path)
    fast, stamp_with = converter.convert_fast, msgspec.structs.force_setattr
    for line in read_lines(path, format, mapping, converter.convert_json_lines):
        if type(line) is JsonBlock:
            yield line
            continue
        tally.read += 1
        reason = line.error
        if line.fields is not None or line.converted is not None:
            try:
                log_event = line.converted or fast(line.fields) or converter.convert(line.fields)
            except BadRecord as e:
                reason = str(e)
            else:
                event = log_event.event
                stamp = order.stamps([log_event.recorded_at], [event.occurred_at])[0]
                stamp_with(event, "recorded_at", stamp)  # a new event of this line's own: no copy
                yield PendingLine(log_event, line.where, line.raw)
                continue
        tally.reject(Rejection(source, line.where, unit, reason or "unreadable", line.raw))


_ID_INT: Final = attrgetter("int")


class FileOrder:
    """What file order decides: each line's recorded time, and each event's position and revision.

    Memory grows with the number of distinct ids and streams, not with the
    events' size.
    """

    def __init__(self, tally: Tally, unit: str) -> None:
        self.tally, self.unit, self.source = tally, unit, str(tally.source)
        self.last_recorded = 0
        self.seen: dict[int, str] = {}  # keyed by the id's int: a million UUIDs kept here made the GC crawl
        # Each stream's next revision, counted in C: ``next(revisions[stream])`` (a fresh stream starts at 0).
        self.revisions: defaultdict[str, Iterator[int]] = defaultdict(count)

    def stamps(self, recorded: list[int | None], occurred: list[int | None]) -> list[int]:
        """Recorded times of lines in file order: their ``recorded_at`` (else ``occurred_at``), never going back.

        A line with neither gets one nanosecond after the previous line's.
        """
        if recorded and None not in recorded and 0 not in recorded and recorded[0] >= self.last_recorded and (
            recorded == sorted(recorded)
        ):  # the usual block: every line has its own recorded_at, in order (checked in C)
            self.last_recorded = recorded[-1]
            return recorded.copy()
        last, out = self.last_recorded, []
        for recorded_at, occurred_at in zip(recorded, occurred, strict=True):
            stamp = recorded_at or occurred_at
            last = (stamp if stamp > last else last) if stamp is not None else last + 1
            out.append(last)
        self.last_recorded = last
        return out

    def numbered(
        self, typed: TypedLines, stamps: list[int], wheres: list[int], raws: list[bytes], read: bool = True
    ) -> Iterator[list[RecordedEvent]]:
        """The events of these lines in runs, numbered as a store would number them on import.

        A repeated id in the same stream is skipped (``tally.present``), as
        the store would dedupe it; in another stream it is rejected, after the
        run before it is handed on. ``read``: count the lines as read here.
        """
        tally, seen, revisions = self.tally, self.seen, self.revisions
        revs: list[int] = []
        keys = list(map(_ID_INT, typed.ids))
        if seen.keys().isdisjoint(keys) and len(set(keys)) == len(keys):  # the usual block: no id seen before
            seen.update(zip(keys, typed.streams, strict=True))
            revs = list(map(next, map(revisions.__getitem__, typed.streams)))
            if keys:
                yield self._run(typed, stamps, revs, 0, len(keys), read)
            return
        first = 0
        for i, (key, stream) in enumerate(zip(keys, typed.streams, strict=True)):
            earlier = seen.get(key)
            if earlier is None:
                seen[key] = stream
                revs.append(next(revisions[stream]))
                continue
            if i > first:
                yield self._run(typed, stamps, revs, first, i, read)
            revs.append(-1)
            first = i + 1
            tally.read += read
            if earlier == stream:
                tally.present += 1
            else:
                reason = f"id {typed.ids[i]} is already used by an event in stream {earlier!r}"
                tally.reject(Rejection(self.source, wheres[i], self.unit, reason, raws[i]))
        if first < len(stamps):
            yield self._run(typed, stamps, revs, first, len(stamps), read)

    def _run(self, typed: TypedLines, stamps: list[int], revs: list[int], a: int, b: int, read: bool) -> list[RecordedEvent]:
        """Lines ``a`` to ``b`` (none of them skipped) as events, counted."""
        tally = self.tally
        start = tally.imported
        tally.imported += b - a
        tally.read += (b - a) * read
        recorded = stamps[a:b]
        occurred = typed.occurred[a:b]
        if None in occurred:  # a line without occurred_at occurred when it was recorded
            occurred = [r if o is None else o for o, r in zip(occurred, recorded, strict=True)]
        metadata = typed.metadata[a:b]
        if None in metadata:
            metadata = [EMPTY_METADATA if m is None else m for m in metadata]
        return list(map(RecordedEvent, typed.ids[a:b], typed.streams[a:b], revs[a:b], range(start + 1, start + 1 + b - a),
                        recorded, occurred, typed.types[a:b], typed.data[a:b], metadata))


def open_log(
    path: str | os.PathLike[str], mapping: object, format: str | None, quarantine: object
) -> tuple[Path, LogMapping, str, Quarantine]:
    """The checked source path, its mapping and format, and its quarantine (not yet opened)."""
    source = Path(path)
    if not source.exists():
        raise FileNotFoundError(f"log file {str(source)!r} does not exist")
    target = None if quarantine is None else check_output_path(quarantine, "quarantine", (source,))  # type: ignore[arg-type]
    return source, load_mapping(mapping), detect_format(source, format), Quarantine(target)  # type: ignore[arg-type]



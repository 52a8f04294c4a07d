"""What reading a log for replay and importing it into a store share.

Each line of the file becomes a ``PendingLine`` (a validated event with its
receive time and raw bytes) or a rejection counted by a ``Tally`` and sent,
whole, to the quarantine file.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Final

import msgspec

from eventstore import DuplicateIdConflict, InvalidEvent, InvalidPayload, Metadata, RecordedEvent

from ._mapping import LogError, LogMapping, load_mapping
from ._read import detect_format, read_lines, unit_of
from ._record import BadRecord, LogEvent, RecordConverter
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
    previous line's: ``read_log`` and ``import_log`` both take it from here, so
    replaying a log file and replaying the store it was imported into agree.
    """
    converter, unit, source = RecordConverter(mapping), unit_of(format), str(path)
    fast, stamp_with = converter.convert_fast, msgspec.structs.force_setattr
    last_recorded = 0
    for line in read_lines(path, format, mapping, converter.convert_json_lines):
        tally.read += 1
        reason = line.error
        if line.fields is not None or line.converted is not None:
            try:
                log_event = line.converted or fast(line.fields) or converter.convert(line.fields)
            except BadRecord as e:
                reason = str(e)
            else:
                event = log_event.event
                stamp = log_event.recorded_at or event.occurred_at
                last_recorded = max(last_recorded, stamp) if stamp is not None else last_recorded + 1
                stamp_with(event, "recorded_at", last_recorded)  # a new event of this line's own: no copy
                yield PendingLine(log_event, line.where, line.raw)
                continue
        tally.reject(Rejection(source, line.where, unit, reason or "unreadable", line.raw))


def recorded(lines: Iterator[PendingLine], tally: Tally, unit: str) -> Iterator[RecordedEvent]:
    """The events a store would hold after importing ``lines``, in file order (``read_log``'s events).

    Positions are 1-based in file order and revisions 0-based per stream. A
    repeated id in the same stream is skipped (``tally.present``), as the
    store would dedupe it; in another stream it is rejected. Memory grows
    with the number of distinct ids and streams, not with the events' size.
    """
    seen: dict[int, str] = {}  # keyed by the id's int: a million UUIDs kept here made the GC crawl
    revisions: dict[str, int] = {}
    source = str(tally.source)
    for item in lines:
        event = item.log_event.event
        stream = event.stream or ""
        key = event.id.int  # type: ignore[union-attr]
        earlier = seen.get(key)
        if earlier is not None:
            if earlier == stream:
                tally.present += 1
            else:
                reason = f"id {event.id} is already used by an event in stream {earlier!r}"
                tally.reject(Rejection(source, item.where, unit, reason, item.raw))
            continue
        seen[key] = stream
        revision = revisions[stream] = revisions.get(stream, -1) + 1
        recorded_at = event.recorded_at  # stamped by parse_lines
        tally.imported += 1
        yield RecordedEvent(
            event.id, stream, revision, tally.imported, recorded_at,  # type: ignore[arg-type]
            recorded_at if event.occurred_at is None else event.occurred_at,
            event.type, event.data, event.metadata or EMPTY_METADATA,  # type: ignore[arg-type]
        )


def open_log(
    path: str | os.PathLike[str], mapping: object, format: str | None, quarantine: object
) -> tuple[Path, LogMapping, str, Quarantine]:
    """The checked source path, its mapping and format, and its quarantine (not yet opened)."""
    source = Path(path)
    if not source.exists():
        raise FileNotFoundError(f"log file {str(source)!r} does not exist")
    target = None if quarantine is None else check_output_path(quarantine, "quarantine", (source,))  # type: ignore[arg-type]
    return source, load_mapping(mapping), detect_format(source, format), Quarantine(target)  # type: ignore[arg-type]



"""Production logs in: ``read_log`` (replay a file directly) and ``import_log`` (into a store).

Both read the file as a stream (JSON Lines, CSV or Parquet; see ``_logread``),
turn each line into a validated event (``_logrecord``), and send every bad line,
whole, to a quarantine file with its line number and the reason. Good lines are
never held back by bad ones.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Final

import msgspec

from eventstore import (
    DuplicateIdConflict,
    InvalidEvent,
    InvalidPayload,
    Metadata,
    RecordedEvent,
)

from ._logmap import LogError, LogMapping, load_mapping
from ._logread import detect_format, read_lines, unit_of
from ._logrecord import BadRecord, LogEvent, RecordConverter
from ._logreject import Quarantine, Rejection, check_output_path

MAX_SHOWN_REJECTIONS: Final = 20
EMPTY_METADATA: Final = Metadata()
_REJECTED_BY_STORE: Final = (DuplicateIdConflict, InvalidEvent, InvalidPayload)


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


class _Tally:
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
        if self.strict:
            raise LogError(f"{rejection.describe()} (pass quarantine= or on_reject= to skip bad lines)")
        if self.on_reject is not None:
            self.on_reject(rejection)
        self.rejected += 1
        if len(self.shown) < MAX_SHOWN_REJECTIONS:
            self.shown.append(rejection.describe())
        self.quarantine.write(rejection)

    def report(self) -> ImportReport:
        written = self.quarantine.path if self.quarantine.written else None
        return ImportReport(
            str(self.source), self.read, self.imported, self.present, self.rejected,
            None if written is None else str(written), tuple(self.shown),
        )


class _Pending(msgspec.Struct):
    """A good line waiting for its append: kept with its raw bytes in case the store refuses it."""

    log_event: LogEvent
    where: int
    raw: bytes


def _parse(path: Path, mapping: LogMapping, format: str, tally: _Tally) -> Iterator[_Pending]:
    """Good lines in file order, each with its ``recorded_at`` set; bad ones go to ``tally.reject``.

    A line's recorded time is its ``recorded_at``, else its ``occurred_at``,
    else one nanosecond after the previous line's, and never earlier than the
    previous line's: ``read_log`` and ``import_log`` both take it from here, so
    replaying a log file and replaying the store it was imported into agree.
    """
    converter, unit, source = RecordConverter(mapping), unit_of(format), str(path)
    last_recorded = 0
    for line in read_lines(path, format, mapping):
        tally.read += 1
        reason = line.error
        if line.fields is not None:
            try:
                log_event = converter.convert(line.fields)
            except BadRecord as e:
                reason = str(e)
            else:
                event = log_event.event
                stamp = log_event.recorded_at or event.occurred_at
                last_recorded = max(last_recorded, stamp) if stamp is not None else last_recorded + 1
                stamped = msgspec.structs.replace(event, recorded_at=last_recorded)
                yield _Pending(LogEvent(stamped, log_event.recorded_at), line.where, line.raw)
                continue
        tally.reject(Rejection(source, line.where, unit, reason or "unreadable", line.raw))


def _prepare(
    path: str | os.PathLike[str], mapping: object, format: str | None, quarantine: object
) -> tuple[Path, LogMapping, str, Quarantine]:
    source = Path(path)
    if not source.exists():
        raise FileNotFoundError(f"log file {str(source)!r} does not exist")
    target = None if quarantine is None else check_output_path(quarantine, "quarantine", (source,))  # type: ignore[arg-type]
    return source, load_mapping(mapping), detect_format(source, format), Quarantine(target)  # type: ignore[arg-type]


# -- replay straight from a file ------------------------------------------------
class LogReader(Iterator[RecordedEvent]):
    """Recorded events read from a log file, without a store; ``report`` counts as it goes.

    Positions are 1-based in file order and revisions 0-based per stream, as a
    store would assign them on import. ``recorded_at`` is the line's
    ``recorded_at`` if it has one, else its ``occurred_at``, else one nanosecond
    after the previous line, and never earlier than the previous line's (file
    order is the order the system learned things). A line without
    ``occurred_at`` gets its ``recorded_at``. A repeated id in the same stream is
    skipped (``already_present``), as the store would dedupe it; in another
    stream it is rejected. Memory grows with the number of distinct ids and
    streams, not with the size of the events.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        mapping: object = None,
        *,
        format: str | None = None,
        quarantine: str | os.PathLike[str] | None = None,
        on_reject: Callable[[Rejection], None] | None = None,
    ) -> None:
        source, self._mapping, self._format, sink = _prepare(path, mapping, format, quarantine)
        strict = quarantine is None and on_reject is None
        self._tally = _Tally(source, sink, on_reject, strict)
        self._events = self._generate()

    @property
    def report(self) -> ImportReport:
        """Counts so far (final once iteration has ended)."""
        return self._tally.report()

    def __next__(self) -> RecordedEvent:
        return next(self._events)

    def _generate(self) -> Iterator[RecordedEvent]:
        tally = self._tally
        seen: dict[uuid.UUID, str] = {}
        revisions: dict[str, int] = {}
        with tally.quarantine:
            for item in _parse(tally.source, self._mapping, self._format, tally):
                event = item.log_event.event
                stream = event.stream or ""
                if not self._first_sighting(seen, event.id, stream, item):  # type: ignore[arg-type]
                    continue
                revision = revisions[stream] = revisions.get(stream, -1) + 1
                recorded_at = event.recorded_at  # stamped by _parse
                tally.imported += 1
                yield RecordedEvent(
                    event.id, stream, revision, tally.imported, recorded_at,  # type: ignore[arg-type]
                    recorded_at if event.occurred_at is None else event.occurred_at,
                    event.type, event.data, event.metadata or EMPTY_METADATA,  # type: ignore[arg-type]
                )

    def _first_sighting(self, seen: dict[uuid.UUID, str], event_id: uuid.UUID, stream: str, item: _Pending) -> bool:
        earlier = seen.get(event_id)
        if earlier is None:
            seen[event_id] = stream
            return True
        if earlier == stream:
            self._tally.present += 1
            return False
        self._tally.reject(Rejection(
            str(self._tally.source), item.where, unit_of(self._format),
            f"id {event_id} is already used by an event in stream {earlier!r}", item.raw,
        ))
        return False


def read_log(
    path: str | os.PathLike[str],
    mapping: object = None,
    *,
    format: str | None = None,
    quarantine: str | os.PathLike[str] | None = None,
    on_reject: Callable[[Rejection], None] | None = None,
) -> LogReader:
    """Replay a log file directly: an iterator of ``RecordedEvent``s in file order.

    Bad lines go to ``quarantine`` (a JSONL file) and/or ``on_reject``; with
    neither, the first bad line raises ``LogError`` naming the file, line and
    reason. See ``LogReader`` for how positions, revisions and times are set.
    """
    return LogReader(path, mapping, format=format, quarantine=quarantine, on_reject=on_reject)

"""Production logs in: ``read_log`` (replay a file directly) and ``import_log`` (into a store).

Both read the file as a stream (JSON Lines, CSV or Parquet; see ``_read``),
turn each line into a validated event (``_record``), and send every bad line,
whole, to a quarantine file with its line number and the reason. Good lines are
never held back by bad ones.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from itertools import chain

from eventstore import RecordedEvent

from ._ahead import recorded_runs
from ._parse import ImportReport, Tally, open_log
from ._reject import Rejection


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
        read_ahead: bool | None = None,
    ) -> None:
        self._read_ahead = read_ahead
        source, self._mapping, self._format, sink = open_log(path, mapping, format, quarantine)
        strict = quarantine is None and on_reject is None
        self._tally = Tally(source, sink, on_reject, strict)
        self._events = self._runs()  # closing it stops the reading (and its worker process)
        self._chain = chain.from_iterable(self._events)

    @property
    def report(self) -> ImportReport:
        """Counts so far (final once iteration has ended)."""
        return self._tally.report()

    def __next__(self) -> RecordedEvent:
        return next(self._chain)

    def __iter__(self) -> Iterator[RecordedEvent]:
        """The events themselves, chained in C: a loop over the reader makes no Python call per event."""
        return self._chain

    def _runs(self) -> Iterator[Iterable[RecordedEvent]]:
        tally = self._tally
        with tally.quarantine:
            yield from recorded_runs(tally.source, self._mapping, self._format, tally, self._read_ahead)


def read_log(
    path: str | os.PathLike[str],
    mapping: object = None,
    *,
    format: str | None = None,
    quarantine: str | os.PathLike[str] | None = None,
    on_reject: Callable[[Rejection], None] | None = None,
    read_ahead: bool | None = None,
) -> LogReader:
    """Replay a log file directly: an iterator of ``RecordedEvent``s in file order.

    Bad lines go to ``quarantine`` (a JSONL file) and/or ``on_reject``; with
    neither, the first bad line raises ``LogError`` naming the file, line and
    reason. See ``LogReader`` for how positions, revisions and times are set.
    ``read_ahead`` reads and converts the lines in a second process (see
    ``import_log``); the events, rejections and errors are the same.
    """
    return LogReader(path, mapping, format=format, quarantine=quarantine, on_reject=on_reject, read_ahead=read_ahead)

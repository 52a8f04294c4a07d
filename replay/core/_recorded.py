"""Exact runs on disk: recorded events as JSON Lines, and a trace's deliveries replayed as they were.

The import format (``read_log``) assigns positions and times; this one keeps
every field of a ``RecordedEvent`` (position, revision, both times, the exact
data bytes), so a saved run, such as a property-test counterexample, can be
replayed delivery for delivery and give the same digest.
"""

from __future__ import annotations

import base64
import uuid
from pathlib import Path
from typing import Any

import msgspec

from eventstore import Metadata, RecordedEvent
from replay._delivery import Delivery, Drop
from replay._errors import ReplayError

SAVED_RUN_EXIT_CODES = (
    "Saved counterexamples: unbroken check --replay DIR judges the invariant again "
    "(exit 0 it holds now, 1 it still breaks); unbroken replay --counterexample DIR only "
    "replays the recorded deliveries (exit 0 reproduced exactly, same digest; 1 the run "
    "differs now); both exit 3 when they cannot run. A saved file never chooses code to run: "
    "a projection that is not registered runs only when named with --projection."
)
"""The meaning of the exit codes, word for word in the help of both commands."""


class SavedRun(msgspec.Struct, kw_only=True):
    """What ``unbroken replay --counterexample`` reads of ``counterexample.json`` (other fields are ignored)."""

    projection: str | None = None
    config: dict[str, Any] = {}
    invariant: str | None = None


def saved_file(root: str | Path, name: str) -> Path:
    """``root/name``, refused (``ReplayError``) when it leads outside ``root`` (a symlink out, ``..``).

    A saved run is data that people pass around; reading it never reads another file.
    """
    base = Path(root).resolve()
    path = Path(root) / name
    target = path.resolve()
    if not target.is_relative_to(base):
        raise ReplayError(f"{path} leads outside {root} (to {target}); a saved run's files must be inside it")
    return path


class _Line(msgspec.Struct, kw_only=True, omit_defaults=True):
    id: str
    stream: str
    revision: int
    position: int
    recorded_at: int
    occurred_at: int
    type: str
    data: str | None = None  # the exact bytes as UTF-8 text ...
    data_b64: str | None = None  # ... or base64 when they are not text
    metadata: Metadata = Metadata()


def write_recorded(path: str | Path, events: list[RecordedEvent]) -> None:
    """Write ``events`` one JSON object per line, keeping every field and every byte of ``data``."""
    enc = msgspec.json.Encoder()
    with Path(path).open("wb") as out:
        for e in events:
            out.write(enc.encode(_line(e)) + b"\n")


def _line(e: RecordedEvent) -> _Line:
    try:
        text, b64 = e.data.decode("utf-8"), None
    except UnicodeDecodeError:
        text, b64 = None, base64.b64encode(e.data).decode()
    return _Line(id=str(e.id), stream=e.stream, revision=e.revision, position=e.position,
                 recorded_at=e.recorded_at, occurred_at=e.occurred_at, type=e.type,
                 data=text, data_b64=b64, metadata=e.metadata)


def read_recorded(path: str | Path) -> list[RecordedEvent]:
    """The events written by ``write_recorded``; raises ``ValueError`` naming the line if damaged."""
    dec = msgspec.json.Decoder(_Line)
    out = []
    for n, raw in enumerate(Path(path).read_bytes().splitlines(), start=1):
        try:
            line = dec.decode(raw)
            data = line.data.encode() if line.data is not None else base64.b64decode(line.data_b64 or "")
            out.append(RecordedEvent(uuid.UUID(line.id), line.stream, line.revision, line.position,
                                     line.recorded_at, line.occurred_at, line.type, data, line.metadata))
        except (msgspec.DecodeError, ValueError) as e:
            raise ValueError(f"{path}:{n}: not a recorded event: {e}") from e
    return out


def recorded_deliveries(trace_dir: str | Path, events: list[RecordedEvent]) -> tuple[list[Delivery], list[Drop]]:
    """The deliveries and drops a trace recorded, rebuilt over ``events`` in their recorded order.

    Replaying them through the same projection reproduces the trace exactly
    (same digest). Raises ``ReplayError`` when the trace names a position that
    ``events`` lacks.
    """
    from replay.trace import TABLES, load_trace

    for table in TABLES:
        saved_file(trace_dir, f"{table}.parquet")
    tables = load_trace(trace_dir)
    by_position = {e.position: e for e in events}

    def event_at(position: int) -> RecordedEvent:
        event = by_position.get(position)
        if event is None:
            raise ReplayError(f"{trace_dir}: the trace delivers position {position}, which the events lack")
        return event

    rows = tables["deliveries"].sort("seq").select("position", "delivered_at", "copy", "perturbation", "delay_ns")
    deliveries = [Delivery(event_at(p), at, copy, perturbation, delay)
                  for p, at, copy, perturbation, delay in rows.iter_rows()]
    drops = [Drop(p, event_at(p), reason) for p, reason in tables["drops"].select("position", "reason").iter_rows()]
    return deliveries, drops

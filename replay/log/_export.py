"""``export_log``: events out to JSON Lines, CSV or Parquet, in the format ``import_log`` reads.

``data`` is written as a JSON object only when that object re-encodes to the
exact stored bytes; otherwise as base64 (Parquet: raw binary). Ids, times and
metadata are written in full, so importing an export gives the same events.
"""

from __future__ import annotations

import base64
import csv
import io
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any, Final

import msgspec

from eventstore import EventStore, Metadata, RecordedEvent

from ._mapping import LogError
from ._read import FORMATS, detect_format
from ._reject import check_output_path, open_no_follow

COLUMNS: Final = ("stream", "type", "data", "id", "occurred_at", "recorded_at", "metadata")
_PARQUET_ROWS: Final = 10_000
_ENCODE: Final = msgspec.json.Encoder()
_DECODE: Final = msgspec.json.Decoder()
_DEFAULT_CONTENT_TYPE: Final = Metadata().content_type


class _Line(msgspec.Struct, omit_defaults=True):
    stream: str
    type: str
    data: msgspec.Raw | str
    id: str
    occurred_at: int
    recorded_at: int
    metadata: dict[str, Any] | None = None


def export_log(
    source: EventStore | Iterable[RecordedEvent],
    path: str | os.PathLike[str],
    format: str | None = None,
    *,
    overwrite: bool = False,
) -> int:
    """Write every event of ``source`` (a store, read in global order, or events) to ``path``.

    The file appears whole or not at all: it is written beside its target and
    renamed into place after an fsync. An existing file is refused unless
    ``overwrite``. Returns the number of events written. Memory stays flat.
    """
    target = check_output_path(path, "export")
    format_ = detect_format(target, format)
    if target.suffix.lower() == ".gz":
        raise LogError(f"export does not compress; name the file without .gz (got {str(target)!r})")
    if target.exists() and not overwrite:
        raise LogError(f"{str(target)!r} exists; pass overwrite=True (--force) to replace it")
    events = source.read_all() if isinstance(source, EventStore) else iter(source)
    temp = target.with_name(f".{target.name}.{os.getpid()}.partial")
    try:
        count = _write(temp, format_, events)
        os.replace(temp, target)
    finally:
        temp.unlink(missing_ok=True)
    return count


def _write(temp: Path, format: str, events: Iterator[RecordedEvent]) -> int:
    assert format in FORMATS
    with open_no_follow(temp, append=False) as f:
        if format == "parquet":
            count = _write_parquet(f, events)
        else:
            writer = _write_jsonl if format == "jsonl" else _write_csv
            count = writer(f, events)
        f.flush()
        os.fsync(f.fileno())
    return count


def data_text(data: bytes) -> tuple[bool, str | bytes]:
    """(True, the bytes) when ``data`` is a canonical JSON object; else (False, base64 text)."""
    try:
        parsed = _DECODE.decode(data)
    except (msgspec.DecodeError, UnicodeDecodeError):
        parsed = None
    if isinstance(parsed, dict) and _ENCODE.encode(parsed) == data:
        return True, data
    return False, base64.b64encode(data).decode("ascii")


def metadata_dict(metadata: Metadata) -> dict[str, Any] | None:
    """Metadata as the dict ``import_log`` reads back to the same ``Metadata``; None if empty."""
    out: dict[str, Any] = {}
    for name in ("correlation_id", "causation_id", "source"):
        value = getattr(metadata, name)
        if value is not None:
            out[name] = value
    if metadata.content_type != _DEFAULT_CONTENT_TYPE:
        out["content_type"] = metadata.content_type
    if metadata.extra:
        out["extra"] = dict(metadata.extra)
    return out or None


def _write_jsonl(f: IO[bytes], events: Iterator[RecordedEvent]) -> int:
    count = 0
    buffer = bytearray()
    for event in events:
        count += 1
        is_json, data = data_text(event.data)
        line = _Line(
            event.stream, event.type, msgspec.Raw(data) if is_json else data,  # type: ignore[arg-type]
            str(event.id), event.occurred_at, event.recorded_at, metadata_dict(event.metadata),
        )
        buffer += _ENCODE.encode(line)
        buffer += b"\n"
        if len(buffer) > 1 << 20:
            f.write(buffer)
            buffer.clear()
    f.write(buffer)
    return count


def _write_csv(f: IO[bytes], events: Iterator[RecordedEvent]) -> int:
    text = io.TextIOWrapper(f, encoding="utf-8", newline="", write_through=True)
    writer = csv.writer(text)
    writer.writerow(COLUMNS)
    count = 0
    for event in events:
        count += 1
        is_json, data = data_text(event.data)
        metadata = metadata_dict(event.metadata)
        writer.writerow((
            event.stream, event.type, data.decode() if is_json else data,  # type: ignore[union-attr]
            str(event.id), event.occurred_at, event.recorded_at,
            "" if metadata is None else _ENCODE.encode(metadata).decode(),
        ))
    text.flush()
    text.detach()  # leave `f` open for the caller's fsync
    return count


def _write_parquet(f: IO[bytes], events: Iterator[RecordedEvent]) -> int:
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema([
        ("stream", pa.string()), ("type", pa.string()), ("data", pa.binary()), ("id", pa.string()),
        ("occurred_at", pa.int64()), ("recorded_at", pa.int64()), ("metadata", pa.string()),
    ])
    count = 0
    with pq.ParquetWriter(f, schema) as writer:
        rows: dict[str, list[Any]] = {name: [] for name in COLUMNS}
        for event in events:
            count += 1
            metadata = metadata_dict(event.metadata)
            values = (
                event.stream, event.type, event.data, str(event.id), event.occurred_at,
                event.recorded_at, None if metadata is None else _ENCODE.encode(metadata).decode(),
            )
            for name, value in zip(COLUMNS, values, strict=True):
                rows[name].append(value)
            if len(rows["id"]) >= _PARQUET_ROWS:
                writer.write_table(pa.table(rows, schema=schema))
                rows = {name: [] for name in COLUMNS}
        if rows["id"] or count == 0:
            writer.write_table(pa.table(rows, schema=schema))
    return count

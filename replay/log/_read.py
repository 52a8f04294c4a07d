"""Read JSON Lines, CSV and Parquet logs as a stream of raw lines with their fields.

Each reader yields ``SourceLine``s one at a time, so memory stays flat in the
file's length. A line that cannot even be parsed still comes out, with its raw
bytes and the reason, so that it can be quarantined whole.
"""

from __future__ import annotations

import csv
import gzip
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any, Final, NamedTuple

import msgspec

from ._mapping import LogError, LogMapping

FORMATS: Final = ("jsonl", "csv", "parquet")
MAX_LINE_BYTES: Final = 64 * 1024 * 1024
_SUFFIXES: Final = {
    ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl", ".log": "jsonl",
    ".csv": "csv", ".parquet": "parquet", ".pq": "parquet",
}
_DECODE: Final = msgspec.json.Decoder()
_ENCODE: Final = msgspec.json.Encoder()


class SourceLine(NamedTuple):
    """One line (JSONL, CSV) or row (Parquet): where it is, its raw bytes, its fields or an error."""

    where: int
    raw: bytes
    fields: dict[str, Any] | None
    error: str | None


def detect_format(path: Path, format: str | None = None) -> str:
    """The log format: as given, or from the file name (``.jsonl``, ``.csv``, ``.parquet``, ``.gz``)."""
    if format is not None:
        if format not in FORMATS:
            raise LogError(f"unknown log format {format!r}; use one of {', '.join(FORMATS)}")
        return format
    suffixes = [s.lower() for s in path.suffixes if s.lower() != ".gz"]
    found = _SUFFIXES.get(suffixes[-1]) if suffixes else None
    if found is None:
        raise LogError(f"cannot tell the format of {str(path)!r} from its name; pass --format jsonl|csv|parquet")
    return found


def unit_of(format: str) -> str:
    """What a ``SourceLine.where`` counts in this format."""
    return "row" if format == "parquet" else "line"


def read_lines(path: Path, format: str, mapping: LogMapping) -> Iterator[SourceLine]:
    """Every line or row of the log in file order."""
    if format == "parquet":
        return _parquet_rows(path, mapping)
    return _text_lines(path, format, mapping)


def _open(path: Path) -> IO[bytes]:
    try:
        if path.suffix.lower() == ".gz":
            return gzip.open(path, "rb")  # type: ignore[return-value]
        return open(path, "rb")
    except IsADirectoryError as e:
        raise LogError(f"{str(path)!r} is a directory, not a log file") from e


def _text_lines(path: Path, format: str, mapping: LogMapping) -> Iterator[SourceLine]:
    with _open(path) as f:
        try:
            if format == "jsonl":
                yield from _jsonl(f)
            else:
                yield from _csv(f, mapping)
        except (OSError, EOFError) as e:  # e.g. a truncated gzip stream
            raise LogError(f"{str(path)!r} could not be read to the end: {e}") from e


def _physical_lines(f: IO[bytes]) -> Iterator[tuple[bytes, bool]]:
    """Lines with their line ending, and whether the line was cut at ``MAX_LINE_BYTES``."""
    while True:
        line = f.readline(MAX_LINE_BYTES)
        if not line:
            return
        if len(line) == MAX_LINE_BYTES and not line.endswith(b"\n"):
            while (rest := f.readline(MAX_LINE_BYTES)) and not rest.endswith(b"\n"):
                pass  # skip the remainder; the source file still holds it
            yield line, True
        else:
            yield line, False


def _jsonl(f: IO[bytes]) -> Iterator[SourceLine]:
    for number, (line, cut) in enumerate(_physical_lines(f), start=1):
        raw = line.rstrip(b"\r\n")
        if cut:
            yield SourceLine(number, raw, None, f"line is longer than {MAX_LINE_BYTES} bytes; its first {MAX_LINE_BYTES} bytes are quarantined")
            continue
        if not raw.strip():
            continue
        yield _json_line(number, raw)


def _json_line(number: int, raw: bytes) -> SourceLine:
    try:
        fields = _DECODE.decode(raw)
    except UnicodeDecodeError as e:
        return SourceLine(number, raw, None, f"not valid UTF-8 at byte {e.start}")
    except msgspec.DecodeError as e:
        return SourceLine(number, raw, None, f"not valid JSON: {e}")
    if not isinstance(fields, dict):
        return SourceLine(number, raw, None, f"a line must be a JSON object, got {type(fields).__name__}")
    return SourceLine(number, raw, fields, None)


def _csv(f: IO[bytes], mapping: LogMapping) -> Iterator[SourceLine]:
    consumed: list[bytes] = []

    def text_lines() -> Iterator[str]:
        for line, _cut in _physical_lines(f):
            consumed.append(line)
            # surrogateescape keeps garbage bytes visible so the row can be rejected, not crash the reader.
            yield line.decode("utf-8", "surrogateescape")

    reader = csv.reader(text_lines())
    header: list[str] | None = None
    line_number = 0
    while True:
        consumed.clear()
        try:
            row = next(reader)
            error = None
        except StopIteration:
            return
        except csv.Error as e:
            row, error = None, f"not valid CSV: {e}"
        start, line_number = line_number + 1, line_number + len(consumed)
        raw = b"".join(consumed).rstrip(b"\r\n")
        if header is None:
            header = _csv_header(row, raw, mapping)
            continue
        yield _csv_row(start, raw, header, row, error)


def _csv_header(row: list[str] | None, raw: bytes, mapping: LogMapping) -> list[str]:
    if row is None or not _is_utf8(row):
        raise LogError(f"the CSV header {raw[:200]!r} is unreadable")
    header = [name.lstrip("\ufeff").strip() for name in row]
    missing = [name for name in mapping.required() if name not in header]
    if missing:
        raise LogError(
            f"the CSV header has no column {', '.join(map(repr, missing))}; "
            f"its columns are {header}; pass a mapping to say which column is which"
        )
    return header


def _csv_row(start: int, raw: bytes, header: list[str], row: list[str] | None, error: str | None) -> SourceLine:
    if row is None:
        return SourceLine(start, raw, None, error)
    if not row or row == [""]:
        return SourceLine(start, raw, None, "empty row")
    if not _is_utf8(row):
        return SourceLine(start, raw, None, "not valid UTF-8")
    if len(row) != len(header):
        return SourceLine(start, raw, None, f"{len(row)} fields; the header has {len(header)}")
    # Empty cells stay "": optional fields treat "" as absent; an empty data cell is empty bytes.
    return SourceLine(start, raw, dict(zip(header, row, strict=True)), None)


def _is_utf8(row: list[str]) -> bool:
    try:
        for cell in row:
            cell.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _parquet_rows(path: Path, mapping: LogMapping) -> Iterator[SourceLine]:
    import pyarrow.parquet as pq

    try:
        pfile = pq.ParquetFile(path)
    except (OSError, ValueError) as e:  # pyarrow raises ArrowInvalid (a ValueError) on garbage
        raise LogError(f"{str(path)!r} is not a readable Parquet file: {e}") from e
    with pfile:
        names = pfile.schema_arrow.names
        missing = [name for name in mapping.required() if name not in names]
        if missing:
            raise LogError(
                f"{str(path)!r} has no column {', '.join(map(repr, missing))}; its columns are {names}; "
                "pass a mapping to say which column is which"
            )
        yield from _row_groups(pfile)


def _row_groups(pfile: Any) -> Iterator[SourceLine]:
    row = 0
    for group in range(pfile.num_row_groups):
        end = row + pfile.metadata.row_group(group).num_rows
        try:
            for batch in pfile.iter_batches(batch_size=1024, row_groups=[group]):
                for fields in batch.to_pylist():
                    row += 1
                    yield SourceLine(row, _ENCODE.encode(fields), fields, None)
        except (OSError, ValueError) as e:
            # A damaged row group loses its own unread rows only; later groups are still read.
            yield SourceLine(row + 1, b"", None, f"rows {row + 1}..{end} (row group {group}) are unreadable: {e}")
        row = end

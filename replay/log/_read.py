"""Read JSON Lines, CSV and Parquet logs as a stream of raw lines with their fields.

Each reader yields ``SourceLine``s one at a time, so memory stays flat in the
file's length. A line that cannot even be parsed still comes out, with its raw
bytes and the reason, so that it can be quarantined whole.
"""

from __future__ import annotations

import csv
import gzip
import json
from collections.abc import Callable, Iterator
from itertools import repeat
from operator import itemgetter
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
_BOM: Final = b"\xef\xbb\xbf"
MAX_CSV_RECORD_LINES: Final = 1000  # physical lines one quoted CSV field may span
READ_BLOCK: Final = 1 << 16  # bytes read at a time from a JSON Lines log
DECODE_LINES: Final = 512  # lines decoded (and checked for repeated keys) together


class DuplicateKey(ValueError):
    """A JSON object names the same key twice."""


def decode_json(raw: bytes | str) -> Any:
    """Decode JSON text, refusing what would be silently lossy or crash later.

    Raises ``ValueError`` with a reason for: invalid JSON or UTF-8, nesting too
    deep to decode (instead of ``RecursionError``), and an object that repeats
    a key (``DuplicateKey``; msgspec would keep the last value silently).
    """
    try:
        value = _DECODE.decode(raw)
    except RecursionError:
        raise ValueError("JSON nested too deeply to read") from None
    except UnicodeDecodeError as e:
        raise ValueError(f"not valid UTF-8 at byte {e.start}") from None
    except msgspec.DecodeError as e:
        raise ValueError(f"not valid JSON: {e}") from None
    _check_unique_keys(raw, value)
    return value


def _check_unique_keys(raw: bytes | str, value: Any) -> None:
    """Raise ``DuplicateKey`` if any object in ``raw`` repeats a key.

    Fast path: every key is followed by a colon, so when the text holds no
    more colons than the decoded objects hold keys, no key was dropped.
    Otherwise (colons inside strings, or a repeat) the text is read again
    with a hook that sees every key.
    """
    colons = raw.count(b":" if isinstance(raw, bytes) else ":")
    pairs, stack = 0, [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            pairs += len(item)
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    if colons <= pairs:
        return

    def unique(items: list[tuple[str, Any]]) -> dict:
        seen: set[str] = set()
        for key, _ in items:
            if key in seen:
                raise DuplicateKey(f"key {key[:80]!r} appears twice in one object")
            seen.add(key)
        return dict(items)

    try:
        json.loads(raw, object_pairs_hook=unique)
    except RecursionError:
        raise ValueError("JSON nested too deeply to read") from None
    except DuplicateKey:
        raise
    except ValueError:
        pass  # msgspec read it; a stricter or looser corner of json's grammar is not our concern


class JsonBlock(NamedTuple):
    """A block of JSON lines that ``convert`` took whole (see ``read_lines``): what it made of them, in one piece."""

    where: int  # the last line's number
    numbers: list[int]
    raws: list[bytes]
    taken: Any


class SourceLine(NamedTuple):
    """One line (JSONL, CSV) or row (Parquet): where it is, its raw bytes, its fields or an error.

    ``converted`` is what the caller's ``convert`` made of a JSON line directly
    (see ``read_lines``); such a line has no ``fields``.
    """

    where: int
    raw: bytes
    fields: dict[str, Any] | None
    error: str | None
    converted: Any = None


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


def read_lines(
    path: Path, format: str, mapping: LogMapping, convert: Callable[[list[bytes]], Any] | None = None
) -> Iterator[SourceLine | JsonBlock]:
    """Every line or row of the log in file order.

    ``convert``, for JSON Lines: given the bytes of a block of lines (a block
    with no line cut for length), it returns either one result per line (a
    list), or something else for the whole block, which then comes out as
    one ``JsonBlock`` instead of its lines. A line's result, when not None, is
    its ``converted`` and the line is not decoded into fields (None: decoded
    and checked as usual).
    """
    if format == "parquet":
        return _parquet_rows(path, mapping)
    return _text_lines(path, format, mapping, convert)


def _open(path: Path) -> IO[bytes]:
    try:
        if path.suffix.lower() == ".gz":
            return gzip.open(path, "rb")  # type: ignore[return-value]
        return open(path, "rb")
    except IsADirectoryError as e:
        raise LogError(f"{str(path)!r} is a directory, not a log file") from e


def _text_lines(path: Path, format: str, mapping: LogMapping, convert: Callable[[list[bytes]], Any] | None) -> Iterator[SourceLine]:
    with _open(path) as f:
        last = 0
        try:
            lines = _jsonl(f, convert) if format == "jsonl" else _csv(f, mapping)
            for line in lines:
                last = line.where
                yield line
        except (OSError, EOFError, gzip.BadGzipFile) as e:  # e.g. a truncated or corrupt gzip stream
            # What was read is kept; the unreadable rest is one rejection, so the run still ends cleanly.
            yield SourceLine(last + 1, b"", None, f"the file could not be read past line {last}: {e}")


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


def _jsonl(f: IO[bytes], convert: Callable[[list[bytes]], Any] | None = None) -> Iterator[SourceLine | JsonBlock]:
    """JSON lines, read and decoded a block at a time (see ``_line_blocks``, ``_decode_block``)."""
    for block in _line_blocks(f):
        for start in range(0, len(block), DECODE_LINES):
            yield from _decode_block(block[start : start + DECODE_LINES], convert)


def _line_blocks(f: IO[bytes]) -> Iterator[list[tuple[int, bytes, bool]]]:
    """Lines as ``(number, bytes without line ending, cut)``, about ``READ_BLOCK`` bytes at a time.

    The same lines ``_physical_lines`` gives (numbers count every physical
    line, a line longer than ``MAX_LINE_BYTES`` comes out cut to that length
    and the rest of it is skipped, a BOM before line 1 is dropped), read with
    one ``read`` and one ``split`` per block instead of a call per line. Memory
    holds one block and at most one partial line of ``MAX_LINE_BYTES``.
    """
    limit = MAX_LINE_BYTES
    number, carry, skipping = 0, b"", False
    while True:
        data = f.read1(READ_BLOCK)  # type: ignore[attr-defined]  # read1: a cut gzip gives up what came before the cut
        if not data:
            break
        buffer = carry + data if carry else data
        pieces = buffer.split(b"\n")
        carry = pieces.pop()
        out: list[tuple[int, bytes, bool]] = []
        if number and not skipping and pieces and max(map(len, pieces)) < limit:  # the usual block: whole, in C
            if b"\r" in buffer:
                pieces = [piece.rstrip(b"\r") for piece in pieces]
            out = list(zip(range(number + 1, number + 1 + len(pieces)), pieces, repeat(False)))
            number += len(pieces)
            pieces = []
        for piece in pieces:
            if skipping:  # the rest of a cut line, through its newline
                skipping = False
                continue
            number += 1
            if len(piece) + 1 > limit:  # readline(limit) would have cut it
                out.append((number, _first_line(number, piece[:limit]).rstrip(b"\r"), True))
            else:
                out.append((number, _first_line(number, piece).rstrip(b"\r"), False))
        if len(carry) >= limit and not skipping:
            number += 1
            out.append((number, _first_line(number, carry[:limit]).rstrip(b"\r\n"), True))
            carry, skipping = b"", True
        elif skipping:
            carry = b""
        if out:
            yield out
    if carry and not skipping:
        number += 1
        yield [(number, _first_line(number, carry).rstrip(b"\r"), len(carry) >= limit)]


def _first_line(number: int, raw: bytes) -> bytes:
    """A UTF-8 byte-order mark is not part of the first line."""
    return raw[len(_BOM) :] if number == 1 and raw.startswith(_BOM) else raw


def _decode_block(
    block: list[tuple[int, bytes, bool]], convert: Callable[[list[bytes]], Any] | None = None
) -> list[SourceLine] | list[JsonBlock]:
    """One ``SourceLine`` per non-blank line of a block, decoded as ``_json_line`` would (or one ``JsonBlock``).

    Lines are decoded one by one (msgspec), but the check for repeated keys
    runs once over the block: when no line holds a backslash, the decoded
    values re-encode to the same strings, so the block's colons and their
    re-encoding's colons agree exactly unless a key was dropped. Otherwise
    (escapes, or a repeat) each line gets ``decode_json``'s own check. A line
    ``convert`` takes (see ``read_lines``: it sees the whole block in one
    call, unless a line of it was cut) is not decoded at all.
    """
    out: list[SourceLine] = []
    checked: list[tuple[bytes, dict]] = []
    decode = _DECODE.decode
    taken_each: list = []
    if convert is not None and not any(map(itemgetter(2), block)):
        raws = list(map(itemgetter(1), block))
        taken_each = convert(raws)
        if type(taken_each) is not list:
            return [JsonBlock(block[-1][0], list(map(itemgetter(0), block)), raws, taken_each)]
    converted = iter(taken_each)
    for number, raw, cut in block:
        if cut:
            out.append(SourceLine(number, raw, None, f"line is longer than {MAX_LINE_BYTES} bytes; "
                                                     f"its first {MAX_LINE_BYTES} bytes are quarantined"))
            continue
        taken = next(converted, None)
        if not raw.strip():
            continue
        if taken is not None:
            out.append(SourceLine(number, raw, None, None, taken))
            continue
        try:
            fields = decode(raw)
        except (RecursionError, msgspec.DecodeError, UnicodeDecodeError):
            out.append(_json_line(number, raw))  # the slow path names the reason
            continue
        if not isinstance(fields, dict):
            out.append(SourceLine(number, raw, None, f"a line must be a JSON object, got {type(fields).__name__}"))
            continue
        out.append(SourceLine(number, raw, fields, None))
        checked.append((raw, fields))
    if checked and not _keys_surely_unique(checked):
        out = [_json_line(line.where, line.raw) if line.fields is not None else line for line in out]
    return out


def _keys_surely_unique(lines: list[tuple[bytes, dict]]) -> bool:
    """True when no object in these lines can have repeated a key (see ``_decode_block``)."""
    joined = b"\n".join([raw for raw, _ in lines])
    if b"\\" in joined:
        return False
    try:
        again = _ENCODE.encode([fields for _, fields in lines])
    except (TypeError, ValueError, OverflowError):
        return False
    return joined.count(b":") == again.count(b":")


def _json_line(number: int, raw: bytes) -> SourceLine:
    try:
        fields = decode_json(raw)
    except ValueError as e:
        return SourceLine(number, raw, None, str(e))
    if not isinstance(fields, dict):
        return SourceLine(number, raw, None, f"a line must be a JSON object, got {type(fields).__name__}")
    return SourceLine(number, raw, fields, None)


def _csv(f: IO[bytes], mapping: LogMapping) -> Iterator[SourceLine]:
    """CSV records with the physical line each starts on.

    A quoted field may span lines, but only when the record it completes has
    the header's number of fields; otherwise (an unterminated quote) the line
    that opened the quote is rejected alone and reading resumes on the next
    line, so one stray quote never swallows the good lines after it.
    """
    lines = _Lines(f)
    header: list[str] | None = None
    while (first := lines.next()) is not None:
        number, line, cut = first
        if cut:
            yield SourceLine(number, line.rstrip(b"\r\n"), None,
                             f"line is longer than {MAX_LINE_BYTES} bytes; its first {MAX_LINE_BYTES} bytes are quarantined")
            continue
        consumed = [line]
        row, error = _parse_csv(consumed)
        if row is _INCOMPLETE:
            row, error, consumed = _complete(lines, consumed, None if header is None else len(header))
        raw = b"".join(consumed).rstrip(b"\r\n")
        if header is None:
            if number == 1 and raw.startswith(_BOM):
                raw = raw[len(_BOM) :]
            header = _csv_header(row, raw, mapping)  # type: ignore[arg-type]
            continue
        yield _csv_row(number, raw, header, row, error)  # type: ignore[arg-type]


_INCOMPLETE: Final = object()


class _Lines:
    """Physical lines with their numbers, and a way to put back lines read ahead."""

    def __init__(self, f: IO[bytes]) -> None:
        self._source = enumerate(_physical_lines(f), start=1)
        self._back: list[tuple[int, bytes, bool]] = []

    def next(self) -> tuple[int, bytes, bool] | None:
        if self._back:
            return self._back.pop()
        item = next(self._source, None)
        return None if item is None else (item[0], *item[1])

    def put_back(self, items: list[tuple[int, bytes, bool]]) -> None:
        self._back.extend(reversed(items))


def _parse_csv(lines: list[bytes], lenient: bool = True) -> tuple[Any, str | None]:
    """One record from ``lines``: ``(row, None)``, ``(None, error)`` or ``(_INCOMPLETE, None)``.

    ``lenient=False`` accepts only what parses strictly (used to join lines:
    a stray quote must not pull good lines into a malformed record).
    """
    # surrogateescape keeps garbage bytes visible so the row can be rejected, not crash the reader.
    texts = [line.decode("utf-8", "surrogateescape") for line in lines]
    try:
        rows = list(csv.reader(texts, strict=True))
    except csv.Error as e:
        if "unexpected end of data" in str(e):
            return _INCOMPLETE, None
        if not lenient:
            return None, f"not valid CSV: {e}"
        try:
            rows = list(csv.reader(texts))  # strict only to see an open quote; otherwise as lenient as before
        except csv.Error as e2:
            return None, f"not valid CSV: {e2}"
    if len(rows) != 1:
        return (rows[0] if rows else []), None
    return rows[0], None


def _complete(lines: _Lines, consumed: list[bytes], fields: int | None) -> tuple[Any, str | None, list[bytes]]:
    """Extend an open quote over the next lines while that gives one record of ``fields`` fields."""
    ahead: list[tuple[int, bytes, bool]] = []
    while len(ahead) < MAX_CSV_RECORD_LINES and (item := lines.next()) is not None:
        ahead.append(item)
        if item[2]:
            break  # a line cut for length cannot be part of a record
        row, error = _parse_csv([*consumed, *(line for _, line, _ in ahead)], lenient=False)
        if row is _INCOMPLETE:
            continue
        if error is None and (fields is None or len(row) == fields):
            return row, None, [*consumed, *(line for _, line, _ in ahead)]
        break
    lines.put_back(ahead)
    return None, "not valid CSV: a quote opened on this line is never closed on it", consumed


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

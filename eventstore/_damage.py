"""Damaged store files: inspect before opening, verify, and salvage (scenario HY-007).

Opening never silently loses an acknowledged event. Garbage after the last
page (a torn copy, a stray write) is moved to a side file and reported; a
file shorter than its header says, or with a garbage header, is refused with
``StoreDamaged`` and a pointer to ``salvage``, which copies every readable,
checksum-valid event into a new store and lists the positions it lost.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import struct
import tempfile
import zlib
from pathlib import Path
from typing import Final

import msgspec

from . import _sqlite
from ._errors import StoreDamaged

MAGIC: Final = b"SQLite format 3\x00"
HEADER_SIZE: Final = 100


class FileHeader(msgspec.Struct, frozen=True):
    """The fields of an SQLite header that tell whether the file is whole."""

    page_size: int
    pages: int  # 0 when the header's page count is not trustworthy
    application_id: int


class VerifyReport(msgspec.Struct):
    """What ``verify`` found: ``ok`` is True only when nothing at all is wrong."""

    path: str
    ok: bool
    events: int = 0
    last_position: int = 0
    problems: list[str] = []
    corrupt_positions: list[int] = []


class SalvageReport(msgspec.Struct):
    """What ``salvage`` copied, and the positions it could not recover."""

    source: str
    target: str
    recovered: int = 0
    lost_positions: list[int] = []
    corrupt_positions: list[int] = []
    uncertain_after: int | None = None  # reads past this position failed: later events may be lost
    notes: list[str] = []


def read_header(raw: bytes) -> FileHeader | None:
    """Parse an SQLite header; None when the magic string or page size is wrong."""
    if len(raw) < HEADER_SIZE or raw[:16] != MAGIC:
        return None
    page_size = struct.unpack(">H", raw[16:18])[0]
    page_size = 65536 if page_size == 1 else page_size
    if page_size < 512 or page_size & (page_size - 1):
        return None
    pages = struct.unpack(">I", raw[28:32])[0]
    trusted = raw[24:28] == raw[92:96]
    app_id = struct.unpack(">I", raw[68:72])[0]
    return FileHeader(page_size, pages if trusted else 0, app_id)


def inspect_before_open(path: Path, repair: bool = True) -> list[str]:
    """Check a store file before SQLite touches it; return what was repaired.

    Raises ``StoreDamaged`` for a garbage header or a file shorter than its
    header says. Garbage after the last page is moved to ``<file>.tail-<offset>``
    (kept, never deleted) and reported; with ``repair=False`` (a read-only
    open) it is only reported: SQLite reads no further than the header's
    page count, so the garbage is ignored.
    """
    if not path.exists() or path.stat().st_size == 0:
        return []
    with path.open("rb") as f:
        header = read_header(f.read(HEADER_SIZE))
    size = path.stat().st_size
    if header is None:
        raise StoreDamaged(_advice(path, "its header is not an SQLite header (garbage or overwritten)"))
    if _wal_has_frames(path) or header.pages == 0:
        return []  # SQLite's own WAL recovery decides; the header may lag the WAL
    expected = header.pages * header.page_size
    if size < expected:
        raise StoreDamaged(
            _advice(path, f"it is truncated: {size} bytes, but its header says {expected}")
        )
    if size > expected:
        if not repair:
            return [f"{size - expected} bytes of garbage after the last page of {path} (left in place: "
                    "opened read-only; open it for writing to move them to a side file)"]
        return [_move_tail(path, expected, size)]
    return []


def _wal_has_frames(path: Path) -> bool:
    wal = Path(f"{path}-wal")
    return wal.exists() and wal.stat().st_size > 32


def _move_tail(path: Path, keep: int, size: int) -> str:
    side = Path(f"{path}.tail-{keep}")
    with path.open("rb") as f:
        f.seek(keep)
        side.write_bytes(f.read())
    with path.open("r+b") as f:
        f.truncate(keep)
        os.fsync(f.fileno())
    return f"moved {size - keep} bytes of garbage after the last page of {path} to {side}"


def _advice(path: Path, what: str) -> str:
    return (
        f"{path} is damaged: {what}. Opening it could lose acknowledged events, so it was not "
        f"opened. Run `unbroken store verify {path}` for details and "
        f"`unbroken store salvage {path} --out NEW.db` to copy every readable event into a new store."
    )


def verify(path: Path) -> VerifyReport:
    """Check a store file end to end without changing it: header, SQLite integrity, checksums.

    Works on a copy of the file and its WAL (so a WAL not yet folded back is
    read, as SQLite would), reads around damaged pages chunk by chunk and
    then the events table's leaf pages directly, as ``salvage`` does: the
    count of readable events is what ``salvage`` would recover.
    """
    report = VerifyReport(str(path), ok=False)
    with tempfile.TemporaryDirectory() as scratch:
        work = _working_copy(path, Path(scratch), report.problems, repair_header=True)
        if work is None:
            return report
        try:
            conn = sqlite3.connect(str(work), isolation_level=None)
            try:
                try:
                    check = [r[0] for r in conn.execute("PRAGMA integrity_check(20)").fetchall()]
                except sqlite3.DatabaseError as e:
                    check = [str(e)]
                if check != ["ok"]:
                    report.problems.extend(f"sqlite: {line}" for line in check)
                _check_rows(conn, work, report)
            finally:
                conn.close()
        except sqlite3.DatabaseError as e:
            report.problems.append(f"sqlite: {e}")
    report.ok = not report.problems and not report.corrupt_positions
    return report


def _check_rows(conn: sqlite3.Connection, work: Path, report: VerifyReport) -> None:
    scan = _RowScan(conn, report.problems)
    seen = []
    for position, record, checksum in scan.rows():
        seen.append(position)
        if _row_is_corrupt(position, record, checksum):
            report.corrupt_positions.append(position)
    if report.problems:  # SQLite could not read everything: look in the leaf pages too
        known = set(seen)
        extra = [p for p in scan_leaf_pages(work) if p not in known]
        if extra:
            report.problems.append(f"{len(extra)} events readable only from the raw pages (salvage recovers them)")
            seen.extend(extra)
            scan.highest = max(scan.highest, *extra)
    report.events = len(seen)
    report.last_position = max(seen, default=0)
    missing = scan.missing(seen)
    if missing:
        report.problems.append(f"{len(missing)} positions are unreadable: {_ranges(missing)}")
    scan.uncertain_after()  # adds its own problem line when reads past the end failed


def salvage(source: Path, target: Path) -> SalvageReport:
    """Copy every readable, checksum-valid event of ``source`` into a new store at ``target``.

    Positions, revisions and ids are kept as they were. Corrupt rows are
    written raw to ``<target>.corrupt.jsonl``. ``source`` is never modified.
    """
    if target.exists():
        raise StoreDamaged(f"salvage target {target} exists already; choose a new file")
    report = SalvageReport(str(source), str(target))
    with tempfile.TemporaryDirectory() as scratch:
        work = _working_copy(source, Path(scratch), report.notes, repair_header=True)
        if work is None:
            return report
        conn = sqlite3.connect(str(work), isolation_level=None)
        try:
            _copy_rows(conn, work, target, report)
        finally:
            conn.close()
    return report


def _copy_rows(conn: sqlite3.Connection, work: Path, target: Path, report: SalvageReport) -> None:
    scan = _RowScan(conn, report.notes)
    seen, corrupt = [], []
    out = _sqlite.connect(target, writer=True)
    try:
        _sqlite.initialise(out, target)
        out.execute("BEGIN IMMEDIATE")
        streams: dict[str, tuple[int, int]] = {}
        for position, record, checksum in scan.rows():
            seen.append(position)
            if _row_is_corrupt(position, record, checksum):
                corrupt.append({"position": position, "record": record.hex(), "checksum": checksum})
                continue
            _insert_verbatim(out, streams, position, record, checksum)
            report.recovered += 1
        known = set(seen)
        extra = {p: row for p, row in scan_leaf_pages(work).items() if p not in known}
        for position in sorted(extra):  # rows SQLite could not reach through the damaged tree
            _insert_verbatim(out, streams, position, *extra[position])
            report.recovered += 1
            seen.append(position)
        if extra:
            scan.highest = max(scan.highest, *extra)
            report.notes.append(f"{len(extra)} events recovered from the raw pages of the events table")
        for stream_id, revision in streams.values():
            out.execute("UPDATE streams SET revision = ? WHERE stream_id = ?", (revision, stream_id))
        out.execute("COMMIT")
    finally:
        out.close()
    report.corrupt_positions = [c["position"] for c in corrupt]
    if corrupt:
        side = Path(f"{target}.corrupt.jsonl")
        side.write_bytes(b"".join(msgspec.json.encode(c) + b"\n" for c in corrupt))
        report.notes.append(f"{len(corrupt)} corrupt rows kept raw in {side}")
    report.lost_positions = scan.missing(seen)
    report.uncertain_after = scan.uncertain_after()


def _insert_verbatim(out: sqlite3.Connection, streams: dict, position: int, record: bytes, checksum: int) -> None:
    event = _sqlite.RECORD_DECODER.decode(record)
    stream_id, revision = streams.get(event.stream, (None, -1))
    if stream_id is None:
        stream_id = out.execute(
            "INSERT INTO streams (name, revision) VALUES (?, -1)", (event.stream,)
        ).lastrowid
    streams[event.stream] = (stream_id, max(revision, event.revision))
    out.execute(
        "INSERT INTO events (position, stream_id, revision, type, id, record, checksum)"
        " VALUES (?, ?, ?, ?, ?, ?, ?)",
        (position, stream_id, event.revision, event.type, event.id.bytes, record, checksum),
    )


def _row_is_corrupt(position: int, record: bytes, checksum: int) -> bool:
    if zlib.crc32(record) != checksum:
        return True
    try:
        return _sqlite.RECORD_DECODER.decode(record).position != position
    except (msgspec.DecodeError, ValueError):  # invalid UTF-8 surfaces as UnicodeDecodeError
        return True


class _RowScan:
    """Reads every row SQLite can still read, in position order, around damaged pages.

    Positions are dense (1..N), so any position below the highest one that a
    surviving structure (the table or either index) names, and that cannot be
    read, is a loss.
    """

    def __init__(self, conn: sqlite3.Connection, notes: list[str], chunk: int = 512) -> None:
        self.conn = conn
        self.notes = notes
        self.chunk = chunk
        self.unreadable: list[int] = []
        self.highest = self._highest_known()

    def rows(self):
        """Rows chunk by chunk; past the highest known position, until a chunk is cleanly empty."""
        start = 1
        while True:
            end = start + self.chunk - 1
            try:
                rows = self._select("position BETWEEN ? AND ?", (start, end))
            except sqlite3.DatabaseError:
                rows = list(self._one_by_one(start, end))
                if start > self.highest and not rows:
                    return
            else:
                if start > self.highest and not rows:
                    return
            if rows:
                self.highest = max(self.highest, rows[-1][0])
            yield from rows
            start = end + 1

    def missing(self, seen: list[int]) -> list[int]:
        """Positions up to the highest readable one that could not be read."""
        present = set(seen)
        return [p for p in range(1, self.highest + 1) if p not in present]

    def uncertain_after(self) -> int | None:
        """The highest readable position, if reads past it failed (events there may be lost)."""
        beyond = [p for p in self.unreadable if p > self.highest]
        if not beyond:
            return None
        self.notes.append(
            f"positions after {self.highest} could not be read ({_ranges(beyond)}): "
            "events after it may be lost too"
        )
        return self.highest

    def _one_by_one(self, start: int, end: int):
        for position in range(start, end + 1):
            try:
                yield from self._select("position = ?", (position,))
            except sqlite3.DatabaseError:
                self.unreadable.append(position)

    def _select(self, where: str, params: tuple) -> list:
        return self.conn.execute(
            f"SELECT position, record, checksum FROM events WHERE {where} ORDER BY position", params
        ).fetchall()

    def _highest_known(self) -> int:
        highest = 0
        for source, sql in (
            ("table", "SELECT position FROM events"),
            ("stream index", "SELECT position FROM events INDEXED BY events_by_stream"),
            ("id index", "SELECT position FROM events INDEXED BY events_by_id"),
        ):
            try:
                for (position,) in self.conn.execute(sql):
                    highest = max(highest, position)
            except sqlite3.DatabaseError as e:
                self.notes.append(f"{source}: partly unreadable ({e})")
        return highest


def _working_copy(
    path: Path, scratch: Path, notes: list[str], repair_header: bool = False
) -> Path | None:
    """Copy the store (and its WAL) to ``scratch`` so checks never touch the original."""
    if not path.exists():
        notes.append(f"{path} does not exist")
        return None
    work = scratch / "work.db"
    shutil.copyfile(path, work)
    for suffix in ("-wal", "-shm"):
        if Path(f"{path}{suffix}").exists():
            shutil.copyfile(f"{path}{suffix}", f"{work}{suffix}")
    with work.open("rb") as f:
        header = read_header(f.read(HEADER_SIZE))
    if header is None:
        notes.append("header is not an SQLite header")
        if not repair_header:
            return None
        _rewrite_header(work)
        notes.append("rebuilt the header from a fresh store's before reading")
    elif header.pages and work.stat().st_size < header.pages * header.page_size and not _wal_has_frames(work):
        # With WAL frames the header may lag the log: SQLite's WAL recovery decides, as on open.
        notes.append(
            f"file is truncated: {work.stat().st_size} bytes, header says {header.pages * header.page_size}"
        )
        with work.open("r+b") as f:  # page count unknown: SQLite then reads what is there
            f.seek(28)
            f.write(b"\x00" * 4)
    return work


def _rewrite_header(work: Path) -> None:
    """Replace a damaged header with a fresh store's; page 1's schema must still be intact."""
    with tempfile.TemporaryDirectory() as scratch:
        fresh = Path(scratch) / "fresh.db"
        conn = _sqlite.connect(fresh, writer=True)
        _sqlite.initialise(conn, fresh)
        conn.close()
        header = bytearray(fresh.read_bytes()[:HEADER_SIZE])
    header[28:32] = b"\x00\x00\x00\x00"  # page count unknown: SQLite uses the file size
    header[32:40] = b"\x00" * 8  # no free list: leaked pages are harmless for reading
    with work.open("r+b") as f:
        f.write(bytes(header))


def _ranges(positions: list[int]) -> str:
    """``1-3, 7`` for ``[1, 2, 3, 7]``."""
    parts, start = [], None
    for index, position in enumerate(positions):
        if start is None:
            start = position
        following = positions[index + 1] if index + 1 < len(positions) else None
        if following != position + 1:
            parts.append(f"{start}" if start == position else f"{start}-{position}")
            start = None
    return ", ".join(parts)


# -- reading b-tree leaf pages directly ------------------------------------------
# When SQLite cannot walk the events table (a file cut in half loses interior
# pages, so every lookup through the root fails), the rows are still there in
# the table's leaf pages. An event row is recognised by its own evidence: seven
# columns, a blob whose CRC-32 is the stored checksum and that decodes to an
# event at the row's position. Nothing else is trusted.
_TABLE_LEAF: Final = 0x0D
_EVENT_COLUMNS: Final = 7  # position (the rowid), stream_id, revision, type, id, record, checksum


def scan_leaf_pages(path: Path) -> dict[int, tuple[bytes, int]]:
    """``{position: (record, checksum)}`` of every checksum-valid event row in the file's leaf pages.

    Reads the main file and, when present, its ``-wal`` (whose pages are
    newer copies). Overflow chains are followed while their pages exist.
    """
    found: dict[int, tuple[bytes, int]] = {}
    try:
        data = path.read_bytes()
    except OSError:
        return found
    header = read_header(data[:HEADER_SIZE])
    page_size = header.page_size if header is not None else _sqlite.PAGE_SIZE
    reserved = data[20] if header is not None and len(data) > 20 else 0
    pages = [data[i : i + page_size] for i in range(0, len(data) - page_size + 1, page_size)]
    wal = Path(f"{path}-wal")
    if wal.exists():
        try:
            raw = wal.read_bytes()
        except OSError:
            raw = b""
        step = 24 + page_size
        pages += [raw[i + 24 : i + step] for i in range(32, len(raw) - step + 1, step)]
    usable = page_size - reserved
    for index, page in enumerate(pages):
        offset = HEADER_SIZE if index == 0 else 0
        if len(page) < page_size or page[offset] != _TABLE_LEAF:
            continue
        for rowid, payload in _leaf_cells(page, offset, usable, pages):
            row = _event_row(rowid, payload)
            if row is not None:
                found.setdefault(rowid, row)
    return found


def _varint(buf: bytes, at: int) -> tuple[int, int]:
    value = 0
    for i in range(9):
        byte = buf[at + i]
        if i == 8:
            return (value << 8) | byte, at + 9
        value = (value << 7) | (byte & 0x7F)
        if byte < 0x80:
            return value, at + i + 1
    raise IndexError  # pragma: no cover


def _leaf_cells(page: bytes, offset: int, usable: int, pages: list[bytes]):
    """``(rowid, payload)`` of each cell of a table leaf page whose payload can be read whole."""
    try:
        cells = struct.unpack_from(">H", page, offset + 3)[0]
        for n in range(cells):
            at = struct.unpack_from(">H", page, offset + 8 + 2 * n)[0]
            size, at = _varint(page, at)
            rowid, at = _varint(page, at)
            local = _local_size(size, usable)
            payload = page[at : at + local]
            if local < size:
                payload += _overflow(struct.unpack_from(">I", page, at + local)[0], size - local, usable, pages)
            if len(payload) == size:
                yield rowid, payload
    except (IndexError, struct.error):
        return


def _local_size(size: int, usable: int) -> int:
    """How much of a table leaf cell's payload sits on the page itself (SQLite file format, 1.6)."""
    if size <= usable - 35:
        return size
    least = ((usable - 12) * 32 // 255) - 23
    k = least + ((size - least) % (usable - 4))
    return k if k <= usable - 35 else least


def _overflow(number: int, remaining: int, usable: int, pages: list[bytes]) -> bytes:
    parts, seen = [], set()
    while remaining > 0 and 0 < number <= len(pages) and number not in seen:
        seen.add(number)
        page = pages[number - 1]
        chunk = page[4 : min(usable, 4 + remaining)]
        parts.append(chunk)
        remaining -= len(chunk)
        number = struct.unpack_from(">I", page, 0)[0]
    return b"".join(parts) if remaining <= 0 else b""


def _event_row(rowid: int, payload: bytes) -> tuple[bytes, int] | None:
    """``(record, checksum)`` when ``payload`` is a valid event row at position ``rowid``."""
    try:
        header_size, at = _varint(payload, 0)
        types = []
        while at < header_size:
            serial, at = _varint(payload, at)
            types.append(serial)
        if len(types) != _EVENT_COLUMNS:
            return None
        values, at = [], header_size
        for serial in types:
            value, at = _column(payload, at, serial)
            values.append(value)
    except (IndexError, struct.error, ValueError):
        return None
    record, checksum = values[5], values[6]
    if not isinstance(record, bytes) or not isinstance(checksum, int) or rowid < 1:
        return None
    if _row_is_corrupt(rowid, record, checksum):
        return None
    return record, checksum


_INT_SIZES: Final = {1: 1, 2: 2, 3: 3, 4: 4, 5: 6, 6: 8}


def _column(payload: bytes, at: int, serial: int) -> tuple[object, int]:
    if serial in (0, 10, 11):
        return None, at
    if serial in (8, 9):
        return serial - 8, at
    if serial in _INT_SIZES:
        n = _INT_SIZES[serial]
        raw = payload[at : at + n]
        if len(raw) < n:
            raise IndexError
        return int.from_bytes(raw, "big", signed=True), at + n
    if serial == 7:
        return struct.unpack_from(">d", payload, at)[0], at + 8
    n = (serial - 12) // 2
    raw = payload[at : at + n]
    if len(raw) < n:
        raise IndexError
    return (bytes(raw) if serial % 2 == 0 else raw.decode("utf-8", "replace")), at + n

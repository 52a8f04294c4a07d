"""Read-ahead for long reads of the embedded store: SQL and checksums in a second process.

A long ``read_all`` spends about half its time in SQLite and CRC-32, work
that holds the GIL in Python and so cannot share a core with the caller's own
work. For reads of many events the store starts this module as a script
(``python -I _readahead.py``, standard library only): it runs the same paged
queries with its own read connection (each page its own short transaction,
as in-process reads do), verifies every row's checksum and writes each page
to its stdout as one frame, already laid out as the msgpack array the
caller's decoder takes. The caller decodes pages while the next ones are
being read, on the other core.

Frames: a kind byte, the row count and the payload length (``<cII``), then
the payload:

- ``P``: a verified page: each record's length (``<I``), then the msgpack
  array header and the records (the lengths let the caller split the page
  when a record does not decode).
- ``R``: a page with a checksum that did not match: each row as
  ``<I`` length, record, ``<q`` stored checksum; the caller judges it with
  the in-process decoder, so the ``CorruptEvent`` is the same either way.
- ``E``: an SQLite error: JSON with the message and SQLite's error name.
- ``Z``: the end of the read.

The worker ignores SIGINT (the caller decides when to stop and kills it) and
exits quietly when the caller goes away (broken pipe).
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import struct
import sys
import zlib
from collections.abc import Callable, Iterator
from operator import itemgetter
from typing import TypeVar

T = TypeVar("T")
HEADER = struct.Struct("<cII")
PAGE, ROWS, ERROR, END = b"P", b"R", b"E", b"Z"
_ROW_LENGTH = struct.Struct("<I")
_CHECKSUM = struct.Struct("<q")


def page_header(n: int) -> bytes:
    """The msgpack array header for ``n`` items, as the in-process page decoder builds it."""
    return b"\xdd" + n.to_bytes(4, "big")


def paged(
    query: Callable[[int, int], list[T]], cursor_of: Callable[[T], int], cursor: int, page: int,
    limit: int | None,
) -> Iterator[list[T]]:
    """A paged read, a page at a time (in-process reads and the worker share it).

    ``query(cursor, size)`` returns up to ``size`` items after ``cursor``;
    ``cursor_of(item)`` is the cursor after an item. The read ends on an empty
    or short page or once ``limit`` items were returned.
    """
    remaining = limit
    while remaining is None or remaining > 0:
        size = page if remaining is None else min(page, remaining)
        rows = query(cursor, size)
        if not rows:
            return
        yield rows
        cursor = cursor_of(rows[-1])
        if remaining is not None:
            remaining -= len(rows)
        if len(rows) < size:
            return


def serve(args: dict, out) -> None:
    """Run the paged read ``args`` describes and write its frames to ``out``.

    ``args``: path (an SQLite URI when ``uri`` is true), busy_ms, sql (selecting record, checksum and the cursor
    column, with the cursor and the page size as its last two parameters),
    params, cursor, page (rows per query), limit (or None).
    """
    conn = sqlite3.connect(
        args["path"], isolation_level=None, timeout=args["busy_ms"] / 1000, uri=bool(args.get("uri"))
    )
    conn.execute(f"PRAGMA busy_timeout = {int(args['busy_ms'])}")
    conn.execute("PRAGMA query_only = 1")
    sql, params = args["sql"], args["params"]
    crc32 = zlib.crc32
    try:
        query = lambda cursor, size: conn.execute(sql, (*params, cursor, size)).fetchall()  # noqa: E731
        for rows in paged(query, itemgetter(2), args["cursor"], args["page"], args["limit"]):
            if any(crc32(record) != checksum for record, checksum, _ in rows):
                out.write(_rows_frame(rows))  # the caller raises CorruptEvent on it
            else:
                out.write(_page_frame(rows))
            out.flush()
    except sqlite3.Error as e:
        detail = json.dumps({"message": str(e), "errorname": getattr(e, "sqlite_errorname", "")}).encode()
        out.write(HEADER.pack(ERROR, 0, len(detail)))
        out.write(detail)
    out.write(HEADER.pack(END, 0, 0))
    out.flush()


def _page_frame(rows: list[tuple[bytes, int, int]]) -> bytes:
    records = [record for record, _, _ in rows]
    n = len(records)
    lengths = struct.pack(f"<{n}I", *map(len, records))
    payload = b"".join([lengths, page_header(n), *records])
    return HEADER.pack(PAGE, n, len(payload)) + payload


def page_records(payload: bytes, n: int) -> list[bytes]:
    """The records of a ``P`` frame, one by one (to find which one does not decode)."""
    lengths = struct.unpack_from(f"<{n}I", payload)
    records, at = [], 4 * n + len(page_header(n))
    for length in lengths:
        records.append(payload[at : at + length])
        at += length
    return records


def _rows_frame(rows: list[tuple[bytes, int, int]]) -> bytes:
    parts = []
    for record, checksum, _ in rows:
        parts += [_ROW_LENGTH.pack(len(record)), record, _CHECKSUM.pack(checksum)]
    payload = b"".join(parts)
    return HEADER.pack(ROWS, len(rows), len(payload)) + payload


def split_rows(payload: bytes, n: int) -> list[tuple[bytes, int]]:
    """The (record, checksum) rows of an ``R`` frame."""
    rows, at = [], 0
    for _ in range(n):
        (length,) = _ROW_LENGTH.unpack_from(payload, at)
        at += _ROW_LENGTH.size
        record = payload[at : at + length]
        at += length
        (checksum,) = _CHECKSUM.unpack_from(payload, at)
        at += _CHECKSUM.size
        rows.append((record, checksum))
    return rows


def main() -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    args = json.loads(sys.argv[1])
    try:
        serve(args, sys.stdout.buffer)
    except BrokenPipeError:  # the caller stopped reading and went away: nothing to flush at exit
        os._exit(0)
    return 0


if __name__ == "__main__":
    sys.exit(main())

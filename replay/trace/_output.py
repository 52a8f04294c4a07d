"""Query results as text: an aligned table, CSV, or a JSON array of objects."""

from __future__ import annotations

import csv
import numbers
from collections.abc import Iterator
from typing import Any, Final, TextIO

import duckdb
import msgspec

OUTPUT_FORMATS: Final = ("table", "csv", "json")
_FETCH: Final = 1000
_JSON: Final = msgspec.json.Encoder(decimal_format="number")


def write_result(result: duckdb.DuckDBPyConnection, format: str, out: TextIO) -> int:
    """Write every row of ``result`` to ``out`` in ``format``; returns the row count."""
    columns = [d[0] for d in result.description or ()]
    rows = _rows(result)
    if format == "csv":
        return _write_csv(columns, rows, out)
    if format == "json":
        return _write_json(columns, rows, out)
    return _write_table(columns, list(rows), out)


def _rows(result: duckdb.DuckDBPyConnection) -> Iterator[tuple[Any, ...]]:
    while batch := result.fetchmany(_FETCH):
        yield from batch


def _cell(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, str):
        return value
    if isinstance(value, (list, tuple, dict)):
        return _JSON.encode(value).decode()
    return str(value)


def _write_table(columns: list[str], rows: list[tuple[Any, ...]], out: TextIO) -> int:
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [max([len(name), *(len(r[i]) for r in cells)]) for i, name in enumerate(columns)]
    numeric = [bool(rows) and all(_is_number(r[i]) for r in rows) for i in range(len(columns))]

    def line(values: list[str]) -> str:
        parts = [v.rjust(w) if num else v.ljust(w) for v, w, num in zip(values, widths, numeric, strict=True)]
        return " | ".join(parts).rstrip()

    out.write(line(columns) + "\n")
    out.write("-+-".join("-" * w for w in widths) + "\n")
    for row in cells:
        out.write(line(row) + "\n")
    out.write(f"({len(rows)} row{'s' if len(rows) != 1 else ''})\n")
    return len(rows)


def _is_number(value: Any) -> bool:
    return value is None or (isinstance(value, numbers.Number) and not isinstance(value, bool))


def _write_csv(columns: list[str], rows: Iterator[tuple[Any, ...]], out: TextIO) -> int:
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    count = 0
    for row in rows:
        writer.writerow(["" if v is None else _cell(v) for v in row])
        count += 1
    return count


def _write_json(columns: list[str], rows: Iterator[tuple[Any, ...]], out: TextIO) -> int:
    out.write("[")
    count = 0
    for row in rows:
        out.write(",\n " if count else "\n ")
        out.write(_JSON.encode(dict(zip(columns, row, strict=True))).decode())
        count += 1
    out.write("\n]\n" if count else "]\n")
    return count

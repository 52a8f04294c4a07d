"""``unbroken import``, ``unbroken export`` and ``unbroken query``."""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Final

from eventstore import DEFAULT_URI
from eventstore.cli import EXIT_ERROR, EXIT_OK, EXIT_PROBLEM, EXIT_USAGE
from replay.log import DEFAULT_IMPORT_BATCH

_FORMATS: Final = ("jsonl", "csv", "parquet")
_PROGRESS_EVERY_S: Final = 1.0


def register(commands: argparse._SubParsersAction) -> None:
    """Add ``import``, ``export`` and ``query`` to the ``unbroken`` parser."""
    _register_import(commands)
    _register_export(commands)
    _register_query(commands)


def _register_import(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "import",
        help="import a production log (JSONL, CSV, Parquet) into an event store",
        description=(
            "Append every good line of LOG to the store. Ids are deterministic, so importing "
            "the same log again adds nothing. Bad lines go whole to the quarantine file with "
            "their line number and reason; every good line is still imported. "
            "Exit 0 when every line was good, 1 when any was rejected, 2 usage error, 3 when the "
            "import could not run."
        ),
        epilog=(
            'A mapping file holds field names, e.g. {"type": "kind", "occurred_at": "ts", '
            '"stream_template": "meter-{meter_id}", "time_unit": "ms"}; keys: stream, type, data, '
            "id, occurred_at, recorded_at, metadata, stream_template, time_unit."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("log", help="the log file (.jsonl, .csv, .parquet; .gz for JSONL/CSV)")
    parser.add_argument("--store", default=DEFAULT_URI, help=f"store URI (default {DEFAULT_URI})")
    parser.add_argument("--format", choices=_FORMATS, help="log format (default: from the file name)")
    parser.add_argument("--mapping", help="JSON or TOML file naming the log's fields (see the end of this help)")
    parser.add_argument("--quarantine", help="where bad lines go (default: LOG.rejected.jsonl)")
    parser.add_argument("--rejected-stream", metavar="STREAM",
                        help="also append each bad line to this stream as a Rejected event")
    parser.add_argument("--batch", type=int, default=DEFAULT_IMPORT_BATCH,
                        help=f"lines per transaction (default {DEFAULT_IMPORT_BATCH:,}; memory holds one batch)")
    parser.add_argument(
        "--order", choices=("file", "stream"), default="file",
        help="file: keep the log's order across streams (default; replayable as stored); "
             "stream: group each batch by stream, faster, but receive times then go back and "
             "`unbroken replay --store` refuses the store",
    )
    fields = parser.add_argument_group("field mapping (override --mapping)")
    for role in ("stream", "type", "data", "id", "occurred_at", "recorded_at", "metadata"):
        fields.add_argument(f"--{role.replace('_', '-')}-field", dest=f"field_{role}", metavar="NAME",
                            help=f"the field holding the event's {role}")
    fields.add_argument("--stream-template", metavar="TEMPLATE",
                        help="build the stream name from fields, e.g. 'meter-{meter_id}'")
    fields.add_argument("--time-unit", choices=("ns", "us", "ms", "s"), help="unit of integer times")
    parser.set_defaults(run=_run_import)


def _register_export(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "export",
        help="write every event of a store to a log file that `unbroken import` reads back",
        description="Write the store's events in global order to FILE (JSONL, CSV or Parquet). "
                    "Exit 0 ok, 2 usage error (--out exists and no --force), 3 could not run "
                    "(no store there, an unreadable store).",
    )
    parser.add_argument("--store", default=DEFAULT_URI, help=f"store URI (default {DEFAULT_URI})")
    parser.add_argument("--out", required=True, help="the file to write")
    parser.add_argument("--format", choices=_FORMATS, help="default: from the --out file name")
    parser.add_argument("--force", action="store_true", help="replace --out if it exists")
    parser.set_defaults(run=_run_export)


def _register_query(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "query",
        help="run one read-only SQL SELECT over trace directories",
        description=_fill(
            "Tables: runs, deliveries, drops, decisions, timers, faults, violations "
            "(the run_id column tells runs apart; every column is listed below). Only a single "
            "SELECT runs; anything that would write, change settings or read other files is "
            "refused. A query that runs longer than --timeout is stopped; Ctrl-C stops it too "
            "(exit 130). Exit 0 ok, 2 the query is refused or wrong (does not parse, no such "
            "table or column), 3 it could not run (no such trace directory, an unreadable "
            "trace, out of time)."
        ),
        epilog=_schema_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("dirs", nargs="+", metavar="TRACE_DIR", help="a trace directory (one per run)")
    parser.add_argument("sql", metavar="SQL", help='one SELECT, e.g. "SELECT run_id, count(*) FROM decisions GROUP BY 1"')
    parser.add_argument("--format", choices=("table", "csv", "json"), default="table", help="output (default table)")
    parser.add_argument("--timeout", type=float, default=60.0, metavar="SECONDS",
                        help="stop the query after this many seconds (default 60; 0 for no limit)")
    parser.set_defaults(run=_run_query)


def _fill(text: str) -> str:
    import textwrap

    return textwrap.fill(text, 100)


def _schema_epilog() -> str:
    """The trace tables' columns, meanings and joins, generated from the schema (never copied)."""
    import textwrap

    from replay.trace import schema_text

    out = []
    for line in schema_text().splitlines():
        indent = len(line) - len(line.lstrip())
        out.extend(textwrap.wrap(line.strip(), 100, initial_indent=" " * indent,
                                 subsequent_indent=" " * (indent + 4)) or [""])
    return "\n".join(out)


def _mapping(args: argparse.Namespace) -> object:
    from replay.log import load_mapping

    base = load_mapping(args.mapping)
    overrides = {role: getattr(args, f"field_{role}") for role in
                 ("stream", "type", "data", "id", "occurred_at", "recorded_at", "metadata")}
    overrides = {k: v for k, v in overrides.items() if v is not None}
    if args.stream_template is not None:
        overrides["stream_template"] = args.stream_template
    if args.time_unit is not None:
        overrides["time_unit"] = args.time_unit
    if not overrides:
        return base
    from msgspec import structs

    return load_mapping({**structs.asdict(base), **overrides})


class _Progress:
    """Counts to stderr at most once a second, for imports that take a while."""

    def __init__(self) -> None:
        self._last = self._start = time.monotonic()

    def __call__(self, report: object) -> None:
        now = time.monotonic()
        if now - self._last < _PROGRESS_EVERY_S:
            return
        self._last = now
        rate = report.read / max(now - self._start, 1e-9)  # type: ignore[attr-defined]
        print(f"unbroken import: {report.read} lines read, {report.imported} new, "  # type: ignore[attr-defined]
              f"{report.rejected} rejected ({rate:,.0f} lines/s)", file=sys.stderr)  # type: ignore[attr-defined]


def _run_import(args: argparse.Namespace) -> int:
    from eventstore import open_store
    from eventstore.validation import MAX_MULTI_EVENTS
    from replay.log import LogError, import_log

    if not 1 <= args.batch <= MAX_MULTI_EVENTS:  # a usage error, before anything is opened
        print(f"unbroken import: --batch must be from 1 to {MAX_MULTI_EVENTS}, got {args.batch}", file=sys.stderr)
        return EXIT_USAGE
    try:
        mapping = _mapping(args)
        with open_store(args.store) as store:
            report = import_log(args.log, store, mapping, args.quarantine, args.batch, _Progress(),
                                format=args.format, order=args.order,
                                rejected_stream=args.rejected_stream)
    except (LogError, ValueError) as e:
        print(f"unbroken import: {e}", file=sys.stderr)
        return EXIT_ERROR
    print(f"{report.source}: {report.read} lines read, {report.imported} imported, "
          f"{report.already_present} already present, {report.rejected} rejected")
    if not report.rejected:
        return EXIT_OK
    for line in report.first_rejections:
        print(f"  rejected: {line}", file=sys.stderr)
    print(f"unbroken import: {report.rejected} line(s) rejected; kept whole in {report.quarantine}",
          file=sys.stderr)
    return EXIT_PROBLEM


def _run_export(args: argparse.Namespace) -> int:
    from eventstore import open_store
    from replay.log import LogError, export_log

    if os.path.lexists(args.out) and not args.force:  # a usage error, as for generate
        print(f"unbroken export: {args.out} exists; pass --force to replace it", file=sys.stderr)
        return EXIT_USAGE
    try:
        with open_store(args.store, read_only=True) as store:  # never creates or changes a store
            count = export_log(store, args.out, args.format, overwrite=args.force)
    except LogError as e:
        print(f"unbroken export: {e}", file=sys.stderr)
        return EXIT_ERROR
    print(f"wrote {count} events to {args.out}")
    return EXIT_OK


def _run_query(args: argparse.Namespace) -> int:
    import duckdb

    from replay.trace import QueryError, QueryTimeout, open_trace, write_result

    _CANNOT_RUN = _cannot_run()
    dirs, sql = args.dirs, args.sql
    if not (args.timeout >= 0):  # also NaN
        print(f"unbroken query: --timeout must be >= 0 seconds (0: no limit), got {args.timeout}",
              file=sys.stderr)
        return EXIT_USAGE
    missing = [d for d in dirs if not os.path.isdir(d)]
    if missing:
        print(f"unbroken query: not a directory: {', '.join(missing)}", file=sys.stderr)
        return EXIT_ERROR
    try:  # opening: a trace that is no trace or cannot be read is "could not run"
        con = open_trace(*dirs, timeout=args.timeout if args.timeout > 0 else None)
    except (QueryError, duckdb.Error, OSError) as e:
        print(f"unbroken query: {e}", file=sys.stderr)
        return EXIT_ERROR
    with con:
        try:
            write_result(con.execute(sql), args.format, sys.stdout)
        except (QueryTimeout, *_CANNOT_RUN) as e:  # out of time, unreadable files: could not run
            print(f"unbroken query: {e}", file=sys.stderr)
            return EXIT_ERROR
        except (QueryError, duckdb.Error) as e:  # refused or wrong SQL (duckdb.Error also while fetching)
            print(f"unbroken query: {e}", file=sys.stderr)
            return EXIT_USAGE
    return EXIT_OK


def _cannot_run() -> tuple[type[BaseException], ...]:
    """DuckDB errors that say the query could not run, not that it was wrong."""
    import duckdb

    names = ("IOException", "OutOfMemoryException", "InterruptException", "InternalException",
             "HTTPException", "FatalException", "PermissionException", "SerializationException")
    return tuple(getattr(duckdb, n) for n in names if isinstance(getattr(duckdb, n, None), type))

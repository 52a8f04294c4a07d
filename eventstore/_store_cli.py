"""``unbroken store``: inspect, verify and salvage event stores."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .cli import EXIT_OK, EXIT_PROBLEM


def register(commands: argparse._SubParsersAction) -> None:
    """Add ``unbroken store info|verify|salvage``."""
    store = commands.add_parser(
        "store",
        help="inspect, verify and salvage event stores",
        description="Inspect, verify and salvage event stores.",
    )
    actions = store.add_subparsers(dest="action", metavar="ACTION", required=True)

    info = actions.add_parser(
        "info", help="counts and positions of a store",
        description="Open the store read-only (it is never created or changed), print its last position "
                    "and run SQLite's quick check. Exit 1 if the file is damaged, 3 if there is no store.",
    )
    info.add_argument("uri", help="store URI (embedded:///path/events.db, memory://, or a file path)")
    info.set_defaults(run=_info)

    verify = actions.add_parser(
        "verify",
        help="check an embedded store file end to end, without changing it",
        description="Check the SQLite structure and every event's checksum. Exit 1 if anything is wrong.",
    )
    verify.add_argument("path", type=Path, help="the store file (events.db)")
    verify.set_defaults(run=_verify)

    salvage = actions.add_parser(
        "salvage",
        help="copy every readable event of a damaged store into a new one",
        description=(
            "Copy every readable, checksum-valid event into a new store, keeping positions, "
            "revisions and ids. The damaged file is never modified. Exit 1 if any event was lost."
        ),
    )
    salvage.add_argument("path", type=Path, help="the damaged store file")
    salvage.add_argument("--out", type=Path, required=True, help="the new store file to create")
    salvage.set_defaults(run=_salvage)


def _info(args: argparse.Namespace) -> int:
    from ._open import open_store

    with open_store(args.uri, read_only=True) as store:
        print(f"store:         {store.uri}")
        print(f"last position: {store.last_position()}")
        for note in getattr(store, "recovery", []):
            print(f"note:          {note}")
        problems = store.check_integrity()
    if problems:
        for problem in problems:
            print(f"  problem: {problem}")
        print(f"unbroken store info: WARNING: {args.uri} is damaged; run `unbroken store verify` for details "
              "and `unbroken store salvage` to recover every readable event", file=sys.stderr)
        return EXIT_PROBLEM
    return EXIT_OK


def _store_file(path: Path) -> None:
    """Refuse a path that is not a store file: missing, or a directory (exit 3)."""
    from ._errors import StoreNotFound

    if path.is_dir():
        raise StoreNotFound(f"{path} is a directory, not a store file")
    if not path.exists():
        raise StoreNotFound(f"no store at {path}")


def _verify(args: argparse.Namespace) -> int:
    from ._damage import verify

    _store_file(args.path)
    report = verify(args.path)
    print(f"{report.path}: {report.events} events readable, last position {report.last_position}")
    for problem in report.problems:
        print(f"  problem: {problem}")
    if report.corrupt_positions:
        shown = ", ".join(map(str, report.corrupt_positions[:20]))
        print(f"  checksum mismatch at positions: {shown}")
    print("ok" if report.ok else "DAMAGED: run `unbroken store salvage` to recover what is readable")
    return EXIT_OK if report.ok else EXIT_PROBLEM


def _salvage(args: argparse.Namespace) -> int:
    from ._damage import salvage
    from ._errors import StoreNotFound

    _store_file(args.path)
    if args.out.is_dir():
        raise StoreNotFound(f"salvage target {args.out} is a directory; name a new file")
    report = salvage(args.path, args.out)
    print(f"recovered {report.recovered} events from {report.source} into {report.target}")
    for note in report.notes:
        print(f"  note: {note}")
    lost = report.lost_positions + report.corrupt_positions
    if lost:
        print(f"  LOST {len(lost)} events at positions: {', '.join(map(str, sorted(lost)[:50]))}",
              file=sys.stderr)
        return EXIT_PROBLEM
    return EXIT_OK

"""Subcommands of load/: ``unbroken generate`` (seeded logs) and ``unbroken demo``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from eventstore.cli import EXIT_ERROR, EXIT_OK, EXIT_USAGE


def register(commands: argparse._SubParsersAction) -> None:
    """Add ``generate`` and ``demo`` to the ``unbroken`` parser."""
    _register_generate(commands)
    _register_demo(commands)


def _register_generate(commands: argparse._SubParsersAction) -> None:
    generate = commands.add_parser(
        "generate", help="write a seeded, production-like event log (JSON Lines)",
        description="Write a seeded event log in the import format (JSON Lines). "
        "The same arguments always give a byte-identical file; the seed is printed.",
    )
    kinds = generate.add_subparsers(dest="kind", metavar="KIND", required=True)
    arrears = kinds.add_parser(
        "arrears", help="an energy supplier's book: readings, bills, payments, flags, holidays, acks",
        description="Daily meter readings (device time, receive lag, estimates, lagging meters, "
        "clocks ahead), monthly statements (some provisional), payments (some duplicated, some "
        "reversed), vulnerability flags, bank holidays and notice acks, one stream per account.",
    )
    arrears.add_argument("--accounts", type=int, default=2000, help="number of accounts (default 2000)")
    arrears.add_argument("--days", type=int, default=90, help="days simulated (default 90)")
    arrears.add_argument("--start", default="2024-01-01", help="first day, YYYY-MM-DD (default 2024-01-01)")
    arrears.add_argument("--scenarios", action="store_true",
                         help="build one account per arrears scenario (SM-AR-001..014) first, "
                         "so a small log reaches each (use --days 30 or more)")
    _common(arrears)
    arrears.set_defaults(run=_run_arrears)
    bulk = kinds.add_parser(
        "bulk", help="N arrears-shaped events, fast (1,000,000 in well under 30 s), for benchmarks",
        description="A simpler arrears-shaped log of exactly N events: meters upload 48 half-hourly "
        "readings at once (~90%% of events), with payments, statements, reversals, acks, flags and "
        "calendar days between.",
    )
    bulk.add_argument("--events", type=int, required=True, help="number of events")
    bulk.add_argument("--accounts", type=int, default=None, help="accounts (default events / 400)")
    _common(bulk)
    bulk.set_defaults(run=_run_bulk)
    trading = kinds.add_parser(
        "trading", help="ticks with a flash crash, fills, a signal flood, rate-limit errors, resets",
        description="A trading session for the kill switch (TR-001..TR-005): one tick per symbol per "
        "second with a flash crash, fills, a signal flood, orders refused with -1003/-1015 and "
        "operator resets (one too early). See docs/trading.md.",
    )
    trading.add_argument("--symbols", type=int, default=4, help="symbols traded, 1..8 (default 4)")
    trading.add_argument("--minutes", type=int, default=20, help="minutes simulated (default 20)")
    trading.add_argument("--crash-pct", type=float, default=15.0, help="flash-crash drop in %% (15)")
    _common(trading)
    trading.set_defaults(run=_run_trading)
    grid = kinds.add_parser(
        "grid", help="a day of grid node readings and heartbeats (producers, consumers, storage, lines)",
        description="Seeded grid nodes (solar, wind, gas, residential, commercial, industrial, storage, "
        "lines) report energy and frequency each interval, with heartbeats between; the energy "
        "balances (GRID-001). Options add a frequency dip, late nodes (NF-002), silent nodes "
        "(NF-001, NF-004) and a lossy node (NF-003). See docs/grid.md. Example: unbroken generate "
        "grid --nodes 20 --hours 24 --silent-fraction 0.3 --silent-from 12 --out grid.jsonl",
    )
    grid.add_argument("--nodes", type=int, default=20, help="grid nodes, >= 4 (default 20)")
    grid.add_argument("--hours", type=float, default=24.0, help="hours simulated (default 24)")
    grid.add_argument("--interval", type=int, default=300, help="metering interval in s (default 300)")
    grid.add_argument("--dip-at", type=float, default=None, help="hour of a frequency dip (default none)")
    grid.add_argument("--late-fraction", type=float, default=0.0, help="share of nodes received late (0)")
    grid.add_argument("--late-s", type=float, default=0.0, help="how late those nodes are, s (0)")
    grid.add_argument("--silent-fraction", type=float, default=0.0, help="share of nodes that go silent (0)")
    grid.add_argument("--silent-from", type=float, default=0.0, help="hour they go silent (default 0)")
    grid.add_argument("--lossy-p", type=float, default=0.0, help="one node loses each event with P (0)")
    _common(grid)
    grid.set_defaults(run=_run_grid)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--out", type=Path, required=True, help="the .jsonl file to write")
    parser.add_argument("--force", action="store_true", help="replace --out if it exists")


def _register_demo(commands: argparse._SubParsersAction) -> None:
    demo = commands.add_parser(
        "demo", help="generate, import, replay, query and check an arrears log (under a minute)",
        description="The main job end to end on the embedded store: generate a seeded arrears log, "
        "import it, replay it through the arrears projection into a trace, summarise the decisions "
        "with SQL, and property-check a slice. Exit 1 when a line is rejected or an invariant breaks.",
    )
    demo.add_argument("--dir", type=Path, default=Path("demo-out"), help="where files go (default demo-out)")
    demo.add_argument("--accounts", type=int, default=1000, help="accounts in the log (default 1000)")
    demo.add_argument("--days", type=int, default=90, help="days simulated (default 90)")
    demo.add_argument("--seed", type=int, default=42, help="random seed (default 42)")
    demo.add_argument("--check-accounts", type=int, default=30,
                      help="accounts in the slice the property check perturbs (default 30)")
    demo.add_argument("--examples", type=int, default=100, help="property-check examples (default 100)")
    demo.set_defaults(run=_run_demo)


def _refuse_existing(args: argparse.Namespace) -> bool:
    if args.out.exists() and not args.force:
        print(f"unbroken generate: {args.out} exists; pass --force to replace it", file=sys.stderr)
        return True
    return False


def _refuse_bad_place(args: argparse.Namespace) -> bool:
    """``--out`` must be a file in a directory that exists: generate never creates directories."""
    parent = args.out.parent
    if args.out.is_dir():
        print(f"unbroken generate: {args.out} is a directory; name a file", file=sys.stderr)
        return True
    if not parent.is_dir():
        what = "is not a directory" if parent.exists() else "does not exist"
        print(f"unbroken generate: directory {parent} {what}; create it first", file=sys.stderr)
        return True
    return False


def _run_arrears(args: argparse.Namespace) -> int:
    from .generators import ArrearsProfile, generate_arrears

    if _refuse_bad_place(args):
        return EXIT_ERROR
    if _refuse_existing(args):
        return EXIT_USAGE
    try:
        profile = ArrearsProfile(accounts=args.accounts, days=args.days, seed=args.seed, start=args.start,
                                 scenarios=args.scenarios)
    except ValueError as e:
        print(f"unbroken generate arrears: {e}", file=sys.stderr)
        return EXIT_USAGE
    print(f"unbroken generate arrears: seed {args.seed}", file=sys.stderr)
    return _report(generate_arrears(args.out, profile))


def _run_bulk(args: argparse.Namespace) -> int:
    from .generators import generate_bulk

    if _refuse_bad_place(args):
        return EXIT_ERROR
    if _refuse_existing(args):
        return EXIT_USAGE
    if args.events < 0 or (args.accounts is not None and args.accounts < 1):
        print("unbroken generate bulk: --events must be >= 0 and --accounts >= 1", file=sys.stderr)
        return EXIT_USAGE
    print(f"unbroken generate bulk: seed {args.seed}", file=sys.stderr)
    return _report(generate_bulk(args.out, args.events, args.seed, args.accounts))


def _run_trading(args: argparse.Namespace) -> int:
    from ._trading_model import TradingProfile, generate_trading

    if _refuse_existing(args):
        return EXIT_USAGE
    try:
        profile = TradingProfile(symbols=args.symbols, minutes=args.minutes, seed=args.seed,
                                 crash_pct=args.crash_pct)
    except ValueError as e:
        print(f"unbroken generate trading: {e}", file=sys.stderr)
        return EXIT_USAGE
    print(f"unbroken generate trading: seed {args.seed}", file=sys.stderr)
    return _report(generate_trading(args.out, profile))


def _run_grid(args: argparse.Namespace) -> int:
    from ._grid_model import GridProfile, generate_grid

    if _refuse_bad_place(args):
        return EXIT_ERROR
    if _refuse_existing(args):
        return EXIT_USAGE
    try:
        profile = GridProfile(
            nodes=args.nodes, hours=args.hours, interval_s=args.interval, seed=args.seed,
            dip_at_h=args.dip_at, late_fraction=args.late_fraction, late_s=args.late_s,
            silent_fraction=args.silent_fraction, silent_from_h=args.silent_from, lossy_p=args.lossy_p)
    except ValueError as e:
        print(f"unbroken generate grid: {e}", file=sys.stderr)
        return EXIT_USAGE
    print(f"unbroken generate grid: seed {args.seed}", file=sys.stderr)
    return _report(generate_grid(args.out, profile))


def _report(summary) -> int:
    types = ", ".join(f"{t} {n:,}" for t, n in summary.types.items())
    print(f"{summary.path}: {summary.events:,} events (seed {summary.seed}): {types}")
    return EXIT_OK


def _run_demo(args: argparse.Namespace) -> int:
    from ._demo import DemoError, run_demo

    try:
        return run_demo(args)
    except DemoError as e:
        print(f"unbroken demo: {e}", file=sys.stderr)
        return EXIT_ERROR

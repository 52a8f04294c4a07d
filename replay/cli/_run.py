"""``unbroken replay`` and ``unbroken diff``."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Iterable
from contextlib import ExitStack
from typing import Any

from eventstore import open_store
from eventstore.cli import EXIT_ERROR, EXIT_OK, EXIT_PROBLEM
from replay._delivery import Delivery, deliveries_of
from replay._errors import ReplayError


def register(commands: argparse._SubParsersAction) -> None:
    """Add ``replay`` and ``diff`` to the ``unbroken`` parser."""
    _register_replay(commands)
    _register_diff(commands)


def _source_args(parser: argparse.ArgumentParser, counterexample: bool = False) -> None:
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--store", metavar="URI", help="replay every event of this store")
    group.add_argument("--log", metavar="FILE", help="replay a log file (JSONL, CSV, Parquet)")
    if counterexample:
        group.add_argument(
            "--counterexample", metavar="DIR",
            help="replay a saved run (e.g. from unbroken check --trace) delivery for delivery, "
                 "and compare its digest; the projection and config default to the saved ones")
    parser.add_argument("--mapping", metavar="M", help="field mapping for --log (JSON or TOML)")


def _register_replay(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "replay", help="replay a store or log through a projection, in virtual time",
        description=(
            "Deliver every event once, at its recorded time, through the projection; timers "
            "fire in virtual time. Prints counts and the run digest; --trace writes the "
            "Parquet trace tables. --counterexample DIR replays a saved run exactly. "
            "Exit 0 ok, 1 not deterministic (--check-determinism) or a counterexample no longer "
            "reproduces, 3 could not run."),
    )
    _source_args(parser, counterexample=True)
    parser.add_argument("--projection", metavar="NAME",
                        help="a registered projection (e.g. arrears) or FILE.py:FACTORY / module:factory")
    parser.add_argument("--config", nargs="*", default=[], metavar="K=V",
                        help="projection settings, e.g. hold_hours=48")
    parser.add_argument("--trace", metavar="DIR", help="write the trace tables here")
    parser.add_argument("--run-id", default="replay", help="run id in the trace (default replay)")
    parser.add_argument("--pace", type=float, metavar="K", help="replay at K times real speed")
    parser.add_argument("--snapshot-every", type=int, metavar="N",
                        help="snapshot every N deliveries (under DIR/snapshots)")
    parser.add_argument("--snapshot-dir", metavar="DIR", help="where snapshots go")
    parser.add_argument("--resume", action="store_true", help="start from the newest snapshot")
    parser.add_argument("--strict", action="store_true",
                        help="stop at the first event the projection raises on")
    parser.add_argument("--check-determinism", action="store_true",
                        help="replay twice and compare; exit 1 naming the first difference")
    parser.add_argument("--progress", action="store_true",
                        help="show progress on stderr even when it is not a terminal")
    parser.set_defaults(run=_run_replay)


def _register_diff(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "diff", help="replay one log through two projections and compare their decisions",
        description=("Replay the same events through A and B (or two configurations of one) "
                     "and report the first divergence and the differing decisions by kind and "
                     "reason. Exit 0 same, 1 different, 3 could not run."),
    )
    _source_args(parser)
    parser.add_argument("--projection", required=True, metavar="A", help="projection A")
    parser.add_argument("--against", required=True, metavar="B", help="projection B")
    parser.add_argument("--config-a", nargs="*", default=[], metavar="K=V", help="settings of A")
    parser.add_argument("--config-b", nargs="*", default=[], metavar="K=V", help="settings of B")
    parser.set_defaults(run=_run_diff)


def _run_replay(args: argparse.Namespace) -> int:
    from replay.core import Pacing, Snapshots, run

    if args.counterexample:
        return _run_counterexample(args)
    if not args.projection:
        return _fail("replay", ValueError("--projection is required (a name or FILE.py:FACTORY)"))
    try:
        projection = _projection(args.projection, args.config)
        with ExitStack() as stack:
            source, deliveries, total = _open_source(args, stack)
            options = dict(source=source, run_id=args.run_id, trace_dir=args.trace,
                           pacing=Pacing(args.pace) if args.pace else None,
                           snapshots=Snapshots(args.snapshot_every, args.snapshot_dir, args.resume),
                           strict=args.strict, collect=False,
                           progress=_progress_printer(args, total))
            if args.check_determinism:
                return _determinism(deliveries, projection, options)
            result = run(deliveries(), projection, **options)
    except (ReplayError, ValueError) as e:  # ConfigError and LogError are ValueErrors
        return _fail("replay", e)
    if options["progress"] is not None:
        print(file=sys.stderr)
    _print_result(result)
    return EXIT_OK


def _run_counterexample(args: argparse.Namespace) -> int:
    """Replay a saved run's recorded deliveries and say whether the digest is the saved one."""
    import json
    from pathlib import Path

    from replay.core import read_recorded, recorded_deliveries, run
    from replay.trace import load_trace

    root = Path(args.counterexample)
    try:
        if not (root / "events.jsonl").is_file():
            raise ReplayError(f"{root} holds no events.jsonl: not a saved run")
        saved = json.loads((root / "counterexample.json").read_text()) if (root / "counterexample.json").is_file() else {}
        spec = args.projection or saved.get("projection")
        if not spec:
            raise ReplayError(f"{root} names no projection (no counterexample.json): pass --projection")
        config = projections_config(args.config) if args.config else saved.get("config", {})
        from replay.core import load_projection

        projection = load_projection(spec, **config)
        events = read_recorded(root / "events.jsonl")
        deliveries, drops = recorded_deliveries(root, events)
        expected = load_trace(root)["runs"]["digest"][0]
        result = run(deliveries, projection, drops=drops, source=str(root), collect=False,
                     trace_dir=args.trace, run_id=args.run_id)
    except (ReplayError, ValueError) as e:
        return _fail("replay", e)
    _print_result(result)
    if result.digest == expected:
        print(f"reproduced exactly: {len(deliveries)} deliveries, digest matches the saved run")
        if saved.get("invariant"):
            print(f"for the verdict on {saved['invariant']}: unbroken check --replay {root}")
        return EXIT_PROBLEM if saved.get("invariant") else EXIT_OK
    print(f"NOT reproduced: digest {result.digest} differs from the saved {expected} "
          f"(the projection behaves differently now; compare with unbroken query {root})")
    return EXIT_OK if saved.get("invariant") else EXIT_PROBLEM


def projections_config(pairs: list[str]) -> dict[str, str]:
    import projections

    return projections.parse_pairs(pairs)


def _determinism(deliveries, projection, options: dict) -> int:
    from replay.core import check_determinism

    options.pop("collect")
    snapshots = options.pop("snapshots")
    for unsupported, given in (("resume", snapshots.resume), ("snapshot-every", snapshots.every)):
        if given:
            raise ReplayError(f"--check-determinism replays from the start; drop --{unsupported}")
    report = check_determinism(deliveries, projection, **options)
    print(report.describe())
    return EXIT_OK if report.ok else EXIT_PROBLEM


def _run_diff(args: argparse.Namespace) -> int:
    from replay.core import diff_projections

    try:
        a = _projection(args.projection, args.config_a)
        b = _projection(args.against, args.config_b)
        with ExitStack() as stack:
            _, deliveries, _ = _open_source(args, stack)
            report = diff_projections(deliveries, a, b)
    except (ReplayError, ValueError) as e:
        return _fail("diff", e)
    print(report.describe())
    return EXIT_OK if report.same else EXIT_PROBLEM


def _projection(name: str, pairs: list[str]) -> Any:
    import projections
    from replay.core import load_projection

    return load_projection(name, **projections.parse_pairs(pairs))


def _open_source(args, stack: ExitStack) -> tuple[str, Callable[[], Iterable[Delivery]], int | None]:
    """The source label, a callable giving a fresh lazy delivery iterator, the event count."""
    if args.store:
        store = stack.enter_context(open_store(args.store))
        return args.store, lambda: deliveries_of(store.read_all()), store.last_position()
    from replay.log import read_log

    path, mapping = args.log, args.mapping
    return path, lambda: deliveries_of(read_log(path, mapping)), None


def _progress_printer(args, total: int | None) -> Callable[[int, int | None], None] | None:
    """Progress on stderr (events, percent, events/s) when it is a terminal or --progress."""
    if not (args.progress or sys.stderr.isatty()):
        return None
    start = time.monotonic()

    def report(done: int, _: int | None) -> None:
        rate = done / max(time.monotonic() - start, 1e-9)
        pct = f" {100 * done / total:5.1f}%" if total else ""
        print(f"\rreplay: {done:,} events{pct} {rate:,.0f} events/s", end="", file=sys.stderr,
              flush=True)

    return report


def _print_result(result) -> None:
    counts = ", ".join(f"{k} {v}" for k, v in result.counts.items())
    print(f"run {result.run_id}: {result.projection}: {counts}")
    if result.resumed_from:
        print(f"resumed after {result.resumed_from} deliveries")
    print(f"digest {result.digest}")
    if result.trace_dir is not None:
        print(f"trace {result.trace_dir}")
    if result.counts["faults"]:
        print(f"{result.counts['faults']} fault rows: see the faults table", file=sys.stderr)


def _fail(command: str, error: Exception) -> int:
    print(f"unbroken {command}: {error}", file=sys.stderr)
    return EXIT_ERROR

"""``unbroken check``: search delivery schedules of a log for broken invariants, or replay a counterexample."""

from __future__ import annotations

import argparse
import sys

EXIT_OK, EXIT_PROBLEM, EXIT_USAGE, EXIT_ERROR = 0, 1, 2, 3

EPILOG = """\
examples:
  unbroken check --log arrears.jsonl --projection arrears --examples 500 --seed 7 --trace cx/
  unbroken check --log arrears.jsonl --projection my_rules.py:build --config hold_hours=24
  unbroken check --replay cx/AR-1          # replay a saved counterexample, no Hypothesis

Invariants: the built-ins (INV-1..INV-5, AR-1..AR-5) plus every *.sql in --invariants DIR.
Exit codes: 0 every invariant held, 1 one broke (or the replayed counterexample still
breaks), 2 usage error, 3 could not run (missing file, bad projection, unknown verdicts).
"""


def register(commands: argparse._SubParsersAction) -> None:
    """Add ``check`` to the ``unbroken`` parser."""
    p = commands.add_parser(
        "check", help="search delivery schedules for broken invariants",
        description="Replay a log under delivery schedules drawn by Hypothesis (delays, "
        "duplicates, drops, reordering, partitions, clock skew), check invariants in SQL on "
        "every run, and shrink each broken invariant to a small counterexample.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--log", metavar="FILE", help="the base log (JSONL, CSV or Parquet)")
    p.add_argument("--mapping", metavar="FILE", help="column mapping for the log (see unbroken import)")
    p.add_argument("--projection", metavar="NAME",
                   help="a registered projection (e.g. arrears) or FILE.py:FACTORY")
    p.add_argument("--config", metavar="KEY=VALUE", action="append", default=[],
                   help="projection setting, repeatable (e.g. hold_hours=24)")
    p.add_argument("--examples", type=int, default=200, metavar="N", help="schedules to try (200)")
    p.add_argument("--seed", type=int, default=0, metavar="S", help="search seed (0)")
    p.add_argument("--invariants", metavar="DIR", help="directory of extra *.sql invariants")
    p.add_argument("--trace", metavar="DIR", help="save each counterexample under DIR/<invariant>")
    p.add_argument("--max-perturbations", type=int, metavar="K", help="perturbations per schedule (6)")
    p.add_argument("--shrink-seconds", type=float, default=30.0, metavar="T",
                   help="time budget to shrink each counterexample (30)")
    p.add_argument("--replay", metavar="DIR", help="replay a saved counterexample instead of searching")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Run ``unbroken check``; returns the exit code (see ``EPILOG``)."""
    if args.replay:
        return _replay(args)
    if not args.log or not args.projection:
        print("unbroken check: --log and --projection are required (or --replay DIR)", file=sys.stderr)
        return EXIT_USAGE
    if args.examples < 0:
        print(f"unbroken check: --examples must be >= 0, got {args.examples}", file=sys.stderr)
        return EXIT_USAGE
    try:
        report = _search(args)
    except Exception as e:  # bad file, projection or invariant: say what and where, exit 3
        print(f"unbroken check: {type(e).__name__}: {e}", file=sys.stderr)
        return EXIT_ERROR
    print(report.render())
    return report.exit_code()


def _search(args: argparse.Namespace):
    import replay
    from projections import parse_pairs

    from ._api import check_log
    from ._invariants import resolve
    from ._strategies import SchedulePolicy

    policy = SchedulePolicy()
    if args.max_perturbations is not None:
        policy = SchedulePolicy(max_perturbations=args.max_perturbations)
    mapping = replay.load_mapping(args.mapping) if args.mapping else None
    return check_log(
        args.log, args.projection, config=parse_pairs(args.config), examples=args.examples,
        seed=args.seed, invariants=resolve(args.invariants) if args.invariants else None,
        trace_dir=args.trace, mapping=mapping, policy=policy, shrink_budget_s=args.shrink_seconds,
    )


def _replay(args: argparse.Namespace) -> int:
    from ._counterexample import replay_counterexample

    try:
        outcome = replay_counterexample(args.replay, projection=args.projection)
    except Exception as e:
        print(f"unbroken check --replay: {type(e).__name__}: {e}", file=sys.stderr)
        return EXIT_ERROR
    print(outcome.render())
    if outcome.verdict.valid is None:
        return EXIT_ERROR
    return EXIT_PROBLEM if outcome.verdict.valid is False else EXIT_OK

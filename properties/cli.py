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

  unbroken check --log pumps.jsonl --projection pumps.py:build --invariants INV-1,INV-4

Invariants: the built-ins that apply to the projection (INV-1..INV-5 to every one, AR-1..AR-5
to domain arrears) plus every *.sql in --invariants DIR whose "-- domain:" header fits;
--invariants INV-1,AR-2 (ids, repeatable) runs exactly those. The report lists what ran.
Examples: --examples N judges N runs: the unperturbed log and N-1 schedules.
Besides the invariants, every check verifies the runs themselves: the log replayed twice
unperturbed must give the same trace (else NONDETERMINISTIC: the projection reads the wall
clock or unseeded randomness), and the projection must not fail on any step of any run
(else FAULTS, naming the first: it raised, returned None, or has no on_timer).
Exit codes: 0 every invariant held, no fault, deterministic; 1 an invariant broke, FAULTS
(unless --allow-faults) or NONDETERMINISTIC (or the replayed counterexample still breaks);
2 usage error; 3 could not run (missing file, bad projection, unknown verdicts, a step
over --event-timeout).
"""


def register(commands: argparse._SubParsersAction) -> None:
    """Add ``check`` to the ``unbroken`` parser."""
    p = commands.add_parser(
        "check", help="search delivery schedules for broken invariants",
        description="Replay a log under delivery schedules drawn by Hypothesis (delays, "
        "duplicates, drops, reordering, partitions, clock skew), check invariants in SQL on "
        "every run, and shrink each broken invariant to a small counterexample.",
        epilog=EPILOG + "\n" + _saved_run_exit_codes(), formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--log", metavar="FILE", help="the base log (JSONL, CSV or Parquet)")
    p.add_argument("--mapping", metavar="FILE", help="column mapping for the log (see unbroken import)")
    p.add_argument("--projection", metavar="NAME",
                   help="a registered projection (e.g. arrears) or FILE.py:FACTORY")
    p.add_argument("--config", metavar="KEY=VALUE", action="append", default=[],
                   help="projection setting, repeatable (e.g. hold_hours=24)")
    p.add_argument("--examples", type=int, default=200, metavar="N",
                   help="runs to judge, the unperturbed log's included (200)")
    p.add_argument("--seed", type=int, default=0, metavar="S", help="search seed (0)")
    p.add_argument("--invariants", metavar="DIR|IDS", action="append",
                   help="a directory of extra *.sql invariants, or built-in ids to run only "
                        "those (INV-1,AR-2); repeatable")
    p.add_argument("--allow-faults", action="store_true",
                   help="report projection faults as their own verdict without failing the check")
    p.add_argument("--event-timeout", type=float, metavar="SECONDS",
                   help="stop (exit 3) when one event or timer takes the projection longer than this")
    p.add_argument("--progress", action="store_true",
                   help="show progress on stderr (examples done, invariants broken so far) even "
                        "when it is not a terminal")
    p.add_argument("--trace", metavar="DIR", help="save each counterexample under DIR/<invariant>")
    p.add_argument("--report", metavar="FILE.json",
                   help="also write a JSON scenario report: per invariant the status, checks "
                        "passed and failed, observations, and metrics of the unperturbed run")
    p.add_argument("--max-perturbations", type=int, metavar="K", help="perturbations per schedule (6)")
    p.add_argument("--shrink-seconds", type=float, default=30.0, metavar="T",
                   help="time budget to shrink each counterexample (30)")
    p.add_argument("--replay", metavar="DIR", help="replay a saved counterexample instead of searching; "
                   "its projection runs only when registered or named with --projection")
    p.set_defaults(run=run)


def _saved_run_exit_codes() -> str:
    import textwrap

    from replay.core import SAVED_RUN_EXIT_CODES

    return textwrap.fill(SAVED_RUN_EXIT_CODES, 88) + "\n"


def run(args: argparse.Namespace) -> int:
    """Run ``unbroken check``; returns the exit code (see ``EPILOG``)."""
    if args.replay:
        return _replay(args)
    if not args.log or not args.projection:
        print("unbroken check: --log and --projection are required (or --replay DIR)", file=sys.stderr)
        return EXIT_USAGE
    problem = _usage_problem(args)
    if problem:
        print(f"unbroken check: {problem}", file=sys.stderr)
        return EXIT_USAGE
    progress = _Progress(args.examples) if (args.progress or sys.stderr.isatty()) else None
    try:
        report = _search(args, progress)
    except KeyboardInterrupt:
        raise
    except Exception as e:  # bad file, projection or invariant: say what and where, exit 3
        _end(progress)
        print(f"unbroken check: {type(e).__name__}: {e}", file=sys.stderr)
        return EXIT_ERROR
    except BaseException as e:  # noqa: BLE001 - a projection's SystemExit must not end the check with 0
        _end(progress)
        print(f"unbroken check: the projection's code raised {type(e).__name__}: {e}", file=sys.stderr)
        return EXIT_ERROR
    _end(progress)
    print(report.render())
    if args.report:
        from projections import parse_pairs

        from ._scenario_report import write_report

        try:
            write_report(args.report, report, log=args.log, projection=args.projection,
                         config=parse_pairs(args.config), mapping=args.mapping)
        except OSError as e:
            print(f"unbroken check: cannot write the report {args.report}: {e}", file=sys.stderr)
            return EXIT_ERROR
        print(f"unbroken check: scenario report written to {args.report}", file=sys.stderr)
    for failure in report.failures():
        if failure == "FAULTS":
            print(f"unbroken check: FAULTS: {report.fault_message()} "
                  "(--allow-faults to report them without failing)", file=sys.stderr)
        elif failure == "NONDETERMINISTIC":
            print("unbroken check: NONDETERMINISTIC: two unperturbed replays of the log differ "
                  f"({report.determinism.detail.splitlines()[0]}); the projection reads the wall "  # type: ignore[union-attr]
                  "clock, unseeded randomness or state outside its own", file=sys.stderr)
    return report.exit_code()


def _usage_problem(args: argparse.Namespace) -> str | None:
    import math

    if args.examples < 1:
        return f"--examples must be at least 1 (the unperturbed log is one), got {args.examples}"
    if args.max_perturbations is not None and args.max_perturbations < 0:
        return f"--max-perturbations must be >= 0, got {args.max_perturbations}"
    if not (math.isfinite(args.shrink_seconds) and args.shrink_seconds >= 0):
        return f"--shrink-seconds must be a number of seconds >= 0, got {args.shrink_seconds}"
    if args.event_timeout is not None and not (math.isfinite(args.event_timeout) and args.event_timeout > 0):
        return f"--event-timeout must be a positive number of seconds, got {args.event_timeout}"
    return None


def _invariant_items(values: list[str] | None) -> list[str] | None:
    """``--invariants`` values as a list of ids and directories (commas split ids)."""
    if not values:
        return None
    from pathlib import Path

    items: list[str] = []
    for value in values:
        if Path(value).is_dir():
            items.append(value)
        else:
            items.extend(part.strip() for part in value.split(",") if part.strip())
    return items


class _Progress:
    """``check: 120/200 examples, broken so far: AR-1`` on stderr, at most ~5 times a second."""

    def __init__(self, total: int) -> None:
        import time

        self.total = total
        self.clock = time.monotonic
        self.last = 0.0
        self.printed = False

    def __call__(self, done: int, total: int, broken: list[str], faults: int) -> None:
        now = self.clock()
        if done < total and now - self.last < 0.2:
            return
        self.last = now
        so_far = f"broken so far: {', '.join(broken)}" if broken else "none broken so far"
        fault = f", {faults} projection fault(s)" if faults else ""
        end = "\033[K" if sys.stderr.isatty() else ""
        print(f"\rcheck: {done}/{total} examples, {so_far}{fault}{end}", end="", file=sys.stderr,
              flush=True)
        self.printed = True


def _end(progress: _Progress | None) -> None:
    if progress is not None and progress.printed:
        print(file=sys.stderr)


def _search(args: argparse.Namespace, progress=None):
    import replay
    from projections import parse_pairs

    from ._api import check_log
    from ._strategies import SchedulePolicy

    policy = SchedulePolicy()
    if args.max_perturbations is not None:
        policy = SchedulePolicy(max_perturbations=args.max_perturbations)
    mapping = replay.load_mapping(args.mapping) if args.mapping else None
    return check_log(
        args.log, args.projection, config=parse_pairs(args.config), examples=args.examples,
        seed=args.seed, invariants=_invariant_items(args.invariants),
        trace_dir=args.trace, mapping=mapping, policy=policy, shrink_budget_s=args.shrink_seconds,
        allow_faults=args.allow_faults, event_timeout=args.event_timeout, progress=progress,
    )


def _replay(args: argparse.Namespace) -> int:
    from ._counterexample import replay_counterexample

    try:
        outcome = replay_counterexample(args.replay, projection=args.projection)
    except KeyboardInterrupt:
        raise
    except BaseException as e:  # noqa: BLE001 - a damaged directory or a projection's SystemExit: exit 3
        print(f"unbroken check --replay: {type(e).__name__}: {e}", file=sys.stderr)
        return EXIT_ERROR
    print(outcome.render())
    if outcome.verdict.valid is None:
        return EXIT_ERROR
    return EXIT_PROBLEM if outcome.verdict.valid is False else EXIT_OK

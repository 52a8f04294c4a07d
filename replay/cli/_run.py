"""``unbroken replay`` and ``unbroken diff``."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Iterable
from contextlib import ExitStack
from typing import Any

from eventstore import UnbrokenError, open_store
from eventstore.cli import EXIT_ERROR, EXIT_OK, EXIT_PROBLEM, EXIT_USAGE
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
        from replay.core import SAVED_RUN_EXIT_CODES

        group.add_argument(
            "--counterexample", metavar="DIR",
            help="replay a saved run (e.g. from unbroken check --trace) delivery for delivery, "
                 "and compare its digest; the config defaults to the saved one, the projection "
                 "too when it is registered. " + SAVED_RUN_EXIT_CODES)
    parser.add_argument("--mapping", metavar="M", help="field mapping for --log (JSON or TOML)")


def _register_replay(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "replay", help="replay a store or log through a projection, in virtual time",
        description=(
            "Deliver every event once, at its recorded time, through the projection; timers "
            "fire in virtual time. Prints counts and the run digest; --trace writes the "
            "Parquet trace tables. --counterexample DIR replays a saved run exactly. "
            "A step the projection fails (it raises, returns None, or a timer comes due "
            "without on_timer) becomes a row of the faults table and is undone; the first "
            "one is named on stderr (--strict stops there instead). "
            "Exit 0 ok, 1 the projection failed on some steps, not deterministic "
            "(--check-determinism) or a counterexample no longer reproduces, 2 usage error, "
            "3 could not run (no trace is left behind)."),
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
                        help="show progress on stderr (events, the event being handled, its "
                             "virtual time) even when it is not a terminal")
    parser.add_argument("--event-timeout", type=float, metavar="SECONDS",
                        help="stop with exit 3 when one event (or timer) takes the projection "
                             "longer than this, naming it on stderr")
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
        print("unbroken replay: --projection is required (a name or FILE.py:FACTORY)",
              file=sys.stderr)
        return EXIT_USAGE
    problem = _usage_problem(args)
    if problem:
        print(f"unbroken replay: {problem}", file=sys.stderr)
        return EXIT_USAGE
    progress = None
    try:
        projection = _projection(args.projection, args.config)
        with ExitStack() as stack:
            source, deliveries, total = _open_source(args, stack)
            progress = _progress_printer(args, total, "replay")
            stack.enter_context(_watching(args.event_timeout, progress))
            options = dict(source=source, run_id=args.run_id, trace_dir=args.trace,
                           pacing=Pacing(args.pace) if args.pace else None,
                           snapshots=Snapshots(args.snapshot_every, args.snapshot_dir, args.resume),
                           strict=args.strict, collect=False,
                           progress=progress.count if progress is not None else None)
            if args.check_determinism:
                return _determinism(deliveries, projection, options)
            result = run(deliveries(), projection, **options)
    except (UnbrokenError, ValueError, OSError) as e:  # ConfigError and LogError are ValueErrors
        _end_line(progress)
        _discard_partial(args.trace)
        return _fail("replay", e)
    except KeyboardInterrupt:
        _discard_partial(args.trace)
        raise
    except Exception as e:  # the projection's own code failed while loading: say so, exit 3
        _end_line(progress)
        _discard_partial(args.trace)
        return _fail("replay", ReplayError(f"{type(e).__name__}: {e}"))
    except BaseException as e:  # noqa: BLE001 - SystemExit from a projection file must not end us with 0
        _discard_partial(args.trace)
        return _fail("replay", ReplayError(f"the projection's code raised {type(e).__name__}: {e}"))
    _end_line(progress)
    _print_result(result)
    return EXIT_PROBLEM if result.projection_faults else EXIT_OK


def _usage_problem(args: argparse.Namespace) -> str | None:
    """What is wrong with the numbers on the command line, if anything."""
    import math

    if args.event_timeout is not None and not (math.isfinite(args.event_timeout) and args.event_timeout > 0):
        return f"--event-timeout must be a positive number of seconds, got {args.event_timeout}"
    if args.pace is not None and not (math.isfinite(args.pace) and args.pace > 0):
        return f"--pace must be a positive number (times real speed), got {args.pace}"
    if args.snapshot_every is not None and args.snapshot_every <= 0:
        return f"--snapshot-every must be a positive number of deliveries, got {args.snapshot_every}"
    return None


def _watching(limit: float | None, progress):
    """The watchdog for this command: the per-event limit and the progress ticks."""
    from replay.core import watching

    def report(message: str) -> None:
        if progress is not None and progress.printed:
            print(file=sys.stderr)
        print(message, file=sys.stderr, flush=True)

    return watching(limit, on_tick=progress, tick_s=1.0, report=report)


def _discard_partial(trace: str | None) -> None:
    """A run that failed leaves no ``*.parquet.partial`` files behind (its trace is no trace)."""
    if not trace:
        return
    from pathlib import Path

    from replay.trace import TABLES

    for table in TABLES:
        (Path(trace) / f"{table}.parquet.partial").unlink(missing_ok=True)


def _end_line(progress) -> None:
    if progress is not None and progress.printed:
        print(file=sys.stderr)


def _run_counterexample(args: argparse.Namespace) -> int:
    """Replay a saved run's recorded deliveries and say whether the digest is the saved one.

    Exit 0 reproduced exactly (same digest), 1 the run differs now, 3 could not
    run (``SAVED_RUN_EXIT_CODES``). The saved files are data: nothing outside
    the directory is read, and a projection the directory names runs only if
    it is registered or the user names it with ``--projection``.
    """
    from pathlib import Path

    import msgspec

    from replay.core import (
        SavedRun,
        load_projection,
        read_recorded,
        recorded_deliveries,
        run,
        saved_file,
        saved_projection,
    )
    from replay.trace import load_trace

    root = Path(args.counterexample)
    try:
        if not root.is_dir():
            raise ReplayError(f"{root} is not a directory: name a saved run (unbroken check --trace DIR)")
        events_path = saved_file(root, "events.jsonl")
        if not events_path.is_file():
            raise ReplayError(f"{root} holds no events.jsonl: not a saved run")
        if args.trace and Path(args.trace).resolve() == root.resolve():
            raise ReplayError(f"--trace {args.trace} is the saved run itself; write the new trace elsewhere")
        meta_path = saved_file(root, "counterexample.json")
        try:
            saved = msgspec.json.decode(meta_path.read_bytes(), type=SavedRun) if meta_path.is_file() else SavedRun()
        except msgspec.DecodeError as e:  # ValidationError too
            raise ReplayError(f"{meta_path} is not a saved run's description: {e}") from e
        spec = saved_projection(saved.projection, args.projection, str(meta_path))
        config = projections_config(args.config) if args.config else saved.config
        projection = load_projection(spec, **config)
        events = read_recorded(events_path)
        deliveries, drops = recorded_deliveries(root, events)
        digests = load_trace(root)["runs"]["digest"]
        if len(digests) != 1:
            raise ReplayError(f"{root}/runs.parquet holds {len(digests)} runs; a saved run holds one")
        expected = digests[0]
        result = run(deliveries, projection, drops=drops, source=str(root), collect=False,
                     trace_dir=args.trace, run_id=args.run_id)
    except KeyboardInterrupt:
        raise
    except (ReplayError, ValueError, OSError) as e:  # msgspec's errors are ValueErrors
        return _fail("replay", e)
    except BaseException as e:  # noqa: BLE001 - damaged Parquet, a projection's SystemExit: never exit 0
        return _fail("replay", ReplayError(f"{root}: {type(e).__name__}: {e}"))
    _print_result(result)
    if result.digest == expected:
        print(f"reproduced exactly: {len(deliveries)} deliveries, digest matches the saved run")
        if saved.invariant:
            print(f"for the verdict on {saved.invariant}: unbroken check --replay {root}"
                  + (f" --projection {spec}" if args.projection else ""))
        return EXIT_OK
    print(f"NOT reproduced: digest {result.digest} differs from the saved {expected} "
          f"(the projection behaves differently now; compare with unbroken query {root})")
    return EXIT_PROBLEM


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
    except (ReplayError, ValueError, OSError) as e:
        return _fail("diff", e)
    except KeyboardInterrupt:
        raise
    except BaseException as e:  # noqa: BLE001 - a projection's SystemExit must not end us with 0
        return _fail("diff", ReplayError(f"the projection's code raised {type(e).__name__}: {e}"))
    print(report.describe())
    return EXIT_OK if report.same else EXIT_PROBLEM


def _projection(name: str, pairs: list[str]) -> Any:
    import projections
    from replay.core import load_projection

    return load_projection(name, **projections.parse_pairs(pairs))


def _open_source(args, stack: ExitStack) -> tuple[str, Callable[[], Iterable[Delivery]], int | None]:
    """The source label, a callable giving a fresh lazy delivery iterator, the event count."""
    if args.store:
        store = stack.enter_context(open_store(args.store, read_only=True))  # never creates or changes it
        return args.store, lambda: deliveries_of(store.read_all()), store.last_position()
    from replay.log import read_log

    path, mapping = args.log, args.mapping
    return path, lambda: deliveries_of(read_log(path, mapping)), None


class _ProgressLine:
    """Progress on stderr, once a second: events, percent, rate, and the step being handled.

    Called from the watchdog's thread with a ``Where``; a step that has run
    for more than ``STUCK_S`` seconds is named as such, so a hang shows where.
    """

    STUCK_S = 2.0

    def __init__(self, command: str, total: int | None) -> None:
        self.command, self.total = command, total
        self.start = time.monotonic()
        self.printed = False

    def __call__(self, where) -> None:
        done = where.done
        rate = done / max(time.monotonic() - self.start, 1e-9)
        total = where.total or self.total
        pct = f" {100 * done / total:5.1f}%" if total else ""
        at = f", virtual time {_iso(where.now)}" if where.now >= 0 else ""
        step = (f"; stuck {where.stuck_s:.0f} s on the {where.step}" if where.stuck_s >= self.STUCK_S
                else f"; at the {where.step}")
        self._print(f"{done:,} events{pct} {rate:,.0f} events/s{step}{at}")

    def count(self, done: int, total: int | None) -> None:
        """The runner's own progress calls (every N deliveries, and at the end)."""
        rate = done / max(time.monotonic() - self.start, 1e-9)
        total = total or self.total
        pct = f" {100 * done / total:5.1f}%" if total else ""
        self._print(f"{done:,} events{pct} {rate:,.0f} events/s")

    def _print(self, text: str) -> None:
        end = "\033[K" if sys.stderr.isatty() else ""
        print(f"\r{self.command}: {text}{end}", end="", file=sys.stderr, flush=True)
        self.printed = True


def _iso(ns: float) -> str:
    from datetime import UTC, datetime

    try:
        return datetime.fromtimestamp(ns / 1e9, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    except (OverflowError, ValueError, OSError):
        return f"{ns} ns"


def _progress_printer(args, total: int | None, command: str = "replay") -> _ProgressLine | None:
    """A progress line for the watchdog when stderr is a terminal or --progress is given."""
    if not (args.progress or sys.stderr.isatty()):
        return None
    return _ProgressLine(command, total)


def _print_result(result, command: str = "replay") -> None:
    counts = ", ".join(f"{k} {v}" for k, v in result.counts.items())
    print(f"run {result.run_id}: {result.projection}: {counts}")
    if result.resumed_from:
        print(f"resumed after {result.resumed_from} deliveries")
    print(f"digest {result.digest}")
    if result.trace_dir is not None:
        print(f"trace {result.trace_dir}")
    if result.projection_faults:
        print(f"unbroken {command}: the projection failed on {result.projection_faults} step(s), "
              f"each undone and recorded in the faults table; the first: {result.first_fault}",
              file=sys.stderr)
    others = result.counts["faults"] - result.projection_faults
    if others > 0:
        print(f"{others} fault event(s) in the log: see the faults table", file=sys.stderr)


def _fail(command: str, error: Exception) -> int:
    print(f"unbroken {command}: {error}", file=sys.stderr)
    return EXIT_ERROR

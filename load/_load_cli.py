"""``unbroken load`` (open-loop load to a target) and ``unbroken soak`` (a durability soak run)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from eventstore.cli import EXIT_ERROR, EXIT_OK, EXIT_PROBLEM, EXIT_USAGE

LOAD_EPILOG = """\
examples:
  unbroken load --profile bn001 --target embedded:///./events.db --rate 500 --duration 60s
  unbroken load --profile trading --target 'nats://127.0.0.1:4222/ticks.in?stream=UNBROKEN' \\
      --rate 1000 --duration 5m --out load-out
  unbroken load --profile bn002 --target embedded:///./bms.db --rate 50 --duration 10m \\
      --arrivals bursts --burst-rate 500 --burst-seconds 30

Open loop: each message is sent at its intended time (seeded schedule) whether or not earlier
ones were answered; latency counts from the intended time, so stalls are not hidden. With --out:
samples.parquet (one row per message), progress.jsonl (one line a second), load-summary.json.
Exit codes: 0 every message acknowledged, 1 some were not, 2 usage error, 3 could not run.
See docs/soak.md.
"""

SOAK_EPILOG = """\
examples:
  unbroken soak --profile bn001 --duration 2m --faults docs/soak/plan-every-minute.toml \\
      --out soak-out/run1
  unbroken soak --profile trading --target embedded --rate 500 --duration 30m \\
      --faults plan.toml --out soak-out/trading
  unbroken soak --profile bn002 --rate 50 --duration 10m --faults none --out soak-out/bursts

Starts nats-server (free port, JetStream in --out), the NATS ingest and the live projection as
separate processes, then the load; carries out the fault plan (SIGKILL and restart of ingest,
projection or broker, native LD_PRELOAD faults, memory limits), samples memory and CPU, and at
the end accounts for every message, checks the projection's invariants and judges the criteria
(pass / fail / unknown; unknown never passes). Writes report.md with PNG charts and report.json.
Exit codes: 0 every criterion passed, 1 one failed or was unknown, 2 usage error, 3 could not run.
See docs/soak.md.
"""


def register(commands: argparse._SubParsersAction) -> None:
    """Add ``load`` and ``soak`` to the ``unbroken`` parser."""
    from ._profiles import PROFILES

    names = ", ".join(PROFILES)
    p = commands.add_parser(
        "load", help="send open-loop load (a profile at a rate) to a store or NATS",
        description="Send a profile's messages to a target at --rate per second for --duration, "
        "open loop, and report sent/acknowledged counts and latency percentiles per phase "
        "(from each message's intended send time). Prints a status line every 5 s.",
        epilog=LOAD_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--profile", required=True, help=f"one of: {names}")
    p.add_argument("--target", required=True, metavar="URI",
                   help="store URI (embedded:///path.db, kurrentdb://...) or "
                   "nats://HOST:PORT/SUBJECT?stream=NAME")
    _common(p)
    p.add_argument("--out", type=Path, help="directory for samples.parquet and the summaries")
    p.add_argument("--metrics-port", type=int, metavar="P",
                   help="serve Prometheus metrics on 127.0.0.1:P")
    p.add_argument("--reads", metavar="URI", help="also read, open loop: a BACnet event server "
                   "(bacnet://127.0.0.1:47809: 60%% ReadProperty, 30%% RPM, 10%% ReadRange) or a "
                   "Modbus device (modbus://127.0.0.1:5020?unit=1&function=input_registers"
                   "&address=0&count=5, e.g. unbroken simulate modbus)")
    p.add_argument("--read-rate", type=float, default=0.0, metavar="R",
                   help="reads per second with --reads (default 0)")
    p.add_argument("--quiet", action="store_true", help="no status lines")
    p.set_defaults(run=_run_load)
    s = commands.add_parser(
        "soak", help="a durability soak: load, ingest, projection, faults on a plan, a report",
        description="Run a profile through the whole pipeline (load -> NATS -> ingest -> store -> "
        "projection) as separate processes with faults on a seeded plan, then judge it: zero loss, "
        "latency, memory, recovery, backlog, invariants. Prints a status line every 10 s.",
        epilog=SOAK_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    s.add_argument("--profile", help=f"one of: {names} (required unless --rejudge)")
    s.add_argument("--faults", metavar="PLAN",
                   help="fault plan (.toml or .json, see docs/soak.md) or 'none' (required "
                   "unless --rejudge)")
    s.add_argument("--rejudge", action="store_true",
                   help="judge the finished or interrupted run in --out again and rewrite its report")
    s.add_argument("--out", type=Path, required=True, help="run directory (new or empty)")
    s.add_argument("--target", choices=("nats", "embedded"), default="nats",
                   help="nats: load -> nats-server -> ingest -> store (default); embedded: load "
                   "appends to the store itself")
    _common(s)
    s.add_argument("--server", choices=("none", "bacnet"), default="none",
                   help="also run `unbroken serve bacnet` over the store (process 'server', "
                   "judged under 128 MB resident); bn001/bn002 profiles")
    s.add_argument("--read-rate", type=float, default=0.0, metavar="R",
                   help="BACnet reads per second against that server (default 0)")
    s.add_argument("--drain-timeout", type=float, default=120.0, metavar="S",
                   help="how long to wait for the backlog after the load (default 120)")
    s.set_defaults(run=_run_soak)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--rate", type=float, default=100.0, metavar="R",
                   help="messages per second (the base rate for bursts; default 100)")
    p.add_argument("--duration", default="60s", metavar="D", help="e.g. 90s, 10m, 1h (default 60s)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--arrivals", default="profile",
                   choices=("profile", "constant", "poisson", "bursts", "ramp"),
                   help="arrival shape (default: the profile's: Poisson; bn002 bursts)")
    p.add_argument("--burst-rate", type=float, metavar="R", help="rate during bursts (10x --rate)")
    p.add_argument("--burst-every", type=float, default=90.0, metavar="S", help="seconds (90)")
    p.add_argument("--burst-seconds", type=float, default=30.0, metavar="S", help="seconds (30)")
    p.add_argument("--ramp-to", type=float, metavar="R", help="final rate of a ramp (10x --rate)")


def _spec_args(args: argparse.Namespace):
    from ._arrivals import parse_duration
    from ._profiles import profile

    profile(args.profile)
    duration = parse_duration(args.duration)
    if args.rate <= 0 or duration <= 0:
        raise ValueError("--rate and --duration must be > 0")
    return duration


def _run_load(args: argparse.Namespace) -> int:
    from eventstore import UnbrokenError

    from ._loadrun import LoadSpec, run_load

    try:
        duration = _spec_args(args)
    except (UnbrokenError, ValueError) as e:
        print(f"unbroken load: {e}", file=sys.stderr)
        return EXIT_USAGE
    spec = LoadSpec(args.profile, args.target, args.rate, duration, args.seed, args.arrivals,
                    args.burst_rate, args.burst_every, args.burst_seconds, args.ramp_to, args.out,
                    args.metrics_port, reads=args.reads, read_rate=args.read_rate)
    if not args.quiet:
        print(f"unbroken load: {args.profile} -> {args.target}, {args.rate:g}/s for {duration:g} s, "
              f"seed {args.seed}", file=sys.stderr)
    try:
        _, summary = run_load(spec)
    except UnbrokenError as e:
        print(f"unbroken load: {e}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as e:
        print(f"unbroken load: could not run: {e}", file=sys.stderr)
        return EXIT_ERROR
    if not args.quiet:
        print(json.dumps({k: summary[k] for k in ("run_id", "scheduled", "sent", "acked")}))
        for phase, q in summary["ack_latency_ms"].items():
            print(f"  {phase:10} " + " ".join(f"{k}={q[k]}" for k in q))
        for kind, q in summary.get("read_latency_ms", {}).items():
            print(f"  read {kind:22} " + " ".join(f"{k}={q[k]}" for k in q))
    return EXIT_OK if summary["acked"] == summary["scheduled"] else EXIT_PROBLEM


def _run_soak(args: argparse.Namespace) -> int:
    from eventstore import UnbrokenError

    from ._plan import load_plan
    from ._report import summary_text
    from ._soak import Soak, SoakError, SoakSpec

    if args.rejudge:
        return _rejudge(args.out)
    if not args.profile or not args.faults:
        print("unbroken soak: --profile and --faults are required (or --rejudge)", file=sys.stderr)
        return EXIT_USAGE
    try:
        duration = _spec_args(args)
        plan = load_plan(args.faults)
    except (UnbrokenError, ValueError) as e:
        print(f"unbroken soak: {e}", file=sys.stderr)
        return EXIT_USAGE
    if args.target != "nats" and any(f.process in ("broker", "ingest") for f in plan.faults):
        print("unbroken soak: the plan faults the broker or ingest; use --target nats",
              file=sys.stderr)
        return EXIT_USAGE

    def say(line: str) -> None:
        print(f"unbroken soak: {line}", file=sys.stderr, flush=True)

    spec = SoakSpec(args.profile, duration, args.out, plan, target=args.target, rate=args.rate,
                    seed=args.seed, arrivals=args.arrivals, drain_timeout=args.drain_timeout,
                    progress=say, server=args.server, read_rate=args.read_rate,
                    load_args=_burst_args(args))
    import signal

    def interrupted(signum, frame):  # noqa: ARG001 - a background job ignores SIGINT: take TERM too
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupted)
    try:
        data = Soak(spec).run()
    except KeyboardInterrupt:
        print(f"unbroken soak: interrupted; processes stopped. Judge what ran with: unbroken soak "
              f"--rejudge --out {args.out}", file=sys.stderr)
        return EXIT_ERROR
    except SoakError as e:
        print(f"unbroken soak: could not run: {e}", file=sys.stderr)
        return EXIT_ERROR
    print(summary_text(data, args.out))
    return EXIT_OK if data["verdict"] == "pass" else EXIT_PROBLEM


def _rejudge(out: Path) -> int:
    from ._report import summary_text
    from ._soak import rejudge

    if not (out / "soak.json").exists():
        print(f"unbroken soak: {out} holds no soak run (no soak.json)", file=sys.stderr)
        return EXIT_USAGE
    data = rejudge(out, progress=lambda line: print(f"unbroken soak: {line}", file=sys.stderr))
    print(summary_text(data, out))
    return EXIT_OK if data["verdict"] == "pass" else EXIT_PROBLEM


def _burst_args(args: argparse.Namespace) -> list[str]:
    out = ["--burst-every", str(args.burst_every), "--burst-seconds", str(args.burst_seconds)]
    if args.burst_rate is not None:
        out += ["--burst-rate", str(args.burst_rate)]
    if args.ramp_to is not None:
        out += ["--ramp-to", str(args.ramp_to)]
    return out

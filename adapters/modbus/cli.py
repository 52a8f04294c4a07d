"""``unbroken ingest modbus`` and ``unbroken simulate modbus``.

Heavy imports (pymodbus, the store) happen when a command runs, not when the
parser is built.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import re
import sys

from eventstore import DEFAULT_URI
from eventstore.cli import EXIT_ERROR, EXIT_OK, EXIT_PROBLEM, EXIT_USAGE

INGEST_EPILOG = """\
examples:
  unbroken ingest modbus --devices plant.toml --store embedded:///./events.db
  unbroken ingest modbus --devices plant.toml --store embedded:///./events.db --duration 10m \\
      --status-every 30s
  unbroken ingest modbus --devices plant.toml --store embedded:///./events.db --control dosing \
      --config daily_cap_s=120
  unbroken replay --store embedded:///./events.db --projection dosing --trace trace/

Each exchange is a ModbusFrame event and each failure a ModbusFault event with the raw bytes
(stream "modbus"; see docs/modbus.md). Stop with Ctrl-C or SIGTERM: polling ends, and every
exchange already counted is in the store before the command exits.
Exit codes: 0 ran and stopped cleanly, 1 a device never answered during the run,
2 usage error, 3 could not run (bad device file, store unavailable).
"""

SIMULATE_EPILOG = """\
examples:
  unbroken simulate modbus --devices plant.toml
  unbroken simulate modbus --devices plant.toml --misbehave flaky.toml --seed 7
  unbroken simulate modbus --devices plant.toml --misbehave flaky.json --duration 60

A misbehaviour plan (TOML or JSON) lists rules: refuse, silent, reset, truncate, garbage,
wrong_transaction, wrong_unit, bad_length, bad_crc, exception, slow; each may be limited to a
device or function, a probability (seeded), a count. See docs/modbus.md.
Servers bind to 127.0.0.1 unless --bind says otherwise. Stop with Ctrl-C or SIGTERM.
Exit codes: 0 ok, 2 usage error, 3 could not run (bad file, port in use).
"""

_UNITS = {"": 1.0, "s": 1.0, "ms": 0.001, "m": 60.0, "h": 3600.0}


def seconds(text: str) -> float:
    """A duration such as ``30``, ``30s``, ``500ms``, ``10m`` or ``2h``, in seconds (argparse type)."""
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*(ms|s|m|h|)\s*", text)
    if not match:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration (e.g. 30, 30s, 500ms, 10m, 2h)")
    return float(match.group(1)) * _UNITS[match.group(2)]


def register_ingest(ingest: argparse._SubParsersAction) -> None:
    """Add ``modbus`` under ``unbroken ingest``."""
    p = ingest.add_parser(
        "modbus", help="poll Modbus devices (TCP or serial RTU) and record every exchange and fault",
        description="Poll every device of a device file (TOML) and append each exchange and each "
        "failure to the store, in batches, until stopped. Prints a one-line status at an interval.",
        epilog=INGEST_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--devices", required=True, metavar="FILE", help="the device file (TOML)")
    p.add_argument("--store", default=DEFAULT_URI, metavar="URI", help=f"store URI (default {DEFAULT_URI})")
    p.add_argument("--stream", default="modbus", help="stream to append to (default modbus)")
    p.add_argument("--duration", type=seconds, metavar="D", help="stop after D (default: run until stopped)")
    p.add_argument("--status-every", type=seconds, default=5.0, metavar="S",
                   help="print the status line every S (default 5s; 0: never)")
    p.add_argument("--seed", type=int, default=0, metavar="N", help="seed of the reconnect jitter (default 0)")
    p.add_argument("--session", metavar="ID", help="session id in event ids (default: from the start time)")
    p.add_argument("--control", metavar="PROJECTION",
                   help="run a controller live (e.g. dosing): its state is rebuilt from the store "
                   "first, then its released doses are carried out as relay pulses")
    p.add_argument("--config", metavar="KEY=VALUE", action="append", default=[],
                   help="controller setting, repeatable (e.g. daily_cap_s=120)")
    p.set_defaults(run=run_ingest)


def register_simulate(simulate: argparse._SubParsersAction) -> None:
    """Add ``modbus`` under ``unbroken simulate``."""
    p = simulate.add_parser(
        "modbus", help="serve the devices of a device file from a seeded model",
        description="Serve each device of a device file on its port with a real Modbus TCP "
        "server (a serial RTU device on a pseudo-terminal, linked at its serial path): EC and pH drift, the level falls while pumps run, relays can stick, and a "
        "misbehaviour plan makes it refuse, go silent, reset, truncate or garble answers.",
        epilog=SIMULATE_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--devices", required=True, metavar="FILE", help="the device file (TOML)")
    p.add_argument("--misbehave", metavar="PLAN", help="a misbehaviour plan (TOML or JSON)")
    p.add_argument("--seed", type=int, metavar="N", help="model and plan seed (default: the plan's, else 0)")
    p.add_argument("--bind", default="127.0.0.1", metavar="ADDR", help="address to serve on (default 127.0.0.1)")
    p.add_argument("--duration", type=seconds, metavar="D", help="stop after D (default: run until stopped)")
    p.set_defaults(run=run_simulate)


def _quiet_pymodbus() -> None:
    """pymodbus logs every bad frame; the events already say it, with the bytes."""
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)


def run_ingest(args: argparse.Namespace) -> int:
    """Run ``unbroken ingest modbus``; returns the exit code."""
    from eventstore import StoreError, open_store

    from .devices import DeviceFileError, load_devices
    from .ingest import ingest

    _quiet_pymodbus()
    try:
        devices = load_devices(args.devices)
        controller = _controller(args)
        store = open_store(args.store)
    except (DeviceFileError, StoreError) as e:
        print(f"unbroken ingest modbus: {e}", file=sys.stderr)
        return EXIT_ERROR
    except ValueError as e:  # projection name or config
        print(f"unbroken ingest modbus: {e}", file=sys.stderr)
        return EXIT_USAGE
    try:
        run = asyncio.run(ingest(
            devices, store, duration=args.duration, status_every=args.status_every,
            print_status=lambda line: print(line, flush=True), stream=args.stream, seed=args.seed,
            session=args.session,
            controller=None if controller is None else (lambda r: controller(store, r)),
        ))
    except StoreError as e:
        print(f"unbroken ingest modbus: {e}", file=sys.stderr)
        return EXIT_ERROR
    finally:
        store.close()
    if run.recorder.error is not None:
        print(f"unbroken ingest modbus: store failed: {run.recorder.error}", file=sys.stderr)
        return EXIT_ERROR
    print(f"stopped: {run.status_line()}", flush=True)
    silent = sorted(n for n, p in run.pollers.items() if p.stats.exchanges == 0)
    if silent:
        print(f"no exchange with: {', '.join(silent)}", file=sys.stderr)
        return EXIT_PROBLEM
    return EXIT_OK


def _controller(args: argparse.Namespace):
    """A factory of the live controller --control asks for, or None; ValueError when it is wrong."""
    if not args.control:
        if args.config:
            raise ValueError("--config needs --control")
        return None
    import projections

    from .control import LiveController

    projection = projections.get(args.control, **projections.parse_pairs(args.config))
    return lambda store, run: LiveController(projection, store, run, stream=args.stream)


def run_simulate(args: argparse.Namespace) -> int:
    """Run ``unbroken simulate modbus``; returns the exit code."""
    from .devices import DeviceFileError, load_devices
    from .plans import NO_PLAN, load_plan

    try:
        devices = load_devices(args.devices)
        plan = load_plan(args.misbehave) if args.misbehave else NO_PLAN
    except DeviceFileError as e:
        print(f"unbroken simulate modbus: {e}", file=sys.stderr)
        return EXIT_ERROR
    try:
        asyncio.run(_simulate(devices, plan, args))
    except OSError as e:
        print(f"unbroken simulate modbus: cannot serve: {e}", file=sys.stderr)
        return EXIT_ERROR
    return EXIT_OK


async def _simulate(devices, plan, args: argparse.Namespace) -> None:
    import signal

    from .simulator import Simulator

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    sim = Simulator(devices, plan, bind=args.bind, seed=args.seed)
    await sim.start()
    try:
        for name, port in sim.ports.items():
            print(json.dumps({"device": name, "host": args.bind, "port": port}), flush=True)
        for name, path in sim.paths.items():
            print(json.dumps({"device": name, "serial": path}), flush=True)
        print(f"serving {len(devices)} device(s); {len(plan.rules)} misbehaviour rule(s); seed {sim.seed}",
              flush=True)
        try:
            await asyncio.wait_for(stop.wait(), args.duration)
        except TimeoutError:
            pass
    finally:
        await sim.stop()
        injected: dict[str, int] = {}
        for _, kind in sim.injected:
            injected[kind] = injected.get(kind, 0) + 1
        print(f"stopped: {sum(sim.requests.values())} requests, injected {json.dumps(injected)}", flush=True)

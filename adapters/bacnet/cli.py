"""``unbroken ingest bacnet``, ``unbroken serve bacnet`` and ``unbroken simulate bacnet``.

Heavy imports (bacpypes3, the store) happen when a command runs, not when the
parser is built. ``serve`` imports no replay machinery, so the server stays small.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
import time
from typing import Any

from eventstore import DEFAULT_URI
from eventstore.cli import EXIT_ERROR, EXIT_OK, EXIT_PROBLEM, EXIT_USAGE

INGEST_EPILOG = """\
examples:
  unbroken ingest bacnet --device 127.0.0.1:47808 --store embedded:///./events.db
  unbroken ingest bacnet --device 10.0.0.5,10.0.0.6:47809 --unconfirmed --lifetime 600
  unbroken replay --store embedded:///./events.db --projection bacnet --trace trace/

Records BacnetObjectDefinition, BacnetValueUpdate and BacnetObjectDelete events (stream
"bacnet"), a Fault for each device that stops answering ("unreachable") and for the gap
when it answers again ("gap"), and bad notifications as Rejected. See docs/bacnet.md.
Stop with Ctrl-C or SIGTERM: everything received is in the store before it exits.
Exit codes: 0 ran and stopped cleanly, 1 a device never answered, 2 usage error,
3 could not run (store unavailable, address in use).
"""

SERVE_EPILOG = """\
examples:
  unbroken serve bacnet --store embedded:///./events.db
  unbroken serve bacnet --store embedded:///./events.db --address 127.0.0.1:47809 \\
      --device-id 599 --snapshot registry.snap --metrics-port 9108

Serves the objects folded from the store by the bacnet projection: ReadProperty,
ReadPropertyMultiple (ALL, REQUIRED, OPTIONAL), ReadRange over each object's history
(property log-buffer, by position, sequence number or time), SubscribeCOV (kept as events
in stream bacnet-server-<device id>, restored on restart) and directed Who-Is/I-Am.
Follows the store live; another process's append is served within milliseconds.
Binds to 127.0.0.1 unless --address says otherwise. Stop with Ctrl-C or SIGTERM.
Exit codes: 0 ok, 2 usage error, 3 could not run (store unavailable, address in use).
"""

SIMULATE_EPILOG = """\
examples:
  unbroken simulate bacnet --address 127.0.0.1:47810 --device-id 1001
  unbroken simulate bacnet --address 127.0.0.1:47810 --seed 7 --every 0.5 --duration 60

Serves a small room (zone temperature, humidity without COV, setpoint, occupancy, filter
alarm without COV, mode) whose values drift from a seeded model. Stop with Ctrl-C.
Exit codes: 0 ok, 2 usage error, 3 could not run (address in use).
"""


def _seconds(text: str) -> float:
    units = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
    for suffix in ("ms", "s", "m", "h"):
        if text.endswith(suffix):
            number, factor = text[: -len(suffix)], units[suffix]
            break
    else:
        number, factor = text, 1.0
    try:
        value = float(number) * factor
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration (e.g. 30, 30s, 10m)") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is negative")
    return value


def _address(text: str) -> str:
    host, _, port = text.rpartition(":")
    if not host:
        host, port = text, "47808"
    if not port.isdigit() or not 0 < int(port) < 65536 or not host:
        raise argparse.ArgumentTypeError(f"{text!r} is not HOST:PORT (e.g. 127.0.0.1:47808)")
    return f"{host}:{port}"


def _addresses(text: str) -> list[str]:
    return [_address(part.strip()) for part in text.split(",") if part.strip()]


def register_ingest(ingest: argparse._SubParsersAction) -> None:
    """Add ``bacnet`` under ``unbroken ingest``."""
    p = ingest.add_parser(
        "bacnet", help="subscribe to and poll BACnet/IP devices, record values and gaps",
        description="Discover each device's objects, subscribe to change of value (polling the "
        "objects without COV), and append definitions, value updates and faults to the store "
        "until stopped. Prints a one-line status at an interval.",
        epilog=INGEST_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--device", required=True, type=_addresses, metavar="ADDRESS[,..]",
                   help="device addresses, HOST[:PORT] (port 47808 by default), comma-separated")
    p.add_argument("--store", default=DEFAULT_URI, metavar="URI", help=f"store URI (default {DEFAULT_URI})")
    p.add_argument("--stream", default="bacnet", help="stream to append to (default bacnet)")
    p.add_argument("--local", type=_address, metavar="ADDRESS",
                   help="address of this client (default 127.0.0.1 on a free port)")
    p.add_argument("--unconfirmed", action="store_true",
                   help="ask for unconfirmed COV notifications (default confirmed)")
    p.add_argument("--lifetime", type=int, default=300, metavar="S",
                   help="COV subscription lifetime, renewed at half of it (default 300)")
    p.add_argument("--poll", type=_seconds, default=5.0, metavar="S",
                   help="poll objects without COV and check devices every S (default 5s)")
    p.add_argument("--apdu-timeout", type=_seconds, default=3.0, metavar="S",
                   help="how long to wait for an answer (default 3s, one retry)")
    p.add_argument("--duration", type=_seconds, metavar="D", help="stop after D (default: until stopped)")
    p.add_argument("--status-every", type=_seconds, default=5.0, metavar="S",
                   help="print the status line every S (default 5s; 0: never)")
    p.set_defaults(run=run_ingest)


def register_serve(serve: argparse._SubParsersAction) -> None:
    """Add ``bacnet`` under ``unbroken serve``."""
    p = serve.add_parser(
        "bacnet", help="serve a BACnet/IP device materialized from the store",
        description="Fold the store's BACnet events into objects (the bacnet projection) and "
        "serve them as one BACnet/IP device, following the store live.",
        epilog=SERVE_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--store", default=DEFAULT_URI, metavar="URI", help=f"store URI (default {DEFAULT_URI})")
    p.add_argument("--address", type=_address, default="127.0.0.1:47809", metavar="HOST:PORT",
                   help="address to serve on (default 127.0.0.1:47809)")
    p.add_argument("--device-id", type=int, default=599, metavar="N",
                   help="device instance of the served device (default 599)")
    p.add_argument("--snapshot", metavar="FILE",
                   help="registry snapshot: loaded at start, saved every 30 s and at exit")
    p.add_argument("--history", type=int, default=64, metavar="N",
                   help="recent values kept per object for ReadRange (default 64)")
    p.add_argument("--max-objects", type=int, default=5000, metavar="N",
                   help="objects kept at most; the least recently updated goes first (default 5000)")
    p.add_argument("--metrics-port", type=int, metavar="P",
                   help="serve Prometheus metrics on 127.0.0.1:P")
    p.add_argument("--duration", type=_seconds, metavar="D", help="stop after D (default: until stopped)")
    p.add_argument("--status-every", type=_seconds, default=5.0, metavar="S",
                   help="print the status line every S (default 5s; 0: never)")
    p.set_defaults(run=run_serve)


def register_simulate(simulate: argparse._SubParsersAction) -> None:
    """Add ``bacnet`` under ``unbroken simulate``."""
    p = simulate.add_parser(
        "bacnet", help="serve a simulated BACnet/IP device whose values drift",
        description="Serve one simulated BACnet/IP device with objects with and without COV.",
        epilog=SIMULATE_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--address", type=_address, default="127.0.0.1:47810", metavar="HOST:PORT",
                   help="address to serve on (default 127.0.0.1:47810)")
    p.add_argument("--device-id", type=int, default=1001, metavar="N", help="device instance (default 1001)")
    p.add_argument("--seed", type=int, default=0, metavar="N", help="seed of the drift (default 0)")
    p.add_argument("--every", type=_seconds, default=1.0, metavar="S", help="drift every S (default 1s)")
    p.add_argument("--duration", type=_seconds, metavar="D", help="stop after D (default: until stopped)")
    p.set_defaults(run=run_simulate)


async def _until_stopped(duration: float | None, status_every: float,
                         status: Any = None) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):
            pass
    deadline = None if duration is None else time.monotonic() + duration
    while not stop.is_set():
        wait = status_every if status_every > 0 else 3600.0
        if deadline is not None:
            wait = min(wait, max(0.0, deadline - time.monotonic()))
        try:
            await asyncio.wait_for(stop.wait(), wait)
        except TimeoutError:
            pass
        if status is not None and status_every > 0:
            print(status(), flush=True)
        if deadline is not None and time.monotonic() >= deadline:
            return


def run_ingest(args: argparse.Namespace) -> int:
    """Run ``unbroken ingest bacnet``; returns the exit code."""
    from eventstore import StoreError, open_store

    try:
        store = open_store(args.store)
    except StoreError as e:
        print(f"unbroken ingest bacnet: {e}", file=sys.stderr)
        return EXIT_ERROR
    try:
        return asyncio.run(_ingest(args, store))
    except OSError as e:
        print(f"unbroken ingest bacnet: cannot bind {args.local or 'a local port'}: {e}",
              file=sys.stderr)
        return EXIT_ERROR
    finally:
        store.close()


async def _ingest(args: argparse.Namespace, store: Any) -> int:
    from .recorder import BacnetRecorder

    recorder = BacnetRecorder(store, args.device, stream=args.stream, local_address=args.local,
                              confirmed=not args.unconfirmed, lifetime=args.lifetime,
                              poll_interval=args.poll, apdu_timeout=args.apdu_timeout)

    def status() -> str:
        s = recorder.stats
        up = sum(1 for link in recorder.links.values() if link.up)
        return (f"devices {up}/{len(recorder.links)} up, subscriptions {s.subscriptions}, "
                f"notifications {s.notifications}, polls {s.polls}, stored {s.stored}, "
                f"faults {s.faults}, rejected {s.rejected}")

    await recorder.start()
    try:
        await _until_stopped(args.duration, args.status_every, status)
    finally:
        await recorder.stop()
    print(f"stopped: {status()}")
    never = [a for a, link in recorder.links.items() if not link.ever_up]
    if never:
        print(f"never answered: {', '.join(never)}", file=sys.stderr)
        return EXIT_PROBLEM
    return EXIT_OK


def run_serve(args: argparse.Namespace) -> int:
    """Run ``unbroken serve bacnet``; returns the exit code."""
    from eventstore import StoreError
    from projections import BacnetRegistryConfig, ConfigError

    try:
        config = BacnetRegistryConfig(history_limit=args.history, max_objects=args.max_objects,
                                      history_budget=max(262_144, args.history))
    except ConfigError as e:
        print(f"unbroken serve bacnet: {e}", file=sys.stderr)
        return EXIT_USAGE
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        return asyncio.run(_serve(args, config))
    except (StoreError, OSError) as e:
        print(f"unbroken serve bacnet: {e}", file=sys.stderr)
        return EXIT_ERROR


async def _serve(args: argparse.Namespace, config: Any) -> int:
    from .server import EventServer, ServerError

    server = EventServer(args.store, address=args.address, device_id=args.device_id,
                         config=config, snapshot=args.snapshot)
    try:
        await server.start()
    except ServerError as e:
        print(f"unbroken serve bacnet: {e}", file=sys.stderr)
        return EXIT_ERROR
    update_metrics = _metrics(args.metrics_port, server) if args.metrics_port else None
    print(f"serving device {args.device_id} on {args.address}: {len(server.state.objects)} "
          f"objects from {args.store} (position {server.position})", flush=True)

    def status() -> str:
        if update_metrics is not None:
            update_metrics()
        s = server.stats
        return (f"objects {s.objects}, position {server.position}, events {s.events}, "
                f"requests {sum(s.requests.values())}, lag {s.last_apply_lag_ns / 1e6:.1f} ms, "
                f"store failures {s.store_failures}, commands {s.commands}, "
                f"property subscriptions {len(server.property_covs)}")

    try:
        await _until_stopped(args.duration, args.status_every, status)
    finally:
        await server.stop()
    return EXIT_OK


def _metrics(port: int, server: Any) -> Any:
    """Start a Prometheus endpoint on 127.0.0.1:port; returns the function that refreshes it."""
    from prometheus_client import Gauge, start_http_server

    start_http_server(port, addr="127.0.0.1")
    objects = Gauge("unbroken_bacnet_server_objects", "Objects served")
    position = Gauge("unbroken_bacnet_server_position", "Store position folded")
    events = Gauge("unbroken_bacnet_server_events_applied", "Events folded since start")
    requests = Gauge("unbroken_bacnet_server_requests", "Requests served since start", ["service"])
    failures = Gauge("unbroken_bacnet_server_store_failures", "Store failures since start")
    lag = Gauge("unbroken_bacnet_server_apply_lag_seconds", "Append-to-served lag of the last event")
    commands = Gauge("unbroken_bacnet_server_commands", "WriteProperty commands stored since start")
    property_subs = Gauge("unbroken_bacnet_server_cov_property_subscriptions",
                          "Live SubscribeCOVProperty subscriptions")
    unacknowledged = Gauge("unbroken_bacnet_server_cov_notifications_unacknowledged",
                           "Confirmed SubscribeCOVProperty notifications not acknowledged")

    def update() -> None:
        s = server.stats
        objects.set(s.objects)
        position.set(server.position)
        events.set(s.events)
        failures.set(s.store_failures)
        lag.set(s.last_apply_lag_ns / 1e9)
        commands.set(s.commands)
        property_subs.set(len(server.property_covs))
        unacknowledged.set(server.property_covs.failed_notifications)
        for name, count in s.requests.items():
            requests.labels(service=name).set(count)

    return update


def run_simulate(args: argparse.Namespace) -> int:
    """Run ``unbroken simulate bacnet``; returns the exit code."""
    try:
        return asyncio.run(_simulate(args))
    except OSError as e:
        print(f"unbroken simulate bacnet: cannot serve on {args.address}: {e}", file=sys.stderr)
        return EXIT_ERROR


async def _simulate(args: argparse.Namespace) -> int:
    from .simulator import SimulatedDevice

    device = SimulatedDevice(args.address, args.device_id)
    device.start()
    print(f"simulating device {args.device_id} on {args.address} (seed {args.seed})", flush=True)
    drift = asyncio.create_task(device.drift(args.seed, args.every))
    try:
        await _until_stopped(args.duration, 0.0)
    finally:
        drift.cancel()
        device.stop()
    return EXIT_OK

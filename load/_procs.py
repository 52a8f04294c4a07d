"""The long-running processes a soak starts, each with a Prometheus endpoint.

``python -m load._procs follow --store URI --projection NAME --dir DIR --metrics-port P``
runs the live projection (``_follower.Follower``).

``python -m load._procs ingest-nats --store URI --url URL --subject S --metrics-port P``
runs the NATS ingest of ``adapters.broker`` (the same ``Ingestor`` and
``NatsIngest`` as ``unbroken ingest nats``) over a store whose appends are timed.

``python -m load._procs load ...`` is ``unbroken load ...``;
``python -m load._procs serve-bacnet ...`` is ``unbroken serve bacnet ...`` (lighter).
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from pathlib import Path


def _follow(args: argparse.Namespace) -> int:
    from ._follower import Follower
    from ._metrics import ProjectionMetrics

    metrics = ProjectionMetrics(args.metrics_port)
    Follower(args.store, args.projection, Path(args.dir), metrics=metrics,
             checkpoint_s=args.checkpoint).run(args.duration)
    return 0


def _ingest_nats(args: argparse.Namespace) -> int:
    from adapters.broker.messages import Ingestor
    from adapters.broker.nats_app import NatsIngest
    from adapters.broker.service import serve
    from eventstore import open_store

    from ._metrics import IngestMetrics, TimedStore

    metrics = IngestMetrics(args.metrics_port)
    store = open_store(args.store)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        ingestor = Ingestor(TimedStore(store, metrics), "nats")
        app = NatsIngest(ingestor, url=args.url, subject=args.subject, durable=args.durable,
                         js_stream=args.js_stream, batch=args.batch, ack_wait=args.ack_wait)
        print(f"ingest nats: {args.url} {args.subject} -> {args.store}", file=sys.stderr, flush=True)
        await serve(app, stop, status_every=args.status_every)

    try:
        asyncio.run(main())
    finally:
        store.close()
    return 0


def _serve_bacnet(argv: list[str]) -> int:
    """``unbroken serve bacnet ARGS`` without the root CLI, which imports every command's
    package (replay's DuckDB and Polars: ~90 MB more resident than the server needs)."""
    from adapters.bacnet.cli import register_serve

    parser = argparse.ArgumentParser(prog="unbroken serve")
    register_serve(parser.add_subparsers(dest="kind", required=True))
    args = parser.parse_args(["bacnet", *argv])
    return args.run(args)


def main(argv: list[str] | None = None) -> int:
    """Run one of the soak's processes."""
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "load":
        from eventstore.cli import main as cli_main

        return cli_main(argv)
    if argv and argv[0] == "serve-bacnet":
        return _serve_bacnet(argv[1:])
    parser = argparse.ArgumentParser(prog="python -m load._procs")
    sub = parser.add_subparsers(dest="what", required=True)
    f = sub.add_parser("follow")
    f.add_argument("--store", required=True)
    f.add_argument("--projection", required=True)
    f.add_argument("--dir", required=True)
    f.add_argument("--metrics-port", type=int)
    f.add_argument("--checkpoint", type=float, default=1.0)
    f.add_argument("--duration", type=float)
    f.set_defaults(run=_follow)
    n = sub.add_parser("ingest-nats")
    n.add_argument("--store", required=True)
    n.add_argument("--url", required=True)
    n.add_argument("--subject", required=True)
    n.add_argument("--durable", default="soak")
    n.add_argument("--js-stream", default="UNBROKEN")
    n.add_argument("--batch", type=int, default=500)
    n.add_argument("--ack-wait", type=float, default=5.0)
    n.add_argument("--status-every", type=float, default=5.0)
    n.add_argument("--metrics-port", type=int)
    n.set_defaults(run=_ingest_nats)
    args = parser.parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())

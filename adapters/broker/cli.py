"""``unbroken ingest nats|redis|rabbit`` and ``unbroken outbox nats``.

faststream, nats-py and the store are imported when a command runs, not when
the parser is built.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys

from eventstore import DEFAULT_URI
from eventstore.cli import EXIT_ERROR, EXIT_OK, EXIT_PROBLEM

from .messages import MAX_BYTES

NATS_URL = "nats://127.0.0.1:4222"
REDIS_URL = "redis://127.0.0.1:6379"
RABBIT_URL = "amqp://guest:guest@127.0.0.1:5672/"

INGEST_EPILOG = """\
examples:
  unbroken ingest nats --url nats://127.0.0.1:4222 --subject 'ticks.>' --durable ticks \\
      --store embedded:///./events.db
  unbroken ingest redis --url redis://127.0.0.1:6379 --subject ticks --store events.db
  unbroken ingest rabbit --url amqp://guest:guest@127.0.0.1:5672/ --subject ticks --store events.db

A message body is a payload's JSON with its "type" (e.g. {"type":"MarketTick","symbol":"AAPL",
"price":189.5}); headers Ub-Stream, Ub-Occurred-At (ns) and Ub-Source are optional. The event id
comes from the message id (Nats-Msg-Id, AMQP message_id, Ub-Msg-Id) or the broker's position of
the message, so a redelivered message is stored once. Bad messages are kept as Rejected events
(stream "rejected") and acked. Each batch is acked only after it is durable in the store.
Stop with Ctrl-C or SIGTERM: what was fetched is stored and acked, the rest stays with the broker.
Exit codes: 0 stopped cleanly, 1 some messages were rejected, 2 usage error, 3 could not run.
See docs/trading.md.
"""

OUTBOX_EPILOG = """\
examples:
  unbroken outbox nats --store events.db --url nats://127.0.0.1:4222 --subject orders.out \\
      --trace trace/
  unbroken outbox nats --store events.db --url nats://127.0.0.1:4222 --subject orders.out \\
      --projection trading --every 1s
  unbroken outbox nats --store events.db --url nats://127.0.0.1:4222 --subject orders.out --drain

Decisions with external effect (status released or sent, an effect key) are appended to the
store stream outbox-NAME (once per effect key), then published in that order with the effect
key as Nats-Msg-Id; the published position is kept in outbox-NAME-position. A broker outage
loses nothing: publishing waits and resumes in order. Stop with Ctrl-C or SIGTERM.
Exit codes: 0 ok, 2 usage error, 3 could not run (store, trace or projection unusable).
"""


def register_ingest(ingest: argparse._SubParsersAction) -> None:
    """Add ``nats``, ``redis`` and ``rabbit`` under ``unbroken ingest``."""
    kinds = (
        ("nats", "consume a NATS JetStream subject (durable pull consumer) into the store",
         NATS_URL, "subject (wildcards allowed)"),
        ("redis", "consume a Redis Stream (consumer group) into the store", REDIS_URL,
         "the Redis stream key"),
        ("rabbit", "consume a RabbitMQ queue (durable) into the store", RABBIT_URL, "the queue"),
    )
    for name, help, url, subject in kinds:
        p = ingest.add_parser(
            name, help=help, epilog=INGEST_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
            description=f"{help[0].upper()}{help[1:]}: batches of messages are appended in one "
            "transaction each and acked only once durable; ids from message ids make redelivery "
            "idempotent; bad messages become Rejected events. Prints a status line at an interval.")
        p.add_argument("--url", default=url, help=f"broker URL (default {url})")
        p.add_argument("--subject", required=True, metavar="S", help=subject)
        p.add_argument("--store", default=DEFAULT_URI, metavar="URI", help=f"store URI (default {DEFAULT_URI})")
        p.add_argument("--stream", metavar="NAME", help="store stream (default: the Ub-Stream header, "
                       "else the subject)")
        p.add_argument("--rejected-stream", default="rejected", metavar="NAME",
                       help="store stream of Rejected events (default rejected)")
        p.add_argument("--max-bytes", type=int, default=MAX_BYTES, metavar="N",
                       help=f"larger messages are rejected (default {MAX_BYTES})")
        p.add_argument("--batch", type=int, default=1000, metavar="N",
                       help="messages per transaction (1000)")
        p.add_argument("--status-every", type=float, default=5.0, metavar="S",
                       help="seconds between status lines (default 5; 0: never)")
        p.add_argument("--duration", type=float, metavar="S", help="stop after S seconds")
        if name == "nats":
            p.add_argument("--durable", default="unbroken", metavar="NAME",
                           help="durable consumer name (default unbroken)")
            p.add_argument("--js-stream", default="UNBROKEN", metavar="NAME",
                           help="JetStream stream (created over --subject if missing; default UNBROKEN)")
            p.add_argument("--ack-wait", type=float, default=30.0, metavar="S",
                           help="seconds before JetStream redelivers an unacked message (30)")
        elif name == "redis":
            p.add_argument("--group", default="unbroken", metavar="NAME",
                           help="consumer group (default unbroken)")
            p.add_argument("--claim-idle", type=float, default=30.0, metavar="S",
                           help="claim entries another consumer left pending this long (30)")
        p.set_defaults(run=run_ingest, broker=name)


def register(commands: argparse._SubParsersAction) -> None:
    """Add ``outbox`` (with ``nats``) to the ``unbroken`` parser."""
    outbox = commands.add_parser(
        "outbox", help="publish decisions with external effect to a broker, exactly once, in order",
        description="Keep decisions with external effect in the store (the durable buffer) and "
        "publish them to a broker in store order, resuming after outages without loss or "
        "duplicates.", epilog="Exit codes: 0 ok, 2 usage error, 3 could not run.")
    kinds = outbox.add_subparsers(dest="broker", metavar="BROKER", required=True)
    p = kinds.add_parser(
        "nats", help="publish the outbox to a NATS JetStream subject",
        description="Enqueue decisions (from --trace or --projection, if given) into the outbox "
        "stream of the store and publish it to a JetStream subject with each decision's effect "
        "key as Nats-Msg-Id, waiting for each ack. Prints a status line at an interval.",
        epilog=OUTBOX_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--store", default=DEFAULT_URI, metavar="URI", help=f"store URI (default {DEFAULT_URI})")
    p.add_argument("--url", default=NATS_URL, help=f"NATS URL (default {NATS_URL})")
    p.add_argument("--subject", required=True, metavar="S", help="subject to publish to")
    p.add_argument("--js-stream", default="UNBROKEN_OUT", metavar="NAME",
                   help="JetStream stream (created over --subject if missing; default UNBROKEN_OUT)")
    p.add_argument("--name", default="default", help="outbox name: streams outbox-NAME and "
                   "outbox-NAME-position (default default)")
    source = p.add_mutually_exclusive_group()
    source.add_argument("--trace", metavar="DIR", help="enqueue the decisions of this trace first")
    source.add_argument("--projection", metavar="SPEC", help="replay the store through this "
                        "projection every --every seconds and enqueue its due decisions")
    p.add_argument("--config", nargs="*", default=[], metavar="K=V", help="projection settings")
    p.add_argument("--every", type=float, default=1.0, metavar="S",
                   help="seconds between projection replays (default 1)")
    p.add_argument("--drain", action="store_true", help="stop once everything enqueued is published")
    p.add_argument("--status-every", type=float, default=5.0, metavar="S",
                   help="seconds between status lines (default 5; 0: never)")
    p.add_argument("--duplicate-window", type=float, default=600.0, metavar="S",
                   help="duplicate window of a stream this command creates (default 600)")
    p.set_defaults(run=run_outbox)


def _stop_event(duration: float | None) -> asyncio.Event:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if duration is not None:
        loop.call_later(duration, stop.set)
    return stop


def _open(uri: str):
    from eventstore import StoreError, open_store

    try:
        return open_store(uri)
    except StoreError as e:
        print(f"unbroken: cannot open store {uri}: {e}", file=sys.stderr)
        return None


def run_ingest(args: argparse.Namespace) -> int:
    """Run one broker ingest until stopped; exit 1 when some messages were rejected."""
    store = _open(args.store)
    if store is None:
        return EXIT_ERROR
    with store:
        app = _app(args, store)
        asyncio.run(_serve(app, args))
    return EXIT_PROBLEM if app.ingestor.rejected else EXIT_OK


def _app(args: argparse.Namespace, store):
    from .messages import Ingestor

    ingestor = Ingestor(store, args.broker, stream=args.stream, rejected_stream=args.rejected_stream,
                        max_bytes=args.max_bytes)
    if args.broker == "nats":
        from .nats_app import NatsIngest

        return NatsIngest(ingestor, url=args.url, subject=args.subject, durable=args.durable,
                          js_stream=args.js_stream, batch=args.batch, ack_wait=args.ack_wait)
    if args.broker == "redis":
        from .redis_app import RedisIngest

        return RedisIngest(ingestor, url=args.url, stream=args.subject, group=args.group,
                           batch=args.batch, claim_idle=args.claim_idle)
    from .rabbit_app import RabbitIngest

    return RabbitIngest(ingestor, url=args.url, queue=args.subject, batch=args.batch)


async def _serve(app, args: argparse.Namespace) -> None:
    from .service import serve

    stop = _stop_event(args.duration)
    print(f"{app.name}: {args.url} {args.subject} -> {args.store}", file=sys.stderr, flush=True)
    await serve(app, stop, status_every=args.status_every)


def run_outbox(args: argparse.Namespace) -> int:
    """Enqueue (from a trace or a projection) and publish the outbox until stopped or drained."""
    from eventstore import UnbrokenError

    store = _open(args.store)
    if store is None:
        return EXIT_ERROR
    with store:
        try:
            projection = _projection(args) if args.projection else None
            if args.trace:
                from .outbox import enqueue_trace

                added = enqueue_trace(store, args.name, args.trace)
                print(f"outbox {args.name}: {added} new entries from {args.trace}", file=sys.stderr)
        except UnbrokenError as e:
            print(f"unbroken outbox: {e}", file=sys.stderr)
            return EXIT_ERROR
        asyncio.run(_publish(store, args, projection))
    return EXIT_OK


def _projection(args: argparse.Namespace):
    import replay
    from projections import parse_pairs

    return replay.load_projection(args.projection, **parse_pairs(args.config))


async def _publish(store, args: argparse.Namespace, projection) -> None:
    from .outbox import NatsOutbox, enqueue_projection

    stop = _stop_event(None)
    outbox = NatsOutbox(store, args.name, url=args.url, subject=args.subject,
                        js_stream=args.js_stream, duplicate_window=args.duplicate_window)
    tasks = [asyncio.create_task(outbox.run(stop, until_empty=args.drain and projection is None))]
    if projection is not None:
        async def feed() -> None:
            while not stop.is_set():
                await asyncio.to_thread(enqueue_projection, store, args.name, projection)
                try:
                    await asyncio.wait_for(stop.wait(), args.every)
                except TimeoutError:
                    pass
        tasks.append(asyncio.create_task(feed()))
    if args.status_every:
        async def status() -> None:
            while not stop.is_set():
                try:
                    await asyncio.wait_for(stop.wait(), args.status_every)
                except TimeoutError:
                    print(outbox.status(), file=sys.stderr, flush=True)
        tasks.append(asyncio.create_task(status()))
    await tasks[0]
    stop.set()
    await asyncio.gather(*tasks[1:], return_exceptions=True)
    print(outbox.status(), file=sys.stderr, flush=True)

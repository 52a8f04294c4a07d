"""``unbroken ingest`` and ``unbroken simulate``: one parent command each, one child per adapter.

Each adapter module offers ``register_ingest(subparsers)`` and/or
``register_simulate(subparsers)``; adding an adapter (nats, bacnet) is one line
in ``ADAPTERS``. Adapter modules import their heavy dependencies only when a
command runs, so building the ``unbroken`` parser stays cheap.
"""

from __future__ import annotations

import argparse
import importlib

ADAPTERS = (
    "adapters.modbus.cli",  # first: `unbroken ingest modbus`, `unbroken simulate modbus`
    "adapters.bacnet.cli",  # `unbroken ingest/serve/simulate bacnet`
    "adapters.broker.cli",  # `unbroken ingest nats/redis/rabbit`
)

EPILOG = "Exit codes: 0 ok, 1 a problem was found, 2 usage error, 3 could not run."


def register(commands: argparse._SubParsersAction) -> None:
    """Add ``ingest`` and ``simulate`` with every adapter's child command to the ``unbroken`` parser."""
    ingest = _parent(commands, "ingest", "record field inputs (Modbus, ...) as events in a store",
                     "Poll or subscribe to field devices and append every exchange and every "
                     "failure to an event store, until stopped.")
    simulate = _parent(commands, "simulate", "serve simulated field devices that misbehave on request",
                       "Serve simulated devices from a seeded model on loopback, optionally "
                       "misbehaving as a plan says, to test controllers and pollers against.")
    serve = _parent(commands, "serve", "serve devices materialized from a store (BACnet, ...)",
                    "Serve field devices whose objects are folded from the events in a store, "
                    "following the store live.")
    for module in ADAPTERS:
        add_adapter(module, ingest, simulate)
        if hasattr(mod := importlib.import_module(module), "register_serve"):
            mod.register_serve(serve)


def add_adapter(module: str, ingest: argparse._SubParsersAction,
                simulate: argparse._SubParsersAction) -> None:
    """Let adapter ``module`` add its child parsers under ``ingest`` and ``simulate``."""
    mod = importlib.import_module(module)
    if hasattr(mod, "register_ingest"):
        mod.register_ingest(ingest)
    if hasattr(mod, "register_simulate"):
        mod.register_simulate(simulate)


def _parent(commands: argparse._SubParsersAction, name: str, help: str, description: str):
    parser = commands.add_parser(name, help=help, description=description, epilog=EPILOG)
    return parser.add_subparsers(dest="adapter", metavar="ADAPTER", required=True)

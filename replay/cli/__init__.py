"""Subcommands of replay/: import, export, replay, diff, query."""

from __future__ import annotations

import argparse


def register(commands: argparse._SubParsersAction) -> None:
    """Add replay's subcommands to the ``unbroken`` parser."""
    from ._io import register as register_io
    from ._run import register as register_run

    register_run(commands)
    register_io(commands)

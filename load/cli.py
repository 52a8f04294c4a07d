"""Subcommands of this package for the ``unbroken`` command (filled in as features land)."""

from __future__ import annotations

import argparse


def register(commands: argparse._SubParsersAction) -> None:
    """Add this package's subcommands to the ``unbroken`` parser."""

"""Placeholder until this part of replay/ lands."""

from __future__ import annotations

import argparse


def register(commands: argparse._SubParsersAction) -> None:
    """Add these subcommands to the ``unbroken`` parser."""

"""The one error replay raises for a run that cannot go on."""

from __future__ import annotations


class ReplayError(Exception):
    """A replay could not run or was stopped: the message says what, where and what to do."""

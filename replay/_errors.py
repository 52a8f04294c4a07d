"""Replay's errors: ``ReplayError`` and the named errors of its parts beneath it.

``ReplayError`` is a run that cannot go on; ``LogError`` (a log that cannot
be read or written) and ``QueryError`` (a trace query that was refused or
failed) derive from it, so one ``except ReplayError`` catches all of replay,
and ``eventstore.UnbrokenError`` catches all of unbroken.
"""

from __future__ import annotations

from eventstore import UnbrokenError


class ReplayError(UnbrokenError):
    """A replay could not run or was stopped: the message says what, where and what to do."""

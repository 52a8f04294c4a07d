"""Virtual time for replays: it moves only when the runner moves it, and never backwards."""

from __future__ import annotations

from replay._errors import ReplayError


class VirtualClock:
    """The replay's notion of now, in integer nanoseconds UTC.

    There is no wall clock behind it: ``now`` changes only through
    ``advance_to``, which refuses to go backwards (like trio's ``MockClock``),
    so a projection reading ``ctx.now`` sees the same times on every replay.
    """

    __slots__ = ("now",)

    def __init__(self, start: int = 0) -> None:
        if not isinstance(start, int):
            raise ReplayError(f"VirtualClock start must be integer ns, got {type(start).__name__}")
        self.now = start

    def advance_to(self, t: int) -> int:
        """Move to ``t`` (ns). Staying put is allowed; going back raises ``ReplayError``."""
        if t < self.now:
            raise ReplayError(
                f"virtual clock cannot go backwards: now is {self.now} ns, asked for {t} ns "
                f"({self.now - t} ns earlier); deliveries must be processed in time order"
            )
        self.now = t
        return t

    def __repr__(self) -> str:
        return f"VirtualClock(now={self.now})"

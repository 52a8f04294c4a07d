"""pytest plugin for unbroken (entry point ``pytest11: unbroken``), kept light to import.

Nothing heavy is imported at load time (no DuckDB, polars or Hypothesis);
fixtures import what they need when a test asks for them.

- Markers: ``case(id)`` (an id from docs/scenarios.md), ``slow``, ``soak``, ``service``.
- Fixtures: ``clock`` (a ``replay.VirtualClock`` at 2024-01-01), ``store`` (an
  in-memory event store stamping ``recorded_at`` from ``clock``), ``replayer``
  (replays the store, or given events, under a schedule; keeps the trace under
  ``--unbroken-trace-dir`` when given) and ``schedule`` (Hypothesis strategies
  and saved schedules: ``schedule.strategy(events)``, ``schedule.load(path)``).
- Hypothesis profiles ``dev`` (50 examples), ``ci`` (200, derandomized, no
  database) and ``thorough`` (2,000), chosen with ``--unbroken-profile NAME``
  or ``UNBROKEN_PROFILE=NAME``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import pytest

START_NS = 1_704_067_200_000_000_000  # 2024-01-01 00:00 UTC
PROFILES = {
    "dev": {"max_examples": 50, "deadline": None},
    "ci": {"max_examples": 200, "deadline": None, "derandomize": True, "database": None,
           "print_blob": True},
    "thorough": {"max_examples": 2000, "deadline": None},
}
MARKERS = (
    "case(id): the scenario id (docs/scenarios.md) this test exercises",
    "slow: takes more than a few seconds",
    "soak: long-running durability test",
    "service: needs an external service (nats-server, KurrentDB)",
)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("unbroken")
    group.addoption("--unbroken-trace-dir", metavar="DIR", default=None,
                    help="keep the Parquet trace of every replayer run under DIR/<test>/")
    group.addoption("--unbroken-profile", metavar="NAME", default=None,
                    choices=sorted(PROFILES),
                    help="Hypothesis profile: dev, ci or thorough (default: $UNBROKEN_PROFILE)")


def pytest_configure(config: pytest.Config) -> None:
    for marker in MARKERS:
        config.addinivalue_line("markers", marker)
    name = config.getoption("--unbroken-profile") or os.environ.get("UNBROKEN_PROFILE")
    if name:
        load_profile(name)


def register_profiles() -> None:
    """Register the ``dev``, ``ci`` and ``thorough`` Hypothesis profiles (idempotent)."""
    from hypothesis import settings

    for name, values in PROFILES.items():
        settings.register_profile(name, **values)


def load_profile(name: str) -> None:
    """Make ``name`` the active Hypothesis profile; raises ``pytest.UsageError`` for an unknown one."""
    if name not in PROFILES:
        raise pytest.UsageError(
            f"unknown unbroken profile {name!r} (from --unbroken-profile or UNBROKEN_PROFILE); "
            f"choose one of {', '.join(sorted(PROFILES))}"
        )
    from hypothesis import settings

    register_profiles()
    settings.load_profile(name)


@pytest.fixture
def clock() -> Any:
    """A virtual clock at 2024-01-01 00:00 UTC; ``clock.advance_to(t)`` moves it (never back)."""
    from replay import VirtualClock

    return VirtualClock(START_NS)


@pytest.fixture
def store(clock: Any) -> Any:
    """An in-memory event store whose ``recorded_at`` is ``clock.now``; closed after the test."""
    from eventstore import open_store

    s = open_store("memory://", clock=lambda: clock.now)
    yield s
    s.close()


class Replayer:
    """Replays events under a schedule; see the ``replayer`` fixture."""

    def __init__(self, store: Any, trace_root: Path | None) -> None:
        self.store = store
        self.trace_root = trace_root
        self.runs = 0

    def __call__(self, projection: Any, events: Any = None, schedule: Any = None, **kwargs: Any) -> Any:
        """Run ``projection`` (an instance, name or FILE.py:ATTR) over ``events`` (default: the store).

        ``schedule`` is a ``properties.Schedule`` (default: identity). Returns
        the ``replay.RunResult`` with its tables in memory.
        """
        import replay
        from properties import IDENTITY, factory_of

        log = list(self.store.read_all()) if events is None else list(events)
        deliveries, drops = (schedule or IDENTITY).apply(log)
        self.runs += 1
        if self.trace_root is not None:
            kwargs.setdefault("trace_dir", self.trace_root / f"run-{self.runs}")
        if schedule is not None:
            kwargs.setdefault("schedule_desc", schedule.to_json().decode())
        return replay.run(deliveries, factory_of(projection)(), drops=drops, **kwargs)


@pytest.fixture
def replayer(request: pytest.FixtureRequest, store: Any) -> Replayer:
    """``replayer(projection, events=None, schedule=None, **run_kwargs) -> RunResult``."""
    root = request.config.getoption("--unbroken-trace-dir")
    trace_root = None
    if root:
        trace_root = Path(root) / re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.nodeid)
    return Replayer(store, trace_root)


class ScheduleTools:
    """Delivery schedules for tests: strategies to draw them, saved ones to load."""

    @staticmethod
    def strategy(events: Any, **policy: Any) -> Any:
        """``properties.schedules(events, SchedulePolicy(**policy))``: shrinks to the identity."""
        from properties import SchedulePolicy, schedules

        return schedules(list(events), SchedulePolicy(**policy))

    @staticmethod
    def load(path: str | Path) -> Any:
        """A schedule saved as JSON (e.g. ``schedule.json`` of a counterexample)."""
        from properties import Schedule

        return Schedule.from_json(Path(path).read_bytes())

    @property
    def identity(self) -> Any:
        """The schedule that delivers everything once, in order."""
        from properties import IDENTITY

        return IDENTITY


@pytest.fixture
def schedule() -> ScheduleTools:
    """``schedule.strategy(events, **policy)``, ``schedule.load(path)``, ``schedule.identity``."""
    return ScheduleTools()

"""``check_log``: the one-call check of a log file (used by ``unbroken check`` and ``make demo``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ._report import CheckReport
from ._search import check
from ._strategies import DEFAULT_POLICY, SchedulePolicy


def check_log(
    path: str | Path,
    projection: Any = "arrears",
    *,
    config: dict[str, Any] | None = None,
    examples: int = 200,
    seed: int = 0,
    invariants: Any = None,
    trace_dir: str | Path | None = None,
    mapping: Any = None,
    policy: SchedulePolicy = DEFAULT_POLICY,
    shrink_budget_s: float = 30.0,
    allow_faults: bool = False,
    event_timeout: float | None = None,
    progress: Any = None,
) -> CheckReport:
    """Read the log at ``path`` (JSONL, CSV or Parquet, see ``replay.read_log``) and ``check`` it.

    Raises ``FileNotFoundError`` for a missing file and ``replay.LogError``
    naming the line for a malformed one. ``report.render()`` gives the text
    that ``unbroken check`` prints; ``report.exit_code()`` its exit status.
    ``allow_faults``, ``event_timeout`` and ``progress`` are ``check``'s.
    """
    import replay

    source = Path(path)
    if not source.is_file():
        raise FileNotFoundError(f"log file {source} does not exist")
    events = list(replay.read_log(source, mapping))
    return check(
        events, projection, config=config, examples=examples, seed=seed, invariants=invariants,
        trace_dir=trace_dir, policy=policy, shrink_budget_s=shrink_budget_s, source=str(source),
        allow_faults=allow_faults, event_timeout=event_timeout, progress=progress,
    )

"""Fault plans: what a soak does to its processes, and when (TOML or JSON, seeded).

```toml
seed = 7
every = "60s"            # one generated fault per interval (jittered by +-20%, seeded)
first = "30s"            # the first generated fault (default: every)
kinds = ["kill:ingest", "kill:projection", "restart:broker", "native:ingest"]
down = "3s"              # how long a killed process stays down / a native fault lasts

[limits]                 # resident-memory (RSS) limits in MB, judged at the end (default 512)
projection = 256

[rlimit_as]              # address-space limits in MB (RLIMIT_AS), applied at every start
ingest = 1024            # (virtual size: Python with DuckDB/Polars maps ~900 MB; Go ~1.3 GB)

[criteria]               # override thresholds (see load/_criteria.py DEFAULTS)
processing_p99_ms = 100

[[fault]]                # faults at fixed times, in addition to the generated ones
at = "45s"
action = "kill"          # kill | restart | native | memory-limit
process = "projection"   # broker | ingest | projection | server (the BACnet event server)
down = "2s"

[[fault]]
at = "90s"
action = "native"
process = "ingest"
rules = ["latency dst={broker} ms=200"]   # native rule lines; {broker} is host:port
for = "10s"
```

A process over its RLIMIT_AS gets MemoryError (or dies) where it allocates:
the run then fails with an unplanned exit, which is what such a fault is for.
``kill``/``restart`` send SIGKILL and start the process again after ``down``;
``native`` sets LD_PRELOAD fault rules (native/) in the ingest's control file
for ``for`` seconds; ``memory-limit`` kills the process and restarts it under
RLIMIT_AS of ``limit_mb``. ``schedule(duration)`` lists the faults of a run:
the same plan and seed always give the same list.
"""

from __future__ import annotations

import json
import random
import tomllib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from eventstore import UnbrokenError

from ._arrivals import ArrivalError, parse_duration

ACTIONS = ("kill", "restart", "native", "memory-limit")
PROCESSES = ("broker", "ingest", "projection", "server")
DEFAULT_NATIVE = ("latency dst={broker} ms=150",)


class PlanError(UnbrokenError, ValueError):
    """A fault plan that cannot be used; the message names the field."""


@dataclass(slots=True)
class PlannedFault:
    """One fault: at ``at`` s from the start, for ``down`` s."""

    at: float
    action: str
    process: str
    down: float = 3.0
    rules: list[str] = field(default_factory=list)
    limit_mb: float = 0.0
    label: str = ""

    def as_dict(self) -> dict[str, Any]:
        """JSON-able."""
        return asdict(self)


@dataclass(slots=True)
class FaultPlan:
    """Fixed faults, a generator (``every`` + ``kinds``), limits and criteria overrides."""

    seed: int = 0
    every: float | None = None
    first: float | None = None
    kinds: list[str] = field(default_factory=list)
    down: float = 3.0
    faults: list[PlannedFault] = field(default_factory=list)
    limits: dict[str, float] = field(default_factory=dict)
    rlimit_as: dict[str, float] = field(default_factory=dict)
    criteria: dict[str, float] = field(default_factory=dict)
    broker: str = "127.0.0.1:4222"
    source: str = "none"  # the file it came from

    def schedule(self, duration: float) -> list[PlannedFault]:
        """Every fault of a run of ``duration`` s, sorted by time, labelled f1, f2, ..."""
        out = [f for f in self.faults if f.at < duration]
        if self.every:
            rng = random.Random(self.seed)
            t = self.first if self.first is not None else self.every
            while t < duration - self.down - 5:
                kind = rng.choice(self.kinds)
                action, _, process = kind.partition(":")
                at = max(1.0, t + rng.uniform(-0.2, 0.2) * self.every)
                out.append(PlannedFault(at, action, process or "ingest", self.down,
                                        list(DEFAULT_NATIVE) if action == "native" else [],
                                        limit_mb=self.rlimit_as.get(process, 0.0)))
                t += self.every
        out.sort(key=lambda f: f.at)
        for i, f in enumerate(out, 1):
            f.label = f"f{i}:{f.action}:{f.process}"
            f.rules = [r.replace("{broker}", self.broker) for r in f.rules]
        return out

    @property
    def actions(self) -> set[str]:
        """Every action the plan may take."""
        return {f.action for f in self.faults} | {k.partition(":")[0] for k in self.kinds}


def _seconds(value: Any, where: str) -> float:
    try:
        return parse_duration(value)
    except ArrivalError as e:
        raise PlanError(f"{where}: {e}") from None


def _fault(raw: dict[str, Any], index: int, down: float) -> PlannedFault:
    where = f"fault {index + 1}"
    if not isinstance(raw, dict):
        raise PlanError(f"{where}: a table/object, not {type(raw).__name__}")
    unknown = set(raw) - {"at", "action", "process", "down", "for", "rules", "limit_mb"}
    if unknown:
        raise PlanError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}")
    action, process = raw.get("action"), raw.get("process", "ingest")
    if action not in ACTIONS:
        raise PlanError(f"{where}: action {action!r} is not one of {', '.join(ACTIONS)}")
    if process not in PROCESSES:
        raise PlanError(f"{where}: process {process!r} is not one of {', '.join(PROCESSES)}")
    if "at" not in raw:
        raise PlanError(f"{where}: needs at (e.g. at = \"45s\")")
    rules = raw.get("rules", list(DEFAULT_NATIVE) if action == "native" else [])
    if action == "native":
        import native

        try:
            native.rules_text([r.replace("{broker}", "127.0.0.1:1") for r in rules])
        except ValueError as e:
            raise PlanError(f"{where}: {e}") from None
    if action == "memory-limit" and not raw.get("limit_mb"):
        raise PlanError(f"{where}: memory-limit needs limit_mb")
    length = raw.get("for", raw.get("down", down))
    return PlannedFault(_seconds(raw["at"], f"{where} at"), action, process,
                        _seconds(length, f"{where} down/for"), list(rules),
                        float(raw.get("limit_mb", 0.0)))


def _sizes(data: dict[str, Any], key: str) -> dict[str, float]:
    table = data.get(key, {})
    if not isinstance(table, dict):
        raise PlanError(f"{key}: a table of PROCESS = MB")
    out = {}
    for name, value in table.items():
        if name not in (*PROCESSES, "load") or not isinstance(value, int | float) or value <= 0:
            raise PlanError(f"{key}.{name}: PROCESS ({', '.join(PROCESSES)}) = MB > 0")
        out[str(name)] = float(value)
    return out


def parse_plan(data: dict[str, Any]) -> FaultPlan:
    """A plan from parsed TOML/JSON; ``PlanError`` names what is wrong."""
    known = {"seed", "every", "first", "kinds", "down", "fault", "limits", "rlimit_as", "criteria"}
    unknown = set(data) - known
    if unknown:
        raise PlanError(f"unknown key(s) {', '.join(sorted(unknown))}; known: "
                        f"{', '.join(sorted(known))}")
    down = _seconds(data.get("down", 3.0), "down")
    kinds = list(data.get("kinds", []))
    for kind in kinds:
        action, _, process = str(kind).partition(":")
        if action not in ACTIONS or process not in PROCESSES or action == "memory-limit":
            raise PlanError(f"kinds: {kind!r} is not ACTION:PROCESS with ACTION kill, restart or "
                            f"native and PROCESS one of {', '.join(PROCESSES)}")
    every = _seconds(data["every"], "every") if "every" in data else None
    if every is not None and (every <= 0 or not kinds):
        raise PlanError("every needs a positive interval and a non-empty kinds list")
    from ._criteria import DEFAULTS

    criteria = dict(data.get("criteria", {}))
    if bad := set(criteria) - set(DEFAULTS):
        raise PlanError(f"criteria: unknown {', '.join(sorted(bad))}; known: "
                        f"{', '.join(DEFAULTS)}")
    return FaultPlan(
        seed=int(data.get("seed", 0)), every=every,
        first=_seconds(data["first"], "first") if "first" in data else None, kinds=kinds,
        down=down, faults=[_fault(f, i, down) for i, f in enumerate(data.get("fault", []))],
        limits=_sizes(data, "limits"), rlimit_as=_sizes(data, "rlimit_as"),
        criteria={k: float(v) for k, v in criteria.items()})


def load_plan(source: str | Path | None) -> FaultPlan:
    """A plan from a .toml or .json file; None or ``none`` is the empty plan."""
    if source is None or str(source) == "none":
        return FaultPlan()
    path = Path(source)
    if not path.is_file():
        raise PlanError(f"fault plan {path} does not exist")
    text = path.read_text()
    try:
        data = json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as e:
        raise PlanError(f"fault plan {path}: {e}") from None
    plan = parse_plan(data)
    plan.source = str(path)
    return plan

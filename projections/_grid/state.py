"""The grid projection's state: nodes and their liveness, frequency slots, readings, balances."""

from __future__ import annotations

import msgspec

UNKNOWN = "unknown"  # known (expected, or named by a fault) but never heard
VISIBLE = "visible"
SILENT = "silent"
RECOVERING = "recovering"  # reporting again after silence; still counts as silent

NORMAL = "normal"
DEGRADED = "degraded"
BLIND = "blind"


class Node(msgspec.Struct):
    """One node: its role, liveness state and the newest time heard from it (its own time)."""

    role: str = ""
    state: str = UNKNOWN
    last_seen: int = -1
    since: int = 0
    reports: int = 0
    faults: int = 0


class Slot(msgspec.Struct):
    """One metering interval's frequency samples by node, and the events they came from."""

    length: int
    freqs: dict[str, float] = {}
    ids: dict[str, str] = {}
    ends: dict[str, int] = {}


class Reading(msgspec.Struct, array_like=True):
    """One node's energy over one interval (the first reading of a node and interval counts)."""

    role: str
    energy_wh: float


class Balance(msgspec.Struct):
    """A day's energy balance as last judged (Wh)."""

    produced: float = 0.0
    consumed: float = 0.0
    losses: float = 0.0
    storage: float = 0.0
    residual: float = 0.0
    complete: bool = False
    verdict: str = ""


class Shed(msgspec.Struct):
    """The protection episode in progress: its effect key and where it stands."""

    key: str = ""
    stage: str = ""  # held | released | blocked
    inputs: list[str] = []
    input_time: int = 0


class GridState(msgspec.Struct):
    """Everything the grid projection knows."""

    nodes: dict[str, Node] = {}
    mode: str = ""
    slots: dict[str, Slot] = {}
    readings: dict[str, dict[str, Reading]] = {}
    days: dict[str, Balance] = {}
    shed: Shed = msgspec.field(default_factory=Shed)
    released: list[str] = []  # effect keys of load sheds released: never twice

"""Misbehaviour plans for the simulator: which requests it answers wrongly, and how (TOML or JSON).

A plan is a seed and a list of rules; each request is matched against the rules
in order and the first that applies decides what the simulator does with it::

    seed = 7
    [[rule]]
    action = "truncate"      # see ACTIONS
    device = "tank1"         # optional: only this device (default: every device)
    function = 3             # optional: only requests with this function code
    probability = 0.5        # optional: the fraction of matching requests (seeded draw)
    count = 3                # optional: at most this many times, then the rule is spent
    after_requests = 10      # optional: only from the 11th request of the device on
    after_bytes = 5          # reset / truncate: bytes of the real answer sent first
    code = 2                 # exception: the Modbus exception code (1..11)
    delay = 0.5              # slow: seconds before the real answer
    seconds = 2.0            # refuse: how long the port stays closed (default: for ever)

Relays that stick are a model setting: ``stick = ["nutrient_pump"]`` at the top
level acknowledges writes to those registers without changing them (HY-005).
"""

from __future__ import annotations

import json
import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .devices import DeviceFileError

ACTIONS = {
    "refuse": "refused",  # the port is closed: connects are refused
    "silent": "timeout",  # the request is read and never answered
    "reset": "reset",  # after_bytes of the answer, then a TCP reset
    "truncate": "truncated",  # after_bytes of the answer, then nothing
    "garbage": "garbage",  # random bytes that are no Modbus frame
    "wrong_transaction": "wrong_transaction",  # the answer with another transaction id
    "wrong_unit": "wrong_unit",  # the answer from another unit id
    "bad_length": "bad_length",  # the answer with an impossible MBAP length
    "bad_crc": "bad_crc",  # RTU framing: the answer with a wrong CRC
    "exception": "exception",  # a Modbus exception response with ``code``
    "slow": "timeout",  # the real answer after ``delay`` (a fault only if delay > timeout)
}
"""Each action and the ``ModbusFault`` kind a poller should record for it."""


class PlanError(DeviceFileError):
    """A misbehaviour plan that cannot be used (names the file, the rule and what fits)."""


@dataclass(frozen=True)
class Rule:
    """One misbehaviour, and which requests it hits."""

    action: str
    device: str | None = None
    function: int | None = None
    probability: float = 1.0
    count: int | None = None
    after_requests: int = 0
    after_bytes: int = 3
    code: int = 2
    delay: float = 0.0
    seconds: float = math.inf

    @property
    def fault_kind(self) -> str:
        """The fault kind a poller records for a request this rule hit."""
        return ACTIONS[self.action]


@dataclass(frozen=True)
class Plan:
    """A seed, the rules, and the registers whose writes do not take (sticky relays)."""

    seed: int = 0
    rules: tuple[Rule, ...] = ()
    stick: tuple[str, ...] = field(default_factory=tuple)


NO_PLAN = Plan()


def load_plan(path: str | Path) -> Plan:
    """Read a plan from a ``.toml`` or ``.json`` file; raises ``PlanError`` when it is wrong."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PlanError(f"misbehaviour plan {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as e:
        raise PlanError(f"misbehaviour plan {path} cannot be read: {e}") from None
    try:
        doc = json.loads(text) if path.suffix.lower() == ".json" else tomllib.loads(text)
    except (ValueError, tomllib.TOMLDecodeError) as e:
        raise PlanError(f"{path}: not valid {'JSON' if path.suffix.lower() == '.json' else 'TOML'}: {e}") from None
    return parse_plan(doc, str(path))


def parse_plan(doc: Any, where: str = "<plan>") -> Plan:
    """A plan from its parsed document (a dict with ``seed``, ``rule`` and ``stick``)."""
    if not isinstance(doc, dict):
        raise PlanError(f"{where}: expected a table with seed, rule and stick")
    unknown = sorted(set(doc) - {"seed", "rule", "stick"})
    if unknown:
        raise PlanError(f"{where}: {unknown[0]}: expected one of seed, rule, stick")
    seed = doc.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise PlanError(f"{where}: seed: expected an integer, got {seed!r}")
    rules = doc.get("rule", [])
    if not isinstance(rules, list):
        raise PlanError(f"{where}: rule: expected a list of [[rule]] tables")
    stick = doc.get("stick", [])
    if not isinstance(stick, list) or not all(isinstance(s, str) for s in stick):
        raise PlanError(f"{where}: stick: expected a list of register names, got {stick!r}")
    return Plan(seed=seed, rules=tuple(_rule(r, f"{where}: rule[{i}]") for i, r in enumerate(rules)),
                stick=tuple(stick))


_FIELDS = {"action": str, "device": str, "function": int, "probability": float, "count": int,
           "after_requests": int, "after_bytes": int, "code": int, "delay": float, "seconds": float}


def _rule(raw: Any, where: str) -> Rule:
    if not isinstance(raw, dict):
        raise PlanError(f"{where}: expected a table, got {raw!r}")
    unknown = sorted(set(raw) - set(_FIELDS))
    if unknown:
        raise PlanError(f"{where}.{unknown[0]}: expected one of {', '.join(_FIELDS)}")
    if raw.get("action") not in ACTIONS:
        raise PlanError(f"{where}.action: expected one of {', '.join(ACTIONS)}, got {raw.get('action')!r}")
    values: dict[str, Any] = {}
    for key, value in raw.items():
        kind = _FIELDS[key]
        ok = isinstance(value, str) if kind is str else (
            not isinstance(value, bool) and isinstance(value, int if kind is int else int | float))
        if not ok:
            raise PlanError(f"{where}.{key}: expected {'a string' if kind is str else 'a number'}, got {value!r}")
        values[key] = float(value) if kind is float else value
    rule = Rule(**values)
    checks = [
        (0 <= rule.probability <= 1, "probability", "a number 0..1"),
        (rule.count is None or rule.count >= 1, "count", "an integer >= 1"),
        (rule.after_bytes >= 0, "after_bytes", "an integer >= 0"),
        (1 <= rule.code <= 255, "code", "an exception code 1..255"),
        (rule.delay >= 0, "delay", "seconds >= 0"),
        (rule.seconds > 0, "seconds", "seconds > 0"),
        (rule.after_requests >= 0, "after_requests", "an integer >= 0"),
    ]
    for ok, key, expected in checks:
        if not ok:
            raise PlanError(f"{where}.{key}: expected {expected}, got {getattr(rule, key)!r}")
    return rule

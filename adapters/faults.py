"""Injected faults as events: the fault library's log (``native``) turned into ``Fault`` events.

Each record of the JSONL log that ``native.faults(...)`` children write (one line per
injected fault: time, pid, syscall, rule, action, target, errno) becomes a
``Fault`` event: ``source`` is the target (an address ``host:port`` or a file path),
or the name ``names`` gives it (e.g. the Modbus device listening there), ``kind`` is
``injected_<action>`` and ``detail`` says which syscall failed how, under which rule.
``occurred_at`` and ``recorded_at`` are the time of injection, so a replay delivers
each fault among the events it caused, and ``faults`` rows of the trace join to the
decisions that followed. Ids derive from the line, so importing a log twice adds
nothing. A line that is not a fault record is kept as a ``Rejected`` event.

    events = fault_events("faults.jsonl", names={"127.0.0.1:5020": "node-03"})
    store.append("faults", events)
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from pathlib import Path

from eventstore import EventStore, NewEvent, UnbrokenError
from eventstore.payloads import Fault, Rejected

__all__ = ["FaultLogError", "SOURCE", "append_faults", "fault_events"]

SOURCE = "native-faults"
_NAMESPACE = uuid.UUID("0b6c7a3e-52a4-4b58-9d8f-3c1f4f0e9a61")
_FIELDS = ("t_ns", "pid", "syscall", "rule", "action", "target", "errno_name", "detail")


class FaultLogError(UnbrokenError):
    """The fault log cannot be read (missing, a directory, unreadable): names the path."""


def _read(path: Path) -> list[bytes]:
    try:
        return path.read_bytes().splitlines()
    except FileNotFoundError:
        raise FaultLogError(f"fault log {path} does not exist") from None
    except IsADirectoryError:
        raise FaultLogError(f"fault log {path} is a directory; name the JSONL file") from None
    except OSError as e:
        raise FaultLogError(f"fault log {path} cannot be read: {e.strerror}") from None


def _fault(record: dict, names: Mapping[str, str], raw: bytes) -> NewEvent:
    target = str(record["target"])
    detail = (f"{record['syscall']} {record['errno_name'] or 'no errno'} by rule {record['rule']} "
              f"(pid {record['pid']}): {record['detail']}")
    t = int(record["t_ns"])
    return NewEvent.of(
        Fault(source=names.get(target, target), kind=f"injected_{record['action']}", detail=detail),
        id=uuid.uuid5(_NAMESPACE, raw.decode("utf-8", "replace")), occurred_at=t, recorded_at=t,
        metadata={"source": SOURCE, "extra": {"target": target, "rule": str(record["rule"]),
                                               "syscall": str(record["syscall"])}},
    )


def _problem(record: object) -> str | None:
    if not isinstance(record, dict):
        return "not a JSON object"
    if record.get("event") != "fault":
        return ""  # rules / select / error records: not faults, not rejected either
    missing = [k for k in _FIELDS if k not in record]
    if missing:
        return f"fault record without {', '.join(missing)}"
    if not isinstance(record["t_ns"], int) or record["t_ns"] <= 0:
        return "t_ns is not a positive integer"
    return None


def fault_events(log: str | Path, *, names: Mapping[str, str] | None = None) -> list[NewEvent]:
    """The ``Fault`` events of every injected fault in ``log``, in order; bad lines ``Rejected``.

    ``names`` maps a target (``127.0.0.1:5020``, a path) to the source name the events
    carry. Raises ``FaultLogError`` when the log cannot be read.
    """
    path, names = Path(log), names or {}
    events = []
    for lineno, raw in enumerate(_read(path), 1):
        if not raw.strip():
            continue
        try:
            record = json.loads(raw)
        except ValueError as e:
            record, why = None, f"not JSON: {e}"
        else:
            why = _problem(record)
        if why is None:
            events.append(_fault(record, names, raw))
        elif why:
            events.append(NewEvent.of(
                Rejected(source=SOURCE, reason=why, raw=raw, where=f"{path}:{lineno}"),
                id=uuid.uuid5(_NAMESPACE, f"rejected/{raw!r}"), metadata={"source": SOURCE}))
    return events


def append_faults(store: EventStore, log: str | Path, *, names: Mapping[str, str] | None = None,
                  stream: str = "faults") -> int:
    """Append the events of ``log`` to ``stream`` of ``store``; returns how many (re-imports add none)."""
    events = fault_events(log, names=names)
    for i in range(0, len(events), 500):
        store.append(stream, events[i:i + 500])
    return len(events)

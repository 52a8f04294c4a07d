"""A projection that decides whatever each event tells it to: for testing invariants exactly.

Events of type ``Script`` carry JSON ``{"decide": {...Decision fields...}}``;
``"at_offset"`` fields are added to ``ctx.now``. State is the list of event
positions in delivery order (so it depends on order, for INV-5), unless built
with ``convergent=True``, which exposes the sorted set as the part that must converge.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from eventstore import Metadata, RecordedEvent
from projections import Decision, Status

START = 1_704_067_200_000_000_000
SECOND = 1_000_000_000


class Scripted:
    name = "scripted"
    version = "1"
    state_type = list

    def __init__(self, convergent: bool = False, crash_on: int | None = None) -> None:
        if convergent:
            self.convergent = lambda state: sorted(set(state))
        self.crash_on = crash_on

    def initial(self) -> list:
        return []

    def apply(self, state: list, event: RecordedEvent, ctx: Any) -> list:
        if event.position == self.crash_on:
            raise RuntimeError("scripted crash")
        script = json.loads(event.data)
        fields = dict(script.get("decide") or {})
        if fields:
            for key in ("input_time", "hold_until"):
                if key + "_offset" in fields:
                    fields[key] = ctx.now + fields.pop(key + "_offset")
            fields["status"] = Status(fields["status"])
            ctx.decide(Decision(**fields))
        return [*state, event.position]

    def on_timer(self, state: list, timer: Any, ctx: Any) -> list:
        return state

    def config(self) -> dict:
        return {}


def script_log(*decisions: dict | None, gap_s: int = 60) -> list[RecordedEvent]:
    """One event per entry (None: an event that decides nothing), ``gap_s`` apart."""
    out = []
    for i, decide in enumerate(decisions):
        t = START + i * gap_s * SECOND
        data = json.dumps({"decide": decide}).encode()
        out.append(RecordedEvent(
            id=uuid.UUID(int=i + 1), stream=f"script-{i % 2}", revision=i // 2,
            position=i + 1, recorded_at=t, occurred_at=t, type="Script", data=data,
            metadata=Metadata(source=f"src-{i % 2}"),
        ))
    return out


def notice(status: str, key: str = "k1", **extra: Any) -> dict:
    """An external, irreversible decision for subject s1 with sane defaults."""
    fields = dict(kind="notice", subject="s1", action="send", status=status, effect_key=key,
                  external=True, irreversible=True, confidence=0.95, min_confidence=0.9,
                  input_time_offset=0, freshness_ns=3600 * SECOND)
    fields.update(extra)
    return fields

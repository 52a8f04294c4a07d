"""The fault log as events (adapters.faults): one Fault per injected fault, named by target,
idempotent on re-import; lines that are no fault record are kept as Rejected (EF-002)."""

from __future__ import annotations

import json

import pytest

import native
from adapters.faults import FaultLogError, append_faults, fault_events
from eventstore import open_store
from eventstore.payloads import Fault, Rejected, decode_payload

from .support import Child


def test_a_real_log_becomes_fault_events_named_by_target_and_reimports_add_nothing(echo, tmp_path):
    log = tmp_path / "faults.jsonl"
    with native.faults(f"refuse dst=127.0.0.1:{echo.port} id=r", log=log) as env, Child(env) as child:
        for _ in range(3):
            child.ask(op="connect", port=echo.port, timeout=5)
    with log.open("ab") as f:  # a cut line, a foreign object, garbage: kept, not lost
        f.write(b'{"event":"fault","t_ns":1\n[1,2]\n\x00garbage\n')
    events = fault_events(log, names={f"127.0.0.1:{echo.port}": "node-07"})
    payloads = [e.data for e in events]
    faults = [p for p in payloads if isinstance(p, Fault)]
    assert len(faults) == 3 and {(f.source, f.kind) for f in faults} == {("node-07", "injected_refuse")}
    assert "connect ECONNREFUSED by rule r" in faults[0].detail
    times = [e.occurred_at for e in events if isinstance(e.data, Fault)]
    assert times == sorted(times) and all(e.recorded_at == e.occurred_at for e in events if e.occurred_at)
    rejected = [p for p in payloads if isinstance(p, Rejected)]
    assert [r.reason.split(":")[0] for r in rejected] == ["not JSON", "not a JSON object", "not JSON"]
    assert rejected[0].where.endswith(":5") and rejected[2].raw == b"\x00garbage"
    with open_store("memory://") as store:
        assert append_faults(store, log) == 6
        append_faults(store, log)
        stored = list(store.read_all())
    assert len(stored) == 6 and isinstance(decode_payload(stored[0]), Fault)
    assert stored[0].metadata.extra["target"] == f"127.0.0.1:{echo.port}"


def test_an_unreadable_log_is_a_clear_error(tmp_path):
    with pytest.raises(FaultLogError, match="does not exist"):
        fault_events(tmp_path / "missing.jsonl")
    with pytest.raises(FaultLogError, match="is a directory"):
        fault_events(tmp_path)
    (tmp_path / "rules-only.jsonl").write_text(json.dumps({"event": "rules"}) + "\n")
    assert fault_events(tmp_path / "rules-only.jsonl") == []

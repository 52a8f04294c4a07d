"""NF-001 end to end: ten grid nodes as Modbus servers on loopback, ``unbroken ingest modbus``
in a child process under the fault library with 30% of the nodes black-holed (picked by seed),
the grid projection replayed over what it stored plus the injected faults: degraded mode, no
full protection action, and the faults in the trace join to the decisions in SQL. The same
run without faults sheds load, so the block is the silence's doing."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import native
import replay
from adapters.faults import fault_events
from eventstore import NewEvent, open_store
from load._grid_model import grid_device_toml
from projections import GridConfig, GridProjection, Status

NODES, SEED = 10, 7
LIVE = dict(stale_s=0.5, recover_s=0.5, slot_s=0.2, confirm_intervals=2, hold_s=0.2)


@pytest.fixture(scope="module")
def nodes(library):
    """Ten grid nodes serving 49.0 Hz (an under-frequency event) on loopback, in a child."""
    proc = subprocess.Popen([sys.executable, str(Path(__file__).with_name("grid_nodes.py")),
                             str(NODES), str(SEED), "49.0"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    ports = json.loads(proc.stdout.readline())
    yield ports
    proc.stdin.close()
    proc.wait(20)
    proc.stdout.close()


def ingest(tmp: Path, ports: dict[str, int], env: dict[str, str]) -> tuple[int, list]:
    """Run the real poller CLI for 2.5 s under ``env``; returns its exit code and stored events."""
    devices = tmp / "grid.toml"
    devices.write_text(grid_device_toml(ports), encoding="utf-8")
    store = tmp / "events.db"
    proc = subprocess.run([sys.executable, "-m", "eventstore.cli", "ingest", "modbus", "--devices",
                           str(devices), "--store", f"embedded:///{store}", "--duration", "2.5s",
                           "--status-every", "0", "--session", "nf001"],
                          env=env, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode in (0, 1), proc.stderr
    with open_store(f"embedded:///{store}") as s:
        return proc.returncode, list(s.read_all())


def replayed(tmp: Path, events, faults=()):
    """Stored events and fault events merged by time, replayed into a trace under ``tmp/trace``."""
    merged = sorted([NewEvent(e.type, e.data, id=e.id, occurred_at=e.occurred_at, recorded_at=e.recorded_at,
                              metadata=e.metadata) for e in events] + list(faults),
                    key=lambda e: e.recorded_at)
    store = open_store("memory://")
    store.append("grid", merged)
    projection = GridProjection(GridConfig(**LIVE, expected_nodes=tuple(sorted(nodes_of(events)))))
    return replay.run(replay.deliveries_of(list(store.read_all())), projection, trace_dir=tmp / "trace")


def nodes_of(events) -> set[str]:
    return {e.metadata.source for e in events}


@pytest.mark.slow
@pytest.mark.case("NF-001")
def test_NF_001_thirty_percent_of_live_nodes_silenced_at_the_syscall_level(nodes, tmp_path):
    members = {f"127.0.0.1:{port}": name for name, port in nodes.items()}
    silenced = {members[m] for m in native.select_members(list(members), 0.3, SEED)}
    assert len(silenced) == 3

    # Control: every node visible, the 49.0 Hz event sheds load.
    (tmp_path / "clean").mkdir()
    with native.faults([]) as env:
        code, clean = ingest(tmp_path / "clean", nodes, env)
    assert code == 0 and nodes_of(clean) == set(nodes)
    control = replayed(tmp_path / "clean", clean)
    assert Status.RELEASED in [d.status for d in control.decisions if d.kind == "protection"]

    rule = {"action": "blackhole", "dst": list(members), "fraction": 0.3, "seed": SEED, "id": "nf001"}
    (tmp_path / "faulty").mkdir()
    with native.faults(rule, log=tmp_path / "faults.jsonl") as env:
        code, events = ingest(tmp_path / "faulty", nodes, env)
    injected = env.injected()
    assert code == 1  # some devices never answered
    assert {members[r["target"]] for r in injected} == silenced
    assert {r["action"] for r in injected} == {"blackhole"} and {r["rule"] for r in injected} == {"nf001"}
    frames = {e.metadata.source for e in events if e.type == "ModbusFrame"}
    faulted = {e.metadata.source for e in events if e.type == "ModbusFault"}
    assert frames == set(nodes) - silenced and faulted == silenced

    faults = fault_events(env.log, names=members)
    assert len(faults) == len(injected)
    result = replayed(tmp_path / "faulty", events, faults)
    modes = [d.action for d in result.decisions if d.kind == "grid-mode"]
    assert modes[0] == "degraded" and "normal" not in modes
    protection = [d for d in result.decisions if d.kind == "protection"]
    assert protection and {d.status for d in protection} == {Status.BLOCKED}
    assert protection[0].reasons == ("partial_visibility",)

    joined = replay.query(tmp_path / "faulty" / "trace", """
        SELECT d.seq, d.status, count(DISTINCT f.source) AS silent_nodes, count(*) AS injected,
               list(DISTINCT f.source ORDER BY f.source) AS sources
        FROM decisions d JOIN faults f ON f.run_id = d.run_id AND f.seq <= d.cause_seq
        WHERE d.kind = 'protection' AND f.kind = 'injected_blackhole'
        GROUP BY ALL ORDER BY d.seq""")
    assert joined.height == len(protection)
    first = joined.row(0, named=True)
    assert first["status"] == "blocked" and first["silent_nodes"] == 3
    assert first["sources"] == sorted(silenced)


"""The Modbus poller (``unbroken ingest modbus`` in a child process) under the fault library:
one node refused, one black-holed, one reset after 40 bytes, one with reads sliced to 3 bytes.
Its ModbusFault events match what was injected, one for one; slicing loses nothing."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

import native
from eventstore import open_store
from eventstore.payloads import decode_payload
from load._grid_model import grid_device_toml

RESPONSE = 9 + 8  # MBAP header, function, byte count, four registers


@pytest.fixture(scope="module")
def four_nodes(library):
    proc = subprocess.Popen([sys.executable, str(Path(__file__).with_name("grid_nodes.py")), "4", "1", "50.0"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    ports = json.loads(proc.stdout.readline())
    yield ports
    proc.stdin.close()
    proc.wait(20)
    proc.stdout.close()


@pytest.fixture(scope="module")
def session(four_nodes, tmp_path_factory):
    """One 2.5 s run of ``unbroken ingest modbus`` under the four rules; what it stored and what
    the library injected."""
    tmp = tmp_path_factory.mktemp("poller")
    refused, holed, reset, sliced = four_nodes  # node-01..node-04
    at = {name: f"127.0.0.1:{port}" for name, port in four_nodes.items()}
    rules = [f"refuse dst={at[refused]} id=refuse", f"blackhole dst={at[holed]} id=hole",
             f"reset dst={at[reset]} after={2 * RESPONSE + 6} id=reset",
             f"slice dst={at[sliced]} bytes=3 id=slice"]
    devices = tmp / "nodes.toml"
    devices.write_text(grid_device_toml(four_nodes), encoding="utf-8")
    with native.faults(rules, log=tmp / "faults.jsonl") as env:
        proc = subprocess.run([sys.executable, "-m", "eventstore.cli", "ingest", "modbus", "--devices",
                               str(devices), "--store", str(tmp / "events.db"), "--duration", "2.5s",
                               "--status-every", "0", "--session", "faults"],
                              env=env, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 1, proc.stderr  # two devices never answered
    with open_store(str(tmp / "events.db")) as store:
        payloads = [decode_payload(e) for e in store.read_all()]
    return Counter((r["rule"], r["syscall"]) for r in env.injected()), payloads


def _faults(payloads, device):
    return [p for p in payloads if type(p).__name__ == "ModbusFault" and p.device == device]


@pytest.mark.slow
def test_poller_faults_match_what_the_library_injected(four_nodes, session):
    refused, holed, reset, sliced = four_nodes
    injected, payloads = session
    frames = Counter(p.device for p in payloads if type(p).__name__ == "ModbusFrame")

    # refused: one ECONNREFUSED per connect attempt, each a "refused" fault at once, and nothing else
    assert injected["refuse", "connect"] >= 3
    assert [p.kind for p in _faults(payloads, refused)] == ["refused"] * injected["refuse", "connect"]
    assert all(p.latency_ns < 100_000_000 for p in _faults(payloads, refused)) and not frames[refused]
    # black-holed: every connect attempt gives up after the device's 0.2 s timeout; at most the
    # attempt cut short by the stop is unrecorded
    holes = _faults(payloads, holed)
    assert injected["hole", "connect"] >= 3 and 0 <= injected["hole", "connect"] - len(holes) <= 1
    assert all(p.latency_ns >= 190_000_000 for p in holes) and not frames[holed]
    # reset after 40 bytes: two whole answers per connection, then the third cut after 6 bytes
    resets = _faults(payloads, reset)
    assert injected["reset", "recv"] >= 3
    assert len(resets) == injected["reset", "recv"] and {p.kind for p in resets} == {"reset"}
    assert all(len(p.raw) == 6 for p in resets)
    # the run may stop anywhere in a connection's three rounds (a late round under load skips a
    # tick and moves where): 0, 1 or 2 whole answers after the last reset
    assert 2 * len(resets) <= frames[reset] <= 2 * len(resets) + 2, (frames[reset], len(resets))
    # sliced to 3 bytes: every answer arrives whole, in pieces; no fault at all
    assert injected["slice", "recv"] >= 6 * frames[sliced] > 0
    assert not _faults(payloads, sliced)
    values = {p.decoded["frequency_hz"] for p in payloads if type(p).__name__ == "ModbusFrame"}
    assert values == {50.0}


@pytest.mark.slow
def test_a_black_holed_connect_is_recorded_as_a_connect_timeout(four_nodes, session):
    # pymodbus cancels a connect at its timeout; the poller still tells it from a refusal
    _, payloads = session
    refused, holed = list(four_nodes)[:2]
    assert {p.kind for p in _faults(payloads, holed)} == {"connect_timeout"}
    assert all("after 0.2 s" in p.detail for p in _faults(payloads, holed))
    assert {p.kind for p in _faults(payloads, refused)} == {"refused"}
    assert all("Errno 111" in p.detail for p in _faults(payloads, refused))

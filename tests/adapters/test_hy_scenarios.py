"""HY-001..HY-005 end to end: the simulator misbehaves, the poller records what happens, the
recorded session replays through the dosing projection, and the same log is property-checked
under delivery schedules from ``properties``. (HY-006, across a killed process, is in
test_modbus_cli.py; the projection's side of each scenario on exact logs is in
tests/projections/test_dosing_scenarios.py.)"""

from __future__ import annotations

import asyncio

import pytest

import properties
import replay
from adapters.modbus import parse_plan
from projections import DosingProjection, get

from .modbus_support import FAST_DOSING, device_toml, devices, record, until

SEED = 11
EXAMPLES = 25


def _replay(session, **config):
    projection = get("dosing", **{**FAST_DOSING, **config})
    result = replay.run(list(replay.deliveries_of(session.events)), projection, strict=True)
    return result, projection


def _check(session, **config):
    report = properties.check(session.events, "dosing", config={**FAST_DOSING, **config},
                              examples=EXAMPLES, seed=SEED)
    assert report.exit_code() == 0, report.render()
    return report


def _released(result, kind="dose"):
    return [d for d in result.decisions if d.kind == kind and str(d.status) == "released"]


@pytest.mark.case("HY-001")
def test_HY_001_refused_connections_are_faults_retried_with_backoff_and_nothing_is_dosed():
    devs = devices(device_toml(backoff=(0.02, 0.1)))
    plan = parse_plan({"seed": SEED, "rule": [{"action": "refuse"}]})  # for the whole session
    s = asyncio.run(record(devs, plan, lambda s: len(s.events) >= 8))
    assert set(s.fault_kinds()) == {"refused"} and not s.of("ModbusFrame")
    faults = s.of("ModbusFault")
    gaps = [b.received_at - a.received_at for a, b in zip(faults, faults[1:], strict=False)]
    assert min(gaps) >= 0.01e9 and max(gaps) <= 0.1e9 + 0.08e9, "backoff from 20 ms, capped at 100 ms"
    assert s.ingest.status()["down"] == ["tank1"]
    result, _ = _replay(s)
    assert _released(result) == []
    blocked = [d for d in result.decisions if d.kind == "dose"]
    assert blocked and all(str(d.status) == "blocked" for d in blocked)
    assert "no_sensor_reading" in blocked[0].reasons
    assert result.counts["faults"] == len(faults)  # every ModbusFault is a faults row
    _check(s)


@pytest.mark.case("HY-002")
def test_HY_002_a_silent_server_times_out_within_the_bound_and_blocks_nothing():
    devs = devices(device_toml("silent", timeout=0.15), device_toml("healthy"))
    plan = parse_plan({"seed": SEED, "rule": [{"action": "silent", "device": "silent", "after_requests": 6}]})
    s = asyncio.run(record(devs, plan, lambda s: len(s.fault_kinds("silent")) >= 4))
    timeouts = s.of("ModbusFault", "silent")
    assert {f.kind for f in timeouts} == {"timeout"}
    bound = devs[0].timeout * (devs[0].retries + 1) + 0.06
    assert all(f.latency_ns <= bound * 1e9 for f in timeouts), "no read waits past its bound"
    healthy = [f for f in s.of("ModbusFrame", "healthy") if f.received_at >= timeouts[0].received_at]
    assert len(healthy) >= 8 and not s.fault_kinds("healthy"), "the other device kept polling"
    result, projection = _replay(s)
    # The silent tank's last good reading goes stale at its freshness bound: the sensor is then
    # unavailable, and no dose of that tank rests on it.
    unavailable = [d for d in result.decisions if d.kind == "sensor" and d.subject == "silent/ec"]
    last_good = max(f.received_at for f in s.of("ModbusFrame", "silent") if "ec" in f.decoded)
    assert unavailable and unavailable[0].at == last_good + projection.freshness_ns
    assert all(d.at <= last_good + projection.freshness_ns for d in _released(result)
               if d.subject.startswith("silent/"))
    _check(s)


@pytest.mark.case("HY-003")
@pytest.mark.parametrize("action", ["reset", "truncate"])
def test_HY_003_a_partial_frame_is_a_fault_and_no_value_is_taken_from_it(action):
    devs = devices(device_toml())
    plan = parse_plan({"seed": SEED, "rule": [{"action": action, "probability": 0.3, "after_bytes": 11,
                                               "after_requests": 4, "count": 4, "function": 4}]})
    s = asyncio.run(record(devs, plan, lambda s: len(s.simulator.injected) >= 4
                           and len(s.of("ModbusFrame")) >= 16))
    kind = {"reset": "reset", "truncate": "truncated"}[action]
    faults = s.of("ModbusFault")
    assert [f.kind for f in faults] == [kind] * 4
    assert all(len(f.raw) == 11 for f in faults), "the partial frame is kept, byte for byte"
    assert len(s.of("ModbusFrame")) >= 16, "polling went on"
    partial = {bytes(f.raw) for f in faults}
    assert not any(bytes(f.raw)[:11] in partial and len(f.raw) == 11 for f in s.of("ModbusFrame"))
    result, _ = _replay(s)
    fault_rows = result.tables["faults"]
    assert fault_rows.height == 4 and set(fault_rows["kind"].to_list()) == {kind}
    _check(s)


@pytest.mark.case("HY-004")
def test_HY_004_half_the_reads_fail_and_the_last_good_value_is_used_only_while_fresh():
    devs = devices(device_toml())
    plan = parse_plan({"seed": SEED, "rule": [{"action": "reset", "probability": 0.5, "after_bytes": 3,
                                               "function": 4}]})
    s = asyncio.run(record(devs, plan, lambda s: len(s.simulator.injected) >= 12))
    assert s.fault_kinds() == ["reset"] * len(s.simulator.injected), "one fault per injected failure"
    requests = s.simulator.requests["tank1"]
    assert 0.2 < len(s.simulator.injected) / requests < 0.6
    # A freshness bound shorter than the gaps the failures leave: some doses must wait, none
    # may rest on a reading older than the bound.
    result, projection = _replay(s, freshness_s=0.08)
    waited = [d for d in result.decisions if "sensor_stale" in d.reasons]
    assert waited, "some gap outlived the freshness bound, and something waited for it"
    for d in _released(result):
        assert d.at - d.input_time <= projection.freshness_ns
    _check(s, freshness_s=0.08)


@pytest.mark.case("HY-005")
def test_HY_005_a_relay_that_reads_back_wrong_is_unknown_and_the_tank_goes_to_its_safe_state():
    devs = devices(device_toml())
    plan = parse_plan({"seed": SEED, "stick": ["nutrient_pump"]})
    outcome = {}

    async def act(run):
        poller = run.pollers["tank1"]
        await until(lambda: poller.stats.exchanges >= 6)
        outcome["back"] = await poller.write("nutrient_pump", True, effect_key="manual", duration_ms=50)

    s = asyncio.run(record(devs, plan, lambda s: len(s.of("ModbusReadBack")) == 1
                           and len(s.of("ModbusFrame")) >= 12, action=act))
    assert outcome == {"back": None}
    (back,) = s.of("ModbusReadBack")
    assert back.expected is True and back.value is False and not back.matches
    assert s.fault_kinds() == ["readback"]
    result, projection = _replay(s)
    (safe,) = _released(result, "safe-state")
    readback_at = next(e.recorded_at for e in s.events if e.type == "ModbusReadBack")
    assert safe.at - readback_at <= projection.safe_ns and safe.reasons[0] == "relay_unknown"
    # The sticky relay still reads off in later polls: known again, so dosing may resume, but
    # only on frames newer than the unknown state.
    assert all(d.at >= safe.at for d in _released(result) if d.at > readback_at)
    _check(s)


def test_a_recorded_session_replays_with_the_same_digest_every_time():
    devs = devices(device_toml())
    plan = parse_plan({"seed": SEED, "rule": [{"action": "garbage", "probability": 0.2}]})
    s = asyncio.run(record(devs, plan, lambda s: len(s.events) >= 40))
    digests = {replay.run(list(replay.deliveries_of(s.events)), DosingProjection(), collect=False).digest
               for _ in range(3)}
    assert len(digests) == 1
    report = replay.check_determinism(list(replay.deliveries_of(s.events)), DosingProjection())
    assert report.ok, report.describe()

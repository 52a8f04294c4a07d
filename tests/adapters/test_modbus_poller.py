"""The poller against real servers on loopback: a pymodbus server, and our simulator in every
misbehaviour. Recorded faults match what was injected, one for one; bad frames are kept as
faults with their bytes (EF-002) and polling goes on."""

from __future__ import annotations

import asyncio
import dataclasses
import random
from collections import Counter

import pytest
from pymodbus.datastore import ModbusDeviceContext, ModbusSequentialDataBlock, ModbusServerContext
from pymodbus.server import ModbusTcpServer

from adapters.modbus import ACTIONS, Backoff, Ingest, encode_value, parse_plan
from eventstore import open_store
from eventstore.payloads import decode_payload

from .modbus_support import device_toml, devices, free_port, record, until

SEED = 7
MISBEHAVIOURS = ["silent", "reset", "truncate", "garbage", "wrong_transaction", "wrong_unit",
                 "bad_length", "exception"]


def _plan(action: str, count: int = 3, **extra):
    return parse_plan({"seed": SEED, "rule": [{"action": action, "count": count, "after_requests": 2,
                                               "after_bytes": 5, **extra}]})


def test_poller_reads_a_real_pymodbus_server():
    """Frames carry the raw ADUs, the transaction id and the values decoded by name."""
    dev = devices(device_toml(port=free_port()))[0]
    ec_words = encode_value(1.25, dev.register("ec")[1])
    ir = [*ec_words, 655, 801, 215]  # ec 1.25, ph 6.55, level 80.1, temperature 21.5

    async def session():
        context = ModbusServerContext(devices={1: ModbusDeviceContext(
            ir=ModbusSequentialDataBlock(1, ir), co=ModbusSequentialDataBlock(1, [1, 0]))}, single=False)
        server = ModbusTcpServer(context, address=("127.0.0.1", dev.port))
        await server.serve_forever(background=True)
        store = open_store("memory://")
        run = Ingest([dev], store, session="pm", flush_every=0.01)
        run.start()
        try:
            await until(lambda: run.status()["exchanges"] >= 6)
        finally:
            run.stop()
            await run.wait()
            await server.shutdown()
        return [decode_payload(e) for e in store.read_all()]

    payloads = asyncio.run(session())
    frames = [p for p in payloads if p.function == 4]
    assert frames and not [p for p in payloads if type(p).__name__ == "ModbusFault"]
    first = frames[0]
    assert first.decoded == {"ec": 1.25, "ph": 6.55, "level": 80.1, "temperature": 21.5}
    assert first.values == ir and first.invalid == {}
    assert first.request[7:] == bytes([4, 0, 0, 0, 5])  # function 4, address 0, count 5
    assert first.raw[:2] == first.request[:2] == first.transaction.to_bytes(2, "big")
    assert first.raw[7:9] == bytes([4, 10]) and len(first.raw) == 19
    coils = [p for p in payloads if p.function == 1]
    assert coils[0].decoded == {"nutrient_pump": True, "ph_pump": False}
    assert all(p.received_at > 0 and p.latency_ns > 0 and p.device_time is None for p in frames)


@pytest.mark.parametrize("action", MISBEHAVIOURS)
def test_each_misbehaviour_is_recorded_one_for_one_and_polling_goes_on(action):
    devs = devices(device_toml())
    plan = _plan(action)

    def done(s):  # three faults injected, then good frames again
        return len(s.simulator.injected) >= 3 and len(s.of("ModbusFrame")) >= 12

    s = asyncio.run(record(devs, plan, done))
    injected = [kind for _, kind in s.simulator.injected]
    assert injected == [ACTIONS[action]] * 3
    assert s.fault_kinds() == injected, f"{action}: recorded {s.fault_kinds()}, injected {injected}"
    faults = s.of("ModbusFault")
    if action not in ("silent", "exception"):
        assert all(f.raw for f in faults), "the bytes seen are kept with the fault (EF-002)"
    if action == "exception":
        assert [f.exception_code for f in faults] == [2, 2, 2]
    last_fault = max(e.position for e in s.events if e.type == "ModbusFault")
    assert sum(1 for e in s.events if e.type == "ModbusFrame" and e.position > last_fault) >= 3
    frames = s.of("ModbusFrame")
    assert not {f.raw for f in faults if f.raw} & {f.raw for f in frames}, "no value from a bad frame"


def test_slow_answers_time_out_only_past_the_timeout():
    devs = devices(device_toml(timeout=0.15))
    plan = parse_plan({"seed": SEED, "rule": [
        {"action": "slow", "delay": 0.4, "count": 2, "after_requests": 2},
        {"action": "slow", "delay": 0.01, "count": 2},
    ]})
    s = asyncio.run(record(devs, plan, lambda s: len(s.of("ModbusFrame")) >= 12))
    assert s.fault_kinds() == ["timeout", "timeout"]  # the 10 ms answers were on time
    bound_ns = int(devs[0].timeout * (devs[0].retries + 1) * 1e9) + 60_000_000
    assert all(f.latency_ns <= bound_ns for f in s.of("ModbusFault"))


def test_rtu_framing_over_tcp_and_bad_crc():
    devs = devices(device_toml(framing="rtu-over-tcp"))
    plan = _plan("bad_crc", count=2)
    s = asyncio.run(record(devs, plan, lambda s: len(s.simulator.injected) >= 2
                           and len(s.of("ModbusFrame")) >= 10))
    assert s.fault_kinds() == ["bad_crc", "bad_crc"]
    frame = s.of("ModbusFrame")[0]
    assert frame.decoded["temperature"] == pytest.approx(21.0, abs=1.0)
    assert frame.raw[0] == 1 and len(frame.raw) == 1 + 2 + 10 + 2  # unit, fc+count, data, CRC


def test_fraction_of_requests_fail_from_a_seed():
    devs = devices(device_toml())
    plan = parse_plan({"seed": SEED, "rule": [{"action": "reset", "probability": 0.5, "after_bytes": 4}]})
    s = asyncio.run(record(devs, plan, lambda s: len(s.simulator.injected) >= 10))
    kinds = Counter(s.fault_kinds())
    assert kinds == Counter({"reset": len(s.simulator.injected)})
    assert 0.25 < len(s.simulator.injected) / s.simulator.requests["tank1"] < 0.75


def test_refused_connections_back_off_then_recover():
    port = free_port()
    devs = devices(device_toml(port=port, backoff=(0.02, 0.16)))
    plan = parse_plan({"seed": SEED, "rule": [{"action": "refuse", "seconds": 0.5}]})
    s = asyncio.run(record(devs, plan, lambda s: len(s.of("ModbusFrame")) >= 4))
    refused = s.of("ModbusFault")
    assert refused and {f.kind for f in refused} == {"refused"}
    assert "ConnectionRefusedError" in refused[0].detail
    gaps = [b.received_at - a.received_at for a, b in zip(refused, refused[1:], strict=False)]
    expected = Backoff(0.02, 0.16, random.Random(f"0/{devs[0].name}"))
    waits = [expected.next() for _ in gaps]
    assert all(gap >= wait * 1e9 * 0.9 for gap, wait in zip(gaps, waits, strict=True))  # backoff, capped
    assert max(waits) <= 0.16
    assert [f.attempt for f in refused] == list(range(len(refused)))


def test_backoff_is_capped_exponential_with_seeded_jitter():
    b1, b2 = Backoff(0.1, 1.0, random.Random(3)), Backoff(0.1, 1.0, random.Random(3))
    seq = [b1.next() for _ in range(8)]
    assert seq == [b2.next() for _ in range(8)], "same seed, same waits"
    for i, wait in enumerate(seq):
        base = min(1.0, 0.1 * 2 ** i)
        assert base / 2 <= wait <= base
    b1.reset()
    assert b1.next() <= 0.1


def test_one_silent_device_never_stalls_another():
    devs = devices(device_toml("quiet", timeout=0.3), device_toml("busy"))
    plan = parse_plan({"seed": SEED, "rule": [{"action": "silent", "device": "quiet", "after_requests": 2}]})
    s = asyncio.run(record(devs, plan, lambda s: len(s.fault_kinds("quiet")) >= 3))
    quiet_faults = s.of("ModbusFault", "quiet")
    window = (quiet_faults[0].received_at - 300_000_000, quiet_faults[-1].received_at)
    busy = [f for f in s.of("ModbusFrame", "busy") if window[0] <= f.received_at <= window[1]]
    span_s = (window[1] - window[0]) / 1e9
    assert len(busy) >= span_s / 0.05 * 2 * 0.5, "the busy device kept its interval (2 blocks a round)"
    assert s.fault_kinds("busy") == []


def test_write_with_read_back_and_a_relay_that_sticks():
    devs = devices(device_toml())
    plan = parse_plan({"seed": SEED, "stick": ["ph_pump"]})
    results = {}

    async def act(run):
        poller = run.pollers["tank1"]
        await until(lambda: poller.connected)
        results["nutrient"] = await poller.write("nutrient_pump", True, effect_key="dose:x", duration_ms=50)
        results["ph"] = await poller.write("ph_pump", True)

    s = asyncio.run(record(devs, plan, lambda s: len(s.of("ModbusReadBack")) >= 2, action=act))
    assert results == {"nutrient": True, "ph": None}
    commands, acks, backs = s.of("ModbusWriteCommand"), s.of("ModbusWriteResult"), s.of("ModbusReadBack")
    assert [c.target for c in commands] == ["nutrient_pump", "ph_pump"]
    assert commands[0].effect_key == "dose:x" and commands[0].duration_ms == 50
    assert [a.ok for a in acks] == [True, True]
    assert [(b.value, b.matches) for b in backs] == [(True, True), (False, False)]
    assert [c.command_id for c in commands] == [a.command_id for a in acks] == [b.command_id for b in backs]
    assert s.fault_kinds() == ["readback"]


def test_a_write_that_gets_no_answer_leaves_the_state_unknown():
    devs = devices(device_toml(timeout=0.1))
    plan = parse_plan({"seed": SEED, "rule": [{"action": "silent", "function": 5}]})
    results = {}

    async def act(run):
        poller = run.pollers["tank1"]
        await until(lambda: poller.connected)
        results["v"] = await poller.write("nutrient_pump", True)

    s = asyncio.run(record(devs, plan, lambda s: len(s.of("ModbusReadBack")) >= 1, action=act))
    assert results == {"v": None}
    assert [a.ok for a in s.of("ModbusWriteResult")] == [False]
    back = s.of("ModbusReadBack")[0]
    assert back.value is None and not back.matches
    assert s.fault_kinds() == ["timeout"]  # the write's own fault; no second fault for it


def test_event_ids_are_deterministic_and_appends_idempotent():
    devs = devices(device_toml())
    s = asyncio.run(record(devs, None, lambda s: len(s.events) >= 6))
    from adapters.modbus import event_id

    first = s.events[0]
    assert first.id == event_id("test", "tank1", s.payloads[0].sequence, s.payloads[0].received_at)
    assert [p.sequence for p in s.payloads] == sorted(p.sequence for p in s.payloads)
    assert [e.recorded_at for e in s.events] == sorted(e.recorded_at for e in s.events)
    assert all(e.recorded_at == p.received_at for e, p in zip(s.events, s.payloads, strict=True))


def test_device_port_with_nothing_listening_is_refused_not_hung():
    port = free_port()
    devs = [dataclasses.replace(devices(device_toml(port=port))[0], port=port)]
    s = asyncio.run(record(devs, None, lambda s: len(s.events) >= 3, simulate=False))
    assert set(s.fault_kinds()) == {"refused"}
    assert all(f.latency_ns < 200_000_000 for f in s.of("ModbusFault"))


def test_devices_at_one_interval_start_at_spread_phases():
    """Four devices polled every 0.2 s are due at 0, 50, 100 and 150 ms of each interval (not all
    at once), and each keeps its own schedule: frames of one device come an interval apart."""
    devs = devices(*(device_toml(f"tank{i}", interval=0.2) for i in range(4)))
    run = Ingest(devs, open_store("memory://"))
    assert [p.phase for p in run.pollers.values()] == pytest.approx([0.0, 0.05, 0.1, 0.15])

    s = asyncio.run(record(devs, None, lambda s: all(len([f for f in s.of("ModbusFrame", f"tank{i}")
                                                         if f.function == 4]) >= 3 for i in range(4))))
    first = [min(f.received_at for f in s.of("ModbusFrame", f"tank{i}")) for i in range(4)]
    assert first[3] - first[0] >= 0.075e9  # 150 ms apart when due; all at once without phases


def test_ingest_relaxes_the_young_gc_threshold_while_polling_and_restores_it():
    """Queued exchanges must not make the collector walk the queue every few hundred exchanges."""
    import gc

    from adapters.modbus.ingest import YOUNG_GC_THRESHOLD

    dev = devices(device_toml(port=free_port()))[0]  # nothing listens: refused faults
    before = gc.get_threshold()

    async def session():
        run = Ingest([dev], open_store("memory://"), session="gc", flush_every=0.01)
        run.start()
        during = gc.get_threshold()
        run.stop()
        await run.wait()
        return during

    during = asyncio.run(session())
    assert during == (max(before[0], YOUNG_GC_THRESHOLD), *before[1:])
    assert gc.get_threshold() == before

"""Serial RTU on a real serial line: a pseudo-terminal pair, our simulator on one end, the
poller (pymodbus's serial client through pyserial) on the other. CRC errors, truncated frames
and the rest, injected by the simulator, are each recorded as the right ``ModbusFault`` with
the bytes seen, one for one, and polling goes on."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections import Counter

import pytest

from adapters.modbus import DeviceFileError, parse_devices, parse_plan
from adapters.modbus.codec import crc16

from .modbus_support import TANK_REGISTERS, record, until

SEED = 11


def _serial_toml(path, *, name: str = "tank1", timeout: float = 0.2) -> str:
    return (f'[[device]]\nname = "{name}"\nframing = "rtu"\nserial = "{path}"\nbaudrate = 115200\n'
            f"interval = 0.05\ntimeout = {timeout}\nbackoff_initial = 0.02\nbackoff_max = 0.2\n"
            + TANK_REGISTERS)


def _crc_ok(frame: bytes) -> bool:
    return len(frame) >= 4 and crc16(frame[:-2]) == int.from_bytes(frame[-2:], "little")


def test_serial_rtu_frames_decode_and_each_injected_fault_is_recorded(tmp_path):
    devs = parse_devices(_serial_toml(tmp_path / "tank1.tty"))
    plan = parse_plan({"seed": SEED, "rule": [
        {"action": "truncate", "after_bytes": 3, "count": 2, "after_requests": 3},
        {"action": "truncate", "after_bytes": 9, "count": 1, "after_requests": 3},
        {"action": "bad_crc", "count": 2, "after_requests": 8},
        {"action": "wrong_unit", "count": 1, "after_requests": 12},
        {"action": "exception", "code": 4, "count": 1, "after_requests": 14},
        {"action": "silent", "count": 1, "after_requests": 16},
        {"action": "reset", "after_bytes": 5, "count": 1, "after_requests": 18},
    ]})

    def done(s):
        return len(s.simulator.injected) >= 9 and len(s.of("ModbusFrame")) >= 24

    s = asyncio.run(record(devs, plan, done, deadline_s=30))
    assert s.simulator.paths["tank1"] == str(tmp_path / "tank1.tty")  # the device file's path, linked
    injected = Counter(kind for _, kind in s.simulator.injected)
    # a serial line has no connection to reset: "reset" cuts the answer short, so it is truncated
    assert injected == Counter({"truncated": 4, "bad_crc": 2, "wrong_unit": 1, "exception": 1,
                                "timeout": 1})
    assert Counter(s.fault_kinds()) == injected
    faults = s.of("ModbusFault")
    assert sorted(len(f.raw) for f in faults if f.kind == "truncated") == [3, 3, 5, 9]
    bad_crc = [f for f in faults if f.kind == "bad_crc"]
    assert all(len(f.raw) == 15 and not _crc_ok(f.raw) for f in bad_crc)  # kept byte for byte
    wrong_unit = next(f for f in faults if f.kind == "wrong_unit")
    assert wrong_unit.raw[0] == 2 and _crc_ok(wrong_unit.raw)
    assert next(f for f in faults if f.kind == "exception").exception_code == 4
    assert all(f.request and _crc_ok(f.request) for f in faults if f.kind != "exception")

    frames = s.of("ModbusFrame")
    assert all(_crc_ok(f.raw) and _crc_ok(f.request) and f.raw[0] == 1 for f in frames)
    assert not {f.raw for f in faults} & {f.raw for f in frames}, "no value from a bad frame"
    readings = [f for f in frames if f.function == 4]
    assert readings and all(0 < f.decoded["ec"] < 10 and f.decoded["level"] > 0 for f in readings)
    last_fault = max(e.position for e in s.events if e.type == "ModbusFault")
    assert sum(1 for e in s.events if e.type == "ModbusFrame" and e.position > last_fault) >= 3


def test_writes_on_a_serial_line_are_read_back_and_a_sticking_relay_is_caught(tmp_path):
    devs = parse_devices(_serial_toml(tmp_path / "tank1.tty"))
    plan = parse_plan({"seed": SEED, "stick": ["ph_pump"]})
    results = {}

    async def act(run):
        poller = run.pollers["tank1"]
        await until(lambda: poller.connected)
        results["nutrient"] = await poller.write("nutrient_pump", True, effect_key="dose:s", duration_ms=50)
        results["ph"] = await poller.write("ph_pump", True)

    s = asyncio.run(record(devs, plan, lambda s: len(s.of("ModbusReadBack")) >= 2, action=act))
    assert results == {"nutrient": True, "ph": None}
    assert [a.ok for a in s.of("ModbusWriteResult")] == [True, True]
    assert [(b.value, b.matches) for b in s.of("ModbusReadBack")] == [(True, True), (False, False)]
    assert s.fault_kinds() == ["readback"]
    ack = s.of("ModbusWriteResult")[0]
    assert ack.request[:2] == bytes([1, 5]) and _crc_ok(ack.request) and _crc_ok(ack.raw)


def test_a_serial_port_that_is_not_there_is_refused_with_backoff(tmp_path):
    missing = tmp_path / "nothing.tty"
    devs = parse_devices(_serial_toml(missing))
    s = asyncio.run(record(devs, None, lambda s: len(s.of("ModbusFault")) >= 3, simulate=False))
    faults = s.of("ModbusFault")
    assert {f.kind for f in faults} == {"refused"} and str(missing) in faults[0].detail
    assert [f.attempt for f in faults[:3]] == [0, 1, 2]


def test_device_file_checks_serial_settings():
    with pytest.raises(DeviceFileError, match=r"serial.*framing \"rtu\""):
        parse_devices('[[device]]\nname = "a"\nframing = "rtu"\n' + TANK_REGISTERS, "x.toml")
    with pytest.raises(DeviceFileError, match=r"framing \(line 3\).*serial port, got 'tcp'"):
        parse_devices('[[device]]\nname = "a"\nframing = "tcp"\nserial = "/dev/ttyS0"\n' + TANK_REGISTERS,
                      "x.toml")
    with pytest.raises(DeviceFileError, match=r"parity \(line 5\): expected one of N, E, O, got 'X'"):
        parse_devices('[[device]]\nname = "a"\nframing = "rtu"\nserial = "/dev/ttyS0"\nparity = "X"\n'
                      + TANK_REGISTERS, "x.toml")
    dev = parse_devices('[[device]]\nname = "a"\nframing = "rtu"\nserial = "/dev/ttyS0"\nparity = "E"\n'
                        'baudrate = 9600\n' + TANK_REGISTERS)[0]
    assert (dev.serial, dev.baudrate, dev.parity, dev.stopbits, dev.bytesize) == ("/dev/ttyS0", 9600, "E", 1, 8)


def test_simulate_cli_serves_a_serial_device_on_a_tty(tmp_path):
    link = tmp_path / "tank1.tty"
    devices_file = tmp_path / "plant.toml"
    devices_file.write_text(_serial_toml(link), encoding="utf-8")
    proc = subprocess.run([sys.executable, "-m", "eventstore.cli", "simulate", "modbus", "--devices",
                           str(devices_file), "--duration", "0.5"],
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    first = json.loads(proc.stdout.splitlines()[0])
    assert first == {"device": "tank1", "serial": str(link)}
    assert not os.path.lexists(link), "the link is removed when the simulator stops"

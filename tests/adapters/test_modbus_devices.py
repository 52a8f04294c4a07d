"""Device files (TOML) and the register codec: every type and order round-trips, and every
bad file is a DeviceFileError naming the file, the key, the line and what is expected."""

from __future__ import annotations

import pytest

from adapters.modbus import (
    DeviceFileError,
    PlanError,
    Register,
    decode_value,
    encode_value,
    load_devices,
    load_plan,
    parse_devices,
    parse_plan,
)
from adapters.modbus.codec import classify, crc16, mbap, rtu
from eventstore import UnbrokenError

from .modbus_support import TANK_REGISTERS, device_toml

GOOD = device_toml("tank1", 5020)


def test_a_good_file_parses_with_defaults_and_blocks():
    (dev,) = parse_devices(GOOD)
    assert (dev.name, dev.port, dev.unit, dev.framing) == ("tank1", 5020, 1, "tcp")
    inputs, coils = dev.blocks
    assert (inputs.function, inputs.address, inputs.count) == (4, 0, 5)
    assert (coils.function, coils.count, coils.bits) == (1, 2, True)
    block, ec = dev.register("ec")
    assert block is inputs and ec.type == "float32" and ec.words == 2 and ec.unit == "mS/cm"
    assert dev.register("nutrient_pump")[1].writable


@pytest.mark.parametrize("rtype,value", [
    ("int16", -1234), ("uint16", 65000), ("int32", -70000), ("uint32", 4_000_000_000),
    ("float32", 1.5), ("float64", -2.000001),
])
@pytest.mark.parametrize("word_order", ["big", "little"])
@pytest.mark.parametrize("byte_order", ["big", "little"])
def test_every_type_and_order_round_trips(rtype, value, word_order, byte_order):
    reg = Register("x", 0, type=rtype, words={"int16": 1, "uint16": 1, "float64": 4}.get(rtype, 2),
                   word_order=word_order, byte_order=byte_order)
    assert decode_value(encode_value(value, reg), reg) == pytest.approx(value)


def test_word_and_byte_order_are_what_devices_send():
    big = Register("x", 0, type="uint32", words=2)
    assert encode_value(0x01020304, big) == [0x0102, 0x0304]
    swapped = Register("x", 0, type="uint32", words=2, word_order="little")
    assert encode_value(0x01020304, swapped) == [0x0304, 0x0102]
    bytes_swapped = Register("x", 0, type="uint32", words=2, byte_order="little")
    assert encode_value(0x01020304, bytes_swapped) == [0x0201, 0x0403]


def test_scale_offset_strings_and_bools():
    temp = Register("t", 0, type="int16", scale=0.1, offset=-40.0)
    assert encode_value(21.5, temp) == [615] and decode_value([615], temp) == pytest.approx(21.5)
    name = Register("n", 0, type="string", words=3)
    assert decode_value(encode_value("TANK1", name), name) == "TANK1"
    assert decode_value([1], Register("b", 0, type="bool", words=0)) is True
    ranged = Register("r", 0, min=0.0, max=10.0)
    assert ranged.in_range(5) and not ranged.in_range(11) and not ranged.in_range(float("nan"))


BAD = [
    ('[[device]]\nname = "t"\nport = "x"\n' + TANK_REGISTERS, "device 't'.port (line 3): expected an integer 0..65535, got 'x'"),
    ('[[device]]\nname = "t"\nframing = "udp"\n' + TANK_REGISTERS, "framing (line 3): expected one of tcp, rtu-over-tcp"),
    ('[[device]]\nname = "t"\ncolour = 1\n' + TANK_REGISTERS, "colour (line 3): expected one of the known keys"),
    ('[[device]]\nname = "t"\n', "expected at least one [[device.block]] table"),
    ('[[device]]\nname = "t"\n[[device.block]]\nfunction = "holding"\naddress = 0\n'
     '[[device.block.register]]\nname = "x"\naddress = 0\ntype = "float128"\n', "type (line 9): expected one of bool"),
    ('[[device]]\nname = "t"\n[[device.block]]\nfunction = "coils"\naddress = 0\n'
     '[[device.block.register]]\nname = "x"\naddress = 0\ntype = "int16"\n', "expected type bool for coils"),
    ('[[device]]\nname = "t"\n[[device.block]]\nfunction = "holding"\naddress = 0\ncount = 1\n'
     '[[device.block.register]]\nname = "x"\naddress = 0\ntype = "float32"\n', "inside the block (0..0)"),
    ('[[device]]\nname = "t"\n[[device.block]]\nfunction = "input"\naddress = 0\n'
     '[[device.block.register]]\nname = "x"\naddress = 0\nwritable = true\n', "true only for coils and holding"),
    ('[[device]]\nname = "t"\n[[device.block]]\nfunction = "input"\naddress = 0\n'
     '[[device.block.register]]\nname = "x"\naddress = 0\nmin = 5\nmax = 1\n', "max (line 10): expected at least min"),
    (GOOD + GOOD, "a name used by one device only"),
    ("[[device]\nname = 1", "not valid TOML"),
    ("title = 'x'", "expected only [[device]] tables"),
]


@pytest.mark.parametrize("text,message", BAD, ids=[m[:30] for _, m in BAD])
def test_bad_files_name_the_file_key_line_and_what_fits(tmp_path, text, message):
    path = tmp_path / "plant.toml"
    path.write_text(text)
    with pytest.raises(DeviceFileError) as caught:
        load_devices(path)
    assert str(path) in str(caught.value) and message in str(caught.value)
    assert isinstance(caught.value, UnbrokenError)


def test_missing_and_unreadable_files(tmp_path):
    with pytest.raises(DeviceFileError, match="does not exist"):
        load_devices(tmp_path / "none.toml")
    binary = tmp_path / "bin.toml"
    binary.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(DeviceFileError, match="cannot be read"):
        load_devices(binary)


def test_plans_from_toml_and_json_and_their_errors(tmp_path):
    toml = tmp_path / "p.toml"
    toml.write_text('seed = 3\nstick = ["nutrient_pump"]\n[[rule]]\naction = "silent"\nprobability = 0.5\n')
    plan = load_plan(toml)
    assert plan.seed == 3 and plan.stick == ("nutrient_pump",) and plan.rules[0].fault_kind == "timeout"
    js = tmp_path / "p.json"
    js.write_text('{"rule": [{"action": "exception", "code": 4, "device": "tank1"}]}')
    assert load_plan(js).rules[0].code == 4
    for doc, message in [({"rule": [{"action": "explode"}]}, "rule[0].action: expected one of refuse"),
                         ({"rule": [{"action": "silent", "probability": 2}]}, "probability: expected a number 0..1"),
                         ({"rule": [{"action": "silent", "when": 1}]}, "rule[0].when"),
                         ({"seed": "x"}, "seed: expected an integer")]:
        with pytest.raises(PlanError, match=message.replace("[", r"\[").replace("]", r"\]")):
            parse_plan(doc, "plan.toml")
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    with pytest.raises(PlanError, match="not valid JSON"):
        load_plan(bad)


def test_bad_frames_are_classified():
    request_tid, unit = 7, 1
    good = mbap(7, 1, bytes([3, 2, 0, 5]))
    assert classify(b"", 7, 1, 3, "tcp", closed=False) == ("timeout", "no answer")
    assert classify(b"", 7, 1, 3, "tcp", closed=True)[0] == "reset"
    assert classify(good[:5], 7, 1, 3, "tcp", closed=False)[0] == "truncated"
    assert classify(good[:9], 7, 1, 3, "tcp", closed=True)[0] == "reset"
    assert classify(b"\x00\x07\xde\xad" + good[4:], 7, 1, 3, "tcp", closed=False)[0] == "garbage"
    assert classify(good[:4] + b"\xff\xff" + good[6:], 7, 1, 3, "tcp", closed=False)[0] == "bad_length"
    assert classify(mbap(8, 1, bytes([3, 2, 0, 5])), request_tid, unit, 3, "tcp", False)[0] == "wrong_transaction"
    assert classify(mbap(7, 2, bytes([3, 2, 0, 5])), request_tid, unit, 3, "tcp", False)[0] == "wrong_unit"
    assert classify(mbap(7, 1, bytes([3, 4, 0, 5])), request_tid, unit, 3, "tcp", False)[0] == "bad_length"
    frame = rtu(1, bytes([3, 2, 0, 5]))
    assert crc16(frame[:-2]) == int.from_bytes(frame[-2:], "little")
    assert classify(frame[:-1] + bytes([frame[-1] ^ 1]), 0, 1, 3, "rtu-over-tcp", False)[0] == "bad_crc"
    assert classify(frame[:3], 0, 1, 3, "rtu-over-tcp", False)[0] == "truncated"


def test_decode_block_fast_path_equals_decoding_each_register_alone():
    """The one-unpack path (big-endian blocks) gives exactly what decoding register by register
    gives: same values, same rounding, the same out-of-range, NaN and infinite flags."""
    import math
    import random

    from adapters.modbus import decode_block

    block = parse_devices(GOOD)[0].blocks[0]
    rng = random.Random(5)
    specials = [[0x7FC0, 0], [0x7F80, 0], [0xFF80, 0], [0x4130, 0]]  # NaN, inf, -inf, 11.0
    for i in range(300):
        words = specials[i] if i < len(specials) else [rng.randrange(0x10000), rng.randrange(0x10000)]
        items = words + [rng.randrange(0x10000) for _ in range(block.count - 2)]
        values, invalid = decode_block(block, items)
        for reg in block.registers:
            start = reg.address - block.address
            alone = decode_value(items[start:start + reg.words], reg)
            alone = round(alone, 9) if isinstance(alone, float) else alone
            got = values[reg.name]
            assert got == alone or (math.isnan(got) and math.isnan(alone)), (reg.name, items)
            assert (reg.name in invalid) == (not reg.in_range(alone)), (reg.name, items)


def test_decode_block_of_bool_bits_equals_decoding_each_register_alone():
    """The bits path (a block of plain bools, one comprehension) gives what decoding each
    register alone gives, bools and never out of range."""
    from adapters.modbus import decode_block

    from .modbus_support import device_toml, devices

    block = next(b for b in devices(device_toml())[0].blocks if b.bits)
    for items in ([0, 0], [1, 0], [0, 1], [1, 1, 0, 0, 0, 0, 0, 0]):
        values, invalid = decode_block(block, items)
        assert values == {reg.name: decode_value(items[reg.address - block.address:][:1], reg)
                          for reg in block.registers}
        assert all(type(v) is bool for v in values.values()) and invalid == {}

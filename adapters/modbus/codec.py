"""Register values to and from Modbus words, and ADU framing (MBAP and RTU) with checks.

Pure functions, shared by the poller (decoding what it reads, classifying bad
frames) and the simulator (encoding what it serves).
"""

from __future__ import annotations

import math
import struct
from typing import Any

from .devices import Block, Register

_FORMATS = {"int16": "h", "uint16": "H", "int32": "i", "uint32": "I", "float32": "f", "float64": "d"}
_INTEGER = {"int16", "uint16", "int32", "uint32"}


def _to_bytes(words: list[int], reg: Register) -> bytes:
    ordered = list(words) if reg.word_order == "big" else list(reversed(words))
    data = b"".join(w.to_bytes(2, "big") for w in ordered)
    if reg.byte_order == "little":
        data = b"".join(data[i + 1:i + 2] + data[i:i + 1] for i in range(0, len(data), 2))
    return data


def _from_bytes(data: bytes, reg: Register) -> list[int]:
    if reg.byte_order == "little":
        data = b"".join(data[i + 1:i + 2] + data[i:i + 1] for i in range(0, len(data), 2))
    words = [int.from_bytes(data[i:i + 2], "big") for i in range(0, len(data), 2)]
    return words if reg.word_order == "big" else list(reversed(words))


def decode_value(words: list[int], reg: Register) -> Any:
    """The engineering value of ``reg`` from its raw words (bits: one 0/1 item)."""
    if reg.type == "bool":
        return bool(words[0])
    data = _to_bytes(words, reg)
    if reg.type == "string":
        return data.rstrip(b"\x00 ").decode("latin-1")
    raw = struct.unpack(">" + _FORMATS[reg.type], data)[0]
    if reg.scale == 1.0 and reg.offset == 0.0:
        return raw
    return raw * reg.scale + reg.offset


def encode_value(value: Any, reg: Register) -> list[int]:
    """The raw words (or one 0/1 bit) that make ``reg`` read ``value``; inverse of decode."""
    if reg.type == "bool":
        return [1 if value else 0]
    if reg.type == "string":
        data = str(value).encode("latin-1")[: reg.words * 2].ljust(reg.words * 2, b"\x00")
        return _from_bytes(data, reg)
    raw = (float(value) - reg.offset) / reg.scale if reg.scale else float(value)
    if reg.type in _INTEGER:
        raw = int(round(raw))
        bits = 16 * reg.words
        lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if reg.type.startswith("int") else (0, (1 << bits) - 1)
        raw = min(max(raw, lo), hi)
    return _from_bytes(struct.pack(">" + _FORMATS[reg.type], raw), reg)


def _plain(reg: Register) -> struct.Struct | None:
    """A struct that reads ``reg`` straight from big-endian words, when its orders allow."""
    if reg.type in _FORMATS and reg.word_order == "big" and reg.byte_order == "big":
        return struct.Struct(">" + _FORMATS[reg.type])
    return None


def _compile(block: Block) -> tuple[struct.Struct | None, list[tuple]]:
    """A whole-block struct when every register reads straight from big-endian words (one
    unpack for the block), and per register: name, first item, item count, struct, register."""
    regs = [(reg.name, reg.address - block.address, max(reg.words, 1), _plain(reg), reg)
            for reg in block.registers]
    if block.bits or any(fast is None for _, _, _, fast, _ in regs):
        return None, regs
    fmt, at = ">", 0
    for _, start, count, fast, _ in sorted(regs, key=lambda r: r[1]):
        if start < at:
            return None, regs  # overlapping registers: one at a time
        fmt += "xx" * (start - at) + fast.format[1:]
        at = start + count
    fmt += "xx" * (block.count - at)
    order = sorted(range(len(regs)), key=lambda i: regs[i][1])
    return struct.Struct(fmt), [regs[i] for i in order]


def _checks(reg: Register) -> tuple:
    """What decoding ``reg`` needs per value, worked out once: name, scale and offset (None
    when the raw value stands), and the valid range with open ends as infinities."""
    plain = reg.scale == 1.0 and reg.offset == 0.0
    lo = -math.inf if reg.min is None else reg.min
    hi = math.inf if reg.max is None else reg.max
    return reg.name, None if plain else reg.scale, reg.offset, lo, hi, reg


class _Compiled:
    """How to decode one block: the whole-block struct (or None) and per-register parts;
    for a block of bits whose registers are all plain bools, (name, item) of each."""

    def __init__(self, block: Block) -> None:
        self.block = block
        self.whole, self.regs = _compile(block)
        self.checks = [_checks(reg) for _, _, _, _, reg in self.regs]
        self.words = struct.Struct(f">{block.count}H") if self.whole is not None else None
        self.flags = [(name, start) for name, start, _, _, reg in self.regs] if block.bits and all(
            reg.type == "bool" for _, _, _, _, reg in self.regs) else None


_COMPILED: dict[int, _Compiled] = {}
_WORDS = {n: struct.Struct(f">{n}H") for n in (1, 2, 4)}


def decode_block(block: Block, items: list[int]) -> tuple[dict[str, Any], dict[str, str]]:
    """Named values of a block read as ``items`` (words or bits), and those out of range."""
    compiled = _COMPILED.get(id(block))
    if compiled is None or compiled.block is not block:
        compiled = _COMPILED[id(block)] = _Compiled(block)
    if compiled.whole is not None and len(items) == block.count:
        return _decode_whole(compiled.whole.unpack(compiled.words.pack(*items)), compiled.checks)
    if compiled.flags is not None and len(items) >= block.count:  # a bool is always in range
        return {name: bool(items[at]) for name, at in compiled.flags}, {}
    values: dict[str, Any] = {}
    invalid: dict[str, str] = {}
    for name, start, count, fast, reg in compiled.regs:
        if fast is not None:
            value = fast.unpack(_WORDS[count].pack(*items[start:start + count]))[0]
            if reg.scale != 1.0 or reg.offset != 0.0:
                value = value * reg.scale + reg.offset
        else:
            value = decode_value(items[start:start + count], reg)
        if type(value) is float:
            value = round(value, 9)
        values[name] = value
        if not reg.in_range(value):
            invalid[name] = f"{value!r} outside {reg.min}..{reg.max}"
    return values, invalid


def _decode_whole(raw: tuple, checks: list[tuple]) -> tuple[dict[str, Any], dict[str, str]]:
    """Named values and those out of range from one unpack of the block (the hot path: one
    comparison chain per value, no method calls)."""
    values: dict[str, Any] = {}
    invalid: dict[str, str] = {}
    for value, (name, scale, offset, lo, hi, reg) in zip(raw, checks, strict=True):
        if scale is not None:
            value = value * scale + offset
        if type(value) is float:
            value = round(value, 9)
            if not lo <= value <= hi or value in _INFINITIES:  # NaN fails the comparisons
                invalid[name] = f"{value!r} outside {reg.min}..{reg.max}"
        elif not lo <= value <= hi:
            invalid[name] = f"{value!r} outside {reg.min}..{reg.max}"
        values[name] = value
    return values, invalid


_INFINITIES = (math.inf, -math.inf)


# -- frames ----------------------------------------------------------------------
def crc16(data: bytes) -> int:
    """The Modbus RTU CRC-16 of ``data`` (polynomial 0xA001, initial 0xFFFF)."""
    crc = 0xFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return crc


def mbap(tid: int, unit: int, pdu: bytes) -> bytes:
    """A Modbus TCP ADU: MBAP header (transaction, protocol 0, length, unit) and the PDU."""
    return tid.to_bytes(2, "big") + b"\x00\x00" + (len(pdu) + 1).to_bytes(2, "big") + bytes([unit]) + pdu


def rtu(unit: int, pdu: bytes) -> bytes:
    """An RTU ADU: unit, PDU and the CRC (low byte first)."""
    body = bytes([unit]) + pdu
    return body + crc16(body).to_bytes(2, "little")


def response_pdu_length(data: bytes) -> int | None:
    """Expected PDU length of a response starting at ``data[0]`` (function), None if unknown yet."""
    if not data:
        return None
    function = data[0]
    if function & 0x80:
        return 2
    if function in (1, 2, 3, 4):
        return 2 + data[1] if len(data) > 1 else None
    if function in (5, 6, 15, 16):
        return 5
    return None


def classify(rx: bytes, tid: int, unit: int, function: int, framing: str, closed: bool) -> tuple[str, str]:
    """Why ``rx`` (bytes received for a request that got no usable answer) is not one.

    Returns a fault kind of ``ModbusFault`` and a detail. ``closed`` says the
    connection ended (reset or closed by the peer) before the timeout.
    """
    if not rx:
        return ("reset", "connection closed before any answer") if closed else ("timeout", "no answer")
    if framing != "tcp":  # RTU frames, over TCP or on a serial line
        return _classify_rtu(rx, unit, function, closed)
    return _classify_mbap(rx, tid, unit, function, closed)


def _partial(closed: bool, have: int, need: int | str) -> tuple[str, str]:
    if closed:
        return "reset", f"connection closed after {have} of {need} bytes"
    return "truncated", f"{have} of {need} bytes, then nothing more"


def _classify_mbap(rx: bytes, tid: int, unit: int, function: int, closed: bool) -> tuple[str, str]:
    if len(rx) < 7:
        return _partial(closed, len(rx), "at least 7 (MBAP header)")
    rx_tid, pid, length, rx_unit = struct.unpack(">HHHB", rx[:7])
    if pid != 0:
        return "garbage", f"protocol id {pid}, not 0 (not a Modbus TCP frame)"
    if length < 2 or length > 254:
        return "bad_length", f"MBAP length {length} (must be 2..254)"
    if len(rx) < 6 + length:
        return _partial(closed, len(rx), 6 + length)
    if rx_tid != tid:
        return "wrong_transaction", f"transaction id {rx_tid}, expected {tid}"
    if unit and rx_unit != unit:
        return "wrong_unit", f"unit id {rx_unit}, expected {unit}"
    pdu = rx[7:6 + length]
    expected = response_pdu_length(pdu)
    if pdu[0] & 0x7F != function:
        return "garbage", f"function {pdu[0]} in answer to function {function}"
    if expected is not None and expected != len(pdu):
        return "bad_length", f"PDU of {len(pdu)} bytes, its function needs {expected}"
    return "garbage", "a whole frame the client did not accept"


def _classify_rtu(rx: bytes, unit: int, function: int, closed: bool) -> tuple[str, str]:
    if len(rx) < 4:
        return _partial(closed, len(rx), "at least 4 (RTU frame)")
    if rx[1] & 0x7F != function:
        return "garbage", f"function {rx[1]} in answer to function {function}"
    need = response_pdu_length(rx[1:])
    if need is None:
        return "garbage", "unparseable RTU frame"
    total = 1 + need + 2
    if len(rx) < total:
        return _partial(closed, len(rx), total)
    frame = rx[:total]
    if crc16(frame[:-2]) != int.from_bytes(frame[-2:], "little"):
        return "bad_crc", f"CRC {frame[-2:].hex()} does not match {crc16(frame[:-2]).to_bytes(2, 'little').hex()}"
    if unit and rx[0] != unit:
        return "wrong_unit", f"unit id {rx[0]}, expected {unit}"
    return "garbage", "a whole frame the client did not accept"

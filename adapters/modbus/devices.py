"""The device file: which devices to poll, how, and what their registers mean (TOML).

A file holds one ``[[device]]`` table per device, each with ``[[device.block]]``
tables (one read request per block per poll) holding ``[[device.block.register]]``
entries. See docs/modbus.md for every key. ``load_devices(path)`` parses and checks
the whole file; anything wrong raises ``DeviceFileError`` naming the file, the key
(with its line where it can be found) and what is expected.
"""

from __future__ import annotations

import math
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from eventstore import UnbrokenError

FUNCTIONS = {
    "coils": 1, "discrete_inputs": 2, "holding_registers": 3, "input_registers": 4,
}
FUNCTION_ALIASES = {
    "coil": "coils", "discrete": "discrete_inputs", "discrete_input": "discrete_inputs",
    "holding": "holding_registers", "input": "input_registers",
}
WORDS = {"bool": 0, "int16": 1, "uint16": 1, "int32": 2, "uint32": 2, "float32": 2, "float64": 4}
TYPES = (*WORDS, "string")
FRAMINGS = ("tcp", "rtu-over-tcp", "rtu")  # "rtu": RTU frames on a serial line (``serial``)
PARITIES = ("N", "E", "O")
ORDERS = ("big", "little")
MAX_READ = {1: 2000, 2: 2000, 3: 125, 4: 125}


class DeviceFileError(UnbrokenError):
    """A device file that cannot be used: the message names the file, key, line and what fits."""


@dataclass(frozen=True)
class Register:
    """One named value inside a block: where it sits and how to turn words into a value."""

    name: str
    address: int
    type: str = "uint16"
    words: int = 1
    word_order: str = "big"
    byte_order: str = "big"
    scale: float = 1.0
    offset: float = 0.0
    unit: str = ""
    min: float | None = None
    max: float | None = None
    writable: bool = False

    def in_range(self, value: Any) -> bool:
        """True when ``value`` is within the register's valid range (strings always are)."""
        if isinstance(value, str | bool):
            return True
        if isinstance(value, float) and not math.isfinite(value):
            return False
        return (self.min is None or value >= self.min) and (self.max is None or value <= self.max)


@dataclass(frozen=True)
class Block:
    """One read request: ``count`` items of ``function`` from ``address``."""

    function: int
    address: int
    count: int
    registers: tuple[Register, ...]

    @property
    def bits(self) -> bool:
        """True for coils and discrete inputs (one bit per item)."""
        return self.function in (1, 2)


@dataclass(frozen=True)
class Device:
    """One device to poll. Times are seconds."""

    name: str
    host: str = "127.0.0.1"
    port: int = 502
    unit: int = 1
    interval: float = 1.0
    timeout: float = 1.0
    retries: int = 0
    framing: str = "tcp"
    backoff_initial: float = 0.1
    backoff_max: float = 10.0
    reports_time: str = ""  # name of a register holding the device's clock (Unix seconds)
    serial: str = ""  # framing "rtu": the serial port (e.g. /dev/ttyUSB0); host and port unused
    baudrate: int = 19200
    parity: str = "N"
    stopbits: int = 1
    bytesize: int = 8
    blocks: tuple[Block, ...] = field(default_factory=tuple)

    def register(self, name: str) -> tuple[Block, Register]:
        """The block and register named ``name``; KeyError when there is none."""
        for block in self.blocks:
            for reg in block.registers:
                if reg.name == name:
                    return block, reg
        raise KeyError(name)


def load_devices(path: str | Path) -> list[Device]:
    """Parse and check the device file at ``path``; raises ``DeviceFileError`` when it is wrong."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DeviceFileError(f"device file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as e:
        raise DeviceFileError(f"device file {path} cannot be read: {e}") from None
    return parse_devices(text, str(path))


def parse_devices(text: str, where: str = "<device file>") -> list[Device]:
    """The devices described by the TOML ``text`` (``where`` names it in errors)."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise DeviceFileError(f"{where}: not valid TOML: {e}") from None
    return _Parser(text, where).devices(doc)


class _Parser:
    """Walks the parsed document, knowing the text so errors can name lines."""

    def __init__(self, text: str, where: str) -> None:
        self.lines = text.splitlines()
        self.where = where

    def fail(self, key: str, expected: str, got: Any = None, near: int = 0) -> DeviceFileError:
        line = self._line_of(key.rsplit(".", 1)[-1], near)
        at = f" (line {line})" if line else ""
        seen = "" if got is None else f", got {got!r}"
        return DeviceFileError(f"{self.where}: {key}{at}: expected {expected}{seen}")

    def _line_of(self, key: str, near: int) -> int:
        """The first line from ``near`` that sets ``key`` (1-based), or 0."""
        pattern = re.compile(rf"^\s*{re.escape(key)}\s*=")
        for i in range(max(near - 1, 0), len(self.lines)):
            if pattern.match(self.lines[i]):
                return i + 1
        return 0

    def _header_line(self, header: str, index: int) -> int:
        """The line of the ``index``-th ``[[header]]`` (1-based), or 0."""
        seen = -1
        for i, line in enumerate(self.lines):
            if line.strip().replace(" ", "") == f"[[{header}]]":
                seen += 1
                if seen == index:
                    return i + 1
        return 0

    def devices(self, doc: dict[str, Any]) -> list[Device]:
        unknown = sorted(set(doc) - {"device"})
        if unknown:
            raise self.fail(unknown[0], "only [[device]] tables at the top level")
        raw = doc.get("device")
        if not isinstance(raw, list) or not raw:
            raise DeviceFileError(f"{self.where}: expected at least one [[device]] table")
        devices = [self.device(i, d) for i, d in enumerate(raw)]
        names = [d.name for d in devices]
        for name in names:
            if names.count(name) > 1:
                raise self.fail("device.name", "a name used by one device only", name)
        return devices

    def device(self, index: int, raw: dict[str, Any]) -> Device:
        near = self._header_line("device", index)
        key = f"device[{index}]"
        allowed = {f for f in Device.__dataclass_fields__} | {"block", "word_order", "byte_order"}
        self._no_unknown(raw, allowed, key, near)
        name = self._str(raw, "name", key, near, required=True)
        key = f"device {name!r}"
        orders = {o: self._choice(raw, o, ORDERS, key, near, "big") for o in ("word_order", "byte_order")}
        blocks_raw = raw.get("block")
        if not isinstance(blocks_raw, list) or not blocks_raw:
            raise self.fail(f"{key}.block", "at least one [[device.block]] table", near=near)
        blocks = tuple(self.block(f"{key}.block[{i}]", b, near, orders) for i, b in enumerate(blocks_raw))
        device = Device(
            name=name,
            host=self._str(raw, "host", key, near) or "127.0.0.1",
            port=self._int(raw, "port", key, near, 502, 0, 65535),
            unit=self._int(raw, "unit", key, near, 1, 0, 255),
            interval=self._num(raw, "interval", key, near, 1.0, positive=True),
            timeout=self._num(raw, "timeout", key, near, 1.0, positive=True),
            retries=self._int(raw, "retries", key, near, 0, 0, 10),
            framing=self._choice(raw, "framing", FRAMINGS, key, near, "tcp"),
            backoff_initial=self._num(raw, "backoff_initial", key, near, 0.1, positive=True),
            backoff_max=self._num(raw, "backoff_max", key, near, 10.0, positive=True),
            reports_time=self._str(raw, "reports_time", key, near) or "",
            serial=self._str(raw, "serial", key, near) or "",
            baudrate=self._int(raw, "baudrate", key, near, 19200, 50, 4_000_000),
            parity=self._choice(raw, "parity", PARITIES, key, near, "N"),
            stopbits=self._int(raw, "stopbits", key, near, 1, 1, 2),
            bytesize=self._int(raw, "bytesize", key, near, 8, 7, 8),
            blocks=blocks,
        )
        self._check_device(device, key, near)
        return device

    def _check_device(self, device: Device, key: str, near: int) -> None:
        names: set[str] = set()
        for block in device.blocks:
            for reg in block.registers:
                if reg.name in names:
                    raise self.fail(f"{key}.register.name", "names unique within the device", reg.name, near)
                names.add(reg.name)
        if device.backoff_max < device.backoff_initial:
            raise self.fail(f"{key}.backoff_max", f"at least backoff_initial ({device.backoff_initial})",
                            device.backoff_max, near)
        if device.framing == "rtu" and not device.serial:
            raise self.fail(f"{key}.serial", 'the serial port of a device with framing "rtu"', near=near)
        if device.serial and device.framing != "rtu":
            raise self.fail(f"{key}.framing", '"rtu" for a device on a serial port', device.framing, near)
        if device.reports_time and device.reports_time not in names:
            raise self.fail(f"{key}.reports_time", "the name of one of the device's registers",
                            device.reports_time, near)

    def block(self, key: str, raw: Any, near: int, orders: dict[str, str]) -> Block:
        if not isinstance(raw, dict):
            raise self.fail(key, "a [[device.block]] table", raw, near)
        near = self._line_of("function", near) or near
        self._no_unknown(raw, {"function", "address", "count", "register", "word_order", "byte_order"},
                         key, near)
        fname = raw.get("function")
        fname = FUNCTION_ALIASES.get(fname, fname) if isinstance(fname, str) else fname
        if fname not in FUNCTIONS:
            raise self.fail(f"{key}.function", f"one of {', '.join(FUNCTIONS)}", raw.get("function"), near)
        function = FUNCTIONS[fname]
        start = self._int(raw, "address", key, near, None, 0, 65535)
        orders = {o: self._choice(raw, o, ORDERS, key, near, orders[o]) for o in orders}
        regs_raw = raw.get("register")
        if not isinstance(regs_raw, list) or not regs_raw:
            raise self.fail(f"{key}.register", "at least one [[device.block.register]] table", near=near)
        regs = tuple(self.register(f"{key}.register[{i}]", r, near, function, orders)
                     for i, r in enumerate(regs_raw))
        end = max(r.address + max(r.words, 1) for r in regs)
        count = self._int(raw, "count", key, near, end - start, 1, MAX_READ[function])
        for r in regs:
            if r.address < start or r.address + max(r.words, 1) > start + count:
                raise self.fail(f"{key}.register {r.name!r}.address",
                                f"inside the block ({start}..{start + count - 1})", r.address, near)
        if count > MAX_READ[function]:
            raise self.fail(f"{key}.count", f"at most {MAX_READ[function]} items per read", count, near)
        return Block(function=function, address=start, count=count, registers=regs)

    def register(self, key: str, raw: Any, near: int, function: int, orders: dict[str, str]) -> Register:
        if not isinstance(raw, dict):
            raise self.fail(key, "a [[device.block.register]] table", raw, near)
        near = self._line_of("name", near) or near
        allowed = set(Register.__dataclass_fields__) | {"length"}
        self._no_unknown(raw, allowed - {"words"}, key, near)
        name = self._str(raw, "name", key, near, required=True)
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            raise self.fail(f"{key}.name", "a name of letters, digits and _", name, near)
        bits = function in (1, 2)
        rtype = self._choice(raw, "type", TYPES, key, near, "bool" if bits else "uint16")
        if bits != (rtype == "bool"):
            what = "type bool for coils and discrete inputs" if bits else "a word type for registers"
            raise self.fail(f"{key}.type", what, rtype, near)
        words = self._int(raw, "length", key, near, 1, 1, 120) if rtype == "string" else WORDS[rtype]
        lo = self._num(raw, "min", key, near, None)
        hi = self._num(raw, "max", key, near, None)
        if lo is not None and hi is not None and lo > hi:
            raise self.fail(f"{key}.max", f"at least min ({lo})", hi, near)
        writable = raw.get("writable", False)
        if not isinstance(writable, bool) or (writable and function not in (1, 3)):
            raise self.fail(f"{key}.writable", "true only for coils and holding registers", writable, near)
        return Register(
            name=name, address=self._int(raw, "address", key, near, None, 0, 65535), type=rtype,
            words=words, word_order=self._choice(raw, "word_order", ORDERS, key, near, orders["word_order"]),
            byte_order=self._choice(raw, "byte_order", ORDERS, key, near, orders["byte_order"]),
            scale=self._num(raw, "scale", key, near, 1.0), offset=self._num(raw, "offset", key, near, 0.0),
            unit=self._str(raw, "unit", key, near) or "", min=lo, max=hi, writable=writable,
        )

    # -- typed getters --------------------------------------------------------
    def _no_unknown(self, raw: dict, allowed: set[str], key: str, near: int) -> None:
        unknown = sorted(set(raw) - allowed)
        if unknown:
            raise self.fail(f"{key}.{unknown[0]}", f"one of the known keys ({', '.join(sorted(allowed))})",
                            near=near)

    def _str(self, raw: dict, name: str, key: str, near: int, required: bool = False) -> str | None:
        value = raw.get(name)
        if value is None and not required:
            return None
        if not isinstance(value, str) or not value.strip():
            raise self.fail(f"{key}.{name}", "a non-empty string", value, near)
        return value

    def _int(self, raw: dict, name: str, key: str, near: int, default: int | None, lo: int, hi: int) -> int:
        value = raw.get(name, default)
        if value is None:
            raise self.fail(f"{key}.{name}", f"an integer {lo}..{hi} (required)", near=near)
        if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
            raise self.fail(f"{key}.{name}", f"an integer {lo}..{hi}", value, near)
        return value

    def _num(self, raw: dict, name: str, key: str, near: int, default: float | None,
             positive: bool = False) -> Any:
        value = raw.get(name, default)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise self.fail(f"{key}.{name}", "a number", value, near)
        if positive and value <= 0:
            raise self.fail(f"{key}.{name}", "a number > 0", value, near)
        return float(value)

    def _choice(self, raw: dict, name: str, choices: tuple[str, ...], key: str, near: int,
                default: str) -> str:
        value = raw.get(name, default)
        if value not in choices:
            raise self.fail(f"{key}.{name}", f"one of {', '.join(choices)}", value, near)
        return value

"""Syscall-level fault injection: an LD_PRELOAD library and a thin wrapper around it.

The C sources (``native/src``) build into ``libunbroken_faults.so`` with the
system C compiler, on first use, into a cache directory keyed by a hash of the
sources and flags. Loaded into a child process with ``LD_PRELOAD``, it
interposes connect, read/recv, write/send, the pwrite family, fsync/fdatasync
and close, and injects the faults its rules name: refused, black-holed, reset,
delayed, sliced or dropped connections by destination, and ENOSPC, EIO, short
writes and failed fsyncs by path glob. Every injected fault is one JSON line in
the fault log. See docs/native-faults.md.

- ``build()`` compiles the library (or finds it in the cache) and returns its path.
- ``faults(rules, log=..., control=...)`` is a context manager yielding the
  environment for a subprocess (``FaultEnvironment``, a dict with ``.log``,
  ``.control`` and ``.set_rules``).
- ``set_rules(control_file, rules)`` changes the rules of running processes.
- ``read_fault_log(path)`` reads the log; ``select_members`` tells which members
  of a set a ``fraction=`` rule picks (the same choice as the library's).

This package imports nothing of unbroken's; its errors are ``ValueError`` (a bad
rule) and ``RuntimeError`` (no compiler, a failed build). ``adapters.faults``
turns the log into ``Fault`` events.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "ACTIONS", "FILE_ACTIONS", "LIBRARY", "NETWORK_ACTIONS", "FaultEnvironment", "build",
    "build_tests", "compiler", "faults", "read_fault_log", "rules_text", "select_members",
    "set_rules", "sources",
]

LIBRARY = "libunbroken_faults.so"
NETWORK_ACTIONS = ("refuse", "blackhole", "reset", "latency", "slice", "drop")
FILE_ACTIONS = ("enospc", "eio", "short", "fsync")
ACTIONS = NETWORK_ACTIONS + FILE_ACTIONS
_KEYS = {"id", "action", "dst", "path", "stage", "fraction", "p", "seed", "after", "bytes", "ms",
         "jitter", "nth"}
_SRC = Path(__file__).with_name("src")
_TESTS = Path(__file__).with_name("tests")
_FLAGS = ("-O2", "-fPIC", "-shared", "-fvisibility=hidden", "-Wall", "-Wextra")
_LIBS = ("-ldl", "-lpthread", "-lm")
_SANITIZE = ("-O1", "-g", "-fno-omit-frame-pointer", "-fsanitize=address,undefined",
             "-fno-sanitize-recover=undefined", "-Wall", "-Wextra")


def sources() -> list[Path]:
    """The library's C sources and headers, sorted."""
    return sorted([*_SRC.glob("*.c"), *_SRC.glob("*.h")])


def compiler() -> str:
    """The C compiler to use: ``$CC``, else cc, gcc or clang; RuntimeError naming gcc when none."""
    for name in (os.environ.get("CC", ""), "cc", "gcc", "clang"):
        if name and (found := shutil.which(name)):
            return found
    raise RuntimeError("no C compiler found (tried $CC, cc, gcc, clang): the fault library "
                       "(native/) is built with one; install the Debian package gcc "
                       "(sudo apt-get install gcc) or set CC")


def _cache_root() -> Path:
    if root := os.environ.get("UNBROKEN_NATIVE_CACHE"):
        return Path(root)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "unbroken" / "native"


def _digest(cc: str, flags: Sequence[str], files: Iterable[Path]) -> str:
    h = hashlib.sha256()
    h.update(cc.encode() + b"\0" + " ".join(flags).encode())
    for f in files:
        h.update(f.name.encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()[:16]


def _compile(cc: str, args: Sequence[str], out: Path) -> Path:
    """Run the compiler into a temporary name, then move it into place (concurrent builds are safe)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    proc = subprocess.run([cc, *args, "-o", str(tmp)], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        tmp.unlink(missing_ok=True)
        raise RuntimeError(f"building {out.name} with {cc} failed (exit {proc.returncode}):\n"
                           f"{proc.stderr.strip()}")
    os.replace(tmp, out)
    return out


def build(*, cache_dir: str | Path | None = None) -> Path:
    """Compile the library with the system C compiler (once per source hash); return its path."""
    cc = compiler()
    files = sources()
    out = Path(cache_dir or _cache_root()) / _digest(cc, _FLAGS, files) / LIBRARY
    if out.exists():
        return out
    return _compile(cc, [*_FLAGS, *[str(f) for f in files if f.suffix == ".c"], *_LIBS], out)


def build_tests(*, sanitize: bool = True, cache_dir: str | Path | None = None) -> dict[str, Path]:
    """Compile each native/tests/*.c with the library's sources linked in (ASan+UBSan by default).

    Returns the test programs by name. Each links the interposers into the program
    itself, so they run without LD_PRELOAD (the sanitizer runtime must come first).
    """
    cc = compiler()
    flags = _SANITIZE if sanitize else ("-O2", "-g", "-Wall", "-Wextra")
    lib_c = [f for f in sources() if f.suffix == ".c"]
    programs = {}
    for test in sorted(_TESTS.glob("*.c")):
        out = Path(cache_dir or _cache_root()) / _digest(cc, flags, [*sources(), test]) / test.stem
        if not out.exists():
            _compile(cc, [*flags, "-I", str(_SRC), str(test), *map(str, lib_c), *_LIBS], out)
        programs[test.stem] = out
    return programs


# -- rules -----------------------------------------------------------------------------------

Rule = str | Mapping[str, Any]


def _value(key: str, value: Any) -> str:
    if key == "dst" and not isinstance(value, str):
        value = ",".join(str(v) for v in value)
    text = str(value).lower() if isinstance(value, bool) else str(value)
    if not text or any(c.isspace() or c in ";\"\\" for c in text):
        raise ValueError(f"rule key {key}={value!r}: empty, or holds a space, ';', quote or backslash")
    return text


def _check(fields: dict[str, str], where: str) -> None:
    action = fields.get("action")
    if action not in ACTIONS:
        raise ValueError(f"{where}: action {action!r} is not one of {', '.join(ACTIONS)}")
    if unknown := set(fields) - _KEYS:
        raise ValueError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}; "
                         f"known: {', '.join(sorted(_KEYS))}")
    if action in FILE_ACTIONS and "path" not in fields:
        raise ValueError(f"{where}: {action} is a file rule and needs path=GLOB")
    if action in NETWORK_ACTIONS and "path" in fields:
        raise ValueError(f"{where}: {action} is a network rule: use dst=, not path=")
    if action in ("slice", "short") and int(fields.get("bytes", "0")) <= 0:
        raise ValueError(f"{where}: {action} needs bytes=N > 0")
    if "fraction" in fields and "dst" not in fields:
        raise ValueError(f"{where}: fraction= needs a dst= set")
    for key in ("fraction", "p"):
        if key in fields and not 0.0 <= float(fields[key]) <= 1.0:
            raise ValueError(f"{where}: {key}={fields[key]} is outside [0, 1]")


def _fields(rule: Rule, index: int) -> dict[str, str]:
    where = f"rule {index + 1}"
    if isinstance(rule, str):
        tokens = rule.split()
        if not tokens:
            raise ValueError(f"{where}: empty")
        fields = {} if "=" in tokens[0] else {"action": tokens.pop(0)}
        for token in tokens:
            key, eq, value = token.partition("=")
            if not eq:
                raise ValueError(f"{where}: {token!r} is not KEY=VALUE")
            fields[key] = value
    else:
        try:
            fields = {str(k): _value(str(k), v) for k, v in rule.items()}
        except ValueError as e:
            raise ValueError(f"{where}: {e}") from None
    fields.setdefault("id", f"r{index + 1}")
    try:
        _check(fields, f"{where} ({fields['id']})")
    except (TypeError, ValueError) as e:
        raise ValueError(str(e)) from None
    return fields


def rules_text(rules: Rule | Iterable[Rule]) -> str:
    """The library's line format for ``rules`` (dicts or lines); ValueError names a bad rule.

    A rule is ``{"action": "refuse", "dst": ["127.0.0.1:5020"], "id": "r1"}`` or the
    line ``"refuse dst=127.0.0.1:5020 id=r1"``. Rules without an id get ``r<N>``.
    """
    if isinstance(rules, str | Mapping):
        rules = [rules]
    lines = []
    for i, rule in enumerate(rules):
        fields = _fields(rule, i)
        action = fields.pop("action")
        lines.append(" ".join([action, *(f"{k}={v}" for k, v in fields.items())]))
    return "\n".join(lines) + ("\n" if lines else "")


def _fnv1a(text: str, h: int = 14695981039346656037) -> int:
    for byte in text.encode():
        h = ((h ^ byte) * 1099511628211) & 0xFFFFFFFFFFFFFFFF
    return h


def select_members(members: Sequence[str], fraction: float, seed: int) -> list[str]:
    """The members a ``fraction=`` rule picks: round(fraction x n) of them, chosen by seed.

    The same choice as the library's (FNV-1a of "<seed>/<member>", smallest first), so a
    test knows which nodes go silent before it starts them; same seed, same set.
    """
    k = math.floor(fraction * len(members) + 0.5)
    prefix = _fnv1a(f"{int(seed)}/")
    ranked = sorted(range(len(members)), key=lambda i: (_fnv1a(members[i], prefix), i))
    chosen = set(ranked[:k])
    return [m for i, m in enumerate(members) if i in chosen]


def set_rules(control_file: str | Path, rules: Rule | Iterable[Rule]) -> None:
    """Replace the rules of every process watching ``control_file`` (atomically: write, rename).

    The library notices within its poll interval (``UNBROKEN_FAULTS_POLL_MS``, 10 ms).
    ``set_rules(path, [])`` lifts every fault.
    """
    path = Path(control_file)
    text = rules_text(rules)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)


def read_fault_log(path: str | Path) -> list[dict[str, Any]]:
    """Every record of a fault log, in order; a missing log reads as empty.

    Records have ``event`` ("fault", "rules", "select", "error"), ``t_ns``, ``pid``,
    ``tid``, ``syscall``, ``rule``, ``action``, ``target``, ``errno``, ``errno_name``
    and ``detail``. A line cut short (a process killed mid-write) is skipped.
    """
    try:
        text = Path(path).read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return []
    records = []
    for line in text.splitlines():
        with contextlib.suppress(ValueError):
            record = json.loads(line)
            if isinstance(record, dict):
                records.append(record)
    return records


class FaultEnvironment(dict):
    """The environment for a child process under the library, and handles to change it.

    ``log`` is the fault log, ``control`` the control file (None without one) and
    ``library`` the .so loaded.
    """

    def __init__(self, env: Mapping[str, str], *, log: Path, control: Path | None, library: Path):
        super().__init__(env)
        self.log, self.control, self.library = log, control, library
        self.kept: list[dict[str, Any]] | None = None  # the log as it was when a temporary one went

    def set_rules(self, rules: Rule | Iterable[Rule]) -> None:
        """Change the rules of the running children (needs ``control=``)."""
        if self.control is None:
            raise ValueError("faults(...) was opened without control=True; its rules cannot change")
        set_rules(self.control, rules)

    def records(self) -> list[dict[str, Any]]:
        """The fault log so far (after the block, what a temporary log held when it was removed)."""
        return list(self.kept) if self.kept is not None else read_fault_log(self.log)

    def injected(self) -> list[dict[str, Any]]:
        """The injected faults so far (records with event "fault")."""
        return [r for r in self.records() if r.get("event") == "fault"]


@contextlib.contextmanager
def faults(rules: Rule | Iterable[Rule] = (), *, log: str | Path | None = None,
           control: bool | str | Path = False, env: Mapping[str, str] | None = None,
           poll_ms: int = 10) -> Iterator[FaultEnvironment]:
    """Yield the environment (``os.environ`` or ``env``, plus LD_PRELOAD) that runs a child
    under ``rules``.

    ``log`` is where faults are logged (by default a temporary file, read into
    ``env.kept`` and removed on exit, so ``env.records()`` still works afterwards);
    ``control=True`` (or a path) adds a control file holding the rules, so
    ``env.set_rules(...)`` changes them while the child runs.
    """
    library = build()
    text = rules_text(rules)
    with tempfile.TemporaryDirectory(prefix="unbroken-faults-") as tmp:
        log_path = Path(log) if log is not None else Path(tmp) / "faults.jsonl"
        control_path = None
        if control:
            control_path = Path(tmp) / "rules" if control is True else Path(control)
            set_rules(control_path, rules)
        base = dict(os.environ if env is None else env)
        preload = " ".join(p for p in (str(library), base.get("LD_PRELOAD", "")) if p)
        base.update(LD_PRELOAD=preload, UNBROKEN_FAULTS=text, UNBROKEN_FAULTS_LOG=str(log_path),
                    UNBROKEN_FAULTS_POLL_MS=str(poll_ms))
        if control_path is not None:
            base["UNBROKEN_FAULTS_FILE"] = str(control_path)
        fenv = FaultEnvironment(base, log=log_path, control=control_path, library=library)
        try:
            yield fenv
        finally:
            if log is None:
                fenv.kept = read_fault_log(log_path)

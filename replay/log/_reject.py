"""Bad lines: the ``Rejection`` record, the quarantine file, and checks on output paths.

Output paths (quarantine, export) come from the user, never from log data.
They are still checked: no control characters, never the input file itself,
never a directory, and never followed through a symlink (``O_NOFOLLOW``), so a
planted link cannot redirect what we write.
"""

from __future__ import annotations

import base64
import hashlib
import os
from pathlib import Path
from typing import IO, Final

import msgspec

from ._mapping import LogError

_ENCODE: Final = msgspec.json.Encoder()
_DECODE: Final = msgspec.json.Decoder()


class Rejection(msgspec.Struct, frozen=True):
    """One line or row that was not imported: where it was, why, and its raw bytes."""

    source: str
    where: int
    unit: str  # "line" (JSONL, CSV: the physical line it starts on) or "row" (Parquet, 1-based)
    reason: str
    raw: bytes

    def describe(self) -> str:
        """``file:line 7: reason`` for messages."""
        return f"{self.source} {self.unit} {self.where}: {self.reason}"


def quarantine_record(rejection: Rejection) -> bytes:
    """One JSON line: source, line (or row), reason, and ``raw`` text or ``raw_base64``."""
    record: dict[str, object] = {
        "source": rejection.source,
        rejection.unit: rejection.where,
        "reason": rejection.reason,
    }
    try:
        record["raw"] = rejection.raw.decode("utf-8")
    except UnicodeDecodeError:
        record["raw_base64"] = rejection.raw  # msgspec encodes bytes as base64
    return _ENCODE.encode(record) + b"\n"


def check_output_path(path: str | os.PathLike[str], role: str, inputs: tuple[Path, ...] = ()) -> Path:
    """``path`` as a ``Path`` if it is safe to write ``role`` there; raises ``LogError`` if not."""
    text = os.fspath(path)
    if not text or any(ord(c) < 0x20 or ord(c) == 0x7F for c in text):
        raise LogError(f"{role} path {text!r} is empty or contains control characters")
    target = Path(text)
    if target.is_dir():
        raise LogError(f"{role} path {text!r} is a directory; name a file")
    if target.is_symlink():
        raise LogError(f"{role} path {text!r} is a symbolic link; refusing to write through it")
    for source in inputs:
        if target.exists() and source.exists() and os.path.samefile(target, source):
            raise LogError(f"{role} path {text!r} is the input file {str(source)!r}; refusing to overwrite it")
    return target


def open_no_follow(path: Path, append: bool) -> IO[bytes]:
    """Open for writing without following a symlink at the last component."""
    flags = os.O_WRONLY | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0)
    flags |= os.O_APPEND if append else os.O_TRUNC
    try:
        fd = os.open(path, flags, 0o644)
    except OSError as e:
        raise LogError(f"cannot write {str(path)!r}: {e.strerror}") from e
    return os.fdopen(fd, "ab" if append else "wb")


def _key(source: str, unit: str, where: int, raw: bytes) -> tuple[str, str, int, bytes]:
    return source, unit, where, hashlib.sha256(raw).digest()


def _keys_in(path: Path) -> set[tuple[str, str, int, bytes]]:
    """The rejections an existing quarantine file holds already (unreadable lines are ignored)."""
    keys: set[tuple[str, str, int, bytes]] = set()
    try:
        with open(path, "rb") as f:
            for line in f:
                try:
                    record = _DECODE.decode(line)
                    unit = "line" if "line" in record else "row"
                    raw = record["raw"].encode("utf-8") if "raw" in record else base64.b64decode(record["raw_base64"])
                    keys.add(_key(record["source"], unit, int(record[unit]), raw))
                except (msgspec.DecodeError, KeyError, TypeError, ValueError, AttributeError):
                    continue
    except FileNotFoundError:
        pass
    except OSError as e:
        raise LogError(f"cannot read the quarantine file {str(path)!r}: {e.strerror}") from e
    return keys


class Quarantine:
    """Appends rejections to a JSONL file, opened on the first one (no bad lines, no file).

    Idempotent: a rejection already in the file (same source, line or row,
    and raw bytes, e.g. from an earlier import of the same log) is not
    written again, so re-importing a log leaves its quarantine as it was.
    Rejections of other logs sharing the file are kept. ``written`` counts
    the rejections the file holds for this run, new or already there.
    """

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.written = 0
        self._file: IO[bytes] | None = None
        self._known: set[tuple[str, str, int, bytes]] = set()

    def write(self, rejection: Rejection) -> None:
        if self.path is None:
            return
        if self._file is None:
            self._known = _keys_in(self.path)
            self._file = open_no_follow(self.path, append=True)
        self.written += 1
        key = _key(rejection.source, rejection.unit, rejection.where, rejection.raw)
        if key in self._known:
            return
        self._known.add(key)
        self._file.write(quarantine_record(rejection))

    def close(self) -> None:
        if self._file is not None:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            self._file = None

    def __enter__(self) -> Quarantine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

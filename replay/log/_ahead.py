"""Read-ahead for long logs: reading, decoding and converting lines in a second process.

Reading a log costs about as much CPU as everything done with its events
afterwards (appending them, or replaying them), and all of it holds the GIL.
For a long log, ``parse_lines`` runs in a worker process instead (this module,
started as ``python -I -c ...``): it reads the file, decodes and converts every
line exactly as in-process reading does, and writes the results to its stdout
as frames, each one msgpack ``Chunk``: the good lines as ``PendingLine``s and
the bad ones as ``Rejection``s, with the index of the good line each bad one
came before. The caller decodes a frame in one call (on its own core, while
the worker reads ahead on the other) and hands lines and rejections on in file
order, so quarantine files, counts, strict mode and ``on_reject`` callbacks see
exactly what they see without the worker.

Frames: a kind byte and the payload length (``<cI``), then the payload:
``C`` a chunk, ``E`` an error the reading raised (JSON: class name and
message), ``Z`` the end. The worker ignores SIGINT (the caller stops it) and
exits quietly when the caller goes away (broken pipe).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import struct
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Final

import msgspec

from ._mapping import LogError, LogMapping
from ._parse import PendingLine, Tally, parse_lines
from ._reject import Rejection

HEADER: Final = struct.Struct("<cI")
CHUNK, ERROR, END = b"C", b"E", b"Z"
CHUNK_LINES: Final = 1024  # lines per frame: ~0.3 MB of an arrears log
MIN_BYTES: Final = 16 * 1024 * 1024  # logs smaller than this are read in-process (the worker takes ~0.5 s to start)
PIPE_BYTES: Final = 4 << 20  # Linux: let the worker run ~10 frames ahead
EXIT_S: Final = 10.0  # deadline for a worker that sent its last frame to exit
_ROOT: Final = str(Path(__file__).resolve().parents[2])  # the directory holding the ``replay`` package


class Chunk(msgspec.Struct, array_like=True):
    """One frame's lines: the good ones, the bad ones, and where each bad one falls among the good."""

    lines: list[PendingLine]
    rejections: list[Rejection]
    before: list[int]  # rejections[i] came before lines[before[i]] (== len(lines): after the last)


_ENCODE: Final = msgspec.msgpack.Encoder()
_DECODE: Final = msgspec.msgpack.Decoder(Chunk)


def wanted(path: Path, read_ahead: bool | None) -> bool:
    """Whether to read ``path`` in a worker: as asked, else for a long file when a second CPU is there."""
    if read_ahead is not None:
        return read_ahead
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    try:
        size = path.stat().st_size
    except OSError:
        return False
    return cpus > 1 and size >= MIN_BYTES and bool(sys.executable)


def good_lines(
    path: Path, mapping: LogMapping, format: str, tally: Tally, read_ahead: bool | None = None
) -> Iterator[PendingLine]:
    """``parse_lines`` of ``path``: in a worker process when ``wanted``, else in this one."""
    if wanted(path, read_ahead):
        return parse_lines_ahead(path, mapping, format, tally)
    return parse_lines(path, mapping, format, tally)


def parse_lines_ahead(path: Path, mapping: LogMapping, format: str, tally: Tally) -> Iterator[PendingLine]:
    """``parse_lines``, with the reading done by a worker process; same lines, rejections and errors.

    Falls back to reading in this process when no worker can be started.
    """
    worker = _start(path, mapping, format)
    if worker is None:
        yield from parse_lines(path, mapping, format, tally)
        return
    frames = worker.stdout
    assert frames is not None and worker.stderr is not None
    try:
        while len(head := frames.read(HEADER.size)) == HEADER.size:
            kind, length = HEADER.unpack(head)
            payload = frames.read(length)
            if len(payload) < length:
                break  # cut off mid-frame: the worker died
            if kind == END:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    worker.wait(EXIT_S)
                return
            if kind == ERROR:
                raise _error(payload)
            yield from _deliver(_DECODE.decode(payload), tally)
        raise LogError(f"{str(path)!r}: the log reading process stopped before the end of the file ({_exit_of(worker)})")
    finally:
        if worker.poll() is None:
            worker.kill()
        worker.wait()
        frames.close()
        worker.stderr.close()


def _deliver(chunk: Chunk, tally: Tally) -> Iterator[PendingLine]:
    """A frame's lines and rejections in file order, each counted as ``parse_lines`` counts it."""
    lines, rejections, before = chunk.lines, chunk.rejections, chunk.before
    done = 0
    for rejection, at in zip(rejections, before, strict=True):
        yield from _counted(lines[done:at], tally)
        done = at
        tally.read += 1
        tally.reject(rejection)
    yield from _counted(lines[done:] if done else lines, tally)


def _counted(lines: list[PendingLine], tally: Tally) -> Iterator[PendingLine]:
    for line in lines:
        tally.read += 1
        yield line


def _start(path: Path, mapping: LogMapping, format: str) -> subprocess.Popen | None:
    args = json.dumps({"path": str(path), "format": format, "mapping": msgspec.to_builtins(mapping)})
    code = f"import sys; sys.path.insert(0, {_ROOT!r}); from replay.log._ahead import main; main()"
    try:
        worker = subprocess.Popen(
            [sys.executable, "-I", "-c", code, args],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )
    except OSError:
        return None
    with contextlib.suppress(ImportError, OSError, AttributeError):
        import fcntl

        fcntl.fcntl(worker.stdout, fcntl.F_SETPIPE_SZ, PIPE_BYTES)
    return worker


def _error(payload: bytes) -> Exception:
    """The exception the worker met, as the caller raises it (a ``LogError`` stays one)."""
    detail = json.loads(payload)
    if detail["kind"] == "LogError":
        return LogError(detail["message"])
    if detail["kind"] == "FileNotFoundError":
        return FileNotFoundError(detail["message"])
    return LogError(f"reading the log failed: {detail['kind']}: {detail['message']}")


def _exit_of(worker: subprocess.Popen, lines: int = 5) -> str:
    try:
        worker.wait(EXIT_S)
    except subprocess.TimeoutExpired:
        worker.kill()
        worker.wait()
    assert worker.stderr is not None
    text = worker.stderr.read().decode(errors="replace").strip().splitlines()[-lines:]
    return f"exit status {worker.returncode}: " + (" | ".join(text) or "no error output")


# -- the worker's side ---------------------------------------------------------------------------
class _Collector:
    """Stands in for the caller's ``Tally``: keeps each rejection with its place among the good lines."""

    def __init__(self) -> None:
        self.read = 0
        self.lines: list[PendingLine] = []
        self.rejections: list[Rejection] = []
        self.before: list[int] = []

    def reject(self, rejection: Rejection) -> None:
        self.rejections.append(rejection)
        self.before.append(len(self.lines))

    def frame(self) -> bytes:
        payload = _ENCODE.encode(Chunk(self.lines, self.rejections, self.before))
        self.lines, self.rejections, self.before = [], [], []
        return HEADER.pack(CHUNK, len(payload)) + payload


def serve(args: dict, out: IO[bytes]) -> None:
    """Read the log ``args`` names and write its frames to ``out``."""
    collector = _Collector()
    mapping = msgspec.convert(args["mapping"], LogMapping)
    try:
        for line in parse_lines(Path(args["path"]), mapping, args["format"], collector):  # type: ignore[arg-type]
            collector.lines.append(line)
            if len(collector.lines) >= CHUNK_LINES:
                out.write(collector.frame())
        if collector.lines or collector.rejections:
            out.write(collector.frame())
    except Exception as e:  # noqa: BLE001 - every error goes to the caller, which raises it
        if collector.lines or collector.rejections:
            out.write(collector.frame())  # what was read before the error is delivered first
        detail = json.dumps({"kind": type(e).__name__, "message": str(e)}).encode()
        out.write(HEADER.pack(ERROR, len(detail)) + detail)
    out.write(HEADER.pack(END, 0))
    out.flush()


def main() -> None:
    """Entry point of the worker process: the arguments are one JSON object in ``argv[1]``."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        serve(json.loads(sys.argv[1]), sys.stdout.buffer)
    except BrokenPipeError:  # the caller stopped reading and went away
        os._exit(0)

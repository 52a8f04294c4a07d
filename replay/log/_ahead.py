"""Read-ahead for long logs: reading, decoding and converting lines in a second process.

Reading a log costs about as much CPU as everything done with its events
afterwards (appending them, or replaying them), and all of it holds the GIL.
For a long log, the reading runs in a worker process instead (this module,
started as ``python -I -c ...``): it reads the file, decodes and converts every
line exactly as in-process reading does, and writes the results to its stdout
as frames, each one msgpack ``Chunk``. For an import (``good_lines``) a chunk
holds the good lines as ``PendingLine``s; for a replay (``recorded_events``)
the worker also numbers and dedupes them (``_parse.recorded``) and a chunk
holds ``RecordedEvent``s, which the caller decodes as the store's read-ahead
pages are decoded. Either way the bad lines come as ``Rejection``s, with the
index of the item each came before. The caller decodes a frame in one call (on
its own core, while the worker reads ahead on the other) and hands items and
rejections on in file order, so quarantine files, counts, strict mode and
``on_reject`` callbacks see exactly what they see without the worker (a
replay's counts move a run of events at a time, see ``recorded_runs``).

Frames: a kind byte and the payload length (``<cI``), then the payload:
``C`` a chunk, ``E`` an error the reading raised (JSON: class name and
message), ``Z`` the end, ``D`` (first and only) the worker declines: it does
not know every payload type the caller knows. The worker ignores SIGINT (the caller stops it) and
exits quietly when the caller goes away (broken pipe).
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import queue
import signal
import struct
import subprocess
import sys
import threading
from collections.abc import Generator, Iterable, Iterator
from itertools import chain
from pathlib import Path
from typing import IO, Final

import msgspec

from eventstore import RecordedEvent
from eventstore.payloads import payload_types
from eventstore.workers import widen_pipe, worker_exit

from ._mapping import LogError, LogMapping
from ._parse import PendingLine, Tally, parse_lines
from ._parse import recorded_runs as recorded_in_runs
from ._reject import Rejection

HEADER: Final = struct.Struct("<cI")
CHUNK, ERROR, END, DECLINE = b"C", b"E", b"Z", b"D"
CHUNK_LINES: Final = 1024  # lines gathered before they are written out (as frames of FRAME_ITEMS)
# Items a frame, by kind. A replay decodes a frame's events all at once, and 1,024 of them (2,048 objects
# the collector counts) set off 3 young collections a frame: over 1,004,641 events the replaying process took
# 22.1-23.8 CPU-s with frames of 1,024-1,535, 19.6-21.1 with frames of 256 (the store's pages of 256: 19.2-20.4).
# An import runs with the collector paused and gained nothing: its 200,000-line import took 11.8-12.4 s with
# frames of 256 against 10.8-11.2 with the 1,024 lines gathered in one frame, so it keeps one frame.
FRAME_ITEMS: Final = {"events": 256, "lines": CHUNK_LINES}
MIN_BYTES: Final = 16 * 1024 * 1024  # logs smaller than this are read in-process (the worker takes ~0.5 s to start)
PIPE_BYTES: Final = 4 << 20  # Linux: let the worker run up to ~80 frames of ~50 KB ahead (widen_pipe: 1 MiB, ~20, without CAP_SYS_RESOURCE)
EXIT_S: Final = 10.0  # deadline for a worker that sent its last frame to exit
AHEAD_FRAMES: Final = 64  # frames taken off the pipe ahead of the caller (_Drain): an import's 64k lines, ~20 MB
PUT_CHECK_S: Final = 0.5  # how often a drain thread waiting for room looks whether its caller has stopped
_ROOT: Final = str(Path(__file__).resolve().parents[2])  # the directory holding the ``replay`` package
# Packages the worker enters without running their ``__init__``: ``replay``'s loads polars, numpy and
# DuckDB (0.4 CPU-s, before the first line is read), and the worker needs only these log-reading modules.
_LIGHT_PACKAGES: Final = ("replay", "replay.log")


class Chunk(msgspec.Struct, array_like=True):
    """One frame: good lines (import) or events (replay), the bad lines, and where each bad one falls."""

    lines: list[PendingLine]
    events: list[RecordedEvent]
    rejections: list[Rejection]
    before: list[int]  # rejections[i] came before item before[i] (== the items' count: after the last)
    present: int  # lines skipped as repeats of an id in the same stream (replay)


# Ids as their 16 bytes, as the store's records hold them: cheaper to write and to read than 36 characters.
_ENCODE: Final = msgspec.msgpack.Encoder(uuid_format="bytes")
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
        return chain.from_iterable(_ahead(path, mapping, format, tally, "lines"))
    return parse_lines(path, mapping, format, tally)


def recorded_runs(
    path: Path, mapping: LogMapping, format: str, tally: Tally, read_ahead: bool | None = None
) -> Iterator[Iterable[RecordedEvent]]:
    """``_parse.recorded`` over the lines of ``path``, in runs: from a worker process when ``wanted``.

    Chain the runs (``itertools.chain.from_iterable``) for the events: a
    worker's frames then reach the caller with no Python call per event.
    Each run is counted when it is handed on, and each bad line between two
    runs is handled (strict mode raises) once the run before it is used up.
    """
    if wanted(path, read_ahead):
        return _ahead(path, mapping, format, tally, "events")  # type: ignore[return-value]
    return recorded_in_runs(path, mapping, format, tally)


def _ahead(path: Path, mapping: LogMapping, format: str, tally: Tally, kind: str) -> Iterator[Iterable]:
    """The worker's items of ``kind`` (``lines`` or ``events``) in runs, with its rejections, in file order.

    Reads in this process instead when no worker can be started, or when
    the worker does not know every payload type this process knows (one
    registered at run time, not through an entry point): it could not check
    that data fits its type, so it would let through lines read here rejects.
    """
    worker = _start(path, mapping, format, kind)
    if worker is None or not (yield from _frames(worker, path, tally, kind)):
        if kind == "lines":
            yield parse_lines(path, mapping, format, tally)
        else:
            yield from recorded_in_runs(path, mapping, format, tally)


def _frames(worker: subprocess.Popen, path: Path, tally: Tally, kind: str) -> Generator[Iterable, None, bool]:
    """Deliver the worker's frames in runs; True once the file is done, False if the worker declined at the start."""
    assert worker.stdout is not None and worker.stderr is not None
    drain = _Drain(worker.stdout)
    try:
        while (item := drain.next()) is not None:
            frame, payload = item
            if frame == END:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    worker.wait(EXIT_S)
                return True
            if frame == DECLINE:
                return False
            if frame == ERROR:
                raise _error(payload)
            yield from _deliver(_DECODE.decode(payload), tally, kind)
        raise LogError(f"{str(path)!r}: the log reading process stopped before the end of the file ({worker_exit(worker, EXIT_S)})")
    finally:
        if worker.poll() is None:
            worker.kill()
        worker.wait()
        drain.close()
        worker.stdout.close()
        worker.stderr.close()


class _Drain:
    """The worker's frames, taken off its pipe by a thread of their own as soon as they are written.

    The pipe holds at most 1 MiB without ``CAP_SYS_RESOURCE`` (``widen_pipe``):
    ~20 frames. While the caller is in a long call that lets other threads
    run (an import's COMMIT of 50,000 lines: the inserts and the fsync), the
    worker would fill it and stop reading; the thread keeps taking frames,
    up to ``AHEAD_FRAMES``, so the worker goes on (the 1M-line import,
    alternating: 19.9-20.1 s without, 15.9-17.9 s with). ``next`` gives them
    in order as ``(kind, payload)``, then None if the frames stopped before
    an end, error or decline frame (the worker died, or the pipe closed).
    """

    def __init__(self, pipe: IO[bytes]) -> None:
        self._pipe = pipe
        self._frames: queue.Queue[tuple[bytes, bytes] | None] = queue.Queue(AHEAD_FRAMES)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="unbroken-log-frames", daemon=True)
        self._thread.start()

    def next(self) -> tuple[bytes, bytes] | None:
        """The next frame, waiting for it; None once the frames stopped short."""
        return self._frames.get()

    def close(self) -> None:
        """Stop the thread and wait for it; the caller ends the worker first, so that its reads return."""
        self._stop.set()
        with contextlib.suppress(queue.Empty):
            while True:  # make room for a frame the thread may be waiting to put
                self._frames.get_nowait()
        self._thread.join(EXIT_S)

    def _run(self) -> None:
        pipe = self._pipe
        try:
            while len(head := pipe.read(HEADER.size)) == HEADER.size:
                frame, length = HEADER.unpack(head)
                payload = pipe.read(length)
                if len(payload) < length or not self._put((frame, payload)):
                    break  # cut off mid-frame (the worker died), or the caller has stopped
                if frame != CHUNK:
                    return  # END, ERROR or DECLINE: the last frame
        except (OSError, ValueError):  # the pipe failed, or was closed under the read
            pass
        self._put(None)

    def _put(self, item: tuple[bytes, bytes] | None) -> bool:
        """Hand ``item`` to the caller, waiting for room; False if the caller stopped meanwhile."""
        while not self._stop.is_set():
            with contextlib.suppress(queue.Full):
                self._frames.put(item, timeout=PUT_CHECK_S)
                return True
        return False


def _deliver(chunk: Chunk, tally: Tally, kind: str) -> Iterator[Iterable]:
    """A frame's items in runs between its rejections, in file order, counted as in-process reading counts them.

    Events are counted a run at a time; an import's lines one by one, so that
    its progress reports always add up (read = imported + present + rejected).
    """
    items: list = chunk.lines if kind == "lines" else chunk.events
    tally.present += chunk.present  # repeats of an id in the same stream: read, and skipped
    tally.read += chunk.present
    done = 0
    for rejection, at in zip([*chunk.rejections, None], [*chunk.before, len(items)], strict=True):
        run = items[done:at] if done or at < len(items) else items
        if run and kind == "lines":
            yield _counted_lines(run, tally)
        elif run:
            tally.read += len(run)
            tally.imported = run[-1].position
            yield run
        done = at
        if rejection is not None:
            tally.read += 1
            tally.reject(rejection)


def _counted_lines(lines: list[PendingLine], tally: Tally) -> Iterator[PendingLine]:
    for line in lines:
        tally.read += 1
        yield line


def _start(path: Path, mapping: LogMapping, format: str, kind: str) -> subprocess.Popen | None:
    args = json.dumps({"path": str(path), "format": format, "mapping": msgspec.to_builtins(mapping), "kind": kind,
                       "payload_types": sorted(payload_types())})
    code = bootstrap() + "from replay.log._ahead import main; main()"
    try:
        worker = subprocess.Popen(
            [sys.executable, "-I", "-c", code, args],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )
    except OSError:
        return None
    widen_pipe(worker.stdout, PIPE_BYTES)
    return worker


def bootstrap() -> str:
    """The worker's first lines of code: ``replay`` importable, without running ``_LIGHT_PACKAGES``' ``__init__``."""
    return (f"import sys, types; sys.path.insert(0, {_ROOT!r})\n"
            f"for name in {_LIGHT_PACKAGES!r}:\n"
            f"    package = sys.modules[name] = types.ModuleType(name)\n"
            f"    package.__path__ = [{_ROOT!r} + '/' + name.replace('.', '/')]\n")


def _error(payload: bytes) -> Exception:
    """The exception the worker met, as the caller raises it (a ``LogError`` stays one)."""
    detail = json.loads(payload)
    if detail["kind"] == "LogError":
        return LogError(detail["message"])
    if detail["kind"] == "FileNotFoundError":
        return FileNotFoundError(detail["message"])
    return LogError(f"reading the log failed: {detail['kind']}: {detail['message']}")


# -- the worker's side ---------------------------------------------------------------------------
class _Collector:
    """Stands in for the caller's ``Tally``: keeps each rejection with its place among the items."""

    def __init__(self, source: Path) -> None:
        self.source = source
        self.read = self.imported = self.present = 0
        self.items: list = []
        self.rejections: list[Rejection] = []
        self.before: list[int] = []

    def reject(self, rejection: Rejection) -> None:
        self.rejections.append(rejection)
        self.before.append(len(self.items))

    def frames(self, kind: str) -> bytes:
        """Everything pending as frames of at most ``FRAME_ITEMS[kind]`` items, each rejection with the item it came before.

        A rejection that came after the last item of a frame goes to the next
        frame, before its first item; one after every item, to the last frame.
        """
        items, rejections, before = self.items, self.rejections, self.before
        out, start, r, present, size = [], 0, 0, self.present, FRAME_ITEMS[kind]
        while True:
            end = min(start + size, len(items))
            last = end == len(items)
            stop = r
            while stop < len(before) and (last or before[stop] < end):
                stop += 1
            piece = items[start:end]
            lines, events = (piece, []) if kind == "lines" else ([], piece)
            chunk = Chunk(lines, events, rejections[r:stop], [at - start for at in before[r:stop]], present)
            payload = _ENCODE.encode(chunk)
            out += (HEADER.pack(CHUNK, len(payload)), payload)
            if last:
                break
            start, r, present = end, stop, 0
        self.items, self.rejections, self.before, self.present = [], [], [], 0
        return b"".join(out)

    def pending(self) -> bool:
        return bool(self.items or self.rejections or self.present)


def serve(args: dict, out: IO[bytes]) -> None:
    """Read the log ``args`` names and write its frames to ``out``."""
    path, format, kind = Path(args["path"]), args["format"], args["kind"]
    collector = _Collector(path)
    mapping = msgspec.convert(args["mapping"], LogMapping)
    if not set(args["payload_types"]) <= set(payload_types()):
        out.write(HEADER.pack(DECLINE, 0))
        out.flush()
        return
    try:
        if kind == "events":
            for run in recorded_in_runs(path, mapping, format, collector):  # type: ignore[arg-type]
                collector.items += run  # before the reading goes on: a rejection is placed after these
                if len(collector.items) >= CHUNK_LINES:
                    out.write(collector.frames(kind))
        else:
            for line in parse_lines(path, mapping, format, collector):  # type: ignore[arg-type]
                collector.items.append(line)
                if len(collector.items) >= CHUNK_LINES:
                    out.write(collector.frames(kind))
        if collector.pending():
            out.write(collector.frames(kind))
    except Exception as e:  # noqa: BLE001 - every error goes to the caller, which raises it
        if collector.pending():
            out.write(collector.frames(kind))  # what was read before the error is delivered first
        detail = json.dumps({"kind": type(e).__name__, "message": str(e)}).encode()
        out.write(HEADER.pack(ERROR, len(detail)) + detail)
    out.write(HEADER.pack(END, 0))
    out.flush()


def main() -> None:
    """Entry point of the worker process: the arguments are one JSON object in ``argv[1]``.

    The cyclic garbage collector is off in this process: what it keeps (a
    frame's items, the ids seen) holds no reference cycles, and the collector
    cost 15-30% of its CPU re-scanning them.
    """
    gc.disable()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        serve(json.loads(sys.argv[1]), sys.stdout.buffer)
    except BrokenPipeError:  # the caller stopped reading and went away
        os._exit(0)

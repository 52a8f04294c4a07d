"""Helper processes that read ahead for a caller: their pipe, and how one that stopped early ended.

The embedded store's long reads and ``replay.log``'s log reading each run a
worker process that sends frames over a pipe. The pipe is widened so the
worker can run well ahead (``widen_pipe``). When the frames stop before the
end, the caller's error says how the worker ended (``worker_exit``).
"""

from __future__ import annotations

import contextlib
import subprocess
from pathlib import Path
from typing import IO, Final

__all__ = ["widen_pipe", "worker_exit"]

_PIPE_MAX: Final = Path("/proc/sys/fs/pipe-max-size")


def widen_pipe(pipe: IO[bytes], wanted: int) -> int:
    """Give ``pipe`` a buffer of ``wanted`` bytes, or the most this process may set; the size it got.

    Linux lets a process without ``CAP_SYS_RESOURCE`` (root in a container
    included) grow a pipe only up to ``/proc/sys/fs/pipe-max-size`` (1 MiB by
    default) and refuses a larger size outright, which would leave the pipe
    at its 64 KiB default: a worker with frames of ~50 KB could then run only
    one frame ahead, and it and its reader would take turns instead of
    running side by side. Elsewhere (no ``fcntl``, no ``F_SETPIPE_SZ``) the
    pipe keeps its size and 0 is returned.
    """
    try:
        import fcntl

        setter, getter = fcntl.F_SETPIPE_SZ, fcntl.F_GETPIPE_SZ
    except (ImportError, AttributeError):
        return 0
    sizes = [wanted]
    with contextlib.suppress(OSError, ValueError):
        sizes.append(min(wanted, int(_PIPE_MAX.read_text())))
    for size in sizes:
        with contextlib.suppress(OSError):
            fcntl.fcntl(pipe, setter, size)
            break
    try:
        return fcntl.fcntl(pipe, getter)
    except OSError:
        return 0


def worker_exit(worker: subprocess.Popen, wait_s: float, lines: int = 5) -> str:
    """``exit status N: <last lines of its stderr>`` for a worker that stopped early.

    Waits up to ``wait_s`` for it to exit, then kills it; ``worker`` must have
    been started with ``stderr=subprocess.PIPE``.
    """
    try:
        worker.wait(wait_s)
    except subprocess.TimeoutExpired:
        worker.kill()
        worker.wait()
    assert worker.stderr is not None
    text = worker.stderr.read().decode(errors="replace").strip().splitlines()[-lines:]
    return f"exit status {worker.returncode}: " + (" | ".join(text) or "no error output")

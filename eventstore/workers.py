"""Helper processes that read ahead for a caller: how one that stopped early ended.

The embedded store's long reads and ``replay.log``'s log reading each run a
worker process that sends frames over a pipe. When the frames stop before
the end, the caller's error says how the worker ended (``worker_exit``).
"""

from __future__ import annotations

import subprocess

__all__ = ["worker_exit"]


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

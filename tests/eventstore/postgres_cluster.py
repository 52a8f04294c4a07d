"""A throwaway PostgreSQL cluster for tests that kill and restart the server.

``initdb`` into a temporary directory, ``pg_ctl start`` on a free port with
its unix socket in that directory; ``kill()`` SIGKILLs the postmaster and
every backend (a crash, not a shutdown), ``start()`` runs crash recovery. As
root the server runs as the ``postgres`` user (PostgreSQL refuses root).
The system service on port 5432 is never touched.
"""

from __future__ import annotations

import glob
import os
import shutil
import signal
import socket
import subprocess
import tempfile
from pathlib import Path

import pytest


def postgres_bin() -> Path | None:
    """The directory holding initdb, pg_ctl and postgres, or None when PostgreSQL is not installed."""
    found = shutil.which("initdb")
    if found:
        return Path(found).parent
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    return Path(versions[-1]).parent if versions else None


def need_postgres_bin() -> Path:
    """``postgres_bin()``, or a skip with the reason (a failure in CI, where it must be there)."""
    found = postgres_bin()
    if found is None:
        why = "PostgreSQL server binaries (initdb, pg_ctl) not found; install Debian's postgresql"
        if os.environ.get("CI") == "true":
            pytest.fail(why)
        pytest.skip(why)
    return found


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Cluster:
    """One PostgreSQL server of our own: start, SIGKILL, restart, remove."""

    def __init__(self, bin_dir: Path) -> None:
        self.bin = bin_dir
        self.root = Path(tempfile.mkdtemp(prefix="unbroken-pg-"))
        self.data = self.root / "data"
        self.port = _free_port()
        self.uri = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        self._as_postgres = os.geteuid() == 0
        if self._as_postgres:
            shutil.chown(self.root, "postgres", "postgres")
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "-E", "UTF8",
                  "--locale=C", "--no-sync")

    def _run(self, tool: str, *args: str) -> None:
        command = [str(self.bin / tool), *args]
        if self._as_postgres:
            command = ["runuser", "-u", "postgres", "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise RuntimeError(f"{tool} failed ({done.returncode}): {done.stdout[-2000:]}"
                               f"{done.stderr[-2000:]}\nserver log:\n{self.log_tail()}")

    def start(self) -> None:
        """Start the server (running crash recovery after a kill) and wait until it accepts connections."""
        options = (f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 "
                   "-c fsync=on -c synchronous_commit=on -c max_connections=100")
        self._run("pg_ctl", "-D", str(self.data), "-o", options, "-l", str(self.root / "log"),
                  "-w", "-t", "60", "start")

    def pids(self) -> list[int]:
        """The postmaster's pid and its children's (the backends and helpers)."""
        pid_file = self.data / "postmaster.pid"
        if not pid_file.exists():
            return []
        postmaster = int(pid_file.read_text().split()[0])
        children: list[int] = []
        for task in glob.glob(f"/proc/{postmaster}/task/*/children"):
            children.extend(int(p) for p in Path(task).read_text().split())
        return [postmaster, *children]

    def kill(self) -> None:
        """SIGKILL the postmaster and every process it started: the server crashes mid-work.

        The dead postmaster may linger as a zombie until init reaps it, and
        PostgreSQL refuses to start while the pid in ``postmaster.pid`` exists,
        so once every process has exited the stale lock files are removed (what
        an operator does after a crash; the data directory is left as it was).
        """
        pids = self.pids()
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for pid in pids:
            _wait_gone(pid)
        for stale in (self.data / "postmaster.pid", self.root / f".s.PGSQL.{self.port}.lock",
                      self.root / f".s.PGSQL.{self.port}"):
            stale.unlink(missing_ok=True)

    def stop(self) -> None:
        """Stop the server if it runs (fast shutdown); quiet if it does not."""
        if (self.data / "postmaster.pid").exists():
            try:
                self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
            except RuntimeError:
                self.kill()

    def remove(self) -> None:
        """Stop the server and delete its directory."""
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def log_tail(self, lines: int = 30) -> str:
        path = self.root / "log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""


def _wait_gone(pid: int, timeout: float = 30.0) -> None:
    """Block until process ``pid`` has exited (a pidfd becomes readable then; no polling)."""
    import select

    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    try:
        ready, _, _ = select.select([fd], [], [], timeout)
        if not ready:
            raise RuntimeError(f"process {pid} still running {timeout} s after SIGKILL")
    finally:
        os.close(fd)

"""A real nats-server with JetStream on loopback, for broker tests: start, SIGKILL, restart.

``NatsServer(tmp_path).start()`` runs ``nats-server -js -sd DIR -a 127.0.0.1 -p PORT`` on a
free port with its own JetStream directory; ``kill()`` sends SIGKILL and ``start()`` again
reuses the port and the directory, so streams and durable consumers survive. Tests that
need it call ``require_service("nats-server")``: it skips with the reason when the program
is missing, and fails instead when CI=true.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest


def require_service(what: str, available: bool, reason: str) -> None:
    """Skip (or, with CI=true, fail) when an outside service ``what`` is not there."""
    if available:
        return
    message = f"{what} not available: {reason}"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{message} (CI=true: services are required)")
    pytest.skip(message)


def reachable(port: int, host: str = "127.0.0.1", timeout: float = 1.0) -> bool:
    """True when something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(condition, timeout: float, what: str, every: float = 0.02):
    """Poll ``condition`` until it returns a true value or ``timeout`` passes (then fail)."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(every)


class NatsServer:
    """One nats-server process with JetStream, restartable on the same port and store dir."""

    def __init__(self, tmp: Path) -> None:
        self.binary = shutil.which("nats-server")
        require_service("nats-server", self.binary is not None,
                        "install it (make system-deps, apt-get install nats-server)")
        self.dir = tmp / "jetstream"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"nats://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None
        self.kills = 0  # how many times kill() stopped a running server
        self.log = open(tmp / "nats-server.log", "ab")  # noqa: SIM115 - closed in close()

    def start(self, timeout: float = 15.0) -> NatsServer:
        """Start the server and wait until it accepts connections."""
        assert self.binary is not None
        self.proc = subprocess.Popen(
            [self.binary, "-js", "-sd", str(self.dir), "-a", "127.0.0.1", "-p", str(self.port)],
            stdout=self.log, stderr=subprocess.STDOUT,
        )
        wait_for(lambda: reachable(self.port, timeout=0.2) or self._died(), timeout,
                 f"nats-server on port {self.port}")
        if self.proc.poll() is not None:
            raise AssertionError(f"nats-server exited with {self.proc.returncode}; see {self.log.name}")
        return self

    def _died(self) -> bool:
        return self.proc is not None and self.proc.poll() is not None

    def kill(self) -> None:
        """SIGKILL the server (no shutdown, no flush) and wait for it to be gone."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)
            self.kills += 1
        self.proc = None

    def close(self) -> None:
        """Kill the server and close its log."""
        self.kill()
        self.log.close()

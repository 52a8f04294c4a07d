"""Shared parts of the fault library's tests: loopback servers and a child under the library.

Real processes and sockets only: an echo server and a UDP sink in threads of the test
process (which is not under the library), and ``Child``, a Python process started with
the library preloaded that runs the commands of ``child.py``.
"""

from __future__ import annotations

import json
import selectors
import socket
import socketserver
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path

import pytest

CHILD = Path(__file__).with_name("child.py")


def need_compiler() -> None:
    """Skip (fail in CI) when there is no C compiler to build the library with."""
    import os

    import native

    try:
        native.compiler()
    except RuntimeError as e:
        if os.environ.get("CI") == "true":
            raise
        pytest.skip(str(e))


class _Echo(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        while data := self.request.recv(65536):
            self.request.sendall(data)


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


class EchoServer:
    """A TCP echo server on 127.0.0.1 (an ephemeral port), in a thread."""

    def __init__(self) -> None:
        self.server = _Server(("127.0.0.1", 0), _Echo)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class UdpSink:
    """A UDP socket on 127.0.0.1 that collects numbered datagrams."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]

    def received(self, expect: int, deadline_s: float = 5.0) -> list[int]:
        """Datagram numbers received until ``expect`` arrived or the socket stays quiet 0.2 s."""
        got: list[int] = []
        end = time.monotonic() + deadline_s
        while len(got) < expect and time.monotonic() < end:
            try:
                got.append(int.from_bytes(self.sock.recv(16), "big"))
            except TimeoutError:
                break
        return got

    def close(self) -> None:
        self.sock.close()


class Child:
    """``child.py`` running under ``env``; ``ask(op=..., ...)`` sends one command, returns the answer."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.proc = subprocess.Popen([sys.executable, str(CHILD)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=dict(env),
                                     text=True, bufsize=1)
        self.sel = selectors.DefaultSelector()
        self.sel.register(self.proc.stdout, selectors.EVENT_READ)
        self.closed: str | None = None

    def ask(self, deadline_s: float = 20.0, **cmd) -> dict:
        assert self.proc.stdin and self.proc.stdout
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()
        if not self.sel.select(deadline_s):
            raise AssertionError(f"child gave no answer to {cmd} within {deadline_s} s")
        line = self.proc.stdout.readline()
        if not line:
            raise AssertionError(f"child died: {self.proc.stderr.read() if self.proc.stderr else ''}")
        return json.loads(line)

    def close(self) -> str:
        """Stop the child; returns what it wrote to stderr."""
        assert self.proc.stdin
        if not self.proc.stdin.closed:
            self.proc.stdin.close()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if self.closed is None:
            self.closed = self.proc.stderr.read() if self.proc.stderr else ""
            for stream in (self.proc.stdout, self.proc.stderr):
                if stream is not None:
                    stream.close()
            self.sel.close()
        return self.closed

    def __enter__(self) -> Child:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def until(condition: Callable[[], bool], deadline_s: float = 10.0, step: float = 0.01) -> None:
    """Wait until ``condition()`` holds; fail when ``deadline_s`` passes first."""
    end = time.monotonic() + deadline_s
    while not condition():
        if time.monotonic() > end:
            raise AssertionError(f"condition not met within {deadline_s} s")
        time.sleep(step)

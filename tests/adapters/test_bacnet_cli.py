"""``unbroken serve bacnet`` as a process: status lines and Prometheus metrics of commands
and SubscribeCOVProperty subscriptions, and a clean stop on SIGTERM."""

from __future__ import annotations

import asyncio
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request

import pytest
from bacpypes3.pdu import Address
from bacpypes3.primitivedata import ObjectIdentifier

from adapters.bacnet.net import free_port

from .bacnet_support import append, client, definition, subscribe_property, value

UNBROKEN = [sys.executable, "-c", "import sys; from eventstore.cli import main; sys.exit(main())"]


def free_tcp_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def metric(port: int, name: str) -> float | None:
    """The value of one metric from the server's endpoint (None: not there yet)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            text = r.read().decode()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None


@pytest.fixture
def serve_process():
    procs: list[subprocess.Popen] = []

    def start(*args: str) -> subprocess.Popen:
        proc = subprocess.Popen([*UNBROKEN, "serve", "bacnet", *args], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=30)


def test_serve_reports_commands_and_property_subscriptions_and_stops_on_sigterm(
        tmp_path, serve_process):
    uri = f"embedded://{tmp_path}/events.db"
    append(uri, [definition(10, "analog-output"), value(10, 40.0, "analog-output")])
    address, metrics_port = f"127.0.0.1:{free_port()}", free_tcp_port()
    proc = serve_process("--store", uri, "--address", address, "--metrics-port",
                         str(metrics_port), "--status-every", "0.2", "--duration", "120")
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, "")),
                              daemon=True)
    reader.start()

    async def main() -> None:
        deadline = time.monotonic() + 60
        while not any(line.startswith("serving device") for line in lines):
            assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()
            await asyncio.sleep(0.05)
        app = client()
        try:
            await subscribe_property(app, address, "analog-output,10", "present-value", 3)
            await app.write_property(Address(address), ObjectIdentifier("analog-output,10"),
                                     "present-value", 55.0, priority=8)
            names = ("unbroken_bacnet_server_commands",
                     "unbroken_bacnet_server_cov_property_subscriptions")
            while [metric(metrics_port, n) for n in names] != [1.0, 1.0]:
                assert time.monotonic() < deadline, [metric(metrics_port, n) for n in names]
                await asyncio.sleep(0.1)
        finally:
            app.close()

    asyncio.run(asyncio.wait_for(main(), 90))
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 0
    reader.join(10)
    assert any("commands 1, property subscriptions 1" in line for line in lines), lines[-3:]

"""A child process for the fault library's tests: runs JSON commands from stdin, one per line,
and answers each with one JSON line on stdout. It is started under LD_PRELOAD, so every
connect, recv, send, write and fsync it makes goes through the library.

Commands: {"op": "connect", "port", "timeout"}, {"op": "echo", "port", "size", "timeout"}
(send size bytes to an echo server and read them back, recording each recv's size),
{"op": "udp", "port", "count"} (send count numbered datagrams on a connected UDP socket),
{"op": "write", "path", "size", "fsync", "writes"} (append to a file, then fsync).
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time


def _error(e: BaseException) -> dict:
    return {"ok": False, "error": type(e).__name__, "errno": getattr(e, "errno", None) or 0}


def connect(port: int, timeout: float, host: str = "127.0.0.1") -> dict:
    started = time.monotonic()
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return {"ok": True, "elapsed": time.monotonic() - started}
    except OSError as e:
        return {**_error(e), "elapsed": time.monotonic() - started}


def echo(port: int, size: int, timeout: float) -> dict:
    sizes: list[int] = []
    started = time.monotonic()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            s.sendall(bytes(i % 251 for i in range(size)))
            while sum(sizes) < size:
                chunk = s.recv(65536)
                if not chunk:
                    return {"ok": False, "error": "eof", "sizes": sizes, "elapsed": time.monotonic() - started}
                sizes.append(len(chunk))
        return {"ok": True, "sizes": sizes, "elapsed": time.monotonic() - started}
    except OSError as e:
        return {**_error(e), "sizes": sizes, "elapsed": time.monotonic() - started}


def udp(port: int, count: int) -> dict:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect(("127.0.0.1", port))
        for i in range(count):
            s.send(i.to_bytes(4, "big"))
    return {"ok": True}


def write(path: str, size: int, fsync: bool, writes: int = 1) -> dict:
    results = []
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        for _ in range(writes):
            try:
                results.append(os.write(fd, b"x" * size))
            except OSError as e:
                results.append(_error(e))
        if fsync:
            try:
                os.fsync(fd)
                results.append("fsync ok")
            except OSError as e:
                results.append(_error(e))
    finally:
        os.close(fd)
    return {"ok": True, "results": results}


def main() -> None:
    """Answer commands until stdin closes."""
    for line in sys.stdin:
        cmd = json.loads(line)
        op = cmd.pop("op")
        answer = {"connect": connect, "echo": echo, "udp": udp, "write": write}[op](**cmd)
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()

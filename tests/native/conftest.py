"""Fixtures for the fault library's tests: loopback servers; the library is built once."""

from __future__ import annotations

import pytest

from .support import EchoServer, UdpSink, need_compiler


@pytest.fixture(scope="session")
def library():
    """The built library (skips without a compiler, except in CI where that fails)."""
    need_compiler()
    import native

    return native.build()


@pytest.fixture
def echo(library):
    server = EchoServer()
    yield server
    server.close()


@pytest.fixture
def sink(library):
    s = UdpSink()
    yield s
    s.close()

"""Fixtures of the event store tests: ``backend`` and ``store`` run each test on every backend."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from eventstore import EventStore

from .backends import Backend, backend_for

BACKEND_PARAMS = [
    pytest.param("memory"),
    pytest.param("embedded"),
    pytest.param("postgres", marks=pytest.mark.service),
    pytest.param("kurrentdb", marks=pytest.mark.service),
    pytest.param("kurrentdb-fake"),
]


@pytest.fixture(params=BACKEND_PARAMS)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    """One backend per parameter; skipped with a reason when it cannot run here."""
    chosen = backend_for(request.param, tmp_path)
    if chosen.cleanup is not None:
        request.addfinalizer(chosen.cleanup)
    return chosen


@pytest.fixture
def store(backend: Backend) -> Iterator[EventStore]:
    """An open store on ``backend``, closed after the test."""
    opened = backend.open()
    try:
        yield opened
    finally:
        opened.close()


@pytest.fixture
def ns(backend: Backend) -> str:
    """Prefix for stream names, so tests on a shared server never meet each other's streams."""
    return backend.namespace

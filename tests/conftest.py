"""Shared test configuration. Each test folder keeps its own fixtures in its own conftest."""

from __future__ import annotations

import pytest


@pytest.hookimpl(tryfirst=True)  # before pytest's own -k deselection reads the keywords
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Make each ``case("SM-AR-003")`` id a keyword, so ``pytest -k SM-AR-003`` selects it."""
    for item in items:
        for marker in item.iter_markers("case"):
            item.extra_keyword_matches.update(str(arg) for arg in marker.args)

"""Shared test configuration. Each test folder keeps its own fixtures in its own conftest."""

from __future__ import annotations

import pytest


@pytest.hookimpl(tryfirst=True)  # before pytest's own -k deselection reads the keywords
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Make each ``case("SM-AR-003")`` id a keyword, so ``pytest -k SM-AR-003`` selects it."""
    for item in items:
        for marker in item.iter_markers("case"):
            item.extra_keyword_matches.update(str(arg) for arg in marker.args)


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    """One line per skip reason with its count (pytest's -rs lists every location)."""
    reasons: dict[str, int] = {}
    for report in terminalreporter.stats.get("skipped", []):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        reason = reason.removeprefix("Skipped: ")
        reasons[reason] = reasons.get(reason, 0) + 1
    if reasons:
        terminalreporter.section("skipped, by reason")
        for reason, count in sorted(reasons.items(), key=lambda item: -item[1]):
            terminalreporter.line(f"{count:5d}  {reason}")

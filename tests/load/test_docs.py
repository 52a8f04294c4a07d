"""The README's CLI reference is the parsers' own --help text, so it cannot drift."""

from __future__ import annotations

from pathlib import Path

import pytest

from load._clidocs import BEGIN, END, reference, render

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_cli_reference_matches_every_commands_help():
    text = README.read_text()
    assert render(text) == text, "README.md's CLI reference is stale: run `make docs` and commit it"


def test_reference_covers_every_command_and_subcommand():
    ref = reference()
    for command in ("generate arrears", "generate bulk", "demo", "import", "replay", "query", "store info"):
        assert f"### `unbroken {command}`" in ref or f"#### `unbroken {command}`" in ref, command
    assert ref.count("```text") == ref.count("usage: unbroken")


def test_render_refuses_a_readme_without_markers():
    with pytest.raises(ValueError, match="cli-reference:begin") as caught:
        render("# no markers here\n")
    assert BEGIN in str(caught.value) and END in str(caught.value)


def test_one_scenario_runs_by_its_id_as_tests_readme_says():
    """``pytest -k SM-AR-003`` selects the scenario through its case marker (tests/conftest.py)."""
    import subprocess
    import sys

    root = README.parent
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-k", "SM-AR-003", "tests/projections"],
        cwd=root, capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    selected = [line for line in done.stdout.splitlines() if "::" in line]
    assert selected and all("SM_AR_003" in line for line in selected), done.stdout

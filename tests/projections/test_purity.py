"""projections/ stays pure: ruff's banned-api (projections/ruff.toml) finds no wall clock,
randomness or I/O, and the rule really fires on a planted violation."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import projections

PACKAGE = Path(projections.__file__).resolve().parent
ROOT = PACKAGE.parent
# Builtins that banned-api cannot reach and no selected ruff rule covers.
BANNED_BUILTINS = {"input", "__import__", "compile", "breakpoint"}


def _ruff() -> str:
    found = Path(sys.executable).with_name("ruff")
    if found.exists():
        return str(found)
    on_path = shutil.which("ruff")
    if on_path is None:
        pytest.fail("ruff is not installed in the venv; `pip install -e .[test]` provides it")
    return on_path


def _check(paths: list[Path], config: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [_ruff(), "check", "--no-cache", "--output-format", "concise", "--config", str(config),
         *map(str, paths)],
        capture_output=True, text=True, cwd=ROOT, timeout=60,
    )


def test_projections_pass_ruff_with_purity_rules():
    done = _check([PACKAGE], PACKAGE / "ruff.toml")
    assert done.returncode == 0, f"ruff found violations in projections/:\n{done.stdout}{done.stderr}"


def test_planted_violations_are_caught(tmp_path):
    planted = tmp_path / "impure.py"
    planted.write_text(
        "import random\n"
        "import time\n"
        "from datetime import datetime\n\n\n"
        "def decide():\n"
        "    started = time.time()\n"
        "    today = datetime.now()\n"
        "    with open('state.json') as f:\n"
        "        print(f.read())\n"
        "    return started, today, random.random()\n"
    )
    done = _check([planted], PACKAGE / "ruff.toml")
    assert done.returncode == 1
    for needle in ("`time.time` is banned", "`datetime.datetime.now` is banned",
                   "`random` is banned", "PTH123", "T201"):
        assert needle in done.stdout, f"{needle!r} not reported:\n{done.stdout}"


def test_no_banned_builtins_in_projections():
    hits = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in BANNED_BUILTINS:
                hits.append(f"{path.relative_to(ROOT)}:{node.lineno}: {node.func.id}()")
    assert hits == []

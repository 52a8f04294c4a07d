"""The ``unbroken`` root command: what every subcommand inherits."""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.case("EF-002")
def test_a_reader_that_goes_away_ends_the_command_quietly(tmp_path):
    """`unbroken generate ... --out /dev/stdout | head -1`: no BrokenPipeError traceback."""
    command = [sys.executable, "-m", "eventstore.cli", "generate", "bulk", "--events", "200000",
               "--out", "/dev/stdout", "--force"]
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as process:
        assert process.stdout is not None and process.stderr is not None
        first = process.stdout.readline()
        process.stdout.close()  # the reader goes away after one line, as `head -1` would
        stderr = process.stderr.read().decode()
        code = process.wait(timeout=60)
    assert first.startswith(b"{")
    assert "Traceback" not in stderr and "BrokenPipeError" not in stderr, stderr
    assert code == 0, stderr

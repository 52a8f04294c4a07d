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


def _subcommands_added_by(entry) -> set[str]:
    """The subcommand names one ``unbroken.commands`` entry point's register function adds."""
    import argparse

    commands = argparse.ArgumentParser().add_subparsers()
    entry.load()(commands)
    return set(commands.choices)


def test_every_command_has_an_entry_point_of_its_own_name():
    """`unbroken NAME` loads only the entry named NAME, so each command must have one,
    pointing at the register function that adds it."""
    from importlib.metadata import entry_points

    entries = {e.name: e for e in entry_points(group="unbroken.commands")}
    for entry in entries.values():
        for name in _subcommands_added_by(entry):
            assert name in entries, f"command {name!r} has no entry point named after it"
            assert entries[name].value == entry.value, f"{name!r} points elsewhere"
    from eventstore.cli import build_parser

    listed = build_parser().parse_args(["store", "info", "x"])  # the full parser still works
    assert listed.command == "store"


def test_a_command_imports_only_the_package_that_owns_it():
    """`unbroken serve ...` must not import replay's DuckDB and Polars (a long-running server
    stays small); `unbroken query ...` does, and `--help` lists every command."""
    probe = ("import sys\nfrom eventstore.cli import main\n"
             "try:\n    main(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
             "print(sorted(m for m in ('duckdb', 'polars', 'replay') if m in sys.modules))")

    def heavy_modules(*argv: str) -> str:
        done = subprocess.run([sys.executable, "-c", probe, *argv], capture_output=True,
                              text=True, timeout=120)
        return done.stdout.strip().splitlines()[-1]

    assert heavy_modules("serve", "bacnet", "--help") == "[]"
    assert heavy_modules("store", "--help") == "[]"
    assert heavy_modules("query", "--help") == "['duckdb', 'polars', 'replay']"
    listing = subprocess.run([sys.executable, "-m", "eventstore.cli", "--help"],
                             capture_output=True, text=True, timeout=120).stdout
    for name in ("check", "import", "outbox", "query", "serve", "soak", "store"):
        assert name in listing

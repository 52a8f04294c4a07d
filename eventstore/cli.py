"""The ``unbroken`` command: one entry point gathering every package's commands.

Each package registers its subcommands through the ``unbroken.commands``
entry-point group (see pyproject.toml), so this module imports nothing above
the event store and the layering in docs/architecture.md stays one-way.

An entry point is named after the command it adds (several names may share one
``register`` function). ``unbroken serve ...`` therefore imports only the
package that owns ``serve``, not replay's DuckDB and Polars: a long-running
server starts faster and stays smaller. Help, and a command nobody registered,
load them all so the listing is complete.
"""

from __future__ import annotations

import argparse
import sys
from importlib.metadata import entry_points

__all__ = ["EXIT_ERROR", "EXIT_OK", "EXIT_PROBLEM", "EXIT_USAGE", "build_parser", "main"]

EXIT_OK = 0
EXIT_PROBLEM = 1  # the command ran and found a problem (violation, damage, bad rows)
EXIT_USAGE = 2  # the command line was wrong
EXIT_ERROR = 3  # the command could not run (missing file, unreachable store)


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The root parser, with the subcommand ``argv`` names attached, or all of them.

    Without ``argv`` (or when it names no registered command) every package's
    commands are attached, as ``unbroken --help`` and the CLI reference need.
    """
    parser = argparse.ArgumentParser(
        prog="unbroken",
        description="Replay, property-test and soak-test decision systems built on events.",
        epilog="Exit codes: 0 ok, 1 a problem was found, 2 usage error, 3 could not run.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for register in _registrations(_command_named(argv)):
        register(commands)
    return parser


def _command_named(argv: list[str] | None) -> str | None:
    """The subcommand ``argv`` asks for: its first word that is not an option."""
    return next((word for word in argv or () if not word.startswith("-")), None)


def _registrations(command: str | None) -> list:
    """The ``register`` functions to call: the one that adds ``command``, else every one once."""
    entries = sorted(entry_points(group="unbroken.commands"), key=lambda e: e.name)
    wanted = [e for e in entries if e.name == command] or entries
    unique = dict.fromkeys(e.value for e in wanted)  # one register function may add several
    by_value = {e.value: e for e in wanted}
    return [by_value[value].load() for value in unique]


def main(argv: list[str] | None = None) -> int:
    """Run one ``unbroken`` command and return its exit code."""
    from ._errors import UnbrokenError

    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    try:
        return int(args.run(args) or EXIT_OK)
    except UnbrokenError as e:  # every error unbroken raises on purpose says what and where
        print(f"unbroken {args.command}: {e}", file=sys.stderr)
        return EXIT_ERROR
    except FileNotFoundError as e:
        print(f"unbroken {args.command}: {e}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print(f"unbroken {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader went away (`unbroken query ... | head`): not an error
        _silence_stdout()
        return EXIT_OK


def _silence_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's final flush cannot fail again."""
    import os

    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


if __name__ == "__main__":
    sys.exit(main())

"""The README's command-line reference, generated from the parsers themselves.

``python -m load._clidocs README.md`` rewrites the text between the
``<!-- cli-reference:begin -->`` and ``<!-- cli-reference:end -->`` markers
with every command's ``--help`` (``make docs`` runs it); ``--check`` exits 1
when the README is stale, and a test runs that check, so the reference
cannot drift from the code.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterator
from pathlib import Path

BEGIN = "<!-- cli-reference:begin -->"
END = "<!-- cli-reference:end -->"
WIDTH = "100"  # argparse wraps to $COLUMNS; fix it so the text is the same everywhere


def _subparsers(parser: argparse.ArgumentParser) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    for action in parser._actions:  # argparse offers no public walk over subcommands
        if isinstance(action, argparse._SubParsersAction):
            yield from action.choices.items()


def _walk(parser: argparse.ArgumentParser, path: str) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    yield path, parser
    for name, child in _subparsers(parser):
        yield from _walk(child, f"{path} {name}")


def reference() -> str:
    """Markdown: one section per command and subcommand, each its ``--help`` text."""
    previous = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = WIDTH
    try:
        from eventstore.cli import build_parser

        parts = []
        for path, parser in _walk(build_parser(), "unbroken"):
            parser.prog = path
            level = "###" if path.count(" ") <= 1 else "####"
            parts.append(f"{level} `{path}`\n\n```text\n{parser.format_help().rstrip()}\n```\n")
        return "\n".join(parts)
    finally:
        if previous is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = previous


def render(readme: str) -> str:
    """``readme`` with its reference section replaced by the current one."""
    head, begin, rest = readme.partition(BEGIN)
    _, end, tail = rest.partition(END)
    if not begin or not end:
        raise ValueError(f"README has no {BEGIN} ... {END} section")
    return f"{head}{BEGIN}\n{reference()}{END}{tail}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m load._clidocs", description=__doc__.split("\n\n")[0])
    parser.add_argument("readme", type=Path)
    parser.add_argument("--check", action="store_true", help="exit 1 if the README is stale; change nothing")
    args = parser.parse_args(argv)
    text = args.readme.read_text()
    fresh = render(text)
    if args.check:
        if fresh != text:
            print(f"{args.readme}: the CLI reference is stale; run `make docs`", file=sys.stderr)
            return 1
        return 0
    args.readme.write_text(fresh)
    return 0


if __name__ == "__main__":
    sys.exit(main())

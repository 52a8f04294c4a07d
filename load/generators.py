"""Seeded generators of production-like event logs (JSON Lines, the import format of docs/architecture.md).

``generate_arrears`` simulates an energy supplier's book: daily meter readings
with device time and head-end lag (some meters upload in delayed batches,
a few have clocks running ahead, outages are covered by estimated readings),
monthly statements (some provisional until reconciled), payments (some
duplicated by webhook retries, some reversed), vulnerability flags, bank
holidays and the acks of a legacy notice system; with ``scenarios=True`` the
first accounts are each built to contain one awkward situation of the catalogue
(``SCENARIOS``), so even a small log reaches every arrears scenario.
``generate_bulk`` writes a
simpler log of any size fast, for benchmarks. Same arguments, same bytes.
"""

from __future__ import annotations

import datetime as dt
import heapq
import os
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path

import msgspec

from ._arrears_model import SCENARIO_NAMES, Shares, simulate_account
from ._bulk import bulk_lines
from ._calendar import calendar_stream


class ArrearsProfile(msgspec.Struct, frozen=True, kw_only=True):
    """What to generate: how many accounts over how many days from ``start``, with which seed.

    ``scenarios``: account ``i`` (for ``i`` below the number of scenarios, 13)
    is built to contain scenario ``SCENARIO_NAMES[i]``, every one of them in
    arrears; the rest are simulated as usual. It needs ``days >= 30`` to
    play every scenario out. Off (the default), the log is as it always was.
    """

    accounts: int = 2000
    days: int = 90
    seed: int = 0
    start: str = "2024-01-01"
    scenarios: bool = False

    def __post_init__(self) -> None:
        if self.accounts < 1 or self.days < 1:
            raise ValueError(f"accounts and days must be >= 1, got {self.accounts} and {self.days}")
        dt.date.fromisoformat(self.start)  # raises ValueError naming the bad date


class GenerateSummary(msgspec.Struct, frozen=True):
    """What a generator wrote: where, from which seed, how many events of each type."""

    path: str
    seed: int
    events: int
    types: dict[str, int]


def arrears_lines(profile: ArrearsProfile) -> Iterator[bytes]:
    """The lines of the arrears log in receive order (what ``generate_arrears`` writes)."""
    start = dt.date.fromisoformat(profile.start)
    writers = [calendar_stream(profile.seed, start, profile.days)]
    for idx in range(profile.accounts):
        scenario = scenario_of(profile, idx)
        writers.append(simulate_account(profile.seed, idx, start, profile.days, Shares(), scenario))
    # Each stream's items are sorted on their own; a k-way merge keeps the global order cheap.
    for _, _, _, line in heapq.merge(*(sorted(w.items) for w in writers)):
        yield line


def scenario_of(profile: ArrearsProfile, idx: int) -> str | None:
    """The scenario account ``idx`` is built to contain, or None for an ordinary account."""
    if profile.scenarios and idx < len(SCENARIO_NAMES):
        return SCENARIO_NAMES[idx]
    return None


def generate_arrears(out: str | os.PathLike, profile: ArrearsProfile) -> GenerateSummary:
    """Write the arrears log for ``profile`` to ``out``; the same profile gives the same bytes."""
    return _write(Path(out), profile.seed, arrears_lines(profile))


def generate_bulk(
    out: str | os.PathLike, events: int, seed: int = 0, accounts: int | None = None
) -> GenerateSummary:
    """Write ``events`` arrears-shaped events to ``out`` quickly (about 1M in a few seconds)."""
    if events < 0:
        raise ValueError(f"events must be >= 0, got {events}")
    lines = (line.encode() for line in bulk_lines(events, seed, accounts))
    return _write(Path(out), seed, lines)


def _write(path: Path, seed: int, lines: Iterable[bytes]) -> GenerateSummary:
    types: Counter[str] = Counter()
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        for line in lines:
            f.write(line)
            types[_type_of_line(line)] += 1
    return GenerateSummary(str(path), seed, sum(types.values()), dict(sorted(types.items())))


def _type_of_line(line: bytes) -> str:
    # Every generated line has "type" as its third key; slicing avoids a full JSON parse.
    start = line.index(b'"type":"') + 8
    return line[start : line.index(b'"', start)].decode()

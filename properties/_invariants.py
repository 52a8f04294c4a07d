"""Invariants: an id, a description, and SQL or Python that returns the rows breaking it.

An SQL invariant is a ``.sql`` file. Leading ``-- key: value`` comment lines
are its header::

    -- id: AR-2
    -- description: one notice per account and period
    -- batch: true
    SELECT run_id, ... FROM decisions WHERE ...

``id`` defaults to the file name, ``description`` to the first other comment
line. ``domain: arrears`` limits an invariant to projections of that domain
(a projection's ``domain`` attribute, else its ``name``): a domain's rules
mean nothing to another domain's projection. Without it an invariant applies
to every projection. The query runs in DuckDB over the trace tables of ``replay/_schema.py``
(``deliveries``, ``drops``, ``decisions``, ``timers``, ``faults``, ``runs``)
and ``events`` (the base log: ``run_id, position, event_id, stream, type,
source, occurred_at, recorded_at, data`` with ``data`` as JSON text, plus the
common payload fields ``account_id, payment_id, amount_minor, balance_minor,
due_at, provisional, flag, active, stage, notice_id`` as typed columns; join it
to ``deliveries`` on ``run_id`` and ``position``). Note
that ``at`` is a keyword in DuckDB: write ``d.at`` or ``"at"``.

``batch: true`` promises the query is correct over the tables of many runs at
once (it joins and groups on ``run_id`` and returns a ``run_id`` column); the
search then checks a whole batch of examples with one query. Without it, the
query sees one run at a time: slower, but any query is correct.

A Python invariant is a function ``check(trace) -> list[dict]`` over a
``properties.Trace``; it raises ``NotJudged`` for a run it cannot judge (INV-5
on a run where an event was lost), which the report counts as skipped, never
as held.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import msgspec

from eventstore import UnbrokenError

BUILTIN_DIR: Final = Path(__file__).with_name("invariants")
TABLE_NAMES: Final = ("runs", "deliveries", "drops", "decisions", "timers", "faults", "events")
_HEADER = re.compile(r"^--\s*([A-Za-z_]+)\s*:\s*(.*?)\s*$")


class NotJudged(UnbrokenError):  # noqa: N818 - a signal, not an error
    """Raised by a Python invariant for a run it does not apply to (counted as skipped)."""


class Verdict(msgspec.Struct, frozen=True):
    """One invariant judged on one run: ``valid`` is True, False, or None (unknown).

    ``rows`` are the violating rows (JSON-able dicts); ``error`` says why a
    verdict is unknown (the checker crashed, the query failed); ``skipped``
    says the run did not qualify (``valid`` is then True, vacuously).
    """

    valid: bool | None
    invariant: str
    rows: list[dict[str, Any]] = []
    error: str | None = None
    skipped: bool = False


@dataclass(frozen=True)
class Invariant:
    """A named property of a run. Exactly one of ``sql`` and ``check`` is set."""

    id: str
    description: str
    sql: str | None = None
    check: Callable[[Any], list[dict]] | None = None
    batch: bool = False
    source: str = "builtin"  # where it was defined, for error messages
    tables: frozenset[str] = field(default=frozenset())
    domains: frozenset[str] = field(default=frozenset())  # empty: applies to every projection

    def applies_to(self, domain: str | None) -> bool:
        """True when this invariant judges projections of ``domain`` (None: any projection)."""
        return not self.domains or domain is None or domain in self.domains

    def __post_init__(self) -> None:
        if (self.sql is None) == (self.check is None):
            raise ValueError(f"invariant {self.id!r}: give exactly one of sql= and check=")
        if self.sql is not None and not self.tables:
            object.__setattr__(self, "tables", tables_of(self.sql))


def tables_of(sql: str) -> frozenset[str]:
    """The trace tables a query mentions (so only those are handed to DuckDB)."""
    words = set(re.findall(r"[A-Za-z_]+", _strip_comments(sql).lower()))
    return frozenset(t for t in TABLE_NAMES if t in words)


def _strip_comments(sql: str) -> str:
    return "\n".join(line.split("--", 1)[0] for line in sql.splitlines())


def parse_sql(text: str, name: str, source: str) -> Invariant:
    """An invariant from the text of a ``.sql`` file (see the module docstring).

    Raises ``ValueError`` naming ``source`` when the file holds no query.
    """
    header: dict[str, str] = {}
    notes: list[str] = []
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped:
            continue
        if not stripped.startswith("--"):
            break
        match = _HEADER.match(stripped)
        if match and match.group(1).lower() in ("id", "description", "batch", "domain"):
            header[match.group(1).lower()] = match.group(2)
        else:
            notes.append(stripped.lstrip("-").strip())
    query = _strip_comments(text).strip().rstrip(";").strip()
    if not query:
        raise ValueError(f"invariant file {source} holds no SQL query")
    return Invariant(
        id=header.get("id") or name,
        description=header.get("description") or (notes[0] if notes else ""),
        sql=query,
        batch=header.get("batch", "").lower() in ("true", "yes", "1"),
        source=source,
        domains=frozenset(n.strip() for n in header.get("domain", "").split(",") if n.strip()),
    )


def load_invariants(directory: str | Path) -> list[Invariant]:
    """Every ``*.sql`` invariant in ``directory``, sorted by file name.

    Raises ``FileNotFoundError`` if the directory does not exist and
    ``ValueError`` naming the file for an empty query or a repeated id.
    """
    root = Path(directory)
    if not root.is_dir():
        raise FileNotFoundError(f"invariant directory {root} does not exist")
    found = [
        parse_sql(path.read_text(encoding="utf-8"), path.stem, str(path))
        for path in sorted(root.glob("*.sql"))
    ]
    _check_unique(found)
    return found


def _check_unique(invariants: Sequence[Invariant]) -> None:
    seen: dict[str, str] = {}
    for inv in invariants:
        if inv.id in seen:
            raise ValueError(f"invariant id {inv.id!r} is defined twice: {seen[inv.id]} and {inv.source}")
        seen[inv.id] = inv.source


def builtin_invariants() -> list[Invariant]:
    """The built-in invariants: INV-1..INV-5 (docs/scenarios.md) and the arrears ones."""
    from . import _convergence  # it raises NotJudged, defined here

    inv5 = Invariant(id="INV-5", description=_convergence.DESCRIPTION,
                     check=_convergence.check_convergence)
    return [*load_invariants(BUILTIN_DIR), inv5]


def resolve(
    invariants: Iterable[Invariant | str | Path] | str | Path | None, domain: str | None = None,
) -> list[Invariant]:
    """Turn what a caller passed into invariants.

    ``None`` means the built-ins that apply to projections of ``domain``
    (None: all of them); a directory path means those plus every ``.sql`` file in it;
    a list may mix ``Invariant`` objects, ids of built-ins and directories,
    taken as given. Raises ``ValueError`` for an unknown id.
    """
    if invariants is None:
        return [inv for inv in builtin_invariants() if inv.applies_to(domain)]
    if isinstance(invariants, (str, Path)):
        invariants = [*(inv for inv in builtin_invariants() if inv.applies_to(domain)), invariants]
    known = {inv.id: inv for inv in builtin_invariants()}
    out: list[Invariant] = []
    for item in invariants:
        if isinstance(item, Invariant):
            out.append(item)
        elif isinstance(item, str) and item in known:
            out.append(known[item])
        elif Path(item).is_dir():
            out.extend(load_invariants(item))
        else:
            raise ValueError(
                f"invariant {item!r} is neither a built-in id ({', '.join(known)}) nor a directory"
            )
    _check_unique(out)
    return out

"""Counterexamples on disk: a trace directory plus what it takes to replay it without Hypothesis.

Layout of a counterexample directory (itself a trace directory, so
``unbroken query DIR "SQL"`` works on it)::

    runs.parquet deliveries.parquet ... violations.parquet   the replay's trace
    events.jsonl          the (shrunk) log, exact: ids, positions, times, data bytes
    schedule.json         the delivery schedule (``Schedule.from_json``)
    counterexample.json   invariant, projection spec and config, seed, digest, rows
    invariant.sql         the invariant's query, when it is SQL
    timeline.txt          the readable timeline
    test_counterexample.py   a pytest regression test: fails until the bug is fixed

``replay_counterexample(DIR)`` (and ``unbroken check --replay DIR``) rebuilds
the projection, replays the log under the schedule, checks the invariant and
compares the digest: the same violation, exactly. ``unbroken replay
--counterexample DIR`` replays the recorded deliveries without properties/ and
compares the digest.

A counterexample directory is data that people pass around, so replaying one
runs no code it names: ``invariant.sql`` runs in the read-only query sandbox
(as every invariant does), the projection in ``counterexample.json`` is built
only when it is a registered one (anything else, a ``FILE.py:ATTR``, must be
named by the caller: ``--projection`` / ``projection=``), and no file outside
the directory is read (a symlink out is refused). A ``FILE.py`` projection is
saved with its absolute path, and ``test_counterexample.py`` names it, so both
replay from any directory. ``test_counterexample.py`` is code: read it before
running a counterexample someone sent you.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import pyarrow as pa
import pyarrow.parquet as pq

from replay import read_recorded, write_recorded
from replay.core import portable_spec, saved_file, saved_projection

from ._evaluate import Evaluator
from ._examples import LogContext
from ._invariants import Invariant, Verdict, builtin_invariants, parse_sql
from ._schedules import Schedule
from ._spec import factory_of
from ._timeline import render_rows, render_timeline
from ._trace import Trace

COUNTEREXAMPLE_RUN = "counterexample"


class SavedMeta(msgspec.Struct, kw_only=True):
    """``counterexample.json``."""

    invariant: str
    description: str
    projection: str  # the spec: a registered name or FILE.py:ATTR
    config: dict[str, Any]
    seed: int | None
    digest: str
    events: int
    rows: list[dict[str, Any]]


def save(directory: Path, trace: Trace, invariant: Invariant, verdict: Verdict, spec: str,
         config: dict, seed: int | None) -> None:
    """Write a counterexample directory (see the module docstring) around ``trace``.

    ``trace`` must have been replayed with ``trace_dir=directory`` and run id
    ``COUNTEREXAMPLE_RUN`` (what ``replay_counterexample`` uses), and
    ``verdict`` judged on it, so a replay compares equal row for row.
    """
    spec = portable_spec(spec)  # a FILE.py path made absolute: the directory replays from anywhere
    events, schedule = list(trace.events), trace.schedule
    write_recorded(directory / "events.jsonl", events)
    (directory / "schedule.json").write_bytes(schedule.to_json() + b"\n")
    if invariant.sql is not None:
        header = f"-- id: {invariant.id}\n-- description: {invariant.description}\n"
        (directory / "invariant.sql").write_text(header + invariant.sql + "\n", encoding="utf-8")
    meta = SavedMeta(invariant=invariant.id, description=invariant.description, projection=spec,
                     config=config, seed=seed, digest=trace.result.digest, events=len(events),
                     rows=verdict.rows)
    (directory / "counterexample.json").write_bytes(msgspec.json.format(msgspec.json.encode(meta)))
    _write_violations(directory, trace.run_id, invariant, verdict)
    (directory / "timeline.txt").write_text(
        render_timeline(trace, verdict.rows, invariant.id) + "\n", encoding="utf-8")
    (directory / "test_counterexample.py").write_text(_regression_test(invariant, spec), encoding="utf-8")


def _write_violations(directory: Path, run_id: str, invariant: Invariant, verdict: Verdict) -> None:
    """Fill the trace's ``violations`` table with the invariant's rows (schema: replay/_schema.py)."""
    rows = [msgspec.json.encode(r).decode() for r in verdict.rows]
    table = pa.table({
        "run_id": pa.array([run_id] * len(rows), pa.string()),
        "invariant": pa.array([invariant.id] * len(rows), pa.string()),
        "description": pa.array([invariant.description] * len(rows), pa.string()),
        "row": pa.array(rows, pa.string()),
    })
    pq.write_table(table, directory / "violations.parquet", compression="zstd")


def _regression_test(invariant: Invariant, spec: str) -> str:
    name = "".join(c if c.isascii() and c.isalnum() else "_" for c in invariant.id)
    title = "".join(c if c.isprintable() and c not in "\\\"" else "?" for c in invariant.id)
    return f'''"""Regression test written by `unbroken check`: {title} broke on the example here.

It replays the saved log under the saved schedule and fails until the projection is fixed.
It runs from any directory: the counterexample is found next to this file, and the
projection is named here (a saved file never chooses code to run on its own).
"""

from pathlib import Path

from properties import replay_counterexample

PROJECTION = {spec!r}


def test_counterexample_{name}():
    outcome = replay_counterexample(Path(__file__).resolve().parent, projection=PROJECTION)
    assert outcome.verdict.valid is True, outcome.render()
'''


def replay_command(directory: str | Path) -> str:
    """The command that replays the counterexample saved in ``directory`` (``--projection`` when needed)."""
    from projections import names

    try:
        spec = msgspec.json.decode((Path(directory) / "counterexample.json").read_bytes(), type=SavedMeta).projection
    except (OSError, ValueError):
        spec = None
    extra = f" --projection {spec}" if spec and spec not in names() else ""
    return f"unbroken check --replay {directory}{extra}"


@dataclass
class ReplayOutcome:
    """A saved counterexample replayed: the verdict now, and whether the run is byte-identical."""

    meta: SavedMeta
    verdict: Verdict
    digest: str
    timeline: str

    @property
    def same_run(self) -> bool:
        """True when the replay's digest equals the saved one (same deliveries and decisions)."""
        return self.digest == self.meta.digest

    @property
    def reproduced(self) -> bool:
        """True when the invariant breaks again with the same rows on the same run."""
        return self.same_run and self.verdict.valid is False and self.verdict.rows == self.meta.rows

    def render(self) -> str:
        """What happened, in words."""
        state = {True: "holds now", False: "is broken", None: "could not be judged"}[self.verdict.valid]
        lines = [
            f"{self.meta.invariant} {state} on the saved counterexample "
            f"({self.meta.events} events, projection {self.meta.projection})",
            "same run as saved (digest matches)" if self.same_run
            else f"run differs from the saved one: digest {self.digest[:12]} != {self.meta.digest[:12]}",
        ]
        if self.verdict.error:
            lines.append(f"error: {self.verdict.error}")
        lines += [f"  {r}" for r in render_rows(self.verdict.rows)]
        lines += ["timeline:", self.timeline]
        return "\n".join(lines)


def replay_counterexample(directory: str | Path, projection: Any = None) -> ReplayOutcome:
    """Replay a saved counterexample without Hypothesis and judge its invariant again.

    ``projection`` overrides the saved spec (a name, FILE.py:ATTR, a factory);
    without it the saved spec is used only when it is a registered projection
    (``replay.core.UntrustedProjectionError`` otherwise, saying how to name it).
    Raises ``FileNotFoundError`` / ``ValueError`` naming the file when the directory
    is incomplete, ``ReplayError`` when one of its files leads outside it.
    """
    root = Path(directory)
    meta_path = saved_file(root, "counterexample.json")
    if not meta_path.is_file():
        raise FileNotFoundError(f"{root} is not a counterexample directory (no counterexample.json)")
    try:
        meta = msgspec.json.decode(meta_path.read_bytes(), type=SavedMeta)
    except msgspec.DecodeError as e:  # ValidationError too
        raise ValueError(f"{meta_path} is not a saved counterexample's description: {e}") from e
    if projection is None:
        projection = saved_projection(meta.projection, None, str(meta_path))
    events = read_recorded(saved_file(root, "events.jsonl"))
    schedule = Schedule.from_json(saved_file(root, "schedule.json").read_bytes())
    invariant = _saved_invariant(root, meta)
    factory = factory_of(projection, meta.config)
    trace = LogContext(events, factory, seed=meta.seed).trace(schedule, COUNTEREXAMPLE_RUN)
    evaluator = Evaluator([invariant])
    try:
        verdict = evaluator.evaluate([trace])[0][invariant.id]
    finally:
        evaluator.close()
    timeline = render_timeline(trace, verdict.rows, invariant.id)
    return ReplayOutcome(meta, verdict, trace.result.digest, timeline)


def _saved_invariant(root: Path, meta: SavedMeta) -> Invariant:
    sql = saved_file(root, "invariant.sql")
    if sql.is_file():  # runs in the read-only sandbox, like every invariant
        return parse_sql(sql.read_text(encoding="utf-8"), meta.invariant, str(sql))
    for inv in builtin_invariants():
        if inv.id == meta.invariant:
            return inv
    raise ValueError(f"{root}: invariant {meta.invariant!r} has no invariant.sql and is not built in")

"""Replay one log through two projections (or two configurations) and compare decisions.

Decisions are matched by what caused them, not by seq: two projections may
fire different timers, which shifts seqs. A decision's cause is the delivery
(event position and copy) or the timer (key and due time) it was made in.
Equal decisions pair up one to one (the n-th equal decision on each side);
what is left over on either side is the difference.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import msgspec
import polars as pl

from replay._delivery import Delivery
from replay._errors import ReplayError

from ._runner import RunResult, run

COMPARED = ["cause", "at", "kind", "subject", "action", "status", "reasons", "confidence",
            "min_confidence", "effect_key", "external", "irreversible", "input_time",
            "freshness_ns", "hold_until"]


class DiffReport(msgspec.Struct, frozen=True, kw_only=True):
    """Where two replays of one log part ways.

    ``first_a``/``first_b`` are the earliest decisions only one side made
    (None when that side has none); ``summary`` counts the differing decisions
    by kind and reason (columns kind, reason, only_a, only_b).
    """

    a: str
    b: str
    same: bool
    decisions_a: int
    decisions_b: int
    only_a: pl.DataFrame
    only_b: pl.DataFrame
    summary: pl.DataFrame
    first_a: dict | None
    first_b: dict | None
    state_equal: bool

    def describe(self) -> str:
        """A few lines for a person: same, or the first divergence and the summary."""
        head = f"{self.a} ({self.decisions_a} decisions) vs {self.b} ({self.decisions_b})"
        if self.same:
            return f"{head}: same decisions" + ("" if self.state_equal else "; final states differ")
        lines = [f"{head}: {self.only_a.height} decisions only in A, {self.only_b.height} only in B",
                 f"  first only in A: {_short(self.first_a)}",
                 f"  first only in B: {_short(self.first_b)}", "  by kind and reason:"]
        lines += [f"    {r['kind']:<16} {r['reason']:<24} A {r['only_a']:>6}  B {r['only_b']:>6}"
                  for r in self.summary.iter_rows(named=True)]
        return "\n".join(lines)


def _short(row: dict | None) -> str:
    if row is None:
        return "-"
    keys = ("at", "cause", "kind", "subject", "action", "status", "reasons")
    return ", ".join(f"{k}={row[k]}" for k in keys)


def diff_projections(
    deliveries: Iterable[Delivery] | Callable[[], Iterable[Delivery]],
    a: Any,
    b: Any,
    **run_options: Any,
) -> DiffReport:
    """Replay ``deliveries`` through ``a`` and ``b`` and report how their decisions differ.

    ``deliveries`` is a list or tuple, or a callable giving a fresh iterable
    each time. Run options go to both runs.
    """
    ra, rb = (_replay(deliveries, p, label, run_options) for p, label in ((a, "a"), (b, "b")))
    da, db = decisions_by_cause(ra), decisions_by_cause(rb)
    only_a = da.join(db, on=[*COMPARED, "nth"], how="anti", nulls_equal=True).sort("seq")
    only_b = db.join(da, on=[*COMPARED, "nth"], how="anti", nulls_equal=True).sort("seq")
    return DiffReport(
        a=_label(ra), b=_label(rb), same=only_a.is_empty() and only_b.is_empty(),
        decisions_a=da.height, decisions_b=db.height, only_a=only_a, only_b=only_b,
        summary=summarize(only_a, only_b),
        first_a=only_a.row(0, named=True) if only_a.height else None,
        first_b=only_b.row(0, named=True) if only_b.height else None,
        state_equal=_same_state(ra.state, rb.state),
    )


def _same_state(a: Any, b: Any) -> bool:
    """Equal final states: by their MessagePack bytes, else (a state msgpack cannot encode) by ==."""
    try:
        return msgspec.msgpack.encode(a) == msgspec.msgpack.encode(b)
    except (TypeError, ValueError, OverflowError):
        try:
            return bool(a == b)
        except Exception:  # an == that raises: say "different" rather than crash the diff
            return False


def _replay(deliveries, projection, label: str, options: dict) -> RunResult:
    if callable(deliveries):
        deliveries = deliveries()
    elif not isinstance(deliveries, (list, tuple)):
        raise ReplayError("diff replays twice: pass a list of deliveries or a callable "
                          "returning a fresh iterable, not a one-shot iterator")
    return run(deliveries, projection, **dict(options, run_id=label, collect=True))


def _label(result: RunResult) -> str:
    runs = result.tables["runs"].row(0, named=True)
    config = "" if runs["config"] in ("{}", "") else f" {runs['config']}"
    return f"{runs['projection']}@{runs['version']}{config}"


def decisions_by_cause(result: RunResult) -> pl.DataFrame:
    """The run's decisions with a seq-free ``cause`` and ``nth`` (rank among equal decisions)."""
    t = result.tables
    causes = pl.concat([
        t["deliveries"].select(pl.col("seq").alias("cause_seq"), pl.format(
            "event {}#{}", "position", "copy").alias("cause")),
        t["timers"].filter(pl.col("fired_seq").is_not_null()).select(
            pl.col("fired_seq").alias("cause_seq"),
            pl.format("timer {}@{}", "key", "due_at").alias("cause")),
    ])
    decisions = t["decisions"].join(causes, on="cause_seq", how="left").sort("seq")
    return decisions.with_columns(pl.col("seq").cum_count().over(COMPARED).alias("nth"))


def summarize(only_a: pl.DataFrame, only_b: pl.DataFrame) -> pl.DataFrame:
    """Differing decisions counted by kind and reason code, one row per pair."""
    def count(frame: pl.DataFrame, side: str) -> pl.DataFrame:
        exploded = frame.select("kind", pl.col("reasons").list.first().fill_null("(none)")
                                .alias("reason")) if frame.is_empty() else frame.select(
            "kind", "reasons").explode("reasons").select(
            "kind", pl.col("reasons").fill_null("(none)").alias("reason"))
        return exploded.group_by("kind", "reason").agg(pl.len().cast(pl.Int64).alias(side))

    joined = count(only_a, "only_a").join(count(only_b, "only_b"), on=["kind", "reason"],
                                          how="full", coalesce=True)
    return joined.with_columns(pl.col("only_a", "only_b").fill_null(0)).sort(
        ["kind", "reason"])

"""Aimed search (properties/_targets.py): by type, by subject, by the unperturbed trace; honest reports."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import seed as hypothesis_seed

import projections
import replay
from projections.payloads import AccountBalance, MeterReading
from properties import DropEvent, LogBuilder, Schedule, check
from properties._logs import DAY, HOUR, MINUTE, SECOND, START
from properties._strategies import DEFAULT_POLICY, SchedulePolicy, search_schedules
from properties._targets import Targets, subject_of

from .logs import flaw_log

ROOT = Path(__file__).resolve().parents[2]
MORE = ROOT / "examples" / "flawed_arrears_more.py"
OLD = ROOT / "examples" / "flawed_arrears.py"



@pytest.fixture(scope="module")
def log():
    return flaw_log()


@pytest.fixture(scope="module")
def targets(log):
    return Targets(log, replay.run(replay.deliveries_of(log), projections.get("arrears")))


def test_subject_is_the_payload_account_else_none(log):
    assert subject_of(log[0]) == "AC000000"
    b = LogBuilder()
    b.add("calendar", MeterReading("M", "", 1.0), START, START, "x")  # an empty id names nothing
    assert subject_of(b.build()[0]) is None


def test_a_rare_type_is_as_likely_as_a_common_one():
    b = LogBuilder()
    b.add("account-1", AccountBalance("A1", 9000), START, START + SECOND, "billing")
    for d in range(300):
        t = START + d * HOUR
        b.add("account-1", MeterReading("M1", "A1", float(d)), t, t + MINUTE, "meter")
    log = b.build()
    whole = Targets(log).whole
    by_type = Counter(log[whole.pick(code * 4 + 1)[1]].type for code in range(2000))
    assert 0.4 < by_type["AccountBalance"] / 2000 < 0.6  # uniform over events: 1 in 301


def test_priority_drops_what_released_decisions_rest_on_subjects_taking_turns(log, targets):
    first = targets.priority(DEFAULT_POLICY)
    assert first and all(len(s.perturbations) == 1 for s in first)
    released = [d for d in base_decisions(log) if d["status"] == "released"]
    cited = {e.position for e in log if str(e.id) in {i for d in released for i in d["inputs"]}}
    subjects = {d["subject"] for d in released}
    opening = first[:len(subjects)]  # one turn: each subject's rarest cited event, dropped
    assert all(isinstance(s.perturbations[0], DropEvent) for s in opening)
    assert {s.perturbations[0].position for s in opening} <= cited
    assert len({subject_of(at(log, s)) for s in opening}) == len(subjects)
    assert len({s.to_json() for s in first}) == len(first)  # no schedule twice


def base_decisions(log):
    result = replay.run(replay.deliveries_of(log), projections.get("arrears"))
    return result.tables["decisions"].to_dicts()


def at(log, schedule):
    position = schedule.perturbations[0].position
    return next(e for e in log if e.position == position)


def test_priority_moves_replay_exactly_from_their_saved_form(log, targets):
    for schedule in targets.priority(DEFAULT_POLICY)[:12]:
        again = Schedule.from_json(schedule.to_json())
        assert again.apply(log) == schedule.apply(log)


def test_priority_respects_the_policy(targets):
    only = SchedulePolicy(kinds=("duplicate",))
    kinds = {type(p).__name__ for s in targets.priority(only) for p in s.perturbations}
    assert kinds == {"Duplicate"}


def test_focused_schedules_aim_at_one_subject_and_stay_sparse(log, targets):
    subject = {e.position: subject_of(e) or e.stream for e in log}
    drawn: list[Schedule] = []

    @settings(max_examples=300, database=None, deadline=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @hypothesis_seed(3)
    @given(search_schedules(log, DEFAULT_POLICY, targets))
    def collect(s):
        drawn.append(s)

    collect()
    assert all(len(s.perturbations) <= DEFAULT_POLICY.max_perturbations for s in drawn)
    one_subject = [s for s in drawn if len(s.perturbations) > 2
                   and len({subject[p.position] for p in s.perturbations if hasattr(p, "position")}) == 1]
    assert len(one_subject) > len(drawn) // 8  # half aim at one subject; chance alone: ~1 in 16
    for s in drawn:
        s.apply(log)  # every drawn schedule applies to the log


def provisional_log():
    """One account's provisional statement, reconciled hours later; readings of 19 more accounts."""
    b = LogBuilder()
    for a in range(20):
        acct, stream = f"AC{a:06d}", f"account-{a:06d}"
        if a == 7:
            at = START + 2 * HOUR
            b.add(stream, AccountBalance(acct, 9000, provisional=True, due_at=at + DAY), at, at + SECOND,
                  "billing")
            at += 6 * HOUR
            b.add(stream, AccountBalance(acct, 9100, due_at=at + DAY), at, at + SECOND, "billing")
        for d in range(5):
            t = START + d * DAY + 30 * MINUTE + a * SECOND
            b.add(stream, MeterReading(f"MTR{a:06d}", acct, 1000.0 + d), t, t + MINUTE, "meter")
    return b.build()


def test_a_lost_event_stays_in_the_counterexample_as_a_drop():
    log = provisional_log()
    report = check(log, f"{MORE}:releases_provisional", examples=40, seed=0)
    result = next(r for r in report.results if r.id == "SM-AR-011")
    assert result.status == "broken" and result.first_broken_example > 1
    assert result.first_broken_seconds is not None and result.first_broken_seconds > 0
    cx = result.counterexample
    assert cx.events <= 4 and [type(p) for p in cx.schedule.perturbations] == [DropEvent]
    assert "never delivered" in cx.timeline and "unperturbed log breaks it" not in cx.render()


def test_the_report_counts_skipped_apart_and_names_the_first_failure(log):
    report = check(log, f"{OLD}:counts_duplicate_payments", examples=120, seed=0)
    by_id = {r.id: r for r in report.results}
    inv5 = by_id["INV-5"]
    assert inv5.status == "broken" and inv5.skipped > 0
    assert inv5.examples + inv5.skipped == report.examples
    assert 1 < inv5.first_broken_example <= report.examples
    assert "first broken" in report.render() and f"example {inv5.first_broken_example} at" in report.render()


def test_an_invariant_never_judged_is_skipped_not_held_nor_unknown(log):
    lossy = SchedulePolicy(kinds=("drop",))
    report = check(log, "arrears", examples=30, seed=0, policy=lossy, invariants=["INV-5", "AR-1"])
    by_id = {r.id: r for r in report.results}
    assert by_id["INV-5"].examples == 0 and by_id["INV-5"].status == "skipped"
    assert report.exit_code() == 0  # skipped is no failure, and no unknown either


def test_a_refused_unperturbed_run_leaves_the_search_aiming_by_the_log_alone(log):
    calls = []

    def factory():  # the probe gets a projection; every run after it is refused
        calls.append(1)
        if len(calls) > 1:
            raise RuntimeError("no projection today")
        return projections.get("arrears")

    report = check(log, factory, examples=10, seed=0, invariants=["AR-1"])
    assert report.examples == 10 and report.problems.aborted_runs == 10
    assert report.exit_code() == 3  # unknown, not a crash of the check itself

"""Invariants: each built-in catches what it names and passes what it should; checkers fail soft."""

from __future__ import annotations

import pytest

from properties import (
    Delay,
    DropEvent,
    Evaluator,
    Invariant,
    LogContext,
    Schedule,
    builtin_invariants,
    load_invariants,
)
from properties._invariants import parse_sql, resolve, tables_of

from .scripted import SECOND, Scripted, notice, script_log

BUILTIN = {inv.id: inv for inv in builtin_invariants()}


def judge(log, inv_id, schedule=Schedule(), projection=None, invariants=None):
    inv = BUILTIN[inv_id] if invariants is None else invariants[0]
    ctx = LogContext(log, lambda: projection or Scripted())
    evaluator = Evaluator([inv])
    try:
        return evaluator.evaluate([ctx.trace(schedule, "t")])[0][inv.id]
    finally:
        evaluator.close()


def hold(key="k1", window_s=60):
    return notice("held", key, hold_until_offset=window_s * SECOND)


def test_builtins_are_the_documented_set():
    # Other domains' invariants (HY-, TR-, GRID-...) are their own tests' business.
    arrears = sorted(i for i, inv in BUILTIN.items() if inv.domains <= {"arrears"})
    assert arrears == ["AR-1", "AR-2", "AR-3", "AR-4", "AR-5",
                       "INV-1", "INV-2", "INV-3", "INV-4", "INV-5",
                       "SM-AR-006", "SM-AR-009", "SM-AR-010", "SM-AR-011"]
    assert all(inv.batch for inv in BUILTIN.values() if inv.sql)


@pytest.mark.parametrize(("decision", "valid", "problem"), [
    (notice("released"), True, None),
    (notice("released", input_time_offset=-2 * 3600 * SECOND), False, "input older than its freshness bound"),
    (notice("released", freshness_ns=None), False, "freshness not stated"),
    (notice("held", input_time_offset=-2 * 3600 * SECOND), True, None),  # not effective
])
def test_INV_1_freshness(decision, valid, problem):
    v = judge(script_log(decision), "INV-1")
    assert v.valid is valid
    assert [r["problem"] for r in v.rows] == ([problem] if problem else [])


def test_INV_2_confidence():
    assert judge(script_log(notice("released", confidence=0.5)), "INV-2").valid is False
    internal = dict(notice("proposed"), external=False, min_confidence=0.95)
    v = judge(script_log(internal, notice("released")), "INV-2")
    assert v.valid is False and v.rows[0]["problem"].startswith("external bar not above")
    assert judge(script_log(notice("released")), "INV-2").valid is True


@pytest.mark.parametrize(("steps", "valid", "problem"), [
    ([hold(window_s=60), notice("released")], True, None),  # released 60 s later: window over
    ([notice("released")], False, "released without a hold"),
    ([hold(window_s=3600), notice("released")], False, "released before its hold window ended"),
    ([hold(), notice("cancelled"), notice("released")], False,
     "released after a cancel without a new hold"),
    ([hold(), notice("cancelled"), hold(), notice("released")], True, None),
])
def test_INV_3_reversibility(steps, valid, problem):
    v = judge(script_log(*steps), "INV-3")
    assert v.valid is valid
    assert [r["problem"] for r in v.rows] == ([problem] if problem else [])


def test_INV_4_idempotency():
    v = judge(script_log(notice("released"), notice("released")), "INV-4")
    assert v.valid is False and v.rows[0]["effects"] == 2 and v.rows[0]["seq"] == 1
    assert judge(script_log(notice("released", "a"), notice("released", "b")), "INV-4").valid
    assert judge(script_log(notice("released", key=None)), "INV-4").valid is False


def test_INV_5_convergence_needs_every_event_to_arrive():
    log = script_log(None, None, None)
    late = Schedule((Delay(1, 150 * SECOND),))
    v = judge(log, "INV-5", late)
    assert v.valid is False and v.rows[0]["path"].startswith("state")
    assert judge(log, "INV-5", late, Scripted(convergent=True)).valid is True
    dropped = Schedule((Delay(1, 150 * SECOND), DropEvent(3)))
    assert judge(log, "INV-5", dropped).valid is True  # not every event arrived: not judged


def test_crashing_checker_is_unknown_not_fatal():
    def boom(trace):
        raise RuntimeError("checker bug")

    crashing = Invariant("X-1", "crashes", check=boom)
    v = judge(script_log(None), "", invariants=[crashing])
    assert v.valid is None and "checker bug" in v.error


def test_bad_sql_is_unknown_with_the_error():
    bad = Invariant("X-2", "typo", sql="SELEC * FROM decisions")
    v = judge(script_log(None), "", invariants=[bad])
    assert v.valid is None and "X-2" in v.error and "SELEC" in v.error


def test_batch_query_without_run_id_is_unknown():
    inv = Invariant("X-3", "no run id", sql="SELECT seq FROM decisions", batch=True)
    ctx = LogContext(script_log(notice("released")), Scripted)
    traces = [ctx.trace(Schedule(), f"r{i}") for i in range(2)]
    verdicts = Evaluator([inv]).evaluate(traces)
    assert all(v["X-3"].valid is None and "run_id" in v["X-3"].error for v in verdicts)


def test_batch_and_single_run_verdicts_agree():
    log = script_log(hold(), notice("released"), notice("released"), None)
    ctx = LogContext(log, Scripted)
    schedules = [Schedule(), Schedule((Delay(2, 30 * SECOND),)), Schedule((DropEvent(2),)),
                 Schedule((Delay(3, 400 * SECOND),))]
    traces = [ctx.trace(s, f"r{i}") for i, s in enumerate(schedules)]
    evaluator = Evaluator(list(BUILTIN.values()))
    together = evaluator.evaluate(traces)
    alone = [evaluator.evaluate([t])[0] for t in traces]
    assert together == alone
    assert any(v.valid is False for verdicts in together for v in verdicts.values())


def test_sql_file_header_and_tables(tmp_path):
    text = "-- id: MY-1\n-- description: no blocked decisions\n-- batch: yes\nSELECT run_id, seq FROM decisions d WHERE status = 'blocked' -- trailing\n"
    inv = parse_sql(text, "file", "x.sql")
    assert (inv.id, inv.description, inv.batch, inv.tables) == (
        "MY-1", "no blocked decisions", True, frozenset({"decisions"}))
    assert tables_of("SELECT 1 FROM deliveries l JOIN events e ON true") == {"deliveries", "events"}
    (tmp_path / "b_second.sql").write_text("-- a note\nSELECT * FROM drops\n")
    (tmp_path / "a_first.sql").write_text(text)
    loaded = load_invariants(tmp_path)
    assert [i.id for i in loaded] == ["MY-1", "b_second"]
    assert loaded[1].description == "a note" and loaded[1].batch is False
    assert [i.id for i in resolve(tmp_path)][-2:] == ["MY-1", "b_second"]


def test_sql_dir_errors_name_the_file(tmp_path):
    (tmp_path / "empty.sql").write_text("-- id: E\n")
    with pytest.raises(ValueError, match="empty.sql holds no SQL"):
        load_invariants(tmp_path)
    (tmp_path / "empty.sql").write_text("-- id: INV-1\nSELECT 1\n")
    with pytest.raises(ValueError, match="INV-1.*defined twice"):
        resolve(tmp_path)
    with pytest.raises(FileNotFoundError):
        load_invariants(tmp_path / "missing")


def test_user_invariant_runs_per_run_and_is_judged(tmp_path):
    (tmp_path / "no_blocked.sql").write_text("SELECT seq FROM decisions WHERE status = 'blocked'")
    inv = load_invariants(tmp_path)[0]
    assert judge(script_log(notice("blocked")), "", invariants=[inv]).valid is False
    assert judge(script_log(notice("held")), "", invariants=[inv]).valid is True

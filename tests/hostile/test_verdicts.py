"""A verdict never hides a failure; hostile projections end in clear errors, not tracebacks (EF-002).

`unbroken check` must not say "all invariants held" about a projection that
faulted, reads the wall clock or exits; `replay` must not exit 0 silently or
leave `.partial` files; timers at absurd times, states that cannot be
snapshot, decisions the trace cannot hold and busy loops end in a message
naming what and where. Exit codes mean what the help says.
"""

from __future__ import annotations

import math
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import msgspec
import pytest

import replay
from eventstore.cli import main
from projections import Decision, Status
from properties import Invariant, check
from properties._timeline import render_rows
from replay.trace import TABLES, load_trace

ROOT = Path(__file__).resolve().parents[2]
UNBROKEN = str(Path(sys.executable).with_name("unbroken"))
CASE = pytest.mark.case("EF-002")

HOSTILE = textwrap.dedent('''
    """Projections that misbehave on purpose, one per `mode`."""
    import math
    import random
    import time

    from projections import Decision, Status


    class Hostile:
        name = "hostile"
        domain = "pumps"
        version = "1"
        state_type = dict

        def __init__(self, mode="ok", value=None):
            self.mode, self.value = mode, value

        def config(self):
            return {"mode": self.mode}

        def initial(self):
            return {"n": 0, "seen": []}

        def apply(self, state, event, ctx):
            mode = self.mode
            seen = str(event.id) in state["seen"]
            state = {"n": state["n"] + 1, "seen": [*state["seen"], str(event.id)]}
            if mode == "raise":
                raise RuntimeError("boom")
            if mode == "none":
                return None
            if mode == "exit":
                raise SystemExit(0)
            if mode == "generator_exit":
                raise GeneratorExit()
            if mode == "raise_on_duplicate" and seen:
                raise ValueError("saw this event before")
            if mode == "clock":
                ctx.decide(Decision(kind="k", subject=str(time.time_ns()), action="a",
                                    status=Status.HELD))
            if mode == "random":
                ctx.decide(Decision(kind="k", subject=str(random.random()), action="a",
                                    status=Status.HELD))
            if mode == "timer":
                ctx.schedule(self.value, "t")
            if mode == "bad_decision":
                ctx.decide(Decision(kind=7, subject="s", action="a", status=Status.HELD))
            if mode == "unencodable":
                state["thing"] = object()
            if mode == "busy":
                while True:
                    pass
            return state

        def on_timer(self, state, timer, ctx):
            return state

        def convergent(self, state):
            return {}  # counts deliveries on purpose: only faults and verdicts are under test


    class NoOnTimer:
        name = "no-on-timer"
        version = "1"

        def initial(self):
            return 0

        def apply(self, state, event, ctx):
            ctx.schedule(ctx.now + 1, "wake")
            return state + 1


    class ExitsAtStart(Hostile):
        def initial(self):
            raise SystemExit(0)


    class BadConfig(Hostile):
        def config(self):
            return {"when": object()}


    def build(mode="ok", value=None):
        return Hostile(mode, value)


    def no_on_timer():
        return NoOnTimer()


    def exits_at_start():
        return ExitsAtStart()


    def bad_config():
        return BadConfig()
''')


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    """A small arrears log (24 events) and the hostile projections' module."""
    base = tmp_path_factory.mktemp("verdicts")
    log = base / "log.jsonl"
    assert main(["generate", "arrears", "--accounts", "3", "--days", "5", "--seed", "1",
                 "--out", str(log)]) == 0
    module = base / "hostile.py"
    module.write_text(HOSTILE)
    return {"log": log, "module": module, "base": base}


def spec(files, factory: str = "build") -> str:
    return f"{files['module']}:{factory}"


def unbroken(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """The real command in a subprocess (so SystemExit and signals behave as for a user)."""
    return subprocess.run([UNBROKEN, *args], capture_output=True, text=True, timeout=timeout,
                          cwd=ROOT)


def check_args(files, mode: str, *extra: str) -> list[str]:
    return ["check", "--log", str(files["log"]), "--projection", spec(files), "--config",
            f"mode={mode}", "--examples", "8", "--shrink-seconds", "1", *extra]


# -- check: faults, nondeterminism, aborted runs ------------------------------------------

@CASE
@pytest.mark.parametrize(("mode", "error"), [
    ("raise", "RuntimeError: boom"),
    ("none", "apply returned None"),
    ("exit", "SystemExit: 0"),
    ("generator_exit", "GeneratorExit"),
])
def test_EF_002_check_fails_with_FAULTS_naming_the_first_fault(files, capsys, mode, error):
    assert main(check_args(files, mode)) == 1
    out, err = capsys.readouterr()
    assert "all invariants held" not in out
    assert "FAULTS" in out and "FAULTS" in err
    first = err.split("first: ", 1)[1]
    assert "run e1 (the unperturbed log)" in first and "event at position 1 " in first
    assert error in first


@CASE
def test_EF_002_faults_only_under_perturbation_fail_the_check_too(files, capsys):
    # The unperturbed log never repeats an event; duplicated deliveries make the projection raise.
    code = main(check_args(files, "raise_on_duplicate", "--examples", "40"))
    out, err = capsys.readouterr()
    assert code == 1 and "FAULTS" in err and "saw this event before" in err
    assert "run e1 " not in err.split("first: ", 1)[1]  # the base run had no fault


@CASE
def test_EF_002_allow_faults_reports_them_as_their_own_verdict(files, capsys):
    assert main(check_args(files, "raise", "--allow-faults")) == 0
    out = capsys.readouterr().out
    assert "all invariants held, with FAULTS (allowed)" in out and "RuntimeError: boom" in out


@CASE
@pytest.mark.parametrize("mode", ["clock", "random"])
def test_EF_002_a_nondeterministic_projection_fails_the_check(files, capsys, mode):
    assert main(check_args(files, mode)) == 1
    out, err = capsys.readouterr()
    assert "NONDETERMINISTIC" in out and "NONDETERMINISTIC" in err
    assert "determinism  NONDETERMINISTIC" in out


@CASE
def test_EF_002_a_projection_exiting_makes_check_and_replay_fail_loudly_not_exit_0(files, tmp_path):
    done = unbroken(*check_args(files, "exit"))
    assert done.returncode == 1, done
    assert "FAULTS" in done.stdout and "SystemExit" in done.stderr
    trace = tmp_path / "trace"
    done = unbroken("replay", "--log", str(files["log"]), "--projection", spec(files),
                    "--config", "mode=exit", "--trace", str(trace))
    assert done.returncode == 1, done
    assert "SystemExit: 0" in done.stderr and "Traceback" not in done.stderr
    assert not list(trace.glob("*.partial"))
    faults = load_trace(trace)["faults"]
    assert faults.height == 24 and set(faults["kind"]) == {"projection_error"}


@CASE
def test_EF_002_a_failed_replay_leaves_no_partial_files(files, tmp_path):
    trace = tmp_path / "trace"
    done = unbroken("replay", "--log", str(files["log"]), "--projection", spec(files),
                    "--config", "mode=exit", "--trace", str(trace), "--strict")
    assert done.returncode == 3, done
    assert "SystemExit" in done.stderr and "Traceback" not in done.stderr
    assert not list(trace.glob("*.parquet.partial")) and not list(trace.glob("*.parquet"))


@CASE
def test_EF_002_a_projection_exiting_at_start_is_could_not_run(files, capsys):
    assert main(["replay", "--log", str(files["log"]), "--projection", spec(files, "exits_at_start")]) == 3
    assert "initial() raised SystemExit" in capsys.readouterr().err
    assert main(["check", "--log", str(files["log"]), "--projection", spec(files, "exits_at_start"),
                 "--examples", "3"]) == 3
    out = capsys.readouterr().out
    assert "3 run(s) could not finish" in out and "initial() raised SystemExit" in out
    assert "all invariants held" not in out


@CASE
def test_EF_002_a_config_json_cannot_hold_is_a_clear_error(files, capsys):
    assert main(["replay", "--log", str(files["log"]), "--projection", spec(files, "bad_config")]) == 3
    assert "config() failed or returned what JSON cannot hold" in capsys.readouterr().err


@CASE
def test_EF_002_a_python_checker_that_exits_is_an_unknown_verdict_not_a_dead_check(files):
    events = replay.read_log(files["log"])
    exits = Invariant(id="PY-EXIT", description="exits", check=lambda trace: sys.exit(0))
    report = check(list(events), spec(files), config={"mode": "ok"}, examples=3,
                   invariants=[exits])
    (result,) = report.results
    assert result.status == "unknown" and "SystemExit" in (result.error or "")
    assert report.exit_code() == 3


# -- --examples N runs N ------------------------------------------------------------------

@CASE
@pytest.mark.parametrize("n", [1, 2, 9])
def test_EF_002_examples_N_judges_exactly_N_runs(files, n):
    events = list(replay.read_log(files["log"]))
    report = check(events, "arrears", examples=n, seed=3)
    assert report.examples == n and report.problems.runs == n
    assert all(r.examples + r.skipped == n for r in report.results)  # INV-5 skips lossy runs
    assert f", {n} examples " in report.render().splitlines()[0]


@CASE
def test_EF_002_examples_below_one_is_a_usage_error(files, capsys):
    assert main(["check", "--log", str(files["log"]), "--projection", "arrears",
                 "--examples", "0"]) == 2
    assert "--examples must be at least 1" in capsys.readouterr().err


# -- runner robustness ----------------------------------------------------------------------

@CASE
def test_EF_002_timers_without_on_timer_are_fault_rows_not_a_traceback(files, tmp_path, capsys):
    trace = tmp_path / "t"
    assert main(["replay", "--log", str(files["log"]), "--projection", spec(files, "no_on_timer"),
                 "--trace", str(trace)]) == 1
    err = capsys.readouterr().err
    assert "has no on_timer" in err and "'wake'" in err
    kinds = set(load_trace(trace)["faults"]["kind"])
    assert kinds == {"timer_without_on_timer"}


@CASE
@pytest.mark.parametrize(("value", "shown"), [
    (math.nan, "nan"), (math.inf, "inf"), (-1, "-1"), (2**64, str(2**64)), ("soon", "'soon'"),
    (1.5, "1.5"), (True, "True"),
])
def test_EF_002_a_timer_at_an_absurd_time_names_key_and_value(files, value, shown):
    projection = replay.load_projection(spec(files), mode="timer", value=value)
    result = replay.run(replay.deliveries_of(list(replay.read_log(files["log"]))), projection)
    assert result.projection_faults == 24
    detail = result.tables["faults"]["detail"][0]
    assert "timer 't'" in detail and shown in detail and "ReplayError" in detail
    assert result.tables["timers"].height == 0  # the step was undone: nothing scheduled


@CASE
def test_EF_002_a_timer_at_an_absurd_time_via_the_cli_exits_1_with_the_reason(files, capsys):
    assert main(["replay", "--log", str(files["log"]), "--projection", spec(files),
                 "--config", "mode=timer", f"value={2**70}"]) == 1
    err = capsys.readouterr().err
    assert f"due time {2**70}" in err and "outside 0 .." in err


@CASE
def test_EF_002_a_decision_the_trace_cannot_hold_is_a_fault_of_its_step(files, tmp_path, capsys):
    trace = tmp_path / "t"
    assert main(["replay", "--log", str(files["log"]), "--projection", spec(files),
                 "--config", "mode=bad_decision", "--trace", str(trace)]) == 1
    assert "Decision.kind must be a string, got int 7" in capsys.readouterr().err
    assert load_trace(trace)["decisions"].height == 0


@CASE
def test_EF_002_a_state_that_cannot_be_snapshot_names_its_type(files, tmp_path, capsys):
    trace = tmp_path / "t"
    assert main(["replay", "--log", str(files["log"]), "--projection", spec(files),
                 "--config", "mode=unencodable", "--trace", str(trace), "--snapshot-every", "5"]) == 3
    err = capsys.readouterr().err
    assert "cannot snapshot after 5 deliveries" in err and "type object" in err
    assert not list(trace.glob("*.partial"))


def _wait_for_exit(proc: subprocess.Popen, deadline_s: float) -> tuple[int, str]:
    try:
        _, err = proc.communicate(timeout=deadline_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        pytest.fail(f"still running after {deadline_s} s: the time limit did not stop it")
    return proc.returncode, err


@CASE
@pytest.mark.parametrize("command", ["replay", "check"])
def test_EF_002_a_busy_loop_stops_at_the_event_timeout_naming_the_event(files, command):
    args = [UNBROKEN, command, "--log", str(files["log"]), "--projection", spec(files),
            "--config", "mode=busy", "--event-timeout", "0.5"]
    start = time.monotonic()
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    code, err = _wait_for_exit(proc, 60)
    assert code == 3, err
    assert "more than 0.5 s on the event at position 1 (type CalendarDay, stream 'calendar')" in err
    assert "Traceback" not in err
    assert time.monotonic() - start < 30


@CASE
@pytest.mark.slow
def test_EF_002_progress_shows_where_a_replay_is_stuck(files):
    args = [UNBROKEN, "replay", "--log", str(files["log"]), "--projection", spec(files),
            "--config", "mode=busy", "--event-timeout", "3.5", "--progress"]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    code, err = _wait_for_exit(proc, 60)
    assert code == 3
    assert "stuck 2 s on the event at position 1" in err or "stuck 3 s on the event at position 1" in err


def test_EF_002_the_event_timeout_does_not_count_pacing_or_stop_healthy_runs(files):
    projection = replay.load_projection(spec(files), mode="ok")
    events = list(replay.read_log(files["log"]))
    result = replay.run(replay.deliveries_of(events), projection, event_timeout=5.0)
    assert result.projection_faults == 0 and result.counts["deliveries"] == 24
    with pytest.raises(replay.ReplayError, match="positive number of seconds"):
        replay.run(replay.deliveries_of(events), projection, event_timeout=-1)


# -- exit codes -----------------------------------------------------------------------------

@CASE
def test_EF_002_replay_without_projection_is_a_usage_error(files, capsys):
    assert main(["replay", "--log", str(files["log"])]) == 2
    assert "--projection is required" in capsys.readouterr().err


@CASE
@pytest.mark.parametrize("argv", [
    ["--event-timeout", "0"], ["--event-timeout", "nan"], ["--pace", "-1"], ["--snapshot-every", "0"],
])
def test_EF_002_replay_bad_numbers_are_usage_errors(files, capsys, argv):
    assert main(["replay", "--log", str(files["log"]), "--projection", "arrears", *argv]) == 2
    assert "unbroken replay:" in capsys.readouterr().err


@CASE
def test_EF_002_query_exit_codes_match_the_help(files, tmp_path, capsys):
    trace = tmp_path / "t"
    assert main(["replay", "--log", str(files["log"]), "--projection", "arrears",
                 "--trace", str(trace)]) == 0
    assert main(["query", str(trace), "SELECT count(*) FROM runs"]) == 0
    assert main(["query", str(trace), "DELETE FROM runs"]) == 2  # refused
    assert main(["query", str(trace), "SELECT nope FROM runs"]) == 2  # wrong
    assert main(["query", str(tmp_path / "missing"), "SELECT 1"]) == 3  # cannot run
    assert main(["query", "--timeout", "0.2", str(trace),
                 "SELECT count(*) FROM range(1000000000000)"]) == 3
    capsys.readouterr()
    with pytest.raises(SystemExit):
        main(["query", "--help"])
    assert "2 the query is refused or wrong" in capsys.readouterr().out


@CASE
def test_EF_002_import_export_and_demo_usage_errors_exit_2(files, tmp_path, capsys):
    store = tmp_path / "s.db"
    assert main(["import", str(files["log"]), "--store", str(store), "--batch", "0"]) == 2
    assert not store.exists()  # refused before anything was opened
    assert main(["import", str(files["log"]), "--store", str(store)]) == 0
    out = tmp_path / "out.jsonl"
    out.write_text("keep me")
    assert main(["export", "--store", str(store), "--out", str(out)]) == 2
    assert out.read_text() == "keep me"
    assert main(["demo", "--dir", str(tmp_path / "demo"), "--examples", "0"]) == 2
    assert not (tmp_path / "demo").exists()
    err = capsys.readouterr().err
    assert "--batch must be" in err and "pass --force" in err and "--examples must be at least 1" in err


# -- what users asked for -------------------------------------------------------------------

@CASE
def test_EF_002_invariants_by_id_run_exactly_those(files, capsys):
    assert main(["check", "--log", str(files["log"]), "--projection", "arrears", "--examples", "3",
                 "--invariants", "INV-1,AR-2", "--invariants", "INV-4"]) == 0
    out = capsys.readouterr().out
    rows = [line.split()[0] for line in out.splitlines() if line[:4] in ("INV-", "AR-1", "AR-2", "AR-3")]
    assert rows == ["INV-1", "AR-2", "INV-4"]
    assert main(["check", "--log", str(files["log"]), "--projection", "arrears",
                 "--invariants", "NOPE-1"]) == 3
    assert "neither a built-in id" in capsys.readouterr().err


@CASE
def test_EF_002_only_invariants_of_the_projections_domain_run_on_the_cli_path(files, tmp_path, capsys):
    extra = tmp_path / "inv"
    extra.mkdir()
    (extra / "mine.sql").write_text("-- id: PUMP-1\n-- domain: pumps\nSELECT seq FROM decisions WHERE false\n")
    (extra / "other.sql").write_text("-- id: AR-9\n-- domain: arrears\nSELECT seq FROM decisions\n")
    assert main([*check_args(files, "ok"), "--invariants", str(extra)]) == 0
    out = capsys.readouterr().out
    ran = out.splitlines()[1]
    assert ran.startswith("invariants run for domain 'pumps': INV-1, INV-2, INV-3, INV-4, INV-5, PUMP-1;")
    assert "not applicable, not run: AR-1, AR-2, AR-3, AR-4, AR-5" in ran and "AR-9" in ran
    assert "\nAR-1 " not in out


@CASE
def test_EF_002_check_shows_progress_when_asked(files, capsys):
    assert main(["check", "--log", str(files["log"]), "--projection", "arrears", "--examples", "5",
                 "--progress"]) == 0
    assert "check: 5/5 examples, none broken so far" in capsys.readouterr().err


@CASE
def test_EF_002_query_help_and_docs_carry_the_generated_schema(capsys):
    with pytest.raises(SystemExit):
        main(["query", "--help"])
    text = capsys.readouterr().out
    for table, row in TABLES.items():
        assert f"  {table}: " in text
        for name in msgspec.structs.fields(row):
            assert f"    {name.name} (" in text, (table, name.name)
    assert "decisions.cause_seq = deliveries.seq" in text
    from replay.trace import schema_markdown

    doc = (ROOT / "docs" / "trace-schema.md").read_text()
    assert schema_markdown() in doc, "docs/trace-schema.md is stale: see its regeneration command"


def test_EF_002_decision_docstring_names_what_generic_invariants_require():
    doc = Decision.__doc__ or ""
    for needed in ("freshness_ns", "input_time", "effect_key", "hold_until", "min_confidence",
                   "INV-1", "INV-3", "INV-4"):
        assert needed in doc


def test_EF_002_violating_rows_print_times_as_timestamps():
    at = 1_704_276_005_000_000_000  # 2024-01-03 10:00:05 UTC
    (line,) = render_rows([{"run_id": "e1", "seq": 3, "at": at, "input_time": at + 500_000_000,
                            "age_ns": 7_200_000_000_000, "subject": "A1"}])
    assert line == ("seq=3, at=2024-01-03 10:00:05, input_time=2024-01-03 10:00:05.5, "
                    "age_ns=2h00m, subject=A1")


def test_EF_002_decision_fields_are_checked_where_they_are_made():
    from replay.core import ReplayContext

    ctx = ReplayContext()
    ok = Decision(kind="k", subject="s", action="a", status=Status.HELD, input_time=-5)
    assert ctx.decide(ok).kind == "k"
    for bad, field in [(dict(confidence="high"), "confidence"), (dict(effect_key=3), "effect_key"),
                       (dict(hold_until=2**63), "hold_until"), (dict(reasons=("a", 1)), "reasons"),
                       (dict(external="yes"), "external")]:
        with pytest.raises(replay.ReplayError, match=f"Decision.{field} must be"):
            ctx.decide(Decision(kind="k", subject="s", action="a", status=Status.HELD, **bad))

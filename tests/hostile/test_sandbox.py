"""Nothing runs from a data directory, and SQL stays in its sandbox (EF-002).

A saved counterexample is data people pass around: replaying it must not run
code it names, read files outside it, or let its SQL reach the filesystem.
Trace queries cannot read DuckDB's temp directory, settings or catalog, and
they stop at a time limit or on Ctrl-C.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import replay
from eventstore.cli import main
from properties import Invariant, check, replay_counterexample
from replay.core import SAVED_RUN_EXIT_CODES
from replay.trace import QueryError, QueryRefused, QueryTimeout, open_trace, query
from tests.properties.logs import flaw_log

ROOT = Path(__file__).resolve().parents[2]
FLAWED = ROOT / "examples" / "flawed_arrears.py"
SPEC = f"{FLAWED}:counts_duplicate_payments"
UNBROKEN = str(Path(sys.executable).with_name("unbroken"))
SECRET = "hunter2-do-not-leak"


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> Path:
    """A real counterexample directory written by `unbroken check --trace` (INV-5 broken)."""
    base = tmp_path_factory.mktemp("cx")
    log = base / "flaw.jsonl"
    replay.export_log(flaw_log(), log)
    code = main(["check", "--log", str(log), "--projection", SPEC, "--examples", "300",
                 "--trace", str(base / "out")])
    assert code == 1
    return base / "out" / "INV-5"


@pytest.fixture
def cx(saved: Path, tmp_path: Path) -> Path:
    """A private copy of the counterexample, free to tamper with."""
    return Path(shutil.copytree(saved, tmp_path / "cx"))


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    secret = tmp_path / "secret.csv"
    secret.write_text(f"user,password\nroot,{SECRET}\n")
    return secret


def _meta(directory: Path, **changes) -> None:
    path = directory / "counterexample.json"
    meta = json.loads(path.read_text())
    meta.update(changes)
    path.write_text(json.dumps(meta))


# --- a saved counterexample names no code to run -------------------------------------------


@pytest.mark.case("EF-002")
def test_EF_002_a_saved_file_cannot_run_a_command(cx: Path, tmp_path: Path, capsys) -> None:
    marker = tmp_path / "PWNED"
    _meta(cx, projection="subprocess:run",
          config={"args": [sys.executable, "-c", f"open({str(marker)!r}, 'w')"]})
    assert main(["replay", "--counterexample", str(cx)]) == 3
    err = capsys.readouterr().err
    assert "not a registered projection" in err and "--projection" in err
    assert main(["check", "--replay", str(cx)]) == 3
    err = capsys.readouterr().err
    assert "not a registered projection" in err and "--projection subprocess:run" in err
    with pytest.raises(replay.core.UntrustedProjectionError, match="projection="):
        replay_counterexample(cx)
    assert not marker.exists()


@pytest.mark.case("EF-002")
def test_EF_002_a_python_file_inside_the_directory_is_not_imported(cx: Path, tmp_path: Path, capsys) -> None:
    marker = tmp_path / "IMPORTED"
    (cx / "evil.py").write_text(f"open({str(marker)!r}, 'w')\ndef build(**_):\n    raise SystemExit(0)\n")
    _meta(cx, projection=f"{cx / 'evil.py'}:build")
    assert main(["replay", "--counterexample", str(cx)]) == 3
    assert main(["check", "--replay", str(cx)]) == 3
    assert "not a registered projection" in capsys.readouterr().err
    assert not marker.exists()


@pytest.mark.case("EF-002")
def test_EF_002_a_registered_projection_or_one_named_by_the_user_still_runs(cx: Path, capsys) -> None:
    assert main(["check", "--replay", str(cx), "--projection", SPEC]) == 1  # named: it still breaks
    _meta(cx, projection="arrears", config={})
    assert main(["check", "--replay", str(cx)]) == 0  # registered: loads; the correct one holds
    assert "INV-5 holds now" in capsys.readouterr().out


@pytest.mark.case("EF-002")
@pytest.mark.parametrize("bad", ['[1, 2]', '{"projection": 5}', '{"projection": "arrears", "config": [1]}', "{"])
def test_EF_002_a_damaged_counterexample_json_is_a_clear_error(cx: Path, bad: str, capsys) -> None:
    (cx / "counterexample.json").write_text(bad)
    assert main(["replay", "--counterexample", str(cx)]) == 3
    assert main(["check", "--replay", str(cx)]) == 3
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.count("counterexample.json") == 2


@pytest.mark.case("EF-002")
@pytest.mark.parametrize("name", ["events.jsonl", "invariant.sql", "schedule.json", "counterexample.json",
                                  "deliveries.parquet"])
def test_EF_002_a_symlink_out_of_the_directory_is_refused(cx: Path, outside: Path, name: str, capsys) -> None:
    (cx / name).unlink(missing_ok=True)
    (cx / name).symlink_to(outside)
    if not name.endswith(".parquet"):  # check --replay replays the log under the schedule
        assert main(["check", "--replay", str(cx), "--projection", SPEC]) == 3
        err = capsys.readouterr().err
        assert "leads outside" in err and SECRET not in err
    if name not in ("invariant.sql", "schedule.json"):  # replay --counterexample reads neither
        assert main(["replay", "--counterexample", str(cx), "--projection", SPEC]) == 3
        err = capsys.readouterr().err
        assert "leads outside" in err and SECRET not in err


# --- saved invariant SQL runs in the sandbox --------------------------------------------------


@pytest.mark.case("EF-002")
def test_EF_002_saved_invariant_sql_cannot_read_or_write_files(cx: Path, outside: Path, tmp_path: Path,
                                                               capsys) -> None:
    written = tmp_path / "written.csv"
    for sql in [f"SELECT * FROM read_text('{outside}')",
                f"SELECT * FROM read_csv('{outside}')",
                f"SELECT * FROM '{outside}'",
                f"COPY (SELECT 1) TO '{written}'",
                f"SELECT 1; COPY (SELECT 1) TO '{written}'",
                "SELECT * FROM duckdb_settings()",
                "SELECT current_setting('temp_directory') AS t"]:
        (cx / "invariant.sql").write_text(f"-- id: INV-5\n{sql}\n")
        assert main(["check", "--replay", str(cx), "--projection", SPEC]) == 3, sql
        out = capsys.readouterr()
        assert SECRET not in out.out + out.err and "could not be judged" in out.out, sql
    assert not written.exists()


@pytest.mark.case("EF-002")
def test_EF_002_user_invariant_files_run_in_the_sandbox(tmp_path: Path, outside: Path) -> None:
    invariants = [Invariant(id="X-1", description="reads a file", sql=f"SELECT * FROM read_csv('{outside}')"),
                  Invariant(id="X-2", description="metadata", sql="SELECT * FROM duckdb_views()"),
                  Invariant(id="X-3", description="fine", sql="SELECT run_id FROM decisions WHERE false")]
    report = check(flaw_log(), "arrears", examples=3, seed=1, invariants=invariants)
    status = {r.id: r.status for r in report.results}
    assert status["X-1"] == status["X-2"] == "unknown" and status["X-3"] == "held"
    assert SECRET not in report.render() and "refused" in report.render()


@pytest.mark.case("EF-002")
def test_EF_002_an_endless_invariant_is_stopped(monkeypatch) -> None:
    import properties._evaluate as evaluate

    monkeypatch.setattr(evaluate, "INVARIANT_TIMEOUT", 0.3)
    endless = Invariant(id="X-9", description="endless", sql="SELECT n FROM (SELECT count(*) AS n FROM range(1000000000000)) WHERE n < 0")
    report = check(flaw_log(), "arrears", examples=1, seed=1, invariants=[endless])
    (result,) = [r for r in report.results if r.id == "X-9"]
    assert result.status == "unknown" and "ran longer than" in (result.error or "")


# --- exit codes mean what the help says --------------------------------------------------------


@pytest.mark.case("EF-002")
def test_EF_002_replay_counterexample_exit_codes_match_the_help(cx: Path, capsys) -> None:
    assert main(["replay", "--counterexample", str(cx), "--projection", SPEC]) == 0
    assert "reproduced exactly" in capsys.readouterr().out
    assert main(["replay", "--counterexample", str(cx), "--projection", "arrears"]) == 1
    assert "NOT reproduced" in capsys.readouterr().out
    assert main(["check", "--replay", str(cx), "--projection", SPEC]) == 1  # still breaks
    assert main(["check", "--replay", str(cx), "--projection", "arrears"]) == 0  # holds now
    helps = []
    for command in (["replay"], ["check"]):
        with pytest.raises(SystemExit):
            main([*command, "--help"])
        helps.append(" ".join(capsys.readouterr().out.split()))
    assert all(" ".join(SAVED_RUN_EXIT_CODES.split()) in h for h in helps)
    assert "exit 0 reproduced exactly" in SAVED_RUN_EXIT_CODES and "1 it still breaks" in SAVED_RUN_EXIT_CODES


# --- saved counterexamples travel ------------------------------------------------------------


@pytest.mark.case("EF-002")
def test_EF_002_a_counterexample_saved_with_a_relative_path_replays_from_anywhere(tmp_path: Path,
                                                                                 monkeypatch) -> None:
    log = tmp_path / "flaw.jsonl"
    replay.export_log(flaw_log(), log)
    monkeypatch.chdir(ROOT)
    relative = "examples/flawed_arrears.py:counts_duplicate_payments"
    assert main(["check", "--log", str(log), "--projection", relative, "--examples", "300",
                 "--trace", str(tmp_path / "out")]) == 1
    directory = tmp_path / "out" / "INV-5"
    saved_spec = json.loads((directory / "counterexample.json").read_text())["projection"]
    assert saved_spec == SPEC  # resolved at save time
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert main(["check", "--replay", str(directory), "--projection", saved_spec]) == 1
    # the regression test runs from wherever pytest is started
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                          str(directory / "test_counterexample.py")],
                         cwd=elsewhere, capture_output=True, text=True, timeout=120)
    assert run.returncode == 1 and "INV-5 is broken" in run.stdout, run.stdout + run.stderr


@pytest.mark.case("EF-002")
def test_EF_002_an_invariant_id_cannot_inject_code_into_the_regression_test(tmp_path: Path) -> None:
    import ast

    nasty = 'X"""\nimport os; os.system("touch PWNED")\n"""'
    always = Invariant(id=nasty, description="always broken", sql="SELECT run_id, seq FROM decisions")
    report = check(flaw_log(), "arrears", examples=2, seed=1, invariants=[always], trace_dir=tmp_path,
                   shrink_budget_s=2)
    (result,) = [r for r in report.results if r.id == nasty]
    test_file = Path(result.counterexample.directory) / "test_counterexample.py"
    tree = ast.parse(test_file.read_text())
    assert not [n for n in ast.walk(tree) if isinstance(n, ast.Import) and n.names[0].name == "os"]


# --- the query sandbox ------------------------------------------------------------------------


@pytest.fixture
def trace(cx: Path) -> Path:
    return cx  # a counterexample directory is a trace directory


@pytest.mark.case("EF-002")
def test_EF_002_query_cannot_read_or_list_duckdbs_temp_directory(trace: Path, tmp_path: Path, monkeypatch,
                                                                 capsys) -> None:
    work = tmp_path / "work"
    (work / ".tmp").mkdir(parents=True)
    (work / ".tmp" / "secret.csv").write_text(f"a\n{SECRET}\n")
    monkeypatch.chdir(work)
    for sql in ["SELECT * FROM read_csv('.tmp/secret.csv')", "SELECT * FROM glob('.tmp/*')",
                "SELECT * FROM '.tmp/secret.csv'", "SELECT * FROM read_text('.tmp/secret.csv')"]:
        assert main(["query", str(trace), sql]) == 2, sql  # refused: a usage error
        out = capsys.readouterr()
        assert SECRET not in out.out + out.err and "secret.csv" not in out.out, sql
        assert "refused" in out.err, sql


@pytest.mark.case("EF-002")
def test_EF_002_query_shows_no_settings_catalog_or_paths(trace: Path, capsys) -> None:
    for sql in ["SELECT * FROM duckdb_settings()", "SELECT * FROM duckdb_views()", "SELECT * FROM duckdb_views",
                "SELECT * FROM system.main.duckdb_settings()", "SELECT * FROM information_schema.views",
                "SELECT * FROM sqlite_master", "SELECT * FROM pg_catalog.pg_views", "SELECT * FROM duckdb_tables()",
                "SELECT current_setting('temp_directory')", "SELECT * FROM duckdb_databases()",
                "SELECT * FROM duckdb_extensions()", "SELECT * FROM pragma_database_list()", "SHOW databases",
                "SELECT * FROM (SELECT 1), (WITH duckdb_views AS (SELECT 1) SELECT 1) AS a, duckdb_views",
                "WITH a AS (FROM duckdb_views), duckdb_views AS (SELECT 1) FROM a"]:
        assert main(["query", str(trace), sql]) == 2, sql  # refused: a usage error
        out = capsys.readouterr()
        assert str(trace.resolve()) not in out.out + out.err and "refused" in out.err, sql
    # what the sandbox is for still works
    for sql in ["SELECT count(*) FROM decisions", "SHOW TABLES", "DESCRIBE runs",
                "WITH d AS (SELECT * FROM decisions) SELECT count(*) FROM d",
                "SELECT * FROM range(3) r, unnest([1, 2])"]:
        assert main(["query", str(trace), sql]) == 0, sql


@pytest.mark.case("EF-002")
def test_EF_002_every_known_escape_is_refused(trace: Path, outside: Path, tmp_path: Path) -> None:
    written = tmp_path / "out.csv"
    escapes = [
        f"COPY decisions TO '{written}'", f"COPY (SELECT 1) TO '{written}'",
        f"SELECT * FROM read_csv('{outside}')", f"SELECT * FROM read_csv_auto('{outside}')",
        f"SELECT * FROM read_parquet('{trace / 'runs.parquet'}', filename = true)",
        f"SELECT * FROM read_json('{outside}')", f"SELECT * FROM read_text('{outside}')",
        f"SELECT * FROM read_blob('{outside}')", f"SELECT * FROM glob('{outside.parent}/*')",
        f"SELECT * FROM parquet_metadata('{trace / 'runs.parquet'}')",
        f"ATTACH '{tmp_path / 'x.db'}' AS x", "INSTALL httpfs", "LOAD httpfs",
        "SELECT * FROM read_parquet('https://example.com/x.parquet')",
        "PRAGMA database_list", "SET enable_external_access = true", "RESET lock_configuration",
        "SET temp_directory = '/tmp'", "SELECT getenv('HOME')",
        "SELECT * FROM query('SELECT * FROM duckdb_settings()')",
        "SELECT * FROM query_table('duckdb_settings')",
        "SELECT * FROM outside",  # a variable of the calling Python code is no table
    ]
    with open_trace(trace) as con:
        for sql in escapes:
            with pytest.raises(QueryError) as caught:
                con.execute(sql)
            assert SECRET not in str(caught.value), sql
            if "getenv" not in sql:
                assert isinstance(caught.value, QueryRefused), (sql, caught.value)
        assert con.pl("SELECT count(*) AS n FROM runs")["n"].item() == 1
    assert not written.exists() and not (tmp_path / "x.db").exists()


@pytest.mark.case("EF-002")
def test_EF_002_a_query_stops_at_its_time_limit(trace: Path, capsys) -> None:
    endless = "SELECT count(*) FROM range(1000000000000)"
    with pytest.raises(QueryTimeout, match="ran longer than 0.3 s"):
        query(trace, endless, timeout=0.3)
    started = time.monotonic()
    assert main(["query", str(trace), endless, "--timeout", "0.3"]) == 3  # could not run
    assert "ran longer than 0.3 s" in capsys.readouterr().err
    assert time.monotonic() - started < 30
    with open_trace(trace, timeout=0.3) as con:  # the connection still works after a stop
        with pytest.raises(QueryTimeout):
            con.execute(endless)
        assert con.execute("SELECT count(*) FROM runs").fetchall() == [(1,)]


def _busy_thread(pid: int) -> bool:
    """True once a thread other than the main one has used 0.3 s of CPU: the query is running."""
    for task in Path(f"/proc/{pid}/task").iterdir():
        if task.name == str(pid):
            continue
        try:
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[11]) + int(fields[12]) >= 0.3 * os.sysconf("SC_CLK_TCK"):
            return True
    return False


@pytest.mark.case("EF-002")
@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="needs /proc to see the query running")
def test_EF_002_ctrl_c_stops_a_query(trace: Path) -> None:
    proc = subprocess.Popen([UNBROKEN, "query", str(trace), "SELECT count(*) FROM range(1000000000000)",
                             "--timeout", "600"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not _busy_thread(proc.pid):
            assert proc.poll() is None and time.monotonic() < deadline, "the query never started"
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 130 and "interrupted" in err and "Traceback" not in err

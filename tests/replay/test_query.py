"""SQL over trace directories: views over several runs, output formats, and every refusal."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import msgspec
import polars as pl
import pytest

from eventstore.cli import main
from replay.trace._query import QueryError, QueryRefused, open_trace, query
from replay.trace._schema import DecisionRow, DeliveryRow, RunRow
from replay.trace._writer import polars_schema


def write_table(directory: Path, table: str, rows: list[msgspec.Struct]) -> None:
    """A trace table as the trace writer lays it out, from rows of the schema's structs."""
    frame = pl.DataFrame([msgspec.structs.asdict(r) for r in rows], schema=polars_schema(table))
    frame.write_parquet(directory / f"{table}.parquet")


def decision(run_id: str, seq: int, status: str, confidence: float) -> DecisionRow:
    return DecisionRow(
        run_id, seq, seq, at=seq * 10, kind="arrears", subject=f"acct-{seq}", action="notice",
        status=status, reasons=["stale-reading"] if confidence < 0.5 else [], confidence=confidence,
        min_confidence=0.8, inputs=[f"e{seq}"], effect_key=None, external=True, irreversible=False,
        input_time=None, freshness_ns=None, hold_until=None,
    )


def make_run(directory: Path, run_id: str, decisions: list[DecisionRow]) -> Path:
    directory.mkdir()
    write_table(directory, "runs", [RunRow(run_id, "arrears", "1", "{}", "log.jsonl", 7, "identity",
                                           2, 2, 0, len(decisions), 0, 0, "d")])
    write_table(directory, "decisions", decisions)
    write_table(directory, "deliveries", [DeliveryRow(run_id, 0, 1, "e0", "acct-0", "T", None, 1, 1, 1, 0, "none", 0)])
    return directory


@pytest.fixture
def runs(tmp_path: Path) -> tuple[Path, Path]:
    a = make_run(tmp_path / "run-a", "a", [decision("a", 0, "sent", 0.9), decision("a", 1, "held", 0.3)])
    b = make_run(tmp_path / "run-b", "b", [decision("b", 0, "sent", 0.4)])
    return a, b


def test_tables_span_every_run(runs: tuple[Path, Path]) -> None:
    frame = query(runs, "SELECT run_id, count(*) AS n, min(confidence) AS low FROM decisions GROUP BY run_id ORDER BY run_id")
    assert frame.to_dicts() == [{"run_id": "a", "n": 2, "low": 0.3}, {"run_id": "b", "n": 1, "low": 0.4}]
    invariant = "SELECT run_id, seq FROM decisions WHERE external AND status = 'sent' AND confidence < min_confidence"
    assert query(runs, invariant).rows() == [("b", 0)]  # INV-2 written as SQL finds the breaking row


def test_a_run_named_twice_counts_once(runs: tuple[Path, Path]) -> None:
    a, b = runs
    assert query([a, b, a / ".." / a.name], "SELECT count(*) AS n FROM decisions")["n"].item() == 3


def test_a_table_no_run_has_is_empty_with_its_columns(runs: tuple[Path, Path]) -> None:
    with open_trace(*runs) as con:
        frame = con.pl("SELECT * FROM violations")
        assert frame.height == 0
        assert frame.columns == ["run_id", "invariant", "description", "row"]
        assert con.pl("SELECT list_contains(reasons, 'stale-reading') AS s FROM decisions WHERE run_id = 'a' ORDER BY seq")["s"].to_list() == [False, True]


def test_not_a_trace_directory_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(QueryError, match="is not a trace directory"):
        open_trace(tmp_path)
    with pytest.raises(QueryError, match="does not exist"):
        open_trace(tmp_path / "nope")
    odd = tmp_path / "run[1]"
    make_run(odd, "x", [])
    with pytest.raises(QueryError, match="glob character"):
        open_trace(odd)


def refusals(outside: Path, written: Path) -> list[str]:
    o, w = str(outside), str(written)
    return [
        "INSERT INTO decisions SELECT * FROM decisions",
        "UPDATE runs SET seed = 1",
        "DELETE FROM runs",
        "CREATE TABLE t AS SELECT 1",
        "CREATE VIEW v AS SELECT 1",
        "CREATE MACRO m(x) AS x",
        "DROP VIEW decisions",
        "ALTER VIEW decisions RENAME TO d2",
        f"ATTACH '{w}' AS other",
        "DETACH memory",
        f"COPY decisions TO '{w}'",
        f"COPY decisions FROM '{o}'",
        f"EXPORT DATABASE '{w}'",
        "INSTALL httpfs",
        "LOAD httpfs",
        "SET enable_external_access = true",
        "RESET lock_configuration",
        "SET VARIABLE x = 1",
        "PRAGMA enable_profiling",
        "CALL pragma_version()",
        "CHECKPOINT",
        "VACUUM",
        "BEGIN TRANSACTION",
        "EXPLAIN ANALYZE SELECT 1",
        "SELECT 1; SELECT 2",
        "CREATE SECRET s (TYPE s3, KEY_ID 'x', SECRET 'y')",
        f"SELECT * FROM read_csv('{o}')",
        f"SELECT * FROM read_text('{o}')",
        f"SELECT * FROM read_blob('{o}')",
        f"SELECT * FROM '{o}'",
        f"SELECT * FROM read_parquet('{w}')",
        f"SELECT * FROM parquet_metadata('{w}')",
        f"SELECT * FROM glob('{outside.parent}/*')",
        "SELECT * FROM read_parquet('https://example.com/x.parquet')",
        "SELECT * FROM query('CREATE TABLE t AS SELECT 1')",
    ]


def test_every_write_setting_or_outside_read_is_refused(runs: tuple[Path, Path], tmp_path: Path) -> None:
    outside = tmp_path / "secret.csv"
    outside.write_text("user,password\nroot,hunter2\n")
    written = tmp_path / "written.parquet"
    pl.DataFrame({"x": [1]}).write_parquet(written)  # a real Parquet file, just not a trace table
    target = tmp_path / "copy_target.csv"
    with open_trace(*runs) as con:
        for sql in refusals(outside, written) + [f"COPY decisions TO '{target}'"]:
            with pytest.raises(QueryError) as caught:
                con.execute(sql)
            assert "hunter2" not in str(caught.value), sql
            if not sql.startswith("SELECT * FROM query("):
                assert isinstance(caught.value, QueryRefused), (sql, caught.value)
        # nothing changed: the views and the lock are as they were
        assert con.pl("SELECT count(*) AS n FROM decisions")["n"].item() == 3
        settings = con._sandbox._con.execute(  # duckdb_settings() itself is refused to queries (it shows paths)
            "SELECT name, value FROM duckdb_settings() WHERE name IN ('enable_external_access', 'lock_configuration')"
        ).fetchall()
        assert dict(settings) == {"enable_external_access": "false", "lock_configuration": "true"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run-a", "run-b", "secret.csv", "written.parquet"]


def test_read_only_selects_of_every_shape_run(runs: tuple[Path, Path]) -> None:
    with open_trace(*runs) as con:
        for sql in ["FROM runs", "WITH x AS (SELECT * FROM runs) SELECT count(*) FROM x", "DESCRIBE decisions",
                    "SHOW TABLES", "SUMMARIZE decisions", "VALUES (1)", "SELECT ? AS p"]:
            params = [5] if "?" in sql else None
            assert con.execute(sql, params).fetchall(), sql


def test_cli_query_outputs_table_csv_and_json(runs: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    sql = "SELECT run_id, seq, confidence, reasons FROM decisions ORDER BY run_id, seq"
    dirs = [str(d) for d in runs]

    assert main(["query", *dirs, sql, "--format", "json"]) == 0
    assert msgspec.json.decode(capsys.readouterr().out) == [
        {"run_id": "a", "seq": 0, "confidence": 0.9, "reasons": []},
        {"run_id": "a", "seq": 1, "confidence": 0.3, "reasons": ["stale-reading"]},
        {"run_id": "b", "seq": 0, "confidence": 0.4, "reasons": ["stale-reading"]},
    ]
    assert main(["query", *dirs, sql, "--format", "csv"]) == 0
    rows = list(csv.reader(io.StringIO(capsys.readouterr().out)))
    assert rows[0] == ["run_id", "seq", "confidence", "reasons"] and rows[2] == ["a", "1", "0.3", '["stale-reading"]']
    assert main(["query", *dirs, sql]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split(" | ") == ["run_id", "seq", "confidence", "reasons"]
    assert table[3] == "a      |   1 |        0.3 | [\"stale-reading\"]"
    assert table[-1] == "(3 rows)"
    def bars(line: str, mark: str) -> list[int]:
        return [i for i, c in enumerate(line) if c == mark]

    assert bars(table[0], "|") == bars(table[1], "+") == bars(table[2], "|")  # columns line up


def test_cli_query_refusals_and_wrong_sql_exit_2_usage(runs: tuple[Path, Path], capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    dirs = [str(d) for d in runs]
    assert main(["query", *dirs, "DROP VIEW runs"]) == 2
    assert "only SELECT" in capsys.readouterr().err
    assert main(["query", *dirs, "COPY runs TO 'x.csv'"]) == 2
    assert "COPY statement" in capsys.readouterr().err
    assert main(["query", *dirs, "SELECT nope FROM runs"]) == 2
    assert '"nope" not found' in capsys.readouterr().err
    assert main(["query", *dirs, "SELECT CAST('x' AS INTEGER)"]) == 2  # fails while running, not parsing
    assert "Could not convert" in capsys.readouterr().err
    assert main(["query", str(tmp_path / "missing"), "SELECT 1"]) == 3

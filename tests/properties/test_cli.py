"""``unbroken check``: exit codes, the printed table, counterexample replay."""

from __future__ import annotations

from pathlib import Path

import pytest

import replay
from eventstore.cli import main

from .logs import flaw_log

FLAWED = str(Path(__file__).resolve().parents[2] / "examples" / "flawed_arrears.py")


@pytest.fixture(scope="module")
def log_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("logs") / "flaw.jsonl"
    replay.export_log(flaw_log(), path)
    return path


def test_all_held_exits_0_and_prints_the_table(log_file, capsys):
    assert main(["check", "--log", str(log_file), "--projection", "arrears", "--examples", "40"]) == 0
    out = capsys.readouterr().out
    assert "INV-3      held" in out and "all invariants held" in out


def test_broken_exits_1_and_replay_reproduces_it(log_file, tmp_path, capsys):
    code = main(["check", "--log", str(log_file), "--projection", f"{FLAWED}:counts_duplicate_payments",
                 "--examples", "300", "--trace", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 1 and "INV-5 BROKEN" in out and "replay: unbroken check --replay" in out
    assert f"replay: unbroken check --replay {tmp_path / 'INV-5'} --projection {FLAWED}:" in out
    # a saved file never chooses code to run: a FILE.py projection is named on the command line
    assert main(["check", "--replay", str(tmp_path / "INV-5")]) == 3
    assert "not a registered projection" in capsys.readouterr().err
    assert main(["check", "--replay", str(tmp_path / "INV-5"), "--projection",
                 f"{FLAWED}:counts_duplicate_payments"]) == 1
    replayed = capsys.readouterr().out
    assert "INV-5 is broken" in replayed and "digest matches" in replayed
    assert main(["check", "--replay", str(tmp_path / "INV-5"), "--projection", "arrears"]) == 0


def test_custom_invariant_dir_and_config(log_file, tmp_path, capsys):
    (tmp_path / "no_release.sql").write_text(
        "-- id: MY-1\n-- description: never release\nSELECT seq FROM decisions WHERE status = 'released'\n")
    code = main(["check", "--log", str(log_file), "--projection", "arrears", "--examples", "5",
                 "--invariants", str(tmp_path), "--config", "hold_hours=24", "--shrink-seconds", "5"])
    out = capsys.readouterr().out
    assert code == 1 and "MY-1       BROKEN" in out


@pytest.mark.parametrize("argv", [
    ["--log", "/no/such/file.jsonl", "--projection", "arrears"],
    ["--log", "{log}", "--projection", "no-such-projection"],
    ["--log", "{log}", "--projection", "arrears", "--config", "hold_hours=soon"],
    ["--replay", "/no/such/dir"],
])
def test_cannot_run_exits_3_with_a_reason(argv, log_file, capsys):
    argv = [a.replace("{log}", str(log_file)) for a in argv]
    assert main(["check", *argv]) == 3
    assert "unbroken check" in capsys.readouterr().err


def test_usage_errors_exit_2(capsys):
    assert main(["check", "--projection", "arrears"]) == 2
    with pytest.raises(SystemExit) as e:
        main(["check", "--help"])
    assert e.value.code == 0 and "--invariants DIR" in capsys.readouterr().out

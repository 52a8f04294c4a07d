"""``unbroken generate`` and ``unbroken demo`` through the real command-line entry point."""

from __future__ import annotations

import re

import msgspec

from eventstore import open_store
from eventstore.cli import main
from load import ArrearsProfile, generate_arrears


def test_generate_arrears_writes_the_seeded_log_and_prints_the_seed(tmp_path, capsys):
    out = tmp_path / "log.jsonl"
    code = main(["generate", "arrears", "--accounts", "8", "--days", "20", "--seed", "3", "--out", str(out)])
    assert code == 0
    assert "seed 3" in capsys.readouterr().err
    generate_arrears(tmp_path / "same.jsonl", ArrearsProfile(accounts=8, days=20, seed=3))
    assert out.read_bytes() == (tmp_path / "same.jsonl").read_bytes()


def test_generate_refuses_to_overwrite_without_force(tmp_path, capsys):
    out = tmp_path / "log.jsonl"
    out.write_text("keep me\n")
    args = ["generate", "bulk", "--events", "10", "--out", str(out)]
    assert main(args) == 2
    assert "--force" in capsys.readouterr().err
    assert out.read_text() == "keep me\n"
    assert main([*args, "--force"]) == 0
    assert len(out.read_bytes().splitlines()) == 10


def test_generate_rejects_a_bad_profile_with_the_reason(tmp_path, capsys):
    out = tmp_path / "log.jsonl"
    assert main(["generate", "arrears", "--days", "0", "--out", str(out)]) == 2
    assert "days" in capsys.readouterr().err
    assert not out.exists()


def test_demo_runs_every_step_and_a_rerun_imports_nothing_new(tmp_path, capsys):
    args = ["demo", "--dir", str(tmp_path), "--accounts", "40", "--days", "40",
            "--check-accounts", "5", "--examples", "5"]
    assert main(args) == 0
    first = capsys.readouterr()
    assert "skipped" not in first.err  # every part has landed: nothing may be skipped
    for step in range(1, 7):
        assert f"[{step}/6]" in first.err
    lines = (tmp_path / "arrears.jsonl").read_bytes().splitlines()
    with open_store(f"embedded://{tmp_path / 'events.db'}") as store:
        assert store.last_position() == len(lines)
    decisions = re.search(r"decisions ([\d,]+)", first.out)
    assert decisions and int(decisions.group(1).replace(",", "")) > 0
    assert "arrears-notice" in first.out  # the summary query ran over the trace
    assert "all invariants held" in first.out

    assert main(args) == 0
    again = capsys.readouterr()
    assert f"imported 0, {len(lines):,} already there, 0 rejected" in again.out
    assert msgspec.json.decode(lines[0])["id"]  # the log is still the JSONL it was

"""The library's own C tests (native/tests/*.c) built with AddressSanitizer and UBSan and run:
rule parsing, the seeded PRNG and selection, and the interposers (refuse, slice, reset,
ENOSPC on the nth write, fsync, short writes, concurrent writers)."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

import native


@pytest.mark.slow
def test_c_tests_pass_under_asan_and_ubsan(library, tmp_path):
    programs = native.build_tests(sanitize=True)
    assert "test_faults" in programs
    log = tmp_path / "faults.jsonl"
    env = {**os.environ, "UNBROKEN_FAULTS_FILE": str(tmp_path / "rules"), "UNBROKEN_FAULTS_POLL_MS": "0",
           "UNBROKEN_FAULTS_LOG": str(log), "ASAN_OPTIONS": "detect_leaks=1:abort_on_error=0",
           "UBSAN_OPTIONS": "print_stacktrace=1:halt_on_error=1"}
    env.pop("LD_PRELOAD", None)
    for name, program in programs.items():
        proc = subprocess.run([str(program), str(tmp_path)], env=env, capture_output=True, text=True,
                              timeout=120, check=False)
        assert proc.returncode == 0 and proc.stdout.strip() == "ok", f"{name}:\n{proc.stderr}"
        assert "runtime error" not in proc.stderr and "AddressSanitizer" not in proc.stderr
    actions = [r["action"] for r in map(json.loads, log.read_text().splitlines()) if r["event"] == "fault"]
    assert {"refuse", "slice", "reset", "enospc", "fsync", "short"} <= set(actions)

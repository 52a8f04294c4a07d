"""The pytest plugin: light to import; fixtures, markers, option and profiles work in a user's project."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

USER_TEST = '''
import os
import pytest
from hypothesis import given, settings
from eventstore import NewEvent
from projections.payloads import PaymentReceived
from properties import Delay, Schedule, schedules

@pytest.mark.case("SM-AR-004")
def test_fixtures(store, clock, replayer, schedule):
    clock.advance_to(clock.now + 5)
    store.append("account-1", [NewEvent.of(PaymentReceived("A1", "P1", 100))])
    (event,) = list(store.read_all())
    assert event.recorded_at == clock.now
    assert schedule.identity == Schedule()
    late = Schedule((Delay(event.position, 10),))
    result = replayer("arrears", schedule=late)
    assert result.tables["deliveries"]["perturbation"].to_list() == ["delayed"]

@given(s=schedules([]))
def test_profile(s):
    assert settings.default.max_examples == int(os.environ["EXPECT"])
'''


def run_pytest(tmp_path, *args, expect="200", profile_env=None):
    (tmp_path / "test_user.py").write_text(textwrap.dedent(USER_TEST))
    env = {**os.environ, "EXPECT": expect}
    env.pop("UNBROKEN_PROFILE", None)
    if profile_env:
        env["UNBROKEN_PROFILE"] = profile_env
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--strict-markers",
         "-W", "error", *args, str(tmp_path)],
        capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120,
    )


def test_plugin_import_pulls_in_nothing_heavy():
    code = ("import sys, properties.pytest_plugin; "
            "print(sorted(m for m in ('duckdb', 'polars', 'hypothesis', 'pyarrow', 'replay') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_fixtures_markers_trace_dir_and_ci_profile(tmp_path):
    traces = tmp_path / "traces"
    run = run_pytest(tmp_path, "--unbroken-profile", "ci", "--unbroken-trace-dir", str(traces))
    assert run.returncode == 0, run.stdout + run.stderr
    assert list(traces.glob("*test_fixtures*/run-1/deliveries.parquet"))


def test_profile_from_environment_and_unknown_profile(tmp_path):
    run = run_pytest(tmp_path, expect="2000", profile_env="thorough")
    assert run.returncode == 0, run.stdout + run.stderr
    bad = run_pytest(tmp_path, profile_env="nightly")
    assert bad.returncode != 0 and "unknown unbroken profile 'nightly'" in bad.stdout + bad.stderr

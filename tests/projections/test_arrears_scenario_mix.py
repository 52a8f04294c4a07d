"""``generate arrears --scenarios``: a 30-day, 20-account log reaches every arrears scenario.

The log is written by the real CLI, replayed through the real projection, and
each situation is looked for in what the projection decided and what the log
holds: the check is of the situations, not of the generator's intentions.
"""

from __future__ import annotations

import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest

import projections
import replay
from load import ArrearsProfile, arrears_lines
from load.generators import scenario_of

ROOT = Path(__file__).resolve().parents[2]
DAY = 86_400 * 10**9
DAY_0 = 1_704_067_200 * 10**9  # 2024-01-01, the generator's default start


@pytest.fixture(scope="module")
def mix(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("mix") / "mix.jsonl"
    run = subprocess.run(
        [sys.executable, "-m", "eventstore.cli", "generate", "arrears", "--accounts", "20",
         "--days", "30", "--scenarios", "--out", str(out)],
        capture_output=True, text=True, timeout=120, cwd=ROOT,
    )
    assert run.returncode == 0, run.stderr
    events = list(replay.read_log(out))
    result = replay.run(replay.deliveries_of(events), projections.get("arrears"))
    decisions = result.tables["decisions"].to_dicts()
    deliveries = result.tables["deliveries"].to_dicts()
    return {"events": events, "decisions": decisions, "deliveries": deliveries}


def reasons_of(mix: dict, **match) -> set[str]:
    return {r for d in mix["decisions"] if all(d[k] == v for k, v in match.items())
            for r in d["reasons"]}


def test_the_mix_is_opt_in_and_leaves_ordinary_accounts_as_they_were():
    plain = ArrearsProfile(accounts=16, days=30, seed=3)
    mixed = ArrearsProfile(accounts=16, days=30, seed=3, scenarios=True)
    assert scenario_of(plain, 0) is None and scenario_of(mixed, 0) == "late_payment"
    assert scenario_of(mixed, 13) is None  # 13 scenarios, then ordinary accounts

    def account(profile, idx):
        return [line for line in arrears_lines(profile) if f'"account-{idx:06d}"'.encode() in line]

    assert account(plain, 14) == account(mixed, 14)
    assert account(plain, 0) != account(mixed, 0)


def _case(case: str, reason: str):
    """A parameter named and marked with its scenario id (``-k SM_AR_003`` or ``-m``-style case)."""
    return pytest.param(case, reason, id=f"{case.replace('-', '_')}-{reason}",
                        marks=pytest.mark.case(case))


@pytest.mark.parametrize(("case", "reason"), [
    _case("SM-AR-001", "stale_reading"),
    _case("SM-AR-002", "estimated_consumption"),
    _case("SM-AR-003", "late_payment_cancelled"),
    _case("SM-AR-004", "duplicate_payment"),
    _case("SM-AR-006", "out_of_order_reading"),
    _case("SM-AR-008", "manual_review"),
    _case("SM-AR-009", "outside_allowed_hours"),
    _case("SM-AR-010", "clock_ahead"),
    _case("SM-AR-012", "rechecked_at_release"),
    _case("SM-AR-013", "already_notified"),
    _case("SM-AR-014", "ack_not_delivery"),
])
def test_each_scenario_shows_in_a_30_day_20_account_log(mix, case, reason):
    assert reason in reasons_of(mix), f"{case}: no decision says {reason}"


@pytest.mark.case("SM-AR-005")
def test_SM_AR_005_a_reversal_after_a_cancel_and_another_after_a_release(mix):
    by_account = defaultdict(list)
    for d in mix["deliveries"]:
        by_account[d["stream"]].append(("delivery", d["seq"], d["type"]))
    notices = defaultdict(list)
    for d in mix["decisions"]:
        if d["kind"] == "arrears-notice":
            notices[d["subject"]].append((d["cause_seq"], d["status"]))
    reversals = {(d["stream"], d["seq"]) for d in mix["deliveries"] if d["type"] == "PaymentReversed"}
    after_cancel = after_release = False
    for stream, seq in reversals:
        account = "AC" + stream.split("-")[1]
        before = [status for cause, status in notices[account] if cause < seq]
        after = [status for cause, status in notices[account] if cause > seq]
        after_cancel |= bool(before) and before[-1] == "cancelled" and "held" in after
        after_release |= "released" in before
    assert after_cancel and after_release


@pytest.mark.case("SM-AR-007")
def test_SM_AR_007_a_lagging_meter_blocks_its_account_then_releases(mix):
    day_20 = DAY_0 + 20 * DAY  # later, every account's readings stop with the log: all go stale
    stale = {d["subject"] for d in mix["decisions"] if "stale_reading" in d["reasons"]
             and d["at"] < day_20}
    released = {d["subject"] for d in mix["decisions"] if d["status"] == "released"
                and d["kind"] == "arrears-notice"}
    assert stale & released  # only that account waited: others were released meanwhile
    assert len(released - stale) >= 5


@pytest.mark.case("SM-AR-008")
def test_SM_AR_008_vulnerable_from_the_start_and_flagged_inside_a_hold(mix):
    cancelled = reasons_of(mix, kind="arrears-notice", status="cancelled")
    assert "vulnerable_customer" in cancelled
    assert reasons_of(mix, kind="arrears-review", status="proposed") >= {"vulnerable_customer"}


@pytest.mark.case("SM-AR-011")
def test_SM_AR_011_a_provisional_statement_reconciled_before_its_notice(mix):
    statements = defaultdict(list)
    for e in mix["events"]:
        if e.type == "AccountBalance":
            statements[e.stream].append(b'"provisional":true' in e.data)
    assert any(flags[0] and not flags[1] for flags in statements.values() if len(flags) > 1)


@pytest.mark.case("SM-AR-014")
def test_SM_AR_014_acks_are_matched_to_released_notices(mix):
    known = reasons_of(mix, kind="notice-delivery")
    assert {"ack_not_delivery", "delivery_failed"} <= known
    matched = [d for d in mix["decisions"] if d["kind"] == "notice-delivery"
               and "unknown_notice" not in d["reasons"]]
    assert {"ack_not_delivery", "delivery_failed"} <= {r for d in matched for r in d["reasons"]}

"""The dosing projection on exact logs (virtual time), one test per HY scenario it decides, each
also run under delivery schedules from ``properties``; plus hold and re-check, sensor checks,
config errors and convergence."""

from __future__ import annotations

import pytest

import properties
from projections import ConfigError, DosingConfig, get
from tests.adapters.dosing_log import (
    HOUR,
    MINUTE,
    NS,
    START,
    DosingLog,
    doses,
    invalid_during_hold_log,
    link_lost_log,
    readback_mismatch_log,
    restart_log,
    run,
)

EXAMPLES = 60


def _holds_under_schedules(log: DosingLog, **config) -> None:
    report = properties.check(log.events(), "dosing", config=config or None, examples=EXAMPLES, seed=3)
    assert report.exit_code() == 0, report.render()


def test_baseline_a_low_ec_is_held_rechecked_and_released():
    log = DosingLog()
    log.healthy(START, 2)
    result = run(log)
    held, released = doses(result, "held", "nutrient")[0], doses(result, "released", "nutrient")[0]
    assert held.hold_until == held.at + 10 * NS and released.at == held.hold_until
    assert released.effect_key == held.effect_key == f"dose:tank1:nutrient:{held.at}"
    assert released.reasons == ("ec_below_target", "rechecked_at_release")
    assert released.external and released.irreversible and released.confidence >= released.min_confidence
    assert released.at - released.input_time <= released.freshness_ns
    assert doses(result, pump="ph") == [d for d in doses(result, pump="ph") if str(d.status) == "blocked"]


@pytest.mark.case("HY-001")
def test_HY_001_no_dose_on_missing_data():
    log = DosingLog()
    for i in range(20):
        log.fault(START + i * 5 * NS, "refused")
    log.relays(START + 101 * NS)
    result = run(log)
    assert doses(result, "released") == [] and doses(result, "held") == []
    first = doses(result, "blocked", "nutrient")[0]
    assert set(first.reasons) >= {"no_sensor_reading", "relay_unknown"}
    assert result.counts["faults"] == 20
    _holds_under_schedules(log)


@pytest.mark.case("HY-001")
def test_HY_001_link_lost_after_good_data_stops_dosing_at_the_freshness_bound():
    log = link_lost_log()
    result = run(log)
    last_frame = START + 1 + 23 * 5 * NS
    assert all(d.at <= last_frame + 30 * NS for d in doses(result, "released"))
    stale = [d for d in doses(result, "blocked", "nutrient") if "sensor_stale" in d.reasons]
    assert stale and stale[0].at > last_frame + 30 * NS
    _holds_under_schedules(log)


@pytest.mark.case("HY-003")
def test_HY_003_an_invalid_reading_during_the_hold_cancels_the_dose_at_release():
    log = invalid_during_hold_log()
    result = run(log)
    held = doses(result, "held", "nutrient")[0]
    cancelled = doses(result, "cancelled", "nutrient")[0]
    assert cancelled.at == held.hold_until and cancelled.effect_key == held.effect_key
    assert "sensor_out_of_range" in cancelled.reasons
    assert all(d.at > START + 2 * MINUTE for d in doses(result, "released"))
    _holds_under_schedules(log)


@pytest.mark.case("HY-004")
def test_HY_004_last_good_value_only_within_its_freshness_bound_then_unavailable():
    log = DosingLog()
    log.relays(START)
    good_at = []
    for i in range(40):  # half the reads fail: a frame, a fault, ... and one long gap
        at = START + 1 + i * 5 * NS
        if 20 <= i < 30 or i % 2:
            log.fault(at, "timeout")
        else:
            log.frame(at, ec=1.5 + 0.01 * (i % 4))
            good_at.append(at)
    result = run(log)
    (unavailable, *_rest) = [d for d in result.decisions if d.subject == "tank1/ec"]
    last_before_gap = max(t for t in good_at if t < START + 100 * NS)
    assert unavailable.action == "unavailable" and unavailable.at == last_before_gap + 30 * NS
    assert unavailable.reasons == ("sensor_stale",) and unavailable.input_time == last_before_gap
    for d in doses(result, "released"):
        assert d.at - d.input_time <= 30 * NS
    in_gap = [d for d in doses(result) if last_before_gap + 30 * NS < d.at < START + 150 * NS]
    assert in_gap and all(str(d.status) in ("blocked", "cancelled") for d in in_gap)
    _holds_under_schedules(log)


@pytest.mark.case("HY-005")
def test_HY_005_unknown_relay_state_means_safe_state_and_no_dosing():
    log = readback_mismatch_log()
    result = run(log)
    (safe,) = [d for d in result.decisions if d.kind == "safe-state"]
    write_at = START + 65 * NS + 2_000_000
    assert safe.at == write_at and str(safe.status) == "released" and safe.action == "pumps-off"
    assert safe.reasons == ("relay_unknown", "safe_state") and safe.at - safe.input_time <= safe.freshness_ns
    assert not [d for d in doses(result, "released", "nutrient") if d.at > write_at]
    assert "relay_unknown" in doses(result, "blocked", "nutrient")[-1].reasons
    _holds_under_schedules(log)


@pytest.mark.case("HY-005")
def test_HY_005_a_write_not_acknowledged_cancels_the_held_dose():
    log = DosingLog()
    log.healthy(START, 0.25)  # a hold opens on the first frame
    log.write(START + 3 * NS, target="ph_pump", ok=False)
    result = run(log)
    cancelled = doses(result, "cancelled", "nutrient")[0]
    assert cancelled.reasons == ("relay_unknown",) and cancelled.at == START + 3 * NS + 1_000_000
    assert [d.kind for d in result.decisions].count("safe-state") == 1
    assert doses(result, "released") == []
    _holds_under_schedules(log)


@pytest.mark.case("HY-006")
def test_HY_006_daily_cap_counts_recorded_commands_from_an_earlier_run():
    result = run(restart_log(commands=12))  # 12 x 5 s = the 60 s cap, already used today
    assert doses(result, "released") == [] and doses(result, "held", "nutrient") == []
    assert "daily_cap_reached" in doses(result, "blocked", "nutrient")[-1].reasons
    fewer = run(restart_log(commands=10))  # 50 s used: room for two more doses of 5 s
    assert len(doses(fewer, "released", "nutrient")) == 2
    _holds_under_schedules(restart_log(commands=10))


@pytest.mark.case("HY-006")
def test_HY_006_the_cap_resets_on_the_next_local_day_only():
    log = restart_log(commands=12)
    for i in range(3):
        log.frame(START + 16 * HOUR + i * 5 * NS)  # 2024-03-05 00:00 UTC, the next day
    utc = run(log)
    assert [d.at for d in doses(utc, "held", "nutrient")] == [START + 16 * HOUR]
    shifted = run(log, DosingConfig(utc_offset_minutes=-120))  # local midnight is 02:00 UTC
    assert doses(shifted, "held", "nutrient") == []


def test_out_of_range_stuck_and_impossible_rate_readings_are_refused():
    log = DosingLog()
    log.relays(START)
    log.frame(START + 1)
    log.frame(START + 5 * NS, ec=9.0)  # +7.5 in 5 s: faster than 1/min + noise
    result = run(log, DosingConfig(hold_s=60))
    assert result.state.tanks["tank1"].sensors["ec"].problem == "impossible_rate"
    assert result.state.tanks["tank1"].sensors["ec"].good.value == 1.5
    stuck = DosingLog()
    stuck.relays(START)
    for i in range(130):
        stuck.frame(START + 1 + i * 5 * NS, ec=1.5)  # the exact same value for over 600 s
    result = run(stuck)
    assert result.state.tanks["tank1"].sensors["ec"].problem == "sensor_stuck"
    assert [d for d in doses(result, "blocked") if "sensor_stuck" in d.reasons]
    high = DosingLog()
    high.relays(START)
    high.frame(START + 1, ph=15.2)
    result = run(high)
    assert "sensor_out_of_range" in doses(result, "blocked", "ph")[-1].reasons


def test_three_consistent_readings_re_anchor_after_a_real_jump():
    log = DosingLog()
    log.relays(START)
    log.frame(START + 1)
    for i in range(1, 5):
        log.frame(START + i * 5 * NS, ec=3.0)
    result = run(log)
    assert result.state.tanks["tank1"].sensors["ec"].good.value == 3.0


def test_config_errors_name_the_setting():
    with pytest.raises(ConfigError, match="daily_cap_s must be > 0"):
        get("dosing", daily_cap_s="0")
    with pytest.raises(ConfigError, match="ec_min must be below ec_max"):
        get("dosing", ec_min=5, ec_max=1)
    with pytest.raises(ConfigError, match="unknown config key"):
        get("dosing", cap=1)


def test_final_state_converges_whatever_the_delivery_order():
    log = DosingLog()
    log.healthy(START, 3)
    log.write(START + 90 * NS, effect_key="dose:x", duration_ms=5000)
    report = properties.check(log.events(), "dosing", examples=EXAMPLES, seed=5, invariants=["INV-5"])
    assert report.exit_code() == 0, report.render()

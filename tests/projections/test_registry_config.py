"""The registry and config parsing the CLI relies on (`--projection arrears --config k=v`)."""

from __future__ import annotations

import msgspec
import pytest

import projections
from projections import ArrearsConfig, ArrearsProjection, ConfigError


def test_names_and_get_build_a_configured_projection():
    assert "arrears" in projections.names()
    built = projections.get("arrears", hold_hours="12", send_weekdays="0,1,2", estimated_factor=0.5)
    assert isinstance(built, ArrearsProjection)
    config = built.config()
    assert config["hold_hours"] == 12.0 and list(config["send_weekdays"]) == [0, 1, 2]
    assert config["estimated_factor"] == 0.5 and config["debt_threshold_minor"] == 5000
    assert projections.get("arrears").config() == msgspec.to_builtins(ArrearsConfig())


def test_get_gives_a_new_instance_each_time():
    assert projections.get("arrears") is not projections.get("arrears")


def test_unknown_projection_names_the_known_ones():
    with pytest.raises(ConfigError, match=r"unknown projection 'arear'.*known projections: .*arrears"):
        projections.get("arear")


def test_unknown_key_names_the_key_and_the_known_keys():
    with pytest.raises(ConfigError, match=r"arrears: unknown config key\(s\) 'hold_hour'.*hold_hours"):
        projections.get("arrears", hold_hour="48")


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("hold_hours", "two days", r"hold_hours='two days' does not fit float"),
        ("debt_threshold_minor", "50.5", r"debt_threshold_minor='50.5' does not fit int"),
        ("send_weekdays", "mon,tue", r"send_weekdays='mon,tue' does not fit a comma-separated list of int"),
    ],
)
def test_bad_values_name_the_key_and_type(key, value, expected):
    with pytest.raises(ConfigError, match=expected):
        projections.get("arrears", **{key: value})


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        ({"hold_hours": "-1"}, r"hold_hours must be >= 0"),
        ({"send_from_hour": "20", "send_until_hour": "8"}, r"send_from_hour < send_until_hour"),
        ({"send_weekdays": "7"}, r"send_weekdays must list days 0 \(Monday\)\.\.6"),
        ({"min_confidence_external": "0.4"}, r"min_confidence_external must be greater than"),
        ({"estimated_factor": "1.5"}, r"estimated_factor must be within 0\.\.1"),
    ],
)
def test_values_that_cannot_work_are_refused(settings, expected):
    with pytest.raises(ConfigError, match=expected):
        projections.get("arrears", **settings)


def test_config_struct_validates_direct_construction_too():
    with pytest.raises(ConfigError, match="freshness_hours must be > 0"):
        ArrearsConfig(freshness_hours=0)


def test_parse_pairs_from_the_command_line():
    assert projections.parse_pairs(["hold_hours=48", " send_weekdays = 0,1 "]) == {
        "hold_hours": "48", "send_weekdays": "0,1"}
    with pytest.raises(ConfigError, match=r"'hold_hours' is not KEY=VALUE"):
        projections.parse_pairs(["hold_hours"])


def test_registering_a_name_twice_is_refused():
    with pytest.raises(ValueError, match="already registered"):
        projections.register("arrears", ArrearsProjection, ArrearsConfig)


def test_config_type_is_exposed_for_help_text():
    assert projections.config_type("arrears") is ArrearsConfig


def test_public_surface():
    for name in ("Projection", "Context", "Decision", "Timer", "Status", "EFFECTIVE", "reasons",
                 "ArrearsProjection", "ArrearsConfig", "ArrearsState", "get", "names"):
        assert name in projections.__all__


def test_reason_codes_are_stable_and_unique():
    r = projections.reasons
    assert r.STALE_READING == "stale_reading" and r.ACK_NOT_DELIVERY == "ack_not_delivery"
    codes = {name: value for name, value in vars(r).items() if name.isupper() and name != "ALL"}
    assert all(value == name.lower() for name, value in codes.items())
    assert r.ALL == frozenset(codes.values()) and len(r.ALL) == len(codes)

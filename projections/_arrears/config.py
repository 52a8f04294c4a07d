"""The arrears projection's settings: thresholds, windows and calendar rules."""

from __future__ import annotations

import msgspec

from projections._config import ConfigError

HOUR_NS = 3_600_000_000_000


class ArrearsConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Settings of the arrears projection. Money is minor units; times are UTC unless offset.

    - ``debt_threshold_minor`` (5000): a notice is considered from this debt up.
    - ``overdue_grace_hours`` (0): how long after ``due_at`` the debt counts as overdue.
    - ``hold_hours`` (48): every notice is held this long before it may be released.
    - ``freshness_hours`` (72): the newest trusted reading must be at most this old.
    - ``clock_ahead_tolerance_s`` (300): a device time later than arrival by more is flagged.
    - ``send_from_hour`` / ``send_until_hour`` (8 / 20): notices go out in [from, until).
    - ``send_weekdays`` (0..4, Monday..Friday): days notices may go out, unless a holiday.
    - ``utc_offset_minutes`` (0): local time of the calendar and send hours.
    - ``vulnerable_multiplier`` (2.0): vulnerable customers need this many times the debt
      before even a manual review is proposed; they never get an automatic hard notice.
    - ``min_confidence_external`` (0.9) > ``min_confidence_internal`` (0.5): the bars for
      releasing a customer-facing notice and for internal decisions.
    - ``estimated_factor`` (0.6), ``provisional_factor`` (0.7), ``clock_ahead_factor``
      (0.95): what an estimated reading, a provisional balance or a flagged device clock
      multiply confidence by.
    """

    debt_threshold_minor: int = 5000
    overdue_grace_hours: float = 0.0
    hold_hours: float = 48.0
    freshness_hours: float = 72.0
    clock_ahead_tolerance_s: float = 300.0
    send_from_hour: int = 8
    send_until_hour: int = 20
    send_weekdays: tuple[int, ...] = (0, 1, 2, 3, 4)
    utc_offset_minutes: int = 0
    vulnerable_multiplier: float = 2.0
    min_confidence_external: float = 0.9
    min_confidence_internal: float = 0.5
    estimated_factor: float = 0.6
    provisional_factor: float = 0.7
    clock_ahead_factor: float = 0.95

    def __post_init__(self) -> None:
        for problem in _problems(self):
            raise ConfigError(f"arrears: {problem}")


def _problems(c: ArrearsConfig) -> list[str]:
    """Every setting that cannot work, worded as what to change."""
    problems = []
    for name in ("debt_threshold_minor", "overdue_grace_hours", "hold_hours", "clock_ahead_tolerance_s"):
        if getattr(c, name) < 0:
            problems.append(f"{name} must be >= 0, got {getattr(c, name)}")
    if c.freshness_hours <= 0:
        problems.append(f"freshness_hours must be > 0, got {c.freshness_hours}")
    if not 0 <= c.send_from_hour < c.send_until_hour <= 24:
        problems.append(
            f"send hours must satisfy 0 <= send_from_hour < send_until_hour <= 24, "
            f"got {c.send_from_hour}..{c.send_until_hour}"
        )
    if not c.send_weekdays or any(not 0 <= d <= 6 for d in c.send_weekdays):
        problems.append(f"send_weekdays must list days 0 (Monday)..6, got {c.send_weekdays}")
    if c.vulnerable_multiplier < 1:
        problems.append(f"vulnerable_multiplier must be >= 1, got {c.vulnerable_multiplier}")
    for name in ("min_confidence_external", "min_confidence_internal", "estimated_factor",
                 "provisional_factor", "clock_ahead_factor"):
        if not 0 <= getattr(c, name) <= 1:
            problems.append(f"{name} must be within 0..1, got {getattr(c, name)}")
    if c.min_confidence_external <= c.min_confidence_internal:
        problems.append(
            "min_confidence_external must be greater than min_confidence_internal, got "
            f"{c.min_confidence_external} <= {c.min_confidence_internal}"
        )
    return problems


def hours_ns(hours: float) -> int:
    """Hours as integer nanoseconds."""
    return int(round(hours * HOUR_NS))

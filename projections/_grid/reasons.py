"""Stable reason codes of the grid projection (never renamed or reused; only added)."""

from __future__ import annotations

from typing import Final

FIRST_REPORT: Final = "first_report"
"""A node was heard for the first time: it is visible."""

NODE_STALE: Final = "node_stale"
"""Nothing was heard from a node (by its own time) for the stale bound: it is silent."""

NODE_REPORTING_AGAIN: Final = "node_reporting_again"
"""A silent node reports again: it recovers, but counts as silent until the hysteresis passes."""

RECOVERED_AFTER_HYSTERESIS: Final = "recovered_after_hysteresis"
"""A recovering node kept reporting for the whole recovery window: it is visible again."""

FULL_VISIBILITY: Final = "full_visibility"
"""Every known node is visible: normal mode."""

PARTIAL_VISIBILITY: Final = "partial_visibility"
"""Some known nodes are silent: degraded mode; no full protection action is taken."""

BLIND: Final = "blind_no_automatic_action"
"""No node is visible: blind mode; nothing is done automatically."""

UNDER_FREQUENCY: Final = "under_frequency_confirmed"
"""The median frequency was under the trip level in consecutive intervals (by their own time)."""

RECHECKED_AT_RELEASE: Final = "rechecked_at_release"
"""The held protection action was checked again against everything known at release."""

CONDITION_CLEARED: Final = "condition_cleared"
"""The under-frequency condition no longer holds: the held action is cancelled."""

BALANCE_CLOSED: Final = "balance_closed"
"""The day's energy balance closes: produced = consumed + losses + storage change, within tolerance."""

BALANCE_OFF: Final = "balance_off"
"""The day's readings are complete and the balance does not close within tolerance."""

BALANCE_INCOMPLETE: Final = "balance_incomplete"
"""Some node is missing intervals of the day: the balance is not judged."""

"""Grid payloads: what each node of a simulated grid reports, interval by interval.

A node is a producer (solar, wind, gas), a consumer (residential, commercial,
industrial), a storage unit, or a line segment whose meter reports losses.
``GridReading`` covers one metering interval (``interval_start`` to
``interval_start + interval_s``, ns UTC) and is stamped (``occurred_at``) at its
end; a node's liveness between readings is the platform ``Heartbeat``
(``eventstore.payloads.Heartbeat`` with the node's id). Fields added after the
first release have defaults, so stored events still decode.

The sign of ``energy_wh`` depends on the role: energy produced (producers),
consumed (consumers), lost (lines), or net energy into storage (storage:
positive while charging, negative while discharging). Over any period,
produced = consumed + losses + storage change (GRID-001).
"""

from __future__ import annotations

from typing import Final, Literal

from eventstore.payloads import Payload, register_payloads

Role = Literal["solar", "wind", "gas", "residential", "commercial", "industrial", "storage", "line"]
PRODUCERS: Final = ("solar", "wind", "gas")
CONSUMERS: Final = ("residential", "commercial", "industrial")
ROLES: Final = (*PRODUCERS, *CONSUMERS, "storage", "line")


class GridReading(Payload, tag="GridReading"):
    """One node's metering interval: energy over it, and power and frequency at its end."""

    node_id: str
    role: Role
    interval_start: int
    interval_s: int
    energy_wh: float
    power_w: float = 0.0
    frequency_hz: float = 50.0
    stored_wh: float | None = None  # storage only: state of charge at the end of the interval


register_payloads(GridReading)

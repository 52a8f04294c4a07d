"""More deliberately flawed arrears variants: one per class of bug the search used to miss.

Each is the real ``ArrearsProjection`` with one realistic mistake; ``unbroken
check`` at its default settings finds each on a log from ``unbroken generate
arrears --scenarios`` (tests/properties/test_flawed_more.py):

- ``releases_provisional`` (a single lost event among thousands): a provisional
  balance is treated as final. Generated logs reconcile every provisional
  statement days before its notice is due, so only a run that loses or
  delays the one reconciliation statement shows it (SM-AR-011).
- ``ignores_calendar`` (a rule no invariant checked): releases as soon as
  the hold ends, whatever the weekday, hour or holiday (SM-AR-009).
- ``trusts_device_clock`` (an invariant that trusted the projection's word):
  a reading's device time is taken as its time, so a meter whose clock runs
  ahead looks fresher than it is and the notice states a misdated input
  time (INV-1, SM-AR-010).
- ``latest_by_arrival`` (decisions resting on an older reading): the last
  reading to arrive is taken as the meter's latest, so a reading re-sent late
  becomes the basis of decisions until the next one arrives (SM-AR-006).
- ``ack_is_delivery`` (a situation small logs never contained): an
  "accepted" acknowledgement marks the notice delivered (AR-4, SM-AR-014).
- ``vulnerable_checked_at_hold_only``: the vulnerable flag is looked at when
  a notice is held, not when a fact arrives during the hold nor at release
  (AR-3, SM-AR-008).

Use them by spec: ``unbroken check --log LOG --projection
examples/flawed_arrears_more.py:ignores_calendar``. They reach into the
projection's private parts on purpose: a flaw is a one-line change.
"""

from __future__ import annotations

from typing import Any

import msgspec

import projections
from eventstore.payloads import decode_payload
from projections import reasons as R
from projections._arrears.assess import Assessor
from projections._arrears.facts import fold_reading
from projections._arrears.notices import Notices
from projections._arrears.projection import ArrearsProjection
from projections._arrears.state import Reading


class _ProvisionalIsFinal(Assessor):
    def assess(self, account, now):
        a = super().assess(account, now)
        # The flaw: a provisional statement's figure is taken as settled.
        notes = tuple(n for n in a.notes if n != R.PROVISIONAL_BALANCE)
        return msgspec.structs.replace(a, notes=notes, confidence=a.base_confidence)


class _NoCalendar(Notices):
    def _wait_for_calendar(self, state, account_id, notice, a, ctx) -> bool:
        return False  # the flaw: any time is a good time to send


class _AckIsDelivery(Notices):
    def acknowledge(self, state, account_id, notice_id, stage, event_id, ctx) -> None:
        # The flaw: the service accepted it, so it was delivered.
        stage = "delivered" if stage == "accepted" else stage
        super().acknowledge(state, account_id, notice_id, stage, event_id, ctx)


class _VulnerableAtHoldOnly(Notices):
    def _recheck_held(self, account_id, notice, a, ctx, trigger):
        # The flaw: once held, a customer's vulnerability no longer matters...
        return super()._recheck_held(account_id, notice, _not_vulnerable(a), ctx, trigger)

    def _release_blockers(self, notice, a):
        return super()._release_blockers(notice, _not_vulnerable(a))  # ...not even at release


def _not_vulnerable(a):
    blockers = tuple(r for r in a.blockers if r != R.VULNERABLE_CUSTOMER)
    return msgspec.structs.replace(a, vulnerable=False, blockers=blockers)


class _TrustsDeviceClock(ArrearsProjection):
    def apply(self, state, event, ctx):
        if event.type != "MeterReading":
            return super().apply(state, event, ctx)
        # The flaw: the device's own time is the reading's time (and never "ahead").
        trusted = msgspec.structs.replace(event, recorded_at=event.occurred_at)
        p = decode_payload(event)
        far = max(ctx.now, event.occurred_at) + 1
        account = fold_reading(state.facts, p, trusted, far, self._tolerance_ns, ctx)  # type: ignore[arg-type]
        if account.debt_minor >= self._threshold:
            self._after_reading(state, p.account_id, account, ctx)  # type: ignore[union-attr]
        return state


class _LatestByArrival(ArrearsProjection):
    def apply(self, state, event, ctx):
        state = super().apply(state, event, ctx)
        if event.type == "MeterReading":
            p = decode_payload(event)
            meter = state.facts.accounts[p.account_id].meters[p.meter_id]  # type: ignore[union-attr]
            # The flaw: whatever arrived last is the meter's latest reading.
            recorded = event.recorded_at
            arrival = recorded if 0 < recorded < ctx.now else ctx.now
            meter.latest = Reading(min(event.occurred_at, arrival), event.occurred_at,
                                   p.register_kwh, p.estimated,  # type: ignore[union-attr]
                                   event.occurred_at > arrival + self._tolerance_ns,
                                   event.id.bytes)
        return state


def _variant(name: str, *, notices: type[Notices] = Notices, assessor: type[Assessor] = Assessor,
             base: type = ArrearsProjection, **config: Any) -> ArrearsProjection:
    real = projections.get("arrears", **config)
    variant = base(real._config)
    variant.name = name
    variant._assessor = assessor(variant._config)
    variant._notices = notices(variant._config, variant._assessor)
    return variant


def releases_provisional(**config: Any) -> ArrearsProjection:
    """Arrears, except a provisional balance is released on as if it were reconciled."""
    return _variant("arrears-releases-provisional", assessor=_ProvisionalIsFinal, **config)


def ignores_calendar(**config: Any) -> ArrearsProjection:
    """Arrears, except notices go out at the end of the hold whatever the calendar says."""
    return _variant("arrears-ignores-calendar", notices=_NoCalendar, **config)


def trusts_device_clock(**config: Any) -> ArrearsProjection:
    """Arrears, except a reading's device time is trusted as its time."""
    return _variant("arrears-trusts-device-clock", base=_TrustsDeviceClock, **config)


def latest_by_arrival(**config: Any) -> ArrearsProjection:
    """Arrears, except a meter's latest reading is the last one to arrive."""
    return _variant("arrears-latest-by-arrival", base=_LatestByArrival, **config)


def ack_is_delivery(**config: Any) -> ArrearsProjection:
    """Arrears, except an "accepted" acknowledgement counts as delivery."""
    return _variant("arrears-ack-is-delivery", notices=_AckIsDelivery, **config)


def vulnerable_checked_at_hold_only(**config: Any) -> ArrearsProjection:
    """Arrears, except a customer flagged vulnerable during the hold still gets the notice."""
    return _variant("arrears-vulnerable-at-hold-only", notices=_VulnerableAtHoldOnly, **config)

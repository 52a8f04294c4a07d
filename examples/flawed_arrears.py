"""Deliberately flawed variants of the arrears projection, to show ``unbroken check`` finds real bugs.

Each variant is the real ``ArrearsProjection`` with one mistake of the kind
that passes every unit test written from the happy path and only shows up
when events arrive late, twice or out of order:

- ``no_send_time_recheck``: a held notice is released on what was true when it
  was held; nothing is checked again at send time (breaks INV-1 when the
  readings went stale during the hold, SM-AR-012).
- ``counts_duplicate_payments``: every delivery of a payment counts, so a
  payment the processor delivered twice pays the debt twice (breaks INV-5 and
  AR-5, SM-AR-004).
- ``hold_ignores_late_payments``: the hold window is fire-and-forget; a payment
  that arrives while the notice is held neither cancels it nor stops its
  release (breaks AR-1, SM-AR-003).

Use them by spec: ``unbroken check --log LOG --projection
examples/flawed_arrears.py:hold_ignores_late_payments``. They reach into the
projection's private parts on purpose: a flaw is a one-line change.
"""

from __future__ import annotations

from typing import Any

import msgspec

import projections
from projections import reasons as R
from projections._arrears.assess import NO_DEBT
from projections._arrears.notices import Notices
from projections._arrears.projection import ArrearsProjection

_MONEY_REASONS = NO_DEBT | {R.LATE_PAYMENT_CANCELLED}


class _NoRecheck(Notices):
    def _release_blockers(self, notice, a):
        return ()  # the flaw: trust the hold-time judgement at send time


class _IgnoresLatePayments(Notices):
    def _recheck_held(self, account_id, notice, a, ctx, trigger):
        if trigger != "payment":  # the flaw: a payment inside the window changes nothing...
            super()._recheck_held(account_id, notice, a, ctx, trigger)

    def _release_blockers(self, notice, a):
        # ...not even at release, where only non-money reasons are looked at.
        return tuple(r for r in super()._release_blockers(notice, a) if r not in _MONEY_REASONS)


class _CountsDuplicates(ArrearsProjection):
    def _on_payment(self, state, p, event, ctx) -> None:
        account = state.facts.accounts.get(p.account_id)
        seen = sum(1 for key in (account.payments if account else ()) if key.split("#")[0] == p.payment_id)
        # The flaw: each delivery is a new payment (keyed by how many came before).
        super()._on_payment(state, msgspec.structs.replace(p, payment_id=f"{p.payment_id}#{seen}"), event, ctx)


def _variant(name: str, notices: type[Notices] | None = None, base: type = ArrearsProjection,
             **config: Any) -> ArrearsProjection:
    real = projections.get("arrears", **config)
    variant = base(real._config)
    variant.name = name
    if notices is not None:
        variant._notices = notices(variant._config, variant._assessor)
    return variant


def no_send_time_recheck(**config: Any) -> ArrearsProjection:
    """Arrears, except a held notice is released without re-checking anything."""
    return _variant("arrears-no-send-time-recheck", _NoRecheck, **config)


def counts_duplicate_payments(**config: Any) -> ArrearsProjection:
    """Arrears, except a payment delivered twice is counted twice."""
    return _variant("arrears-counts-duplicate-payments", base=_CountsDuplicates, **config)


def hold_ignores_late_payments(**config: Any) -> ArrearsProjection:
    """Arrears, except payments arriving during the hold window are ignored until release."""
    return _variant("arrears-hold-ignores-late-payments", _IgnoresLatePayments, **config)

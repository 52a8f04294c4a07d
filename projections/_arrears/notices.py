"""The life of an arrears notice: evaluate -> HELD -> re-check at release -> RELEASED | CANCELLED.

A notice is never sent at evaluation. It is held for the hold window (a
timer); at release every condition is checked again against the facts known
then, the calendar decides whether now is an allowed send time, and only then
is it released with the effect key ``arrears-notice:{account}:{period}``. One
released notice at most per account and period, however often evaluation runs.
"""

from __future__ import annotations

from projections import reasons as R
from projections._contract import Context, Decision, Status

from .assess import BAD_INPUT, NO_DEBT, Assessment, Assessor, is_vulnerable
from .calendar import SendWindow
from .config import ArrearsConfig, hours_ns
from .state import Account, ArrearsState, Notice

KIND = "arrears-notice"
ACTION = "send-arrears-notice"
STAGE_REASON = {"accepted": R.ACK_NOT_DELIVERY, "delivered": R.DELIVERY_CONFIRMED, "failed": R.DELIVERY_FAILED}


def effect_key(account_id: str, period: str) -> str:
    """The idempotency key of the notice for one account and period."""
    return f"{KIND}:{account_id}:{period}"


def release_key(account_id: str, period: str) -> str:
    """The timer key of a held notice's release; one per account and period."""
    return f"release:{account_id}:{period}"


class Notices:
    """Opens, re-checks, releases and cancels notices for one config."""

    def __init__(self, config: ArrearsConfig, assessor: Assessor) -> None:
        self.c = config
        self.assessor = assessor
        self.hold_ns = hours_ns(config.hold_hours)
        self.window = SendWindow(
            config.send_from_hour, config.send_until_hour, config.send_weekdays,
            config.utc_offset_minutes * 60_000_000_000,
        )

    # -- evaluation ---------------------------------------------------------
    def evaluate(self, state: ArrearsState, account_id: str, account: Account, ctx: Context, trigger: str) -> None:
        """Decide whether the account's current period needs a (held) notice now.

        ``trigger`` is what caused it: "balance" restarts a running hold (new
        statement, new window); "reading" and "timer" stay quiet about notices
        already released.
        """
        notices = state.notices.get(account_id) or {}
        if account.debt_minor < self.c.debt_threshold_minor and not any(
            n.status == "held" for n in notices.values()
        ):
            return  # under every threshold and nothing held: nothing to decide (the common case)
        a = self.assessor.assess(account, ctx.now)
        for period, notice in list(notices.items()):
            if notice.status == "held" and period != a.period:
                self._cancel(account_id, notice, a, (R.STATEMENT_SUPERSEDED,), ctx)
        if a.period is None:
            return
        notice = notices.get(a.period)
        status = notice.status if notice is not None else None
        if status == "held":
            if self._recheck_held(account_id, notice, a, ctx, trigger):  # type: ignore[arg-type]
                self._consider(state, account_id, a, notice, ctx)  # e.g. a review once vulnerable
        elif status == "released":
            if trigger != "reading" and not a.blockers:
                self._decide(Status.BLOCKED, account_id, a.period, a, (R.ALREADY_NOTIFIED,), None, ctx)
        else:
            self._consider(state, account_id, a, notice, ctx)

    def unchanged_by_reading(self, notices: dict[str, Notice], notice: Notice, account: Account, now: int) -> bool:
        """True when ``evaluate(..., "reading")`` would decide, schedule and change nothing.

        For the re-check after a reading: ``notice`` is the stopped notice of
        the account's current period and the debt is at or over the base
        threshold. It follows ``evaluate`` and ``_consider`` without building
        an assessment, and says False whenever the answer needs them: a held
        notice to cancel, a due timer to schedule, a vulnerable customer, or
        no bad input (a confidence check, or a notice to hold).
        """
        for other in notices.values():
            if other.status == "held":
                return False
        assessor = self.assessor
        if is_vulnerable(account):  # under its threshold _consider stops at NO_DEBT, else it decides
            return account.debt_minor < assessor.vulnerable_threshold
        if account.debt_minor < self.c.debt_threshold_minor:
            return True  # _consider stops at NO_DEBT
        if now < account.balance.due_at + assessor.grace_ns:  # type: ignore[union-attr]
            return False
        bad = assessor.bad_inputs(account, now)
        return bool(bad) and notice.status == "blocked" and notice.reasons == bad  # _block says it once

    def _recheck_held(self, account_id: str, notice: Notice, a: Assessment, ctx: Context, trigger: str) -> bool:
        """A fact arriving inside the window: cancel on lost debt, restart on a new statement.

        Returns True when the notice was cancelled.
        """
        if NO_DEBT.intersection(a.blockers) or a.vulnerable:
            self._cancel(account_id, notice, a, self._no_debt_reasons(notice, a), ctx)
            return True
        if trigger == "balance":
            self._hold(account_id, notice, a, (R.HOLD_RESTARTED,), ctx)
        return False

    def _consider(self, state: ArrearsState, account_id: str, a: Assessment, notice: Notice | None, ctx: Context) -> None:
        """No notice held or released for this period: hold one, or say why not."""
        if NO_DEBT.intersection(a.blockers):
            return
        if R.NOT_YET_DUE in a.blockers:
            ctx.schedule(a.due_time, f"due:{account_id}", ["due", account_id])  # type: ignore[arg-type]
            return
        if a.vulnerable:
            self._block(state, account_id, a, notice, (R.VULNERABLE_CUSTOMER, R.MANUAL_REVIEW), ctx)
            return
        bad = tuple(r for r in a.blockers if r in BAD_INPUT)
        if bad:
            self._block(state, account_id, a, notice, bad, ctx)
        elif a.confidence < self.c.min_confidence_internal or a.base_confidence < self.c.min_confidence_external:
            self._block(state, account_id, a, notice, (R.LOW_CONFIDENCE,), ctx)
        else:
            fresh = Notice(a.period, "held", ctx.now, 0, a.debt_minor)  # type: ignore[arg-type]
            state.notices.setdefault(account_id, {})[a.period] = fresh  # type: ignore[index]
            self._hold(account_id, fresh, a, (), ctx)

    def _hold(self, account_id: str, notice: Notice, a: Assessment, extra: tuple[str, ...], ctx: Context) -> None:
        notice.status, notice.waiting = "held", ""
        notice.opened_at, notice.debt_at_hold = ctx.now, a.debt_minor
        notice.hold_until = ctx.now + self.hold_ns
        notice.reasons = (R.DEBT_OVER_THRESHOLD, R.HOLD_WINDOW, *extra, *a.notes)
        ctx.schedule(notice.hold_until, release_key(account_id, notice.period), ["release", account_id, notice.period])
        self._decide(Status.HELD, account_id, notice.period, a, notice.reasons, notice.hold_until, ctx)

    def _block(self, state: ArrearsState, account_id: str, a: Assessment, notice: Notice | None,
               reasons: tuple[str, ...], ctx: Context) -> None:
        """Record why no notice is held; says it once until the reasons change."""
        if notice is not None and notice.status == "blocked" and notice.reasons == reasons:
            return
        blocked = Notice(a.period, "blocked", ctx.now, 0, a.debt_minor, reasons)  # type: ignore[arg-type]
        state.notices.setdefault(account_id, {})[a.period] = blocked  # type: ignore[index]
        if a.vulnerable:
            ctx.decide(Decision(
                kind="arrears-review", subject=account_id, action="refer-to-agent",
                status=Status.PROPOSED, reasons=reasons, confidence=a.confidence,
                min_confidence=self.c.min_confidence_internal, inputs=a.inputs,
                input_time=a.input_time, freshness_ns=self.assessor.freshness_ns,
            ))
        self._decide(Status.BLOCKED, account_id, a.period, a, reasons, None, ctx)  # type: ignore[arg-type]

    # -- release ----------------------------------------------------------------
    def release(self, state: ArrearsState, account_id: str, period: str, ctx: Context) -> None:
        """The hold window is over: re-check everything, then release, wait or cancel."""
        notice = (state.notices.get(account_id) or {}).get(period)
        if notice is None or notice.status != "held":
            return
        account = state.facts.accounts[account_id]
        a = self.assessor.assess(account, ctx.now)
        reasons = self._release_blockers(notice, a)
        if reasons:
            self._cancel(account_id, notice, a, reasons, ctx)
            self.evaluate(state, account_id, account, ctx, "timer")
        elif R.PROVISIONAL_BALANCE in a.notes:
            notice.waiting = "reconciliation"
            self._decide(Status.HELD, account_id, period, a, (R.PROVISIONAL_BALANCE,), notice.hold_until, ctx)
        elif not self._wait_for_calendar(state, account_id, notice, a, ctx):
            self._release(account_id, notice, a, ctx, account.acks.get(effect_key(account_id, period), ""))

    def _release_blockers(self, notice: Notice, a: Assessment) -> tuple[str, ...]:
        if a.period != notice.period:
            return (R.STATEMENT_SUPERSEDED,)
        if NO_DEBT.intersection(a.blockers) or a.vulnerable:
            return self._no_debt_reasons(notice, a)
        blockers = tuple(r for r in a.blockers if r in BAD_INPUT or r == R.NOT_YET_DUE)
        # A provisional balance lowers confidence but is waited out, not cancelled (SM-AR-011).
        if not blockers and a.base_confidence < self.c.min_confidence_external:
            return (R.LOW_CONFIDENCE,)
        return blockers

    def _wait_for_calendar(self, state: ArrearsState, account_id: str, notice: Notice, a: Assessment, ctx: Context) -> bool:
        """Move the release to the next allowed send time; False when now is allowed."""
        at, why = self.window.next_allowed(ctx.now, state.facts.calendar)
        if why is None:
            return False
        notice.waiting = "calendar"
        if at is not None:
            notice.hold_until = at
            ctx.schedule(at, release_key(account_id, notice.period), ["release", account_id, notice.period])
        self._decide(Status.HELD, account_id, notice.period, a, (why,), at, ctx)
        return True

    def _release(self, account_id: str, notice: Notice, a: Assessment, ctx: Context, delivery: str) -> None:
        notice.status, notice.waiting, notice.delivery = "released", "", delivery
        notice.reasons = (R.DEBT_OVER_THRESHOLD, R.RECHECKED_AT_RELEASE, *a.notes)
        self._decide(Status.RELEASED, account_id, notice.period, a, notice.reasons, notice.hold_until, ctx)

    def _cancel(self, account_id: str, notice: Notice, a: Assessment, reasons: tuple[str, ...], ctx: Context) -> None:
        notice.status, notice.waiting, notice.reasons = "cancelled", "", reasons
        ctx.cancel(release_key(account_id, notice.period))
        self._decide(Status.CANCELLED, account_id, notice.period, a, reasons, notice.hold_until, ctx)

    @staticmethod
    def _no_debt_reasons(notice: Notice, a: Assessment) -> tuple[str, ...]:
        reasons = [R.VULNERABLE_CUSTOMER] if a.vulnerable else []
        if a.paid_since_statement and a.debt_minor < a.threshold_minor:
            reasons.append(R.LATE_PAYMENT_CANCELLED)
        reasons.extend(r for r in a.blockers if r in NO_DEBT)
        return tuple(reasons)

    # -- delivery -----------------------------------------------------------------
    def acknowledge(self, state: ArrearsState, account_id: str, notice_id: str, stage: str,
                    event_id: str, ctx: Context) -> None:
        """Track delivery: only a "delivered" record marks a notice delivered; "accepted" is not."""
        period = notice_id.rpartition(":")[2]
        notice = (state.notices.get(account_id) or {}).get(period)
        known = notice is not None and notice.status == "released" and effect_key(account_id, period) == notice_id
        best = state.facts.accounts[account_id].acks.get(notice_id, stage)
        if known:
            notice.delivery = best  # type: ignore[union-attr]
        confirmed = known and stage == "delivered"
        reasons = (STAGE_REASON[stage],) if known else (R.UNKNOWN_NOTICE, STAGE_REASON[stage])
        ctx.decide(Decision(
            kind="notice-delivery", subject=account_id, action="mark-delivered",
            status=Status.RELEASED if confirmed else Status.BLOCKED, reasons=reasons,
            min_confidence=self.c.min_confidence_internal, inputs=(event_id,),
        ))

    def _decide(self, status: Status, account_id: str, period: str, a: Assessment,
                reasons: tuple[str, ...], hold_until: int | None, ctx: Context) -> None:
        ctx.decide(Decision(
            kind=KIND, subject=account_id, action=ACTION, status=status, reasons=reasons,
            confidence=a.confidence, min_confidence=self.c.min_confidence_external,
            inputs=a.inputs, effect_key=effect_key(account_id, period), external=True,
            irreversible=True, input_time=a.input_time, freshness_ns=self.assessor.freshness_ns,
            hold_until=hold_until,
        ))

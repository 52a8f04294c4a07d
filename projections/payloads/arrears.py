"""Arrears payloads: meter readings, payments, statements, flags, calendar days and acks."""

from __future__ import annotations

from typing import Literal

from eventstore.payloads import Payload, register_payloads


class MeterReading(Payload, tag="MeterReading"):
    """A cumulative register reading; the event's ``occurred_at`` is device time."""

    meter_id: str
    account_id: str
    register_kwh: float
    estimated: bool = False


class PaymentReceived(Payload, tag="PaymentReceived"):
    account_id: str
    payment_id: str
    amount_minor: int
    currency: str = "GBP"


class PaymentReversed(Payload, tag="PaymentReversed"):
    account_id: str
    payment_id: str
    reason: str = ""


class AccountBalance(Payload, tag="AccountBalance"):
    """A billing system's statement of what an account owes; positive means in debt."""

    account_id: str
    balance_minor: int
    provisional: bool = False
    due_at: int | None = None


class CustomerFlag(Payload, tag="CustomerFlag"):
    account_id: str
    flag: str
    active: bool = True


class CalendarDay(Payload, tag="CalendarDay"):
    """A day's calendar facts; ``date`` is ISO ``YYYY-MM-DD``."""

    date: str
    holiday: bool = False
    name: str = ""


class NotificationAck(Payload, tag="NotificationAck"):
    """The notification service's word on a notice: accepted, delivered or failed."""

    account_id: str
    notice_id: str
    stage: Literal["accepted", "delivered", "failed"] = "accepted"


register_payloads(
    MeterReading, PaymentReceived, PaymentReversed, AccountBalance,
    CustomerFlag, CalendarDay, NotificationAck,
)

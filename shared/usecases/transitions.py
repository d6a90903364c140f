"""Writing a transition that `shared.domain.transitions` decided: the new status, its
timestamp and who cancelled, then what the rule asks of the world — deposit status
changes, outbox rows, refunds owed, intents to cancel — returned as Effects for after the
commit. Every status change of a booking goes
through here, for one loaded booking (`apply`) or for many in one conditional statement
(`conditional_update`)."""

from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy import ColumnElement, Update, true, update
from sqlalchemy.orm import Session

from shared.adapters.models import Booking, When
from shared.domain import calendar, deposits
from shared.domain.deposits import DepositMove, DepositStatus
from shared.domain.notifications import NotificationKind
from shared.domain.transitions import (
    Action,
    BookingStatus,
    CancelIntent,
    Deposit,
    Guard,
    Notify,
    RefundDeposit,
    Rule,
    rules_for,
)
from shared.usecases import refunds, reminders
from shared.usecases.effects import NONE, Effects
from shared.usecases.notifications import notify_booking

# One INFO line per booking status change: the business events of the log.
log = logging.getLogger("inkflow.bookings")

# When a booking entered a status.
_STAMPS: dict[BookingStatus, str] = {
    BookingStatus.CONFIRMED: "confirmed_at",
    BookingStatus.CANCELLED: "cancelled_at",
    BookingStatus.EXPIRED: "expired_at",
    BookingStatus.COMPLETED: "completed_at",
    BookingStatus.NO_SHOW: "no_show_at",
}


def _status_values(rule: Rule, now: When) -> dict[str, object]:
    """The columns a status change writes: the status, when, and who cancelled."""
    values: dict[str, object] = {"status": rule.target}
    column = _STAMPS.get(rule.target)
    if column:
        values[column] = now
    if rule.cancelled_by is not None:
        values["cancelled_by"] = rule.cancelled_by
    return values


def set_status(booking: Booking, rule: Rule, now: datetime) -> None:
    """The status part alone (flush it to learn whether the exclusion constraint agrees)."""
    if rule.changes_status:
        for column, value in _status_values(rule, now).items():
            setattr(booking, column, value)


def occasion(kind: NotificationKind, booking: Booking) -> str:
    """Which of a booking's emails of one kind this is (see the notifications' unique
    key): each reschedule is its own; the others are sent once per booking."""
    if kind == NotificationKind.BOOKING_RESCHEDULED:
        return f"reschedule:{booking.reschedule_count}"
    return ""


def _move_deposit(booking: Booking, move: DepositMove) -> bool:
    """Apply the deposit table; True when the deposit status changed."""
    current = DepositStatus(booking.deposit_status)
    if not deposits.changes(move, current):
        return False
    booking.deposit_status = deposits.after(move, current)
    return True


def carry_out(
    session: Session,
    booking: Booking,
    rule: Rule,
    now: datetime,
    *,
    previous_start: datetime | None = None,
) -> Effects:
    """What the rule asks for, written in the caller's transaction. `previous_start`: the
    start a rescheduled booking moved from (its emails show it). The booking's reminder
    and calendar SEQUENCE follow every transition here, before its e-mails are added."""
    reminders.follow(session, booking, rule, now)
    if calendar.changes_event(rule):
        booking.calendar_sequence += 1
    if rule.changes_status:
        log.info(
            "booking %s %s -> %s (%s)", booking.id, rule.source.value, rule.target.value,
            rule.action.value.lower(),
        )  # fmt: skip
    effects = NONE
    for intent in rule.then:
        match intent:
            case Notify(kind):
                mails = notify_booking(
                    session, booking, kind, occasion(kind, booking), previous_start=previous_start
                )
                effects += Effects(mails=tuple(mails))
            case CancelIntent():
                if booking.payment_intent_id:
                    effects += Effects(cancel_intents=(booking.payment_intent_id,))
            case Deposit(move):
                _move_deposit(booking, move)
            case RefundDeposit(reason):
                # Only a paid deposit goes back (once): the deposit table says whether.
                if _move_deposit(booking, DepositMove.REFUND):
                    effects += refunds.owe(session, booking, reason, now=now)
    return effects


def apply(
    session: Session,
    booking: Booking,
    rule: Rule,
    now: datetime,
    *,
    previous_start: datetime | None = None,
) -> Effects:
    """Move one loaded (and locked) booking along `rule`."""
    set_status(booking, rule, now)
    return carry_out(session, booking, rule, now, previous_start=previous_start)


def single_rule(action: Action, status: BookingStatus) -> Rule:
    """The one row of an action in a status, for statements over many bookings."""
    [rule] = rules_for(action, status)
    return rule


def _guard_sql(guard: Guard, now: When) -> ColumnElement[bool]:
    if guard is Guard.ALWAYS:
        return true()
    if guard is Guard.HOLD_OVER:
        return Booking.hold_over(now)
    raise ValueError(f"{guard} cannot be checked in one statement")


def conditional_update(rule: Rule, which: ColumnElement[bool], now: When) -> Update:
    """Move every booking matched by `which` along `rule` in one statement, but only those
    still in the rule's source status and meeting its guard (a booking confirmed
    meanwhile stays confirmed). Add `.returning(Booking)` to carry out the rule's intents
    for the rows it changed."""
    return (
        update(Booking)
        .where(which, Booking.status == rule.source, _guard_sql(rule.guard, now))
        .values(**_status_values(rule, now))
    )

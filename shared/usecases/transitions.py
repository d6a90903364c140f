"""Writing a transition that `shared.domain.transitions` decided: the new status and its
timestamp, then what the rule asks of the world — outbox rows, refunds owed, intents to
cancel — returned as Effects for after the commit. Every status change of a booking goes
through here, for one loaded booking (`apply`) or for many in one conditional statement
(`conditional_update`)."""

from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy import ColumnElement, Update, true, update
from sqlalchemy.orm import Session

from shared.adapters.models import Booking
from shared.domain.transitions import (
    Action,
    BookingStatus,
    CancelIntent,
    Guard,
    Notify,
    RefundDeposit,
    Rule,
    rules_for,
)
from shared.usecases import refunds
from shared.usecases.effects import NONE, Effects
from shared.usecases.notifications import notify_booking

# One INFO line per booking status change: the business events of the log.
log = logging.getLogger("inkflow.bookings")

# When a booking entered a status.
_STAMPS: dict[BookingStatus, str] = {
    BookingStatus.CONFIRMED: "confirmed_at",
    BookingStatus.CANCELLED: "cancelled_at",
    BookingStatus.EXPIRED: "expired_at",
}


def _stamp(target: BookingStatus, now: datetime) -> dict[str, datetime]:
    column = _STAMPS.get(target)
    return {column: now} if column else {}


def set_status(booking: Booking, rule: Rule, now: datetime) -> None:
    """The status part alone (flush it to learn whether the exclusion constraint agrees)."""
    if rule.changes_status:
        booking.status = rule.target
        for column, value in _stamp(rule.target, now).items():
            setattr(booking, column, value)


def carry_out(session: Session, booking: Booking, rule: Rule, now: datetime) -> Effects:
    """What the rule asks for, written in the caller's transaction."""
    if rule.changes_status:
        log.info(
            "booking %s %s -> %s (%s)", booking.id, rule.source.value, rule.target.value,
            rule.action.value.lower(),
        )  # fmt: skip
    effects = NONE
    for intent in rule.then:
        match intent:
            case Notify(kind):
                effects += Effects(mails=tuple(notify_booking(session, booking, kind)))
            case CancelIntent():
                if booking.payment_intent_id:
                    effects += Effects(cancel_intents=(booking.payment_intent_id,))
            case RefundDeposit(reason):
                effects += refunds.owe(session, booking, reason, now=now)
    return effects


def apply(session: Session, booking: Booking, rule: Rule, now: datetime) -> Effects:
    """Move one loaded (and locked) booking along `rule`."""
    set_status(booking, rule, now)
    return carry_out(session, booking, rule, now)


def single_rule(action: Action, status: BookingStatus) -> Rule:
    """The one row of an action in a status, for statements over many bookings."""
    [rule] = rules_for(action, status)
    return rule


def _guard_sql(guard: Guard, now: datetime) -> ColumnElement[bool]:
    if guard is Guard.ALWAYS:
        return true()
    if guard is Guard.HOLD_OVER:
        return Booking.hold_over(now)
    raise ValueError(f"{guard} cannot be checked in one statement")


def conditional_update(rule: Rule, which: ColumnElement[bool], now: datetime) -> Update:
    """Move every booking matched by `which` along `rule` in one statement, but only those
    still in the rule's source status and meeting its guard (a booking confirmed
    meanwhile stays confirmed). Add `.returning(Booking)` to carry out the rule's intents
    for the rows it changed."""
    return (
        update(Booking)
        .where(which, Booking.status == rule.source, _guard_sql(rule.guard, now))
        .values(status=rule.target, **_stamp(rule.target, now))
    )

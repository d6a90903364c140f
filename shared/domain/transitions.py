"""Booking statuses and the transitions between them, as data.

Each row of `TABLE` says: this action, on a booking in this status, when this guard
holds, moves it to that status and asks the world for these things (mails, a refund,
cancelling the deposit intent). `decide()` finds the row; the use case writes the new
status and turns the row's intents into outbox rows, refunds owed and after-commit
effects. Adding an action is adding rows (and, for an action someone asks for, listing
it in `REQUESTED`).

Two conditions on a status are written once here and once in SQL (`Booking.live()`,
`Booking.blocks_slot(now)` in the models), and must agree:

* **live**: PENDING_PAYMENT or CONFIRMED — what the exclusion constraint counts, so two
  live bookings of an artist never overlap;
* **blocks the slot at `now`**: CONFIRMED, or PENDING_PAYMENT whose hold has not run out
  — what availability and the booking rules count. A hold past its expiry is still live
  until it is marked EXPIRED (by the sweeper, or by whoever needs its slot).

Pure: no I/O; `now` is an argument.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from shared.domain.notifications import NotificationKind
from shared.domain.refunds import RefundReason

__all__ = [
    "LIVE_STATUSES",
    "REQUESTED",
    "TABLE",
    "Action",
    "BookingStatus",
    "CancelIntent",
    "Facts",
    "Guard",
    "Intent",
    "InvalidTransition",
    "Notify",
    "RefundDeposit",
    "Rule",
    "blocks_slot",
    "check_table",
    "decide",
    "hold_over",
    "initial_status",
    "is_live",
    "needs_slot_check",
    "rules_for",
]


class BookingStatus(StrEnum):
    PENDING_PAYMENT = "PENDING_PAYMENT"
    CONFIRMED = "CONFIRMED"
    EXPIRED = "EXPIRED"
    CANCELLED = "CANCELLED"
    COMPLETED = "COMPLETED"
    NO_SHOW = "NO_SHOW"


# What the exclusion constraint counts (order kept: the constraint's SQL is built from it).
LIVE_STATUSES: tuple[BookingStatus, ...] = (BookingStatus.PENDING_PAYMENT, BookingStatus.CONFIRMED)


def is_live(status: str) -> bool:
    return status in LIVE_STATUSES


def hold_over(expires_at: datetime | None, now: datetime) -> bool:
    """The hold has run out (a booking without an expiry has no hold to run out)."""
    return expires_at is not None and expires_at <= now


def blocks_slot(status: str, expires_at: datetime | None, now: datetime) -> bool:
    """Does a booking in `status` keep its slot from others at `now`?"""
    if status == BookingStatus.CONFIRMED:
        return True
    return status == BookingStatus.PENDING_PAYMENT and expires_at is not None and expires_at > now


def initial_status(*, deposit_required: bool) -> BookingStatus:
    """A new booking waits for its deposit; without one it is confirmed at once."""
    return BookingStatus.PENDING_PAYMENT if deposit_required else BookingStatus.CONFIRMED


class Action(StrEnum):
    # Facts reported to us (Stripe events, the clock, a failed call): in a status without
    # a row they change nothing.
    PAYMENT_SUCCEEDED = "PAYMENT_SUCCEEDED"  # the deposit arrived and matches the booking
    PAYMENT_FAILED = "PAYMENT_FAILED"  # an attempt was declined; the client may retry
    INTENT_CANCELED = "INTENT_CANCELED"  # the deposit intent was cancelled on Stripe
    HOLD_EXPIRED = "HOLD_EXPIRED"  # the sweep, or a booking that needs the slot
    PROVIDER_FAILED = "PROVIDER_FAILED"  # the deposit intent could not be created


# Actions someone asks for (the lifecycle's cancel, complete, no-show, reschedule): in a
# status without a row they are refused (INVALID_STATE).
REQUESTED: frozenset[Action] = frozenset()


class Guard(StrEnum):
    ALWAYS = "ALWAYS"
    HOLD_OVER = "HOLD_OVER"  # expires_at <= now
    # Whether another live booking holds the slot: the use case must check (under the
    # artist's lock) before deciding; see `needs_slot_check`.
    SLOT_FREE = "SLOT_FREE"
    SLOT_TAKEN = "SLOT_TAKEN"


@dataclass(frozen=True, slots=True)
class Facts:
    """What the guards read about a booking at the moment of deciding."""

    status: BookingStatus
    now: datetime
    expires_at: datetime | None = None
    slot_free: bool | None = None  # None: not checked


# -- what a transition asks of the world (the use case carries it out) -------------------


@dataclass(frozen=True, slots=True)
class Notify:
    kind: NotificationKind


@dataclass(frozen=True, slots=True)
class CancelIntent:
    """Cancel the booking's deposit intent on Stripe (after commit)."""


@dataclass(frozen=True, slots=True)
class RefundDeposit:
    """Give the deposit back in full (owed in the transaction, made after commit)."""

    reason: RefundReason


Intent = Notify | CancelIntent | RefundDeposit


@dataclass(frozen=True, slots=True)
class Rule:
    action: Action
    source: BookingStatus
    target: BookingStatus  # the same as `source`: the status stays
    guard: Guard = Guard.ALWAYS
    then: tuple[Intent, ...] = ()

    @property
    def changes_status(self) -> bool:
        return self.target != self.source

    @property
    def makes_live(self) -> bool:
        """The booking takes a slot again: the exclusion constraint may refuse it."""
        return is_live(self.target) and not is_live(self.source)


_S = BookingStatus
_late_payment_rows = tuple(
    row
    for source in (_S.EXPIRED, _S.CANCELLED)
    for row in (
        # Paid after the hold ended: keep the booking if nobody took the slot meanwhile...
        Rule(
            Action.PAYMENT_SUCCEEDED,
            source,
            _S.CONFIRMED,
            Guard.SLOT_FREE,
            (Notify(NotificationKind.BOOKING_CONFIRMED),),
        ),
        # ... else give the money back (the client is told once Stripe takes the refund).
        Rule(
            Action.PAYMENT_SUCCEEDED,
            source,
            source,
            Guard.SLOT_TAKEN,
            (RefundDeposit(RefundReason.LATE_PAYMENT),),
        ),
    )
)

TABLE: tuple[Rule, ...] = (
    # A payment while the hold stands: the exclusion constraint kept the slot ours.
    Rule(
        Action.PAYMENT_SUCCEEDED,
        _S.PENDING_PAYMENT,
        _S.CONFIRMED,
        then=(Notify(NotificationKind.BOOKING_CONFIRMED),),
    ),
    *_late_payment_rows,
    # The hold stays: the client may pay with another card.
    Rule(
        Action.PAYMENT_FAILED,
        _S.PENDING_PAYMENT,
        _S.PENDING_PAYMENT,
        then=(Notify(NotificationKind.PAYMENT_FAILED),),
    ),
    Rule(Action.INTENT_CANCELED, _S.PENDING_PAYMENT, _S.CANCELLED),
    Rule(
        Action.HOLD_EXPIRED,
        _S.PENDING_PAYMENT,
        _S.EXPIRED,
        Guard.HOLD_OVER,
        (Notify(NotificationKind.HOLD_EXPIRED), CancelIntent()),
    ),
    Rule(Action.PROVIDER_FAILED, _S.PENDING_PAYMENT, _S.CANCELLED),
)


class InvalidTransition(Exception):
    """A requested action that the booking's status does not allow."""

    def __init__(self, action: Action, status: BookingStatus) -> None:
        super().__init__(f"{action} is not allowed on a {status} booking")
        self.action = action
        self.status = status


def rules_for(
    action: Action, status: BookingStatus, table: Iterable[Rule] = TABLE
) -> tuple[Rule, ...]:
    return tuple(r for r in table if r.action == action and r.source == status)


def needs_slot_check(action: Action, status: BookingStatus, table: Iterable[Rule] = TABLE) -> bool:
    """Must the use case find out whether the slot is free before deciding?"""
    return any(
        r.guard in (Guard.SLOT_FREE, Guard.SLOT_TAKEN) for r in rules_for(action, status, table)
    )


def _holds(guard: Guard, facts: Facts) -> bool:
    if guard is Guard.ALWAYS:
        return True
    if guard is Guard.HOLD_OVER:
        return hold_over(facts.expires_at, facts.now)
    if facts.slot_free is None:
        raise ValueError(f"{guard} needs Facts.slot_free (see needs_slot_check)")
    return facts.slot_free if guard is Guard.SLOT_FREE else not facts.slot_free


def decide(
    action: Action,
    facts: Facts,
    *,
    table: Iterable[Rule] = TABLE,
    requested: frozenset[Action] = REQUESTED,
) -> Rule | None:
    """The row that applies, or None when the action changes nothing in this status.
    Raises InvalidTransition for a requested action that has no row here."""
    for rule in rules_for(action, facts.status, table):
        if _holds(rule.guard, facts):
            return rule
    if action in requested:
        raise InvalidTransition(action, facts.status)
    return None


def check_table(table: Iterable[Rule] = TABLE) -> list[str]:
    """Problems that make a table ambiguous: for one action and status, an ALWAYS row
    beside others, or the same guard twice. Empty when the table is sound."""
    problems: list[str] = []
    seen: dict[tuple[Action, BookingStatus], list[Guard]] = {}
    for rule in table:
        seen.setdefault((rule.action, rule.source), []).append(rule.guard)
    for (action, status), guards in seen.items():
        if len(set(guards)) != len(guards):
            problems.append(f"{action} on {status}: a guard appears twice")
        if Guard.ALWAYS in guards and len(guards) > 1:
            problems.append(f"{action} on {status}: ALWAYS beside other rows")
    return problems

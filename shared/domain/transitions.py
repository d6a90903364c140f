"""Booking statuses and the transitions between them, as data.

Each row of `TABLE` says: this action, on a booking in this status, when this guard
holds, moves it to that status and asks the world for these things (mails, a refund,
what becomes of the deposit, cancelling the deposit intent) — provided the artist's
policy allows it (the row's `check`). `decide()` finds the row; the use case writes the
new status and turns the row's intents into outbox rows, refunds owed, deposit status
changes and after-commit effects. Adding an action is adding rows (and, for an action
someone asks for, listing it in `REQUESTED`).

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

from shared.domain import policy
from shared.domain.deposits import CancelledBy, DepositMove
from shared.domain.notifications import NotificationKind
from shared.domain.policy import DEFAULT_POLICY, DepositPolicy, PolicyReason
from shared.domain.refunds import RefundReason

__all__ = [
    "CANCELLED_BY",
    "LIVE_STATUSES",
    "REQUESTED",
    "TABLE",
    "Action",
    "BookingStatus",
    "CancelIntent",
    "Check",
    "Deposit",
    "Facts",
    "Guard",
    "Intent",
    "InvalidTransition",
    "Notify",
    "PolicyRefused",
    "RefundDeposit",
    "Rule",
    "blocks_slot",
    "check_table",
    "decide",
    "hold_over",
    "initial_status",
    "is_live",
    "needs_slot_check",
    "refusal",
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
    # Actions someone asks for.
    CLIENT_CANCEL = "CLIENT_CANCEL"  # the booking's own client
    ARTIST_CANCEL = "ARTIST_CANCEL"  # the artist, refund as asked
    OPERATOR_CANCEL = "OPERATOR_CANCEL"  # the platform's operator, refund as asked
    LEAVE_CANCEL = "LEAVE_CANCEL"  # the artist's new leave covers it (refund in full)
    COMPLETE = "COMPLETE"
    NO_SHOW = "NO_SHOW"
    RESCHEDULE = "RESCHEDULE"  # the client moves it (same status, new times)


# Actions someone asks for: in a status without a row they are refused (INVALID_STATE).
REQUESTED: frozenset[Action] = frozenset(
    {
        Action.CLIENT_CANCEL,
        Action.ARTIST_CANCEL,
        Action.OPERATOR_CANCEL,
        Action.LEAVE_CANCEL,
        Action.COMPLETE,
        Action.NO_SHOW,
        Action.RESCHEDULE,
    }
)

# Who a booking cancelled by an action was cancelled by (`cancelledBy`).
CANCELLED_BY: dict[Action, CancelledBy] = {
    Action.CLIENT_CANCEL: CancelledBy.CLIENT,
    Action.ARTIST_CANCEL: CancelledBy.ARTIST,
    Action.OPERATOR_CANCEL: CancelledBy.OPERATOR,
    Action.LEAVE_CANCEL: CancelledBy.ARTIST,
    Action.INTENT_CANCELED: CancelledBy.SYSTEM,
    Action.PROVIDER_FAILED: CancelledBy.SYSTEM,
}


class Guard(StrEnum):
    ALWAYS = "ALWAYS"
    HOLD_OVER = "HOLD_OVER"  # expires_at <= now
    # Whether another live booking holds the slot: the use case must check (under the
    # artist's lock) before deciding; see `needs_slot_check`.
    SLOT_FREE = "SLOT_FREE"
    SLOT_TAKEN = "SLOT_TAKEN"
    # A client cancelling now is inside the artist's refund window (or not).
    REFUND_DUE = "REFUND_DUE"
    NO_REFUND_DUE = "NO_REFUND_DUE"
    # The artist or operator cancelling asked for the deposit to go back (or not).
    REFUND_ASKED = "REFUND_ASKED"
    REFUND_WAIVED = "REFUND_WAIVED"


class Check(StrEnum):
    """What the artist's policy must allow for a row to apply (else POLICY_VIOLATION)."""

    BEFORE_START = "BEFORE_START"  # policy.cancel_refusal: STARTED
    AFTER_START = "AFTER_START"  # policy.close_refusal: NOT_STARTED
    RESCHEDULABLE = "RESCHEDULABLE"  # policy.reschedule_refusal


@dataclass(frozen=True, slots=True)
class Facts:
    """What the guards and checks read about a booking at the moment of deciding."""

    status: BookingStatus
    now: datetime
    expires_at: datetime | None = None
    slot_free: bool | None = None  # None: not checked
    start: datetime | None = None  # the booking's start (for the policy's notice periods)
    policy: DepositPolicy = DEFAULT_POLICY
    reschedule_count: int = 0
    refund_asked: bool | None = None  # an artist or operator cancel: FULL (True) or NONE


# -- what a transition asks of the world (the use case carries it out) -------------------


@dataclass(frozen=True, slots=True)
class Notify:
    kind: NotificationKind


@dataclass(frozen=True, slots=True)
class CancelIntent:
    """Cancel the booking's deposit intent on Stripe (after commit)."""


@dataclass(frozen=True, slots=True)
class RefundDeposit:
    """Give a paid deposit back in full (deposit REFUND_PENDING; the refund is owed in the
    transaction and made after commit). Nothing for a deposit that is not paid (see
    `shared.domain.deposits.TABLE`)."""

    reason: RefundReason


@dataclass(frozen=True, slots=True)
class Deposit:
    """Move the deposit status (received, forfeited) as `shared.domain.deposits` says."""

    move: DepositMove


Intent = Notify | CancelIntent | RefundDeposit | Deposit


@dataclass(frozen=True, slots=True)
class Rule:
    action: Action
    source: BookingStatus
    target: BookingStatus  # the same as `source`: the status stays
    guard: Guard = Guard.ALWAYS
    then: tuple[Intent, ...] = ()
    check: Check | None = None

    @property
    def changes_status(self) -> bool:
        return self.target != self.source

    @property
    def cancelled_by(self) -> CancelledBy | None:
        """Who cancelled a booking this row cancels (None: it cancels nothing)."""
        if self.changes_status and self.target == BookingStatus.CANCELLED:
            return CANCELLED_BY[self.action]
        return None

    @property
    def makes_live(self) -> bool:
        """The booking takes a slot again: the exclusion constraint may refuse it."""
        return is_live(self.target) and not is_live(self.source)


_S = BookingStatus
_RECEIVED = Deposit(DepositMove.RECEIVED)
_FORFEIT = Deposit(DepositMove.FORFEIT)
_CANCELLED_MAIL = Notify(NotificationKind.BOOKING_CANCELLED)

_late_payment_rows = (
    # Paid after the hold ended: keep the booking if nobody took the slot meanwhile...
    Rule(
        Action.PAYMENT_SUCCEEDED,
        _S.EXPIRED,
        _S.CONFIRMED,
        Guard.SLOT_FREE,
        (_RECEIVED, Notify(NotificationKind.BOOKING_CONFIRMED)),
    ),
    # ... else give the money back (the client is told once Stripe takes the refund).
    Rule(
        Action.PAYMENT_SUCCEEDED,
        _S.EXPIRED,
        _S.EXPIRED,
        Guard.SLOT_TAKEN,
        (_RECEIVED, RefundDeposit(RefundReason.LATE_PAYMENT)),
    ),
    # A booking someone cancelled never comes back to life: a payment racing the cancel
    # goes back in full. (A deposit already received, then refunded or kept by the
    # cancel, is not refunded twice: see the deposit table.)
    Rule(
        Action.PAYMENT_SUCCEEDED,
        _S.CANCELLED,
        _S.CANCELLED,
        then=(_RECEIVED, RefundDeposit(RefundReason.LATE_PAYMENT)),
    ),
)


def _cancel_rows(
    action: Action,
    refund: RefundReason,
    *,
    give_back: Guard,
    keep: Guard,
    check: Check | None,
    tell_unpaid: bool,
) -> tuple[Rule, ...]:
    """A cancel: an unpaid hold ends (its intent cancelled; a payment racing it is a late
    payment, refunded); a confirmed booking ends with its deposit given back or kept."""
    return (
        Rule(
            action,
            _S.PENDING_PAYMENT,
            _S.CANCELLED,
            then=(CancelIntent(), *((_CANCELLED_MAIL,) if tell_unpaid else ())),
        ),
        Rule(
            action,
            _S.CONFIRMED,
            _S.CANCELLED,
            give_back,
            (RefundDeposit(refund), _CANCELLED_MAIL),
            check,
        ),
        Rule(action, _S.CONFIRMED, _S.CANCELLED, keep, (_FORFEIT, _CANCELLED_MAIL), check),
    )


_cancel_by_others = tuple(
    row
    for action, reason in (
        (Action.ARTIST_CANCEL, RefundReason.ARTIST_CANCEL),
        (Action.OPERATOR_CANCEL, RefundReason.OPERATOR_CANCEL),
        (Action.LEAVE_CANCEL, RefundReason.LEAVE_CONFLICT),
    )
    # The client is told even of a hold ended for them; the artist hears of it too.
    for row in _cancel_rows(
        action,
        reason,
        give_back=Guard.REFUND_ASKED,
        keep=Guard.REFUND_WAIVED,
        check=None,
        tell_unpaid=True,
    )
)

TABLE: tuple[Rule, ...] = (
    # A payment while the hold stands: the exclusion constraint kept the slot ours.
    Rule(
        Action.PAYMENT_SUCCEEDED,
        _S.PENDING_PAYMENT,
        _S.CONFIRMED,
        then=(_RECEIVED, Notify(NotificationKind.BOOKING_CONFIRMED)),
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
    # The client cancels: a hold they let go needs no mail; a confirmed booking is
    # refunded inside the artist's refund window, else the deposit is kept; never once
    # it has started.
    *_cancel_rows(
        Action.CLIENT_CANCEL,
        RefundReason.CLIENT_CANCEL,
        give_back=Guard.REFUND_DUE,
        keep=Guard.NO_REFUND_DUE,
        check=Check.BEFORE_START,
        tell_unpaid=False,
    ),
    *_cancel_by_others,
    # Closing a booking once it started: completed (the deposit counted toward the
    # price), or the client did not come (the deposit is kept, the client told).
    Rule(Action.COMPLETE, _S.CONFIRMED, _S.COMPLETED, check=Check.AFTER_START),
    Rule(
        Action.NO_SHOW,
        _S.CONFIRMED,
        _S.NO_SHOW,
        then=(_FORFEIT, Notify(NotificationKind.NO_SHOW_RECORDED)),
        check=Check.AFTER_START,
    ),
    # Same status, new times (the use case moves the slot), the same deposit.
    Rule(
        Action.RESCHEDULE,
        _S.CONFIRMED,
        _S.CONFIRMED,
        then=(Notify(NotificationKind.BOOKING_RESCHEDULED),),
        check=Check.RESCHEDULABLE,
    ),
)


class InvalidTransition(Exception):
    """A requested action that the booking's status does not allow."""

    def __init__(self, action: Action, status: BookingStatus) -> None:
        super().__init__(f"{action} is not allowed on a {status} booking")
        self.action = action
        self.status = status


class PolicyRefused(Exception):
    """A requested action that the artist's policy refuses now."""

    def __init__(self, action: Action, reason: PolicyReason) -> None:
        super().__init__(f"{action} refused: {reason}")
        self.action = action
        self.reason = reason


def rules_for(
    action: Action, status: BookingStatus, table: Iterable[Rule] = TABLE
) -> tuple[Rule, ...]:
    return tuple(r for r in table if r.action == action and r.source == status)


def needs_slot_check(action: Action, status: BookingStatus, table: Iterable[Rule] = TABLE) -> bool:
    """Must the use case find out whether the slot is free before deciding?"""
    return any(
        r.guard in (Guard.SLOT_FREE, Guard.SLOT_TAKEN) for r in rules_for(action, status, table)
    )


def _start(facts: Facts, what: object) -> datetime:
    if facts.start is None:
        raise ValueError(f"{what} needs Facts.start")
    return facts.start


def _holds(guard: Guard, facts: Facts) -> bool:
    match guard:
        case Guard.ALWAYS:
            return True
        case Guard.HOLD_OVER:
            return hold_over(facts.expires_at, facts.now)
        case Guard.REFUND_DUE | Guard.NO_REFUND_DUE:
            due = policy.refund_on_client_cancel(
                facts.policy, start=_start(facts, guard), now=facts.now
            )
            return due if guard is Guard.REFUND_DUE else not due
        case Guard.REFUND_ASKED | Guard.REFUND_WAIVED:
            if facts.refund_asked is None:
                raise ValueError(f"{guard} needs Facts.refund_asked")
            return facts.refund_asked if guard is Guard.REFUND_ASKED else not facts.refund_asked
        case Guard.SLOT_FREE | Guard.SLOT_TAKEN:
            if facts.slot_free is None:
                raise ValueError(f"{guard} needs Facts.slot_free (see needs_slot_check)")
            return facts.slot_free if guard is Guard.SLOT_FREE else not facts.slot_free


def refusal(check: Check, facts: Facts) -> PolicyReason | None:
    """Why the artist's policy refuses a row with `check` now (None: it allows it)."""
    start = _start(facts, check)
    match check:
        case Check.BEFORE_START:
            return policy.cancel_refusal(start=start, now=facts.now)
        case Check.AFTER_START:
            return policy.close_refusal(start=start, now=facts.now)
        case Check.RESCHEDULABLE:
            return policy.reschedule_refusal(
                facts.policy, start=start, now=facts.now, reschedule_count=facts.reschedule_count
            )


def decide(
    action: Action,
    facts: Facts,
    *,
    table: Iterable[Rule] = TABLE,
    requested: frozenset[Action] = REQUESTED,
) -> Rule | None:
    """The row that applies, or None when the action changes nothing in this status.
    Raises InvalidTransition for a requested action that has no row here, PolicyRefused
    when the row's check fails."""
    for rule in rules_for(action, facts.status, table):
        if _holds(rule.guard, facts):
            reason = refusal(rule.check, facts) if rule.check is not None else None
            if reason is not None:
                raise PolicyRefused(action, reason)
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

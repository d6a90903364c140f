"""The booking lifecycle after the deposit: cancel (by the client, the artist or the
operator, or because of a leave), complete, no-show, reschedule.

Each action is one transaction that locks the booking row, lets the caller's `Guard`
(`shared.domain.access`) refuse it for whoever is asking, asks the transition table
(`shared.domain.transitions`) whether the status and the artist's policy allow it, writes
the change with its deposit status, outbox rows and refund owed, and commits; then the
runner carries out the effects (the API's runner makes the refund inline once). A refusal
raises before anything is written.

Reschedule keeps the creation's guarantee for the new slot: the Redis lock on it (losers
answer at once), the rules with their reasons (the booking itself not counted), then one
transaction — the artist's advisory lock, the buffer-aware rules checked under it, an
UPDATE of the same row that the exclusion constraint checks — so the old slot is freed by the very
statement that takes the new one, and a failed reschedule leaves the booking as it was.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from shared.adapters.db import transaction
from shared.adapters.locks import SlotLocks, SlotTaken
from shared.adapters.models import Artist, Booking, Client, Leave, Refund
from shared.adapters.runtime import Resources
from shared.domain.access import Guard
from shared.domain.deposits import CancelledBy
from shared.domain.errors import DomainError, ErrorCode
from shared.domain.policy import PolicyReason
from shared.domain.transitions import (
    Action,
    BookingStatus,
    Facts,
    InvalidTransition,
    PolicyRefused,
    Rule,
    decide,
)
from shared.usecases import catalog
from shared.usecases import transitions as transition
from shared.usecases.booking import (
    check_rules,
    claim_checked_slot,
    is_overlap_violation,
    lock_artist_schedule,
)
from shared.usecases.catalog import get_or_404, invalid, parse_id
from shared.usecases.effects import NONE, EffectRunner, Effects
from shared.usecases.schedule import deposit_policy_of

REFUSALS: dict[PolicyReason, str] = {
    PolicyReason.STARTED: "The booking has started; it can no longer be cancelled.",
    PolicyReason.NOT_STARTED: "The booking has not started yet.",
    PolicyReason.TOO_LATE_TO_RESCHEDULE: (
        "The booking starts too soon to be moved (the artist's reschedule notice)."
    ),
    PolicyReason.RESCHEDULE_LIMIT: "The booking was moved as many times as the artist allows.",
    PolicyReason.NO_SHOW_LIMIT: "The artist takes no more bookings from this client.",
}

# Who asks for a cancel under /api/admin: the artist's own token, or the operator's.
STAFF_CANCELS: dict[CancelledBy, Action] = {
    CancelledBy.ARTIST: Action.ARTIST_CANCEL,
    CancelledBy.OPERATOR: Action.OPERATOR_CANCEL,
}


@dataclass(frozen=True, slots=True)
class Done:
    """A lifecycle action, committed and its effects run: the booking as it is now, and
    the refund this action owes (None: none)."""

    booking: Booking
    refund: Refund | None = None


@dataclass(frozen=True, slots=True)
class _Decided:
    booking_id: uuid.UUID
    effects: Effects


# --------------------------------------------------------------------------- deciding


def _facts(
    booking: Booking, artist: Artist, now: datetime, *, refund_asked: bool | None = None
) -> Facts:
    return Facts(
        status=BookingStatus(booking.status),
        now=now,
        expires_at=booking.expires_at,
        start=booking.start_time,
        policy=deposit_policy_of(artist),
        reschedule_count=booking.reschedule_count,
        refund_asked=refund_asked,
    )


def decide_requested(action: Action, facts: Facts) -> Rule:
    """The row for a requested action, or the contract's refusal."""
    try:
        rule = decide(action, facts)
    except InvalidTransition as refused:
        raise DomainError(
            ErrorCode.INVALID_STATE,
            f"A {refused.status} booking does not allow this.",
            {"status": str(refused.status)},
        ) from None
    except PolicyRefused as refused:
        raise DomainError(
            ErrorCode.POLICY_VIOLATION, REFUSALS[refused.reason], {"reason": str(refused.reason)}
        ) from None
    assert rule is not None, f"{action} is requested: it has a row or is refused"
    return rule


def _locked_booking(session: Session, booking_id: str | uuid.UUID) -> Booking:
    booking = session.scalar(
        select(Booking).where(Booking.id == parse_id(booking_id, "Booking")).with_for_update()
    )
    if booking is None:
        raise DomainError(ErrorCode.NOT_FOUND, "Booking not found.", {"booking": str(booking_id)})
    return booking


def _artist(session: Session, booking: Booking) -> Artist:
    artist = session.get(Artist, booking.artist_id)
    assert artist is not None  # a foreign key
    return artist


def _cancel(
    session: Session,
    booking: Booking,
    action: Action,
    *,
    reason: str | None,
    now: datetime,
    refund_asked: bool | None = None,
) -> Effects:
    facts = _facts(booking, _artist(session, booking), now, refund_asked=refund_asked)
    rule = decide_requested(action, facts)
    booking.cancellation_reason = reason
    return transition.apply(session, booking, rule, now)


def _close(session: Session, booking: Booking, action: Action, now: datetime) -> Effects:
    rule = decide_requested(action, _facts(booking, _artist(session, booking), now))
    return transition.apply(session, booking, rule, now)


# --------------------------------------------------------------------------- reads


def _done(session: Session, decided: _Decided) -> Done:
    booking = session.get(Booking, decided.booking_id)
    assert booking is not None
    refund = session.get(Refund, decided.effects.refunds[0]) if decided.effects.refunds else None
    return Done(booking, refund)


@dataclass(frozen=True, slots=True)
class ClientBookingsQuery:
    client_id: str
    statuses: frozenset[BookingStatus] = frozenset()  # empty: any
    start: datetime | None = None  # bookings ending after it
    end: datetime | None = None  # bookings starting before it


def client_bookings(session: Session, query: ClientBookingsQuery) -> list[Booking]:
    client = get_or_404(session, Client, query.client_id)
    found = select(Booking).where(Booking.client_id == client.id)
    if query.statuses:
        found = found.where(Booking.status.in_(sorted(query.statuses)))
    if query.start is not None:
        found = found.where(Booking.end_time > query.start)
    if query.end is not None:
        found = found.where(Booking.start_time < query.end)
    return list(session.scalars(found.order_by(Booking.start_time, Booking.id)))


# --------------------------------------------------------------------------- leaves


@dataclass(frozen=True, slots=True)
class LeaveAdded:
    leave: Leave
    conflicts: list[uuid.UUID]  # bookings blocking the leave's time when it was added
    cancelled: list[uuid.UUID]  # those cancelled for it (cancelConflicting)
    effects: Effects


def add_leave(
    session: Session,
    artist_id: str,
    *,
    start: datetime,
    end: datetime,
    reason: str | None,
    cancel_conflicting: bool,
    now: datetime,
) -> LeaveAdded:
    """Add a leave and list the bookings it overlaps; with `cancel_conflicting` cancel
    them (by the artist, deposit refunded in full, clients told). The artist's schedule
    lock is taken first: a booking racing the leave either committed before (and is
    listed here) or re-checks under the lock after the leave is in (and is refused)."""
    artist = get_or_404(session, Artist, artist_id)
    lock_artist_schedule(session, artist.id)
    leave = catalog.add_leave(session, str(artist.id), start=start, end=end, reason=reason)
    overlapping: Sequence[Booking] = session.scalars(
        select(Booking)
        .where(
            Booking.artist_id == artist.id,
            Booking.live_overlapping(start, end),
            Booking.blocks_slot(now),
        )
        .order_by(Booking.start_time, Booking.id)
        .with_for_update()
    ).all()
    conflicts = [b.id for b in overlapping]
    if not cancel_conflicting:
        return LeaveAdded(leave, conflicts, [], NONE)
    effects = NONE
    for booking in overlapping:
        effects += _cancel(
            session, booking, Action.LEAVE_CANCEL, reason=reason, now=now, refund_asked=True
        )
    return LeaveAdded(leave, conflicts, conflicts, effects)


# --------------------------------------------------------------------------- the service


@dataclass(frozen=True, slots=True)
class RescheduleRequest:
    booking_id: str
    start_time: datetime


class Lifecycle:
    """The lifecycle's actions, each committed and its effects run before it returns."""

    def __init__(self, resources: Resources, locks: SlotLocks, effects: EffectRunner) -> None:
        self._resources = resources
        self._locks = locks
        self._effects = effects

    def _finish(self, decided: _Decided) -> Done:
        self._effects.run(decided.effects)
        # Read again: the inline refund may have moved the refund and the deposit on.
        with transaction(self._resources.sessions) as session:
            return _done(session, decided)

    def cancel_by_client(
        self, booking_id: str, *, allowed: Guard, reason: str | None, now: datetime
    ) -> Done:
        with transaction(self._resources.sessions) as session:
            booking = _locked_booking(session, booking_id)
            allowed(booking.owner)
            effects = _cancel(session, booking, Action.CLIENT_CANCEL, reason=reason, now=now)
            decided = _Decided(booking.id, effects)
        return self._finish(decided)

    def cancel_by_staff(
        self,
        booking_id: str,
        *,
        allowed: Guard,
        by: CancelledBy,
        refund: bool,
        reason: str | None,
        now: datetime,
    ) -> Done:
        """The artist or the operator cancels; `refund`: the deposit goes back in full
        (else a paid deposit is kept)."""
        action = STAFF_CANCELS[by]
        with transaction(self._resources.sessions) as session:
            booking = _locked_booking(session, booking_id)
            allowed(booking.owner)
            effects = _cancel(session, booking, action, reason=reason, now=now, refund_asked=refund)
            decided = _Decided(booking.id, effects)
        return self._finish(decided)

    def complete(self, booking_id: str, *, allowed: Guard, now: datetime) -> Done:
        return self._close(booking_id, Action.COMPLETE, allowed, now)

    def no_show(self, booking_id: str, *, allowed: Guard, now: datetime) -> Done:
        return self._close(booking_id, Action.NO_SHOW, allowed, now)

    def _close(self, booking_id: str, action: Action, allowed: Guard, now: datetime) -> Done:
        with transaction(self._resources.sessions) as session:
            booking = _locked_booking(session, booking_id)
            allowed(booking.owner)
            decided = _Decided(booking.id, _close(session, booking, action, now))
        return self._finish(decided)

    def add_leave(
        self,
        artist_id: str,
        *,
        start: datetime,
        end: datetime,
        reason: str | None,
        cancel_conflicting: bool,
        now: datetime,
    ) -> LeaveAdded:
        with transaction(self._resources.sessions) as session:
            added = add_leave(
                session,
                artist_id,
                start=start,
                end=end,
                reason=reason,
                cancel_conflicting=cancel_conflicting,
                now=now,
            )
        self._effects.run(added.effects)
        return added

    def reschedule(self, request: RescheduleRequest, *, allowed: Guard, now: datetime) -> Done:
        start = request.start_time
        # A first look without any lock: refusals that need no slot answer at once, and
        # the artist names the slot lock. (A booking never changes hands: its owner
        # checked here still is under the row lock.)
        with transaction(self._resources.sessions) as session:
            booking = get_or_404(session, Booking, request.booking_id)
            allowed(booking.owner)
            if start == booking.start_time:
                raise invalid("startTime", "is the booking's start already")
            decide_requested(Action.RESCHEDULE, _facts(booking, _artist(session, booking), now))
            artist_id = booking.artist_id
        try:
            with (
                self._locks.hold(artist_id, start),
                transaction(self._resources.sessions) as session,
            ):
                decided = _move(session, request.booking_id, artist_id, start, now)
        except SlotTaken:
            raise DomainError(ErrorCode.SLOT_TAKEN) from None
        return self._finish(decided)


def _move(
    session: Session, booking_id: str, artist_id: uuid.UUID, start: datetime, now: datetime
) -> _Decided:
    """The constrained part of a reschedule (see the module docstring). Any refusal
    raises and rolls the whole transaction back: the booking keeps its slot."""
    # The artist's lock before the booking's row, in the order of every other writer of
    # the schedule (creation, a leave that cancels what it covers): the other order could
    # deadlock with a leave holding the artist's lock and waiting for this booking.
    lock_artist_schedule(session, artist_id)
    booking = _locked_booking(session, booking_id)
    artist = _artist(session, booking)
    # Decided again under the row lock: another reschedule may have gone first.
    rule = decide_requested(Action.RESCHEDULE, _facts(booking, artist, now))
    duration = booking.end_time - booking.start_time  # what the client booked
    check_rules(session, artist, start, duration, now, exclude=booking.id)
    end = start + duration
    expired = claim_checked_slot(session, artist, start, end, now)
    previous = booking.start_time
    booking.start_time, booking.end_time = start, end
    booking.reschedule_count += 1
    try:
        session.flush()
    except IntegrityError as exc:
        if is_overlap_violation(exc):
            raise DomainError(ErrorCode.SLOT_TAKEN) from None
        raise
    effects = expired + transition.apply(session, booking, rule, now, previous_start=previous)
    return _Decided(booking.id, effects)

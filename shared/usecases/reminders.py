"""Reminders: an e-mail to the client `reminderHours` before a CONFIRMED booking starts,
once per booking and start time.

`bookings.remind_at` holds when the next reminder is due (NULL: none). It is written in
the transaction that confirms or moves the booking (`follow`, from every transition, and
`schedule` for a booking confirmed at creation) and cleared when the booking leaves
CONFIRMED. The beat's sweep (`queue_due`) reads due rows through the partial index
`ix_bookings_remind_at` (only bookings with a pending reminder are in it, so the sweep
never scans the table), a bounded batch at a time, locked with SKIP LOCKED; in the same
transaction it adds the REMINDER outbox row (occasion: the start instant) and clears
`remind_at`. So a sweep killed before its commit leaves everything as it was for the
next one, and a committed one has its mails in the outbox (sent by the runner after the
commit, or by the outbox sweeper if that was lost). The outbox's unique key (booking,
kind, recipient, occasion) makes a second reminder for the same start impossible; a
reminder queued for a start the booking has since left is withdrawn when it would be
sent (`shared.domain.reminders.still_applies`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import Select, select, update
from sqlalchemy.orm import Session

from shared.adapters.db import transaction
from shared.adapters.models import Artist, Booking
from shared.adapters.runtime import Resources
from shared.domain import reminders
from shared.domain.notifications import NotificationKind
from shared.domain.transitions import BookingStatus, Rule
from shared.usecases.effects import EffectRunner, Effects
from shared.usecases.notifications import notify_booking

log = logging.getLogger("inkflow.reminders")

BATCH = 200


def schedule(booking: Booking, artist: Artist, now: datetime) -> None:
    """Set the reminder of a booking that is CONFIRMED at its current start (at `now`)."""
    booking.remind_at = reminders.remind_at(booking.start_time, artist.reminder_hours, now)


def follow(session: Session, booking: Booking, rule: Rule, now: datetime) -> None:
    """Keep `remind_at` true to a transition, in its transaction: confirmed or moved, the
    reminder is for the (new) start; out of CONFIRMED, there is none."""
    if rule.target == BookingStatus.CONFIRMED:
        artist = session.get(Artist, booking.artist_id)
        assert artist is not None  # a foreign key
        schedule(booking, artist, now)
    elif rule.source == BookingStatus.CONFIRMED:
        booking.remind_at = None


def due(now: datetime, limit: int) -> Select[Booking]:
    """The next due reminders, oldest first, skipping rows another sweep (or a booking
    action) holds. `remind_at IS NOT NULL` is the partial index's own predicate.

    FOR NO KEY UPDATE, the lock an UPDATE of non-key columns takes: it excludes other
    sweeps and the booking actions (FOR UPDATE), but not the key-share lock of a foreign
    key, so a booking is not skipped because an outbox row of it is being written."""
    return (
        select(Booking)
        .where(Booking.remind_at.is_not(None), Booking.remind_at <= now)
        .order_by(Booking.remind_at)
        .limit(limit)
        .with_for_update(skip_locked=True, key_share=True)
    )


def _queue(session: Session, bookings: Sequence[Booking], now: datetime) -> Effects:
    mails = []
    for booking in bookings:
        occasion = reminders.occasion(booking.start_time)
        if reminders.still_applies(booking.status, booking.start_time, occasion, now):
            kind = NotificationKind.REMINDER
            mails += notify_booking(session, booking, kind, occasion)
        else:  # the start passed while nobody swept (the worker was down): too late
            log.info("booking %s: reminder dropped (%s, started)", booking.id, booking.status)
    # Clearing the reminder changes nothing a client or a calendar sees: updated_at (the
    # feed's DTSTAMP) stays.
    session.execute(
        update(Booking)
        .where(Booking.id.in_([b.id for b in bookings]))
        .values(remind_at=None, updated_at=Booking.updated_at)
    )
    return Effects(mails=tuple(mails))


def queue_due(
    resources: Resources, effects: EffectRunner, *, now: datetime, batch: int = BATCH
) -> int:
    """The beat's sweep: one commit per batch, each batch's e-mails enqueued after its
    commit. Returns how many reminder e-mails it added to the outbox."""
    reminded = 0
    while True:
        with transaction(resources.sessions) as session:
            bookings = session.scalars(due(now, batch)).all()
            decided = _queue(session, bookings, now) if bookings else Effects()
        effects.run(decided)
        reminded += len(decided.mails)
        if len(bookings) < batch:
            if reminded:
                log.info("%d reminder(s) queued", reminded)
            return reminded

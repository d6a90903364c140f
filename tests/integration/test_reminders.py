"""Reminders on real PostgreSQL, through the Flask app (a clock the test moves, a queue that
records) and the sweep the beat runs: `remind_at` follows confirmations, moves and
endings; the sweep adds one REMINDER per booking and start time and clears `remind_at` in
the same transaction, in batches, skipping locked rows; a reminder about a start the
booking has left is withdrawn; the due-reminders query reads the partial index."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

import icalendar
import pytest
from sqlalchemy import select, text
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import Session, sessionmaker

from devtools.stripe_emulator import StripeEmulator
from shared.adapters.db import transaction
from shared.adapters.models import Booking, Notification, NotificationKind
from shared.adapters.payments import StripeGateway
from shared.domain.reminders import occasion
from shared.usecases import reminders
from shared.usecases.inbox import VerifiedEvent, store_event
from shared.usecases.stripe_events import apply_event
from tests.factories import World, make_world
from tests.fakes.smtp_sink import ReceivedMessage, SmtpSink
from tests.lab import JSON, Lab, instant, local, make_lab

REMINDER = NotificationKind.REMINDER


@pytest.fixture
def lab(make_app, sessions, admin_headers) -> Lab:
    return make_lab(make_app, sessions, admin_headers)


def free_world(sessions: sessionmaker[Session], **artist: Any) -> World:
    return make_world(sessions, deposit="0.00", price="120.00", **artist)


def start_of(booking: JSON) -> datetime:
    return instant(booking["startTime"])


def sweep(lab: Lab, batch: int = reminders.BATCH) -> int:
    return reminders.queue_due(lab.state.resources, lab.state.effects, now=lab.clock(), batch=batch)


def reminder_rows(lab: Lab, booking: JSON) -> list[Notification]:
    return lab.notes(booking["id"], REMINDER)


def invitation_event(message: ReceivedMessage) -> icalendar.Event:
    payload = message.calendar_parts[0].get_payload(decode=True)
    assert isinstance(payload, bytes)
    cal = icalendar.Calendar.from_ical(payload)
    assert cal["METHOD"] == "REQUEST"
    [event] = cal.events
    return event


def pay(lab: Lab, emulator: StripeEmulator, booking: JSON) -> None:
    """The deposit's payment_intent.succeeded, applied as the worker applies it."""
    paid = emulator.succeed_payment_intent(booking["paymentIntentId"])
    payload = emulator.event("payment_intent.succeeded", paid)
    resources = lab.state.resources
    store_event(
        resources, VerifiedEvent(payload["id"], payload["type"], payload["created"], payload)
    )
    applied = apply_event(
        resources, payload["id"], now=lab.clock(), stripe=StripeGateway(resources.settings)
    )
    lab.state.effects.run(applied.effects)


# --------------------------------------------------------------------------- remind_at


def test_remind_at_follows_confirmation_moves_and_endings(
    lab: Lab, sessions: sessionmaker[Session], stripe_emulator: StripeEmulator
) -> None:
    world = free_world(sessions, reminder_hours=24)
    # Confirmed at creation (no deposit): reminded 24 h before.
    booking = lab.book(world, local(5, 11))
    assert lab.row(booking["id"]).remind_at == start_of(booking) - timedelta(hours=24)
    # Moved: reminded of the new time.
    moved = lab.reschedule(booking, local(6, 15))
    assert lab.row(booking["id"]).remind_at == local(6, 15) - timedelta(hours=24)
    # Cancelled: no reminder.
    lab.cancel(moved)
    assert lab.row(booking["id"]).remind_at is None

    # Confirmed by its deposit (the webhook's transition): reminded then, not while held.
    paid_world = make_world(sessions, reminder_hours=6)
    held = lab.book(paid_world, local(4, 12))
    assert lab.row(held["id"]).remind_at is None
    pay(lab, stripe_emulator, held)
    row = lab.row(held["id"])
    assert row.status == "CONFIRMED"
    assert row.remind_at == start_of(held) - timedelta(hours=6)

    # Completed once it started: nothing left to remind.
    soon = lab.book(world, local(2, 11))
    assert lab.row(soon["id"]).remind_at is not None
    lab.clock.advance(start_of(soon) + timedelta(minutes=5) - lab.clock())
    lab.staff(soon, "complete")
    assert lab.row(soon["id"]).remind_at is None


def test_no_reminder_when_off_or_when_its_moment_has_passed(
    lab: Lab, sessions: sessionmaker[Session]
) -> None:
    off = lab.book(free_world(sessions, reminder_hours=0), local(5, 11))
    assert lab.row(off["id"]).remind_at is None
    # Booked two days ahead with a three-day reminder: the client was just told.
    late = lab.book(free_world(sessions, reminder_hours=72), local(2, 11))
    assert lab.row(late["id"]).remind_at is None


# --------------------------------------------------------------------------- the sweep


def test_the_sweep_queues_one_reminder_per_due_booking_and_clears_remind_at(
    lab: Lab, sessions: sessionmaker[Session]
) -> None:
    world = free_world(sessions, reminder_hours=24)
    first = lab.book(world, local(3, 11))
    second = lab.book(world, local(3, 15))
    later = lab.book(world, local(8, 11))
    stamped = lab.row(first["id"]).updated_at
    lab.clock.advance(local(2, 16) - lab.clock())  # both due on day 3 are due now
    lab.queue.clear()

    assert sweep(lab) == 2

    for booking in (first, second):
        [note] = reminder_rows(lab, booking)
        assert note.occasion == occasion(start_of(booking)) == booking["startTime"]
        assert note.recipient.startswith("client-")  # the client is reminded
        assert lab.row(booking["id"]).remind_at is None
    assert sorted(lab.queue.notifications()) == sorted(
        str(reminder_rows(lab, b)[0].id) for b in (first, second)
    )
    assert reminder_rows(lab, later) == []
    assert lab.row(later["id"]).remind_at == local(7, 11)
    # Clearing a reminder changes nothing calendars see.
    assert lab.row(first["id"]).updated_at == stamped
    # Nothing twice.
    assert sweep(lab) == 0
    assert len(reminder_rows(lab, first)) == 1

    with SmtpSink() as sink:
        assert lab.send(reminder_rows(lab, first)[0].id, sink) == "sent"
        [message] = sink.wait_for(1)
    assert message.subject.startswith("Reminder: ")
    event = invitation_event(message)
    assert event.uid == f"booking-{first['id']}@inkflow"
    assert event.start == start_of(first)
    assert event.sequence == 0


def test_a_moved_booking_is_reminded_of_its_new_time_only(
    lab: Lab, sessions: sessionmaker[Session]
) -> None:
    # A three-day reminder: the booking may still be moved (48 h notice) once reminded.
    world = free_world(sessions, reminder_hours=72)
    reminded = lab.book(world, local(6, 11))  # reminded, then moved
    pending = lab.book(world, local(6, 15))  # moved while its reminder waits to be sent
    lab.clock.advance(local(3, 16) - lab.clock())
    assert sweep(lab) == 2
    with SmtpSink() as sink:
        assert lab.send(reminder_rows(lab, reminded)[0].id, sink) == "sent"
        lab.reschedule(reminded, local(9, 11))
        lab.reschedule(pending, local(9, 15))
        # The queued reminder is about a start the booking left: withdrawn, not sent.
        [stale] = reminder_rows(lab, pending)
        assert lab.send(stale.id, sink) == "withdrawn"
        assert reminder_rows(lab, pending) == []
        assert sweep(lab) == 0  # the new starts are not due yet
        lab.clock.advance(local(6, 16) - lab.clock())
        assert sweep(lab) == 2
        for booking in (reminded, pending):
            for note in reminder_rows(lab, booking):
                if note.status == "PENDING":
                    assert lab.send(note.id, sink) == "sent"
        received = sink.wait_for(3)

    # Each reminder carries the event as it is then: the new time with the new SEQUENCE.
    by_booking: dict[str, list[tuple[Any, int]]] = {}
    for message in received:
        event = invitation_event(message)
        by_booking.setdefault(str(event.uid), []).append((event.start, event.sequence))
    assert by_booking == {
        f"booking-{reminded['id']}@inkflow": [(local(6, 11), 0), (local(9, 11), 1)],
        f"booking-{pending['id']}@inkflow": [(local(9, 15), 1)],
    }
    occasions = {n.occasion for n in reminder_rows(lab, reminded)}
    assert occasions == {occasion(local(6, 11)), occasion(local(9, 11))}


def test_a_cancelled_booking_gets_no_reminder(lab: Lab, sessions: sessionmaker[Session]) -> None:
    world = free_world(sessions, reminder_hours=24)
    before = lab.book(world, local(4, 11))  # cancelled before its reminder is due
    after = lab.book(world, local(4, 15))  # cancelled once its reminder was queued
    lab.cancel(before)
    lab.clock.advance(local(3, 16) - lab.clock())
    assert sweep(lab) == 1
    lab.cancel(after)
    with SmtpSink() as sink:
        [queued] = reminder_rows(lab, after)
        assert lab.send(queued.id, sink) == "withdrawn"
        assert sink.messages == []
    assert reminder_rows(lab, before) == []


def test_a_reminder_not_swept_before_the_start_is_dropped(
    lab: Lab, sessions: sessionmaker[Session]
) -> None:
    booking = lab.book(free_world(sessions, reminder_hours=24), local(3, 11))
    lab.clock.advance(start_of(booking) + timedelta(minutes=1) - lab.clock())  # worker down
    assert sweep(lab) == 0
    assert lab.row(booking["id"]).remind_at is None
    assert reminder_rows(lab, booking) == []


def test_batches_and_rows_locked_elsewhere_are_skipped_not_waited_for(
    lab: Lab, sessions: sessionmaker[Session]
) -> None:
    world = free_world(sessions, reminder_hours=24)
    bookings = [lab.book(world, local(3, hour)) for hour in (10, 11, 12, 13, 14)]
    lab.clock.advance(local(2, 16) - lab.clock())
    locked = bookings[2]
    with transaction(sessions) as other:
        # Another transaction holds one booking (a reschedule in progress, another sweep).
        other.execute(
            select(Booking.id).where(Booking.id == uuid.UUID(locked["id"])).with_for_update()
        )
        assert sweep(lab, batch=2) == 4  # three batches of at most 2, one row skipped
    assert lab.row(locked["id"]).remind_at is not None
    assert sweep(lab, batch=2) == 1  # released: the next sweep takes it
    assert all(len(reminder_rows(lab, b)) == 1 for b in bookings)


# --------------------------------------------------------------------------- the index


def test_the_due_reminders_query_reads_the_partial_index(
    lab: Lab, sessions: sessionmaker[Session]
) -> None:
    """A few thousand bookings, most reminded already (remind_at NULL), some due later, a
    few due now: the sweep's query walks ix_bookings_remind_at, never the table."""
    world = free_world(sessions)
    with transaction(sessions) as session:
        session.execute(
            text(
                """
                INSERT INTO bookings (id, client_id, artist_id, service_id, start_time,
                    end_time, status, deposit_amount, currency, deposit_status, remind_at)
                SELECT gen_random_uuid(), :client, :artist, :service, t.start,
                    t.start + interval '1 hour', 'CONFIRMED', 0, 'eur', 'NOT_REQUIRED',
                    CASE WHEN i % 10 = 0 THEN t.start - interval '24 hours' END
                FROM generate_series(1, 4000) AS i,
                    LATERAL (SELECT now() - interval '30 days' + i * interval '2 hours')
                        AS t(start)
                """
            ),
            {"client": world.client_id, "artist": world.artist_id, "service": world.service_id},
        )
        session.execute(text("ANALYZE bookings"))
    statement = reminders.due(lab.clock(), reminders.BATCH).compile(dialect=postgresql.dialect())
    with transaction(sessions) as session:
        assert session.scalar(text("SHOW enable_seqscan")) == "on"
        plan = "\n".join(
            session.connection().exec_driver_sql(f"EXPLAIN {statement}", statement.params).scalars()
        )
        due_now = session.execute(reminders.due(lab.clock(), 10_000)).scalars().all()
    assert "ix_bookings_remind_at" in plan, plan
    assert "Seq Scan" not in plan, plan
    assert 10 < len(due_now) < 400  # the data has due rows, and far more that are not

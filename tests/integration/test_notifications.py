"""The notification outbox against real PostgreSQL and a real SMTP server on loopback."""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.orm import Session, sessionmaker

from shared.adapters import booking_links
from shared.adapters.db import make_session_factory, transaction
from shared.adapters.mail import ConsoleBackend, SmtpBackend, mail_backend
from shared.adapters.models import (
    Artist,
    Booking,
    BookingStatus,
    Client,
    Notification,
    NotificationKind,
    NotificationStatus,
)
from shared.adapters.runtime import Resources, build_resources, make_redis
from shared.config import Settings
from shared.usecases.notifications import (
    TransientMailError,
    add_notification,
    notify_booking,
    pending_notification_ids,
    redeliver_pending,
    send_notification,
)
from tests import support
from tests.factories import World, make_world
from tests.fakes.smtp_sink import SmtpSink

# Tuesday 5 May 2026, 12:00 UTC = 14:00 in Paris.
START = datetime(2026, 5, 5, 12, 0, tzinfo=UTC)


@dataclass(frozen=True)
class Booked:
    booking_id: uuid.UUID
    client_email: str
    artist_email: str
    artist_name: str


@pytest.fixture
def sink() -> Iterator[SmtpSink]:
    with SmtpSink() as running:
        yield running


@pytest.fixture
def resources(settings: Settings, sink: SmtpSink) -> Iterator[Resources]:
    built = build_resources(replace(settings, smtp_url=sink.url), pool_size=2)
    yield built
    built.close()


def _book(
    sessions: sessionmaker[Session],
    world: World,
    status: BookingStatus = BookingStatus.CONFIRMED,
) -> Booked:
    with transaction(sessions) as session:
        booking = Booking(
            client_id=uuid.UUID(world.client_id),
            artist_id=uuid.UUID(world.artist_id),
            service_id=uuid.UUID(world.service_id),
            start_time=START,
            end_time=START + timedelta(hours=1),
            status=status,
            deposit_amount=Decimal("50.00"),
            deposit_status="UNPAID",
            currency="eur",
            expires_at=START,
        )
        session.add(booking)
        session.flush()
        client = session.get_one(Client, booking.client_id)
        artist = session.get_one(Artist, booking.artist_id)
        return Booked(booking.id, client.email, artist.email, artist.name)


def _notify(sessions: sessionmaker[Session], booking_id: uuid.UUID, kind: NotificationKind):
    with transaction(sessions) as session:
        return notify_booking(session, session.get_one(Booking, booking_id), kind)


def _row(sessions: sessionmaker[Session], note_id: uuid.UUID) -> Notification:
    with sessions() as session:
        return session.get_one(Notification, note_id)


def _rows(sessions: sessionmaker[Session]) -> list[Notification]:
    with sessions() as session:
        return list(session.scalars(select(Notification).order_by(Notification.recipient)))


def _confirmed(sessions: sessionmaker[Session]) -> tuple[Booked, list[uuid.UUID]]:
    booked = _book(sessions, make_world(sessions))
    ids = _notify(sessions, booked.booking_id, NotificationKind.BOOKING_CONFIRMED)
    return booked, ids


# -- outbox rows -------------------------------------------------------------------------------


def test_confirmation_adds_one_row_per_recipient_once(sessions):
    booked, ids = _confirmed(sessions)
    assert len(ids) == 2
    rows = {row.recipient: row for row in _rows(sessions)}
    assert set(rows) == {booked.client_email, booked.artist_email}
    for row in rows.values():
        assert row.id in ids
        assert row.booking_id == booked.booking_id
        assert row.kind == NotificationKind.BOOKING_CONFIRMED
        assert row.channel == "email"
        assert row.status == NotificationStatus.PENDING
        assert row.attempts == 0
        assert row.sent_at is None
        assert row.last_error is None

    # The same event applied again (a redelivered webhook) adds nothing.
    assert _notify(sessions, booked.booking_id, NotificationKind.BOOKING_CONFIRMED) == []
    assert len(_rows(sessions)) == 2


@pytest.mark.parametrize(
    "kind",
    [
        NotificationKind.PAYMENT_FAILED,
        NotificationKind.HOLD_EXPIRED,
        NotificationKind.PAYMENT_REFUNDED,
    ],
)
def test_other_kinds_go_to_the_client_only(sessions, kind):
    booked = _book(sessions, make_world(sessions), BookingStatus.PENDING_PAYMENT)
    ids = _notify(sessions, booked.booking_id, kind)
    assert len(ids) == 1
    assert [row.recipient for row in _rows(sessions)] == [booked.client_email]


def test_add_notification_is_part_of_the_callers_transaction(sessions):
    booked = _book(sessions, make_world(sessions))

    def fail_after_adding() -> None:
        with transaction(sessions) as session:
            booking = session.get_one(Booking, booked.booking_id)
            assert add_notification(
                session, booking, NotificationKind.HOLD_EXPIRED, "x@example.com"
            )
            raise RuntimeError("the state change failed")

    with pytest.raises(RuntimeError, match="state change failed"):
        fail_after_adding()
    assert _rows(sessions) == []  # rolled back with it


def test_add_notification_flushes_a_new_booking_first(sessions):
    world = make_world(sessions)
    with transaction(sessions) as session:
        booking = Booking(
            client_id=uuid.UUID(world.client_id),
            artist_id=uuid.UUID(world.artist_id),
            service_id=uuid.UUID(world.service_id),
            start_time=START,
            end_time=START + timedelta(hours=1),
            status=BookingStatus.CONFIRMED,
            deposit_amount=Decimal("50.00"),
            deposit_status="UNPAID",
            currency="eur",
        )
        session.add(booking)
        ids = notify_booking(session, booking, NotificationKind.BOOKING_CONFIRMED)
    assert len(ids) == 2


# -- sending -----------------------------------------------------------------------------------


def test_send_delivers_text_and_html_once_per_row(sessions, resources, sink):
    booked, ids = _confirmed(sessions)
    assert [send_notification(resources, note_id) for note_id in ids] == ["sent", "sent"]

    messages = sink.wait_for(2, timeout=5)
    assert len(messages) == 2
    by_to = {m.to: m for m in messages}
    assert set(by_to) == {booked.client_email, booked.artist_email}
    for message in messages:
        assert message.content_types == ["text/plain", "text/html"]
        assert message.sender == resources.settings.mail_from
        assert message.envelope_to == (message.to,)
        assert "Tuesday 5 May 2026, 14:00 (Europe/Paris)" in (message.text or "")
        assert "50.00 EUR" in (message.html or "")
        assert str(booked.booking_id) in (message.text or "")
    assert by_to[booked.client_email].subject.startswith(
        f"Your booking with {booked.artist_name} is confirmed"
    )
    assert by_to[booked.artist_email].subject.startswith("New booking: Client")
    assert {m.message_id for m in messages} == {
        f"<notification-{note_id}@inkflow.local>" for note_id in ids
    }

    for note_id in ids:
        row = _row(sessions, note_id)
        assert row.status == NotificationStatus.SENT
        assert row.attempts == 1
        assert row.sent_at is not None

    # Sending again (a duplicated task, the sweeper) sends nothing.
    assert [send_notification(resources, note_id) for note_id in ids] == [
        "already-sent",
        "already-sent",
    ]
    assert len(sink.messages) == 2
    assert all(_row(sessions, note_id).attempts == 1 for note_id in ids)


def test_concurrent_senders_of_one_row_send_one_mail(sessions, resources, sink):
    _, ids = _confirmed(sessions)
    note_id = ids[0]
    sink.set_data_delay(0.3)  # the first sender holds the row lock while SMTP is slow
    barrier = threading.Barrier(2)

    def send() -> str:
        barrier.wait(timeout=5)
        return send_notification(resources, note_id)

    with ThreadPoolExecutor(max_workers=2) as pool:
        outcomes = sorted(f.result(timeout=30) for f in [pool.submit(send), pool.submit(send)])

    assert outcomes == ["already-sent", "sent"]
    assert len(sink.messages) == 1
    assert _row(sessions, note_id).attempts == 1


def test_transient_failure_keeps_the_row_pending_then_a_retry_sends(sessions, resources, sink):
    _, ids = _confirmed(sessions)
    note_id = ids[0]
    sink.fail_next(1, code=451)

    with pytest.raises(TransientMailError) as caught:
        send_notification(resources, note_id)
    assert caught.value.notification_id == note_id
    row = _row(sessions, note_id)
    assert row.status == NotificationStatus.PENDING
    assert row.attempts == 1
    assert row.last_error is not None
    assert "451" in row.last_error
    assert sink.messages == []

    assert send_notification(resources, note_id) == "sent"
    (message,) = sink.wait_for(1)
    assert message.to == row.recipient
    row = _row(sessions, note_id)
    assert (row.status, row.attempts) == (NotificationStatus.SENT, 2)


def test_unreachable_server_is_transient(sessions, resources):
    _, ids = _confirmed(sessions)
    closed = SmtpBackend(f"smtp://127.0.0.1:{support.free_port()}", timeout=2)
    with pytest.raises(TransientMailError):
        send_notification(resources, ids[0], backend=closed)
    row = _row(sessions, ids[0])
    assert (row.status, row.attempts) == (NotificationStatus.PENDING, 1)
    assert row.last_error is not None
    assert "ConnectionRefusedError" in row.last_error


def test_permanent_refusal_marks_the_row_failed(sessions, resources, sink):
    _, ids = _confirmed(sessions)
    sink.fail_next(1, code=550)
    assert send_notification(resources, ids[0]) == "failed"
    row = _row(sessions, ids[0])
    assert row.status == NotificationStatus.FAILED
    assert row.attempts == 1
    assert row.last_error is not None
    assert "550" in row.last_error
    assert row.sent_at is None

    # Not retried: a later call neither sends nor counts an attempt.
    assert send_notification(resources, ids[0]) == "failed"
    assert sink.messages == []
    assert _row(sessions, ids[0]).attempts == 1


def test_refused_recipient_marks_the_row_failed(sessions, resources, sink):
    booked, ids = _confirmed(sessions)
    sink.refuse_recipient(booked.client_email, code=550)
    outcomes = {_row(sessions, i).recipient: send_notification(resources, i) for i in ids}
    assert outcomes == {booked.client_email: "failed", booked.artist_email: "sent"}
    (message,) = sink.wait_for(1)
    assert message.to == booked.artist_email
    failed = next(r for r in _rows(sessions) if r.recipient == booked.client_email)
    assert failed.status == NotificationStatus.FAILED
    assert failed.last_error is not None
    assert "recipient refused" in failed.last_error


def test_smtp_auth_from_the_url(sessions, settings):
    _, ids = _confirmed(sessions)
    with SmtpSink(credentials=("inkflow", "p@ss word")) as auth_sink:
        good = build_resources(
            replace(settings, smtp_url=f"smtp://inkflow:p%40ss%20word@127.0.0.1:{auth_sink.port}")
        )
        bad = SmtpBackend(f"smtp://inkflow:wrong@127.0.0.1:{auth_sink.port}")
        try:
            with pytest.raises(TransientMailError):  # fix the config, the retry goes out
                send_notification(good, ids[0], backend=bad)
            assert send_notification(good, ids[0]) == "sent"
        finally:
            good.close()
        assert len(auth_sink.wait_for(1)) == 1


def test_unknown_id_is_reported_missing(sessions, resources, sink):
    assert send_notification(resources, uuid.uuid4()) == "missing"
    assert sink.messages == []


def test_a_row_locked_too_long_by_another_sender_is_transient(sessions, settings):
    _, ids = _confirmed(sessions)
    # The app's engine waits 5 s for a row lock; a tighter lock_timeout keeps this test short.
    engine = create_engine(
        settings.database_url, connect_args={"options": "-c lock_timeout=200"}, pool_size=1
    )
    impatient = Resources(
        settings=settings,
        engine=engine,
        sessions=make_session_factory(engine),
        autocommit_sessions=make_session_factory(
            engine.execution_options(isolation_level="AUTOCOMMIT")
        ),
        redis=make_redis(settings.redis_url),
    )
    try:
        with transaction(sessions) as holder:
            holder.execute(select(Notification).where(Notification.id == ids[0]).with_for_update())
            with pytest.raises(TransientMailError, match="locked"):
                send_notification(impatient, ids[0], backend=ConsoleBackend())
    finally:
        impatient.close()
    assert _row(sessions, ids[0]).attempts == 0


def test_console_backend_when_smtp_url_is_unset(sessions, settings, caplog):
    booked = _book(sessions, make_world(sessions), BookingStatus.EXPIRED)
    (note_id,) = _notify(sessions, booked.booking_id, NotificationKind.HOLD_EXPIRED)
    plain = replace(settings, smtp_url=None)
    assert isinstance(mail_backend(plain), ConsoleBackend)
    resources = build_resources(plain)
    try:
        with caplog.at_level(logging.INFO, logger="inkflow.mail"):
            assert send_notification(resources, note_id) == "sent"
    finally:
        resources.close()
    (record,) = [r for r in caplog.records if r.name == "inkflow.mail"]
    assert record.levelno == logging.INFO
    logged = record.getMessage()
    assert booked.client_email not in logged  # redacted: c***@example.com
    assert booked.client_email.split("@")[1] in logged
    assert "has expired" in logged  # the subject
    assert "Tuesday 5 May 2026" not in logged  # the text only at DEBUG
    assert _row(sessions, note_id).status == NotificationStatus.SENT


# -- the sweeper's query -----------------------------------------------------------------------


def test_pending_ids_are_the_old_unsent_rows(sessions, resources):
    _, ids = _confirmed(sessions)
    assert send_notification(resources, ids[0]) == "sent"
    with transaction(sessions) as session:  # make the rows look a minute old
        session.execute(text("UPDATE notifications SET created_at = now() - interval '60 s'"))
        assert pending_notification_ids(session, timedelta(seconds=30)) == [ids[1]]
        assert pending_notification_ids(session, timedelta(minutes=5)) == []
        assert pending_notification_ids(session, timedelta(0), limit=0) == []
        count = session.scalar(select(func.count()).select_from(Notification))
    assert count == 2


def test_sweeper_reenqueues_old_pending_rows_once_per_period(sessions, resources):
    _, ids = _confirmed(sessions)
    assert send_notification(resources, ids[0]) == "sent"
    assert not redeliver_pending(resources, older_than=timedelta(minutes=5))  # too new
    with transaction(sessions) as session:
        session.execute(text("UPDATE notifications SET created_at = now() - interval '10 min'"))
    try:
        assert redeliver_pending(resources, older_than=timedelta(minutes=5)).mails == (ids[1],)
        # Its task may still be retrying: the next sweeps leave it alone for a while.
        assert not redeliver_pending(resources, older_than=timedelta(minutes=5))
    finally:
        resources.redis.delete(*(f"inkflow:outbox:redelivered:{i}" for i in ids))


def test_the_clients_confirmation_links_to_the_booking_page_signed(sessions, resources, sink):
    booked, ids = _confirmed(sessions)
    assert [send_notification(resources, note_id) for note_id in ids] == ["sent", "sent"]
    by_to = {m.to: m for m in sink.wait_for(2, timeout=5)}
    client, artist = by_to[booked.client_email], by_to[booked.artist_email]
    settings = resources.settings
    link = booking_links.url(settings, booked.booking_id)
    assert link is not None
    assert link.startswith(f"{settings.public_base_url}/booking/{booked.booking_id}?t=")
    assert link in (client.text or "")
    assert link.replace("&", "&amp;") in (client.html or "")
    token = link.rsplit("?t=", 1)[1]
    assert booking_links.booking_of(settings.web_secret_key, token) == booked.booking_id
    # The artist's e-mail opens nothing of the client's.
    assert "?t=" not in (artist.text or "")
    assert "?t=" not in (artist.html or "")

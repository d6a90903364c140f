"""Reminders end to end: gunicorn serving the API, a Celery worker subprocess with its
embedded beat sweeping every second, a broker of our own (an embedded Valkey: the worker
is killed), PostgreSQL, the SMTP sink. The reminders' times are moved into the past in the
database ("time passes"); everything else goes through the API and the worker.

The worker is SIGKILLed in the middle of a sweep — after it has written the first
reminder of its batch and while it waits on the second (a row lock this test holds), so
before its commit — and a booking is rescheduled before the worker comes back. Each
booking is then reminded exactly once per start time: nothing lost with the killed
transaction, nothing twice, the moved booking of its new time only.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import icalendar
import pytest
import redis
from sqlalchemy import Engine, func, insert, select, text, update
from sqlalchemy.orm import Session, sessionmaker

from devtools.embedded import EmbeddedValkey
from devtools.processes import port_is_open
from shared.adapters.db import transaction
from shared.adapters.models import Booking, Notification, NotificationKind
from shared.domain.reminders import occasion
from tests import support
from tests.e2e.conftest import LiveServer
from tests.e2e.test_webhooks_e2e import VALKEY_PORTS, Worker, addresses, alive
from tests.factories import make_world
from tests.fakes.smtp_sink import ReceivedMessage, SmtpSink
from tests.lab import JSON, instant, local

REMINDER = NotificationKind.REMINDER


@pytest.fixture(scope="module")
def queue_name() -> Iterator[str]:
    name = f"inkflow-test-reminders-{uuid.uuid4().hex[:8]}"
    yield name
    client = redis.Redis.from_url(support.TEST_REDIS_URL)
    client.delete(name, *client.keys(f"*{name}*"))
    client.close()


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedValkey]:
    port = next((p for p in VALKEY_PORTS if not port_is_open(p)), None)
    if port is None:
        pytest.fail(f"no free port for Valkey in {VALKEY_PORTS}")
    server = EmbeddedValkey(tmp_path_factory.mktemp("valkey-reminders"), port=port)
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def env(e2e_env: dict[str, str], broker: EmbeddedValkey, queue_name: str) -> dict[str, str]:
    return {
        **e2e_env,
        "CELERY_BROKER_URL": broker.url,
        "CELERY_QUEUE": queue_name,
        "CELERY_VISIBILITY_TIMEOUT": "1",
        "REMINDER_SWEEP_SECONDS": "1",
        "HOLD_SWEEP_SECONDS": "3600",
        "INBOX_SWEEP_SECONDS": "3600",
        # The sweep waits on this test's lock for as long as the test needs to kill it.
        "DATABASE_LOCK_TIMEOUT_MS": "60000",
    }


@pytest.fixture(scope="module")
def server(start_server: Callable[..., LiveServer], env: dict[str, str]) -> LiveServer:
    return start_server(workers=2, **env)


def reschedule(server: LiveServer, booking: JSON, start: datetime) -> JSON:
    answer = server.post(
        f"/api/bookings/{booking['id']}/reschedule",
        json={"clientId": booking["clientId"], "startTime": start.isoformat()},
    )
    assert answer.status_code == 200, answer.text
    moved: JSON = answer.json()["booking"]
    return moved


def due_now(sessions: sessionmaker[Session], *bookings: JSON) -> None:
    """Time passes: their reminders are due, the first one first."""
    with transaction(sessions) as session:
        for rank, booking in enumerate(bookings):
            session.execute(
                update(Booking)
                .where(Booking.id == uuid.UUID(booking["id"]))
                .values(remind_at=text(f"now() - interval '{len(bookings) - rank} minutes'"))
            )


def remind_at(sessions: sessionmaker[Session], booking: JSON) -> datetime | None:
    with transaction(sessions) as session:
        return session.scalar(
            select(Booking.remind_at).where(Booking.id == uuid.UUID(booking["id"]))
        )


def reminder_rows(sessions: sessionmaker[Session], *bookings: JSON) -> list[Notification]:
    ids = [uuid.UUID(b["id"]) for b in bookings]
    with transaction(sessions) as session:
        return list(
            session.scalars(
                select(Notification).where(
                    Notification.booking_id.in_(ids), Notification.kind == REMINDER
                )
            )
        )


def waiting_reminder_insert(engine: Engine) -> int | None:
    """The backend of a sweep blocked on inserting a reminder (on this test's lock)."""
    with engine.connect() as conn:
        pid: int | None = conn.scalar(
            text(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                "AND wait_event_type = 'Lock' AND query ILIKE 'INSERT INTO notifications%'"
            )
        )
        return pid


def backend_alive(engine: Engine, pid: int) -> bool:
    with engine.connect() as conn:
        found = conn.scalar(
            select(func.count()).select_from(text("pg_stat_activity")).where(text("pid = :pid")),
            {"pid": pid},
        )
        return bool(found)


def reminders_in(sink: SmtpSink, address: str) -> list[tuple[str, datetime]]:
    """(UID, DTSTART) of each reminder e-mail to `address`, read from its invitation."""
    found = []
    for message in sink.messages:
        if address in message.envelope_to and message.subject.startswith("Reminder: "):
            found.append(_event_of(message))
    return found


def _event_of(message: ReceivedMessage) -> tuple[str, Any]:
    payload = message.calendar_parts[0].get_payload(decode=True)
    assert isinstance(payload, bytes)
    [event] = icalendar.Calendar.from_ical(payload).events
    return str(event.uid), event.start


def uid(booking: JSON) -> str:
    return f"booking-{booking['id']}@inkflow"


def test_reminded_once_per_start_across_a_worker_killed_mid_sweep_and_a_reschedule(
    server: LiveServer,
    env: dict[str, str],
    queue_name: str,
    log_dir: Path,
    tmp_path: Path,
    smtp_sink: SmtpSink,
    sessions: sessionmaker[Session],
    engine: Engine,
) -> None:
    # A three-day reminder: a reminded booking may still be moved (48 h notice).
    world = make_world(sessions, deposit="0.00", price="100.00", reminder_hours=72)
    client_email, _ = addresses(sessions, world)
    bookings = []
    for hour in (11, 13, 15):
        answer = server.post(
            "/api/bookings/create",
            json=world.booking(local(6, hour)),
        )
        assert answer.status_code == 201, answer.text
        bookings.append(answer.json()["booking"])
    first, second, third = bookings
    worker = Worker(env, queue_name, log_dir, beat_schedule=tmp_path / "beat-schedule")

    # This test holds the second booking's reminder (uncommitted): the sweep's insert of
    # it waits on the lock, with the first one already written in its transaction.
    blocker = engine.connect()
    holding = blocker.begin()
    try:
        blocker.execute(
            insert(Notification).values(
                id=uuid.uuid4(), booking_id=uuid.UUID(second["id"]), kind=REMINDER,
                channel="email", recipient=client_email,
                occasion=occasion(instant(second["startTime"])), status="PENDING", attempts=0,
            )
        )  # fmt: skip
        due_now(sessions, first, second, third)
        worker.start(concurrency=1)
        assert support.wait_until(lambda: waiting_reminder_insert(engine) is not None, 30)
        backend = waiting_reminder_insert(engine)
        assert backend is not None
        pids = [worker.process.pid, *worker.pool_pids()] if worker.process else []
        worker.kill(pool_only=False)  # SIGKILL: the main process (and beat), then the pool
        assert not [pid for pid in pids if alive(pid)]
    finally:
        holding.rollback()
        blocker.close()
    # The killed sweep's transaction never commits: PostgreSQL ends it with its session.
    assert support.wait_until(lambda: not backend_alive(engine, backend), 30)
    assert reminder_rows(sessions, *bookings) == []
    assert all(remind_at(sessions, b) is not None for b in bookings)  # nothing lost

    # While the worker is down, the third booking moves: its reminder is for the new time.
    third = reschedule(server, third, local(8, 15))
    due_now(sessions, third)

    worker.start(concurrency=1)
    try:
        assert support.wait_until(lambda: len(reminders_in(smtp_sink, client_email)) >= 3, 30)
        # The first booking, reminded, moves too, and is reminded of its new time.
        first = reschedule(server, first, local(9, 11))
        due_now(sessions, first)
        assert support.wait_until(lambda: len(reminders_in(smtp_sink, client_email)) >= 4, 30)
        time.sleep(3)  # three more sweeps: nothing more may arrive
    finally:
        worker.stop()

    sent = Counter(reminders_in(smtp_sink, client_email))
    assert sent == {
        (uid(first), local(6, 11)): 1,
        (uid(first), local(9, 11)): 1,
        (uid(second), local(6, 13)): 1,
        (uid(third), local(8, 15)): 1,  # not its old time, 6 days ahead at 15:00
    }
    rows = reminder_rows(sessions, *bookings)
    assert sorted((str(r.booking_id), r.occasion, r.status) for r in rows) == sorted(
        [
            (first["id"], occasion(local(6, 11)), "SENT"),
            (first["id"], occasion(local(9, 11)), "SENT"),
            (second["id"], occasion(local(6, 13)), "SENT"),
            (third["id"], occasion(local(8, 15)), "SENT"),
        ]
    )
    assert all(remind_at(sessions, b) is None for b in bookings)

"""A booking lab for integration tests of what follows a booking (calendars, reminders): the
Flask app with a clock the test moves and a queue that records, the client and operator
calls it makes, the rows it reads back, and the outbox sent to an SMTP sink."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from flask import Flask
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from services.api.state import EXTENSION_KEY, ApiState
from shared.adapters.db import transaction
from shared.adapters.mail import SmtpBackend
from shared.adapters.models import Booking, Notification, NotificationStatus
from shared.usecases.notifications import SendOutcome, send_notification
from tests.factories import World
from tests.fakes.clock import FakeClock
from tests.fakes.queue import RecordingQueue
from tests.fakes.smtp_sink import SmtpSink

PARIS = ZoneInfo("Europe/Paris")
JSON = dict[str, Any]


def local(days: int, hour: int, minute: int = 0, *, base: datetime | None = None) -> datetime:
    """`hour`:`minute` in Paris, `days` after the day of `base` (default: now)."""
    day = (base or datetime.now(PARIS)).astimezone(PARIS).date() + timedelta(days=days)
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=PARIS)


def instant(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


@dataclass
class Lab:
    app: Flask
    http: Any  # a FlaskClient; its answers' `.json` is read as Any
    clock: FakeClock
    queue: RecordingQueue
    sessions: sessionmaker[Session]
    admin: dict[str, str]

    @property
    def state(self) -> ApiState:
        found: ApiState = self.app.extensions[EXTENSION_KEY]
        return found

    # -- calls ---------------------------------------------------------------------------

    def book(
        self,
        world: World,
        start: datetime,
        *,
        service_id: str | None = None,
        client_id: str | None = None,
    ) -> JSON:
        answer = self.http.post(
            "/api/bookings/create",
            json={
                "clientId": client_id or world.client_id,
                "artistId": world.artist_id,
                "serviceId": service_id or world.service_id,
                "startTime": start.isoformat(),
            },
        )
        assert answer.status_code == 201, answer.json
        booking: JSON = answer.json["booking"]
        return booking

    def reschedule(self, booking: JSON, start: datetime) -> JSON:
        answer = self.http.post(
            f"/api/bookings/{booking['id']}/reschedule",
            json={"clientId": booking["clientId"], "startTime": start.isoformat()},
        )
        assert answer.status_code == 200, answer.json
        moved: JSON = answer.json["booking"]
        return moved

    def cancel(self, booking: JSON) -> JSON:
        answer = self.http.post(
            f"/api/bookings/{booking['id']}/cancel", json={"clientId": booking["clientId"]}
        )
        assert answer.status_code == 200, answer.json
        cancelled: JSON = answer.json["booking"]
        return cancelled

    def staff(self, booking: JSON, action: str, body: JSON | None = None) -> JSON:
        answer = self.http.post(
            f"/api/admin/bookings/{booking['id']}/{action}", json=body, headers=self.admin
        )
        assert answer.status_code == 200, answer.json
        done: JSON = answer.json["booking"]
        return done

    def artist(self, artist_id: str) -> JSON:
        answer = self.http.get(f"/api/admin/artists/{artist_id}", headers=self.admin)
        assert answer.status_code == 200, answer.json
        found: JSON = answer.json
        return found

    # -- rows ----------------------------------------------------------------------------

    def row(self, booking_id: str) -> Booking:
        with transaction(self.sessions) as session:
            found = session.get(Booking, uuid.UUID(booking_id))
            assert found is not None
            return found

    def notes(self, booking_id: str, kind: str | None = None) -> list[Notification]:
        query = select(Notification).where(Notification.booking_id == uuid.UUID(booking_id))
        if kind is not None:
            query = query.where(Notification.kind == kind)
        with transaction(self.sessions) as session:
            return list(
                session.scalars(query.order_by(Notification.created_at, Notification.recipient))
            )

    # -- the outbox ----------------------------------------------------------------------

    def send(self, note_id: uuid.UUID, sink: SmtpSink) -> SendOutcome:
        return send_notification(
            self.state.resources, note_id, SmtpBackend(sink.url), now=self.clock()
        )

    def send_pending(self, sink: SmtpSink, booking_id: str) -> list[SendOutcome]:
        """Send the booking's PENDING outbox rows, oldest first (as the worker would)."""
        pending = [
            n for n in self.notes(booking_id) if n.status == NotificationStatus.PENDING.value
        ]
        return [self.send(n.id, sink) for n in pending]


def make_lab(
    make_app: Any, sessions: sessionmaker[Session], admin: dict[str, str], **settings: Any
) -> Lab:
    """`make_app` is conftest's factory; `settings` change the app's settings."""
    clock, queue = FakeClock(), RecordingQueue()
    app = make_app(clock=clock, queue=queue, **settings)
    return Lab(app, app.test_client(), clock, queue, sessions, admin)

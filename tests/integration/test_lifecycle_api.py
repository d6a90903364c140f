"""The booking lifecycle through the Flask app: cancel (client, operator, leave), complete,
no-show, reschedule, a client's bookings, the no-show limit. Real PostgreSQL and Redis,
the Stripe emulator over HTTP with the real SDK (deposits paid by applying its signed-event
payloads as the worker does), a clock the tests move, a queue that records."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import jwt
import pytest
from flask import Flask
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from devtools.stripe_emulator import StripeEmulator
from services.api.state import EXTENSION_KEY, ApiState
from shared.adapters.db import transaction
from shared.adapters.locks import slot_lock_key
from shared.adapters.mail import SmtpBackend
from shared.adapters.models import Booking, Notification, Refund, RefundReason, RefundStatus
from shared.adapters.payments import StripeGateway, refund_idempotency_key
from shared.domain.access import OPERATOR, Access, guard
from shared.domain.errors import DomainError
from shared.domain.timeutil import iso_utc
from shared.tasks import PROCESS_REFUND
from shared.usecases.inbox import VerifiedEvent, store_event
from shared.usecases.notifications import send_notification
from shared.usecases.stripe_events import apply_event
from tests.factories import World, make_world
from tests.fakes.clock import FakeClock
from tests.fakes.queue import RecordingQueue
from tests.fakes.smtp_sink import SmtpSink

PARIS = ZoneInfo("Europe/Paris")
JSON = dict[str, Any]
SECRET = "test-lifecycle-jwt-secret-".ljust(64, "s")


def local(days: int, hour: int, minute: int = 0) -> datetime:
    day = datetime.now(PARIS).date() + timedelta(days=days)
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=PARIS)


def utc_text(moment: datetime) -> str:
    text = iso_utc(moment)
    assert text is not None
    return text


@dataclass
class Lab:
    app: Flask
    http: Any  # a FlaskClient; its answers' `.json` is read as Any
    clock: FakeClock
    queue: RecordingQueue
    sessions: sessionmaker[Session]
    emulator: StripeEmulator
    admin: dict[str, str]

    @property
    def state(self) -> ApiState:
        found: ApiState = self.app.extensions[EXTENSION_KEY]
        return found

    def book(self, world: World, start: datetime, client_id: str | None = None) -> JSON:
        answer = self.http.post(
            "/api/bookings/create",
            json={
                "clientId": client_id or world.client_id,
                "artistId": world.artist_id,
                "serviceId": world.service_id,
                "startTime": start.isoformat(),
            },
        )
        assert answer.status_code == 201, answer.json
        booking: JSON = answer.json["booking"]
        return booking

    def pay(self, booking: JSON) -> None:
        """The deposit's payment_intent.succeeded, applied as the worker applies it."""
        paid = self.emulator.succeed_payment_intent(booking["paymentIntentId"])
        payload = self.emulator.event("payment_intent.succeeded", paid)
        resources = self.state.resources
        store_event(
            resources, VerifiedEvent(payload["id"], payload["type"], payload["created"], payload)
        )
        applied = apply_event(
            resources, payload["id"], now=self.clock(), stripe=StripeGateway(resources.settings)
        )
        self.state.effects.run(applied.effects)

    def confirmed(self, world: World, start: datetime, client_id: str | None = None) -> JSON:
        booking = self.book(world, start, client_id)
        self.pay(booking)
        assert self.row(booking["id"]).status == "CONFIRMED"
        return booking

    def row(self, booking_id: str) -> Booking:
        with transaction(self.sessions) as session:
            found = session.get(Booking, uuid.UUID(booking_id))
            assert found is not None
            return found

    def notes(self, booking_id: str) -> list[Notification]:
        with transaction(self.sessions) as session:
            return list(
                session.scalars(
                    select(Notification)
                    .where(Notification.booking_id == uuid.UUID(booking_id))
                    .order_by(Notification.created_at, Notification.recipient)
                )
            )

    def refunds(self, booking_id: str) -> list[Refund]:
        with transaction(self.sessions) as session:
            return list(
                session.scalars(select(Refund).where(Refund.booking_id == uuid.UUID(booking_id)))
            )

    def refund_requests(self, intent_id: str) -> list[Any]:
        return [
            r
            for r in self.emulator.requests_to("/v1/refunds", "POST")
            if r.params.get("payment_intent") == intent_id
        ]

    def cancel(self, booking: JSON, client_id: str | None = None, **body: Any) -> Any:
        payload = {"clientId": client_id or booking["clientId"], **body}
        return self.http.post(f"/api/bookings/{booking['id']}/cancel", json=payload)

    def staff(self, booking_id: str, action: str, body: JSON | None = None) -> Any:
        return self.http.post(
            f"/api/admin/bookings/{booking_id}/{action}", json=body, headers=self.admin
        )

    def reschedule(
        self,
        booking: JSON,
        start: datetime,
        *,
        client_id: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> Any:
        return self.http.post(
            f"/api/bookings/{booking['id']}/reschedule",
            json={"clientId": client_id or booking["clientId"], "startTime": start.isoformat()},
            headers=headers or {},
        )

    def at_start_of(self, booking: JSON, after: timedelta = timedelta(minutes=1)) -> None:
        start = datetime.fromisoformat(booking["startTime"].replace("Z", "+00:00"))
        self.clock.advance(start + after - self.clock())


@pytest.fixture
def lab(make_app, sessions, stripe_emulator, admin_headers) -> Iterator[Lab]:
    stripe_emulator.reset_failures()
    clock = FakeClock()
    queue = RecordingQueue()
    app = make_app(clock=clock, queue=queue)
    yield Lab(app, app.test_client(), clock, queue, sessions, stripe_emulator, admin_headers)
    stripe_emulator.reset_failures()


def kinds(notes: list[Notification]) -> list[tuple[str, str]]:
    return sorted((n.kind, n.recipient) for n in notes)


def emails(world: World, lab: Lab) -> tuple[str, str]:
    answer = lab.http.get(f"/api/admin/artists/{world.artist_id}", headers=lab.admin)
    client = lab.http.get(f"/api/admin/clients/{world.client_id}", headers=lab.admin)
    return client.json["email"], answer.json["email"]


# --------------------------------------------------------------------------- client cancel


def test_client_cancels_an_unpaid_hold(lab: Lab) -> None:
    world = make_world(lab.sessions)
    start = local(3, 11)
    booking = lab.book(world, start)

    answer = lab.cancel(booking, reason="changed my mind")

    assert answer.status_code == 200, answer.json
    body = answer.json["booking"]
    assert answer.json["refund"] is None
    assert body["status"] == "CANCELLED"
    assert body["cancelledBy"] == "CLIENT"
    assert body["cancellationReason"] == "changed my mind"
    assert body["cancelledAt"] == utc_text(lab.clock())
    assert body["depositStatus"] == "UNPAID"
    assert body["amountRefunded"] == "0.00"
    # Its intent is cancelled on Stripe (after the commit), nobody is emailed.
    assert lab.emulator.payment_intent(booking["paymentIntentId"])["status"] == "canceled"
    assert lab.notes(booking["id"]) == []
    # The slot is free at once.
    other = make_world(lab.sessions)
    assert lab.book(world, start, client_id=other.client_id)["status"] == "PENDING_PAYMENT"
    assert lab.http.get(f"/api/bookings/{booking['id']}").json["booking"] == body


def test_client_cancels_inside_the_refund_window_and_is_refunded_at_once(
    lab: Lab, sessions: sessionmaker[Session]
) -> None:
    world = make_world(lab.sessions, refund_window_hours=48)
    client_email, artist_email = emails(world, lab)
    booking = lab.confirmed(world, local(3, 11))

    answer = lab.cancel(booking)

    assert answer.status_code == 200, answer.json
    assert answer.json["refund"] == {"amount": "50.00", "currency": "eur", "status": "SUCCEEDED"}
    body = answer.json["booking"]
    assert (body["status"], body["cancelledBy"]) == ("CANCELLED", "CLIENT")
    row = lab.row(booking["id"])
    assert body["depositStatus"] == row.deposit_status
    assert row.deposit_status in ("REFUND_PENDING", "REFUNDED")  # REFUNDED: Stripe's report
    # One refund, asked once, after the commit, with the action's idempotency key.
    [owed] = lab.refunds(booking["id"])
    assert (owed.reason, owed.status, owed.amount_minor) == (
        RefundReason.CLIENT_CANCEL,
        RefundStatus.SUCCEEDED,
        5000,
    )
    [asked] = lab.refund_requests(booking["paymentIntentId"])
    assert asked.idempotency_key == refund_idempotency_key(row.id, RefundReason.CLIENT_CANCEL)
    assert asked.idempotency_key == f"inkflow-refund-client-cancel-{row.id}"
    assert asked.params["reverse_transfer"] == "true"
    assert asked.params["refund_application_fee"] == "true"
    assert "amount" not in asked.params
    assert PROCESS_REFUND not in {name for name, _ in lab.queue.sent}
    assert kinds(lab.notes(booking["id"])) == sorted(
        [
            ("BOOKING_CONFIRMED", client_email),
            ("BOOKING_CONFIRMED", artist_email),
            ("BOOKING_CANCELLED", client_email),
            ("BOOKING_CANCELLED", artist_email),
            ("PAYMENT_REFUNDED", client_email),
        ]
    )
    # Cancelling again: refused, nothing more owed or asked.
    again = lab.cancel(booking)
    assert again.status_code == 409
    assert again.json == {
        "error": "INVALID_STATE",
        "message": "A CANCELLED booking does not allow this.",
        "details": {"status": "CANCELLED"},
    }
    assert len(lab.refunds(booking["id"])) == 1
    assert len(lab.refund_requests(booking["paymentIntentId"])) == 1


def test_the_cancel_emails_say_who_cancelled_and_where_the_deposit_goes(
    lab: Lab, sessions: sessionmaker[Session]
) -> None:
    world = make_world(lab.sessions, refund_window_hours=48)
    kept = lab.confirmed(world, local(1, 11))  # inside 48 h: the deposit is kept
    refunded = lab.confirmed(world, local(4, 11))
    assert lab.cancel(kept).json["booking"]["depositStatus"] == "FORFEITED"
    assert lab.cancel(refunded).json["refund"]["status"] == "SUCCEEDED"
    client_email, _ = emails(world, lab)
    with SmtpSink() as sink:
        backend = SmtpBackend(sink.url)
        for booking in (kept, refunded):
            for note in lab.notes(booking["id"]):
                if note.kind == "BOOKING_CANCELLED":
                    send_notification(lab.state.resources, note.id, backend)
        received = sink.wait_for(4)
    texts = {(m.to, m.text and "kept" in m.text, m.text and "refunded" in m.text) for m in received}
    for_client = sorted((kept_, refunded_) for to, kept_, refunded_ in texts if to == client_email)
    assert for_client == [(False, True), (True, False)]
    client_texts = [m.text or "" for m in received if m.to == client_email]
    assert all("Your booking for Session" in t for t in client_texts)
    artist_texts = [m.text or "" for m in received if m.to != client_email]
    assert all("Client cancelled their booking" in t for t in artist_texts)


def test_client_cancels_outside_the_refund_window_and_the_deposit_is_kept(lab: Lab) -> None:
    world = make_world(lab.sessions)  # the default policy: never refunded
    booking = lab.confirmed(world, local(10, 11))

    answer = lab.cancel(booking)

    assert answer.status_code == 200, answer.json
    assert answer.json["refund"] is None
    assert answer.json["booking"]["depositStatus"] == "FORFEITED"
    assert lab.refunds(booking["id"]) == []
    assert lab.refund_requests(booking["paymentIntentId"]) == []
    assert {n.kind for n in lab.notes(booking["id"])} == {"BOOKING_CONFIRMED", "BOOKING_CANCELLED"}


def test_a_started_booking_cannot_be_cancelled_by_the_client(lab: Lab) -> None:
    world = make_world(lab.sessions, refund_window_hours=0)
    booking = lab.confirmed(world, local(3, 11))
    lab.at_start_of(booking, after=timedelta(0))  # at the start instant itself

    answer = lab.cancel(booking)

    assert answer.status_code == 409
    assert answer.json["error"] == "POLICY_VIOLATION"
    assert answer.json["details"] == {"reason": "STARTED"}
    row = lab.row(booking["id"])
    assert (row.status, row.deposit_status, row.cancelled_at) == ("CONFIRMED", "PAID", None)


def test_only_the_bookings_own_client_may_cancel_it(lab: Lab) -> None:
    world = make_world(lab.sessions)
    other = make_world(lab.sessions)
    booking = lab.book(world, local(3, 11))
    path = f"/api/bookings/{booking['id']}/cancel"

    for body in ({"clientId": other.client_id}, {}, {"clientId": "not-a-uuid"}, None):
        answer = lab.http.post(path, json=body)
        assert answer.status_code == 403, (body, answer.json)
        assert answer.json["error"] == "FORBIDDEN"
    assert lab.row(booking["id"]).status == "PENDING_PAYMENT"
    assert lab.http.post(path, json={"reason": 7}).status_code == 400
    assert lab.http.post(path, json={"reason": "x" * 501}).status_code == 400
    unknown = lab.http.post(f"/api/bookings/{uuid.uuid4()}/cancel", json={})
    assert (unknown.status_code, unknown.json["error"]) == (404, "NOT_FOUND")
    assert lab.http.post("/api/bookings/nope/cancel", json={}).status_code == 404


def test_with_client_jwts_the_token_names_the_client(make_app, sessions) -> None:
    app = make_app(auth_jwt_secret=SECRET)
    http = app.test_client()
    world = make_world(sessions)
    other = make_world(sessions)
    start = local(3, 11)

    def token(sub: str) -> dict[str, str]:
        claims = {"sub": sub, "exp": datetime.now(UTC) + timedelta(minutes=5)}
        return {"Authorization": f"Bearer {jwt.encode(claims, SECRET, algorithm='HS256')}"}

    mine = token(world.client_id)
    created = http.post(
        "/api/bookings/create",
        json=world.booking(start),
        headers=mine,
    )
    booking_id = created.json["booking"]["id"]
    path = f"/api/bookings/{booking_id}/cancel"
    assert http.post(path, json={}).status_code == 401
    assert http.post(path, json={}, headers=token(other.client_id)).status_code == 403
    # A body naming another client than the token's: refused too.
    assert http.post(path, json={"clientId": other.client_id}, headers=mine).status_code == 403
    listed = f"/api/clients/{world.client_id}/bookings"
    assert http.get(listed, headers=token(other.client_id)).status_code == 403
    assert [b["id"] for b in http.get(listed, headers=mine).json["items"]] == [booking_id]
    answer = http.post(path, headers=mine)  # no body at all: the token says who
    assert answer.status_code == 200, answer.json
    assert answer.json["booking"]["cancelledBy"] == "CLIENT"


def test_a_refund_stripe_fails_now_is_answered_pending_and_left_to_its_task(lab: Lab) -> None:
    world = make_world(lab.sessions, refund_window_hours=24)
    booking = lab.confirmed(world, local(3, 11))
    lab.emulator.fail_next(path_prefix="/v1/refunds", status=500)

    answer = lab.cancel(booking)

    assert answer.status_code == 200, answer.json
    assert answer.json["refund"] == {"amount": "50.00", "currency": "eur", "status": "PENDING"}
    assert answer.json["booking"]["depositStatus"] == "REFUND_PENDING"
    [owed] = lab.refunds(booking["id"])
    assert (owed.status, owed.attempts, owed.stripe_refund_id) == (RefundStatus.PENDING, 1, None)
    assert "500" in (owed.last_error or "") or "unknown error" in (owed.last_error or "")
    assert lab.queue.args_of(PROCESS_REFUND) == [str(owed.id)]
    assert lab.row(booking["id"]).status == "CANCELLED"


# --------------------------------------------------------------------------- staff


def test_operator_cancels_with_a_full_refund_by_default(lab: Lab) -> None:
    world = make_world(lab.sessions)  # the client would not be refunded: the artist is
    client_email, artist_email = emails(world, lab)
    booking = lab.confirmed(world, local(3, 11))

    answer = lab.staff(booking["id"], "cancel")  # no body: refund FULL

    assert answer.status_code == 200, answer.json
    assert answer.json["booking"]["cancelledBy"] == "OPERATOR"
    assert answer.json["booking"]["cancellationReason"] is None
    assert answer.json["refund"] == {"amount": "50.00", "currency": "eur", "status": "SUCCEEDED"}
    [owed] = lab.refunds(booking["id"])
    assert owed.reason == RefundReason.OPERATOR_CANCEL
    cancelled = [n.recipient for n in lab.notes(booking["id"]) if n.kind == "BOOKING_CANCELLED"]
    assert sorted(cancelled) == sorted([client_email, artist_email])


def test_operator_cancels_and_keeps_the_deposit(lab: Lab) -> None:
    world = make_world(lab.sessions, refund_window_hours=0)
    booking = lab.confirmed(world, local(3, 11))

    answer = lab.staff(booking["id"], "cancel", {"refund": "NONE", "reason": "client abusive"})

    assert answer.status_code == 200, answer.json
    assert answer.json["refund"] is None
    body = answer.json["booking"]
    assert (body["status"], body["depositStatus"]) == ("CANCELLED", "FORFEITED")
    assert body["cancellationReason"] == "client abusive"
    assert lab.refunds(booking["id"]) == []


def test_operator_cancels_an_unpaid_hold_and_the_client_is_told(lab: Lab) -> None:
    world = make_world(lab.sessions)
    client_email, _ = emails(world, lab)
    booking = lab.book(world, local(3, 11))

    answer = lab.staff(booking["id"], "cancel", {"refund": "FULL"})

    assert answer.status_code == 200, answer.json
    assert answer.json["refund"] is None
    assert answer.json["booking"]["depositStatus"] == "UNPAID"
    assert lab.emulator.payment_intent(booking["paymentIntentId"])["status"] == "canceled"
    assert client_email in {n.recipient for n in lab.notes(booking["id"])}


def test_staff_cancel_refusals(lab: Lab) -> None:
    world = make_world(lab.sessions)
    booking = lab.confirmed(world, local(3, 11))
    path = f"/api/admin/bookings/{booking['id']}/cancel"
    assert lab.http.post(path, json={}).status_code == 401
    bad = lab.staff(booking["id"], "cancel", {"refund": "HALF"})
    assert (bad.status_code, list(bad.json["details"]["fields"])) == (400, ["refund"])
    assert lab.staff(str(uuid.uuid4()), "cancel").status_code == 404
    assert lab.staff(booking["id"], "cancel").status_code == 200
    again = lab.staff(booking["id"], "cancel")
    assert (again.status_code, again.json["details"]) == (409, {"status": "CANCELLED"})


def test_complete_and_no_show_only_once_the_booking_started(lab: Lab) -> None:
    world = make_world(lab.sessions)
    client_email, _ = emails(world, lab)
    done = lab.confirmed(world, local(3, 11))
    missed = lab.confirmed(world, local(3, 14))
    pending = lab.book(world, local(3, 16))

    for booking in (done, missed):
        for action in ("complete", "no-show"):
            early = lab.staff(booking["id"], action)
            assert early.status_code == 409
            assert early.json["details"] == {"reason": "NOT_STARTED"}
    lab.at_start_of(missed)

    completed = lab.staff(done["id"], "complete")
    assert completed.status_code == 200, completed.json
    assert completed.json["booking"]["status"] == "COMPLETED"
    assert completed.json["booking"]["depositStatus"] == "PAID"
    assert lab.row(done["id"]).completed_at == lab.clock()

    no_show = lab.staff(missed["id"], "no-show")
    assert no_show.status_code == 200, no_show.json
    assert no_show.json["booking"]["status"] == "NO_SHOW"
    assert no_show.json["booking"]["depositStatus"] == "FORFEITED"
    assert lab.row(missed["id"]).no_show_at == lab.clock()
    told = [n for n in lab.notes(missed["id"]) if n.kind == "NO_SHOW_RECORDED"]
    assert [n.recipient for n in told] == [client_email]
    assert str(told[0].id) in lab.queue.notifications()

    for booking_id, status in (
        (done["id"], "COMPLETED"),
        (missed["id"], "NO_SHOW"),
        (pending["id"], "PENDING_PAYMENT"),
    ):
        for action in ("complete", "no-show"):
            refused = lab.staff(booking_id, action)
            assert (refused.status_code, refused.json["error"]) == (409, "INVALID_STATE")
            assert refused.json["details"] == {"status": status}
    assert lab.staff(str(uuid.uuid4()), "no-show").status_code == 404


def test_a_client_with_too_many_no_shows_may_not_book_the_artist_again(lab: Lab) -> None:
    world = make_world(lab.sessions, no_show_limit=1)
    booking = lab.confirmed(world, local(1, 11))
    lab.at_start_of(booking)
    assert lab.staff(booking["id"], "no-show").status_code == 200

    refused = lab.http.post(
        "/api/bookings/create",
        json=world.booking(local(5, 11)),
    )
    assert refused.status_code == 409
    assert refused.json["error"] == "POLICY_VIOLATION"
    assert refused.json["details"] == {"reason": "NO_SHOW_LIMIT"}
    # Another client books the same slot; the limit is per artist.
    other = make_world(lab.sessions)
    assert lab.book(world, local(5, 11), client_id=other.client_id)
    assert lab.book(other, local(5, 11), client_id=world.client_id)


# --------------------------------------------------------------------------- reschedule


def test_client_reschedules_a_confirmed_booking(lab: Lab) -> None:
    world = make_world(lab.sessions)
    client_email, artist_email = emails(world, lab)
    old_start, new_start = local(4, 11), local(5, 15, 30)
    booking = lab.confirmed(world, old_start)

    answer = lab.reschedule(booking, new_start)

    assert answer.status_code == 200, answer.json
    moved = answer.json["booking"]
    assert moved["id"] == booking["id"]
    assert moved["startTime"] == utc_text(new_start)
    assert moved["endTime"] == utc_text(new_start + timedelta(hours=1))
    assert moved["rescheduleCount"] == 1
    assert (moved["status"], moved["depositStatus"]) == ("CONFIRMED", "PAID")
    assert moved["paymentIntentId"] == booking["paymentIntentId"]
    row = lab.row(booking["id"])
    assert (row.start_time, row.end_time, row.reschedule_count) == (
        new_start,
        new_start + timedelta(hours=1),
        1,
    )
    told = [n for n in lab.notes(booking["id"]) if n.kind == "BOOKING_RESCHEDULED"]
    assert sorted(n.recipient for n in told) == sorted([client_email, artist_email])
    assert {(n.occasion, n.previous_start_time) for n in told} == {("reschedule:1", old_start)}
    # The old slot is free at once, the new one taken.
    other = make_world(lab.sessions)
    assert lab.book(world, old_start, client_id=other.client_id)["status"] == "PENDING_PAYMENT"
    taken = lab.http.post(
        "/api/bookings/create",
        json={
            "clientId": other.client_id,
            "artistId": world.artist_id,
            "serviceId": world.service_id,
            "startTime": new_start.isoformat(),
        },
    )
    assert (taken.status_code, taken.json["details"]) == (409, {"reason": "ALREADY_BOOKED"})
    # The default policy allows one move.
    again = lab.reschedule(booking, local(6, 11))
    assert (again.status_code, again.json["details"]) == (409, {"reason": "RESCHEDULE_LIMIT"})


def test_the_rescheduled_emails_show_both_times(lab: Lab) -> None:
    world = make_world(lab.sessions, max_reschedules=2)
    booking = lab.confirmed(world, local(4, 11))
    assert lab.reschedule(booking, local(5, 12)).status_code == 200
    assert lab.reschedule(booking, local(6, 13)).status_code == 200
    told = [n for n in lab.notes(booking["id"]) if n.kind == "BOOKING_RESCHEDULED"]
    assert sorted(n.occasion for n in told) == ["reschedule:1"] * 2 + ["reschedule:2"] * 2
    second = [n for n in told if n.occasion == "reschedule:2"]
    with SmtpSink() as sink:
        for note in second:
            send_notification(lab.state.resources, note.id, SmtpBackend(sink.url))
        received = sink.wait_for(2)
    for message in received:
        text = message.text or ""
        assert text.index(local(6, 13).strftime("%-d")) >= 0
        assert "13:00 (Europe/Paris)" in text
        assert "12:00 (Europe/Paris)" in text  # where it was before this move


def test_a_move_that_overlaps_its_own_slot_is_fine(lab: Lab) -> None:
    world = make_world(lab.sessions, buffer_min=15)
    booking = lab.confirmed(world, local(4, 11))
    answer = lab.reschedule(booking, local(4, 11, 30))
    assert answer.status_code == 200, answer.json
    assert answer.json["booking"]["startTime"] == utc_text(local(4, 11, 30))


@pytest.mark.parametrize(
    ("setup", "target", "reason"),
    [
        ("none", (4, 8, 0), "OUTSIDE_WORKING_HOURS"),
        ("none", (4, 17, 30), "OUTSIDE_WORKING_HOURS"),  # ends after 18:00
        ("leave", (5, 11, 0), "ON_LEAVE"),
        ("booked", (5, 11, 0), "ALREADY_BOOKED"),
        ("booked", (5, 12, 0), "ALREADY_BOOKED"),  # inside the other's 15-min buffer
        ("none", (-1, 11, 0), "IN_PAST"),
        ("notice", (3, 10, 0), "TOO_SOON"),
        ("window", (40, 11, 0), "TOO_FAR"),
    ],
)
def test_a_refused_new_slot_leaves_the_booking_where_it_was(
    lab: Lab, setup: str, target: tuple[int, int, int], reason: str
) -> None:
    world = make_world(
        lab.sessions,
        buffer_min=15,
        min_notice_min=3 * 24 * 60 + 600 if setup == "notice" else 0,
        max_advance_days=30,
    )
    start = local(5 if setup == "notice" else 4, 11)
    booking = lab.confirmed(world, start)
    new_start = local(*target)
    if setup == "leave":
        leave = lab.http.post(
            f"/api/admin/artists/{world.artist_id}/leaves",
            json={
                "startTime": local(5, 9).isoformat(),
                "endTime": local(5, 13).isoformat(),
            },
            headers=lab.admin,
        )
        assert leave.status_code == 201
    if setup == "booked":
        other = make_world(lab.sessions)
        lab.book(world, local(5, 11), client_id=other.client_id)

    answer = lab.reschedule(booking, new_start)

    assert answer.status_code == 409, answer.json
    assert answer.json["error"] == "SLOT_UNAVAILABLE"
    assert answer.json["details"] == {"reason": reason}
    row = lab.row(booking["id"])
    assert (row.start_time, row.reschedule_count, row.status) == (start, 0, "CONFIRMED")
    assert [n.kind for n in lab.notes(booking["id"]) if n.kind == "BOOKING_RESCHEDULED"] == []


def test_reschedule_refusals_by_status_policy_and_client(lab: Lab) -> None:
    world = make_world(lab.sessions)
    other = make_world(lab.sessions)
    pending = lab.book(world, local(4, 11))
    soon = lab.confirmed(world, local(1, 14))  # under the default 48 h notice
    later = lab.confirmed(world, local(4, 15))

    refused = lab.reschedule(pending, local(6, 11))
    assert (refused.status_code, refused.json["error"]) == (409, "INVALID_STATE")
    assert refused.json["details"] == {"status": "PENDING_PAYMENT"}
    late = lab.reschedule(soon, local(6, 11))
    assert (late.status_code, late.json["details"]) == (409, {"reason": "TOO_LATE_TO_RESCHEDULE"})
    forbidden = lab.reschedule(later, local(6, 11), client_id=other.client_id)
    assert (forbidden.status_code, forbidden.json["error"]) == (403, "FORBIDDEN")
    same = lab.reschedule(later, local(4, 15))
    assert (same.status_code, list(same.json["details"]["fields"])) == (400, ["startTime"])
    naive = lab.http.post(
        f"/api/bookings/{later['id']}/reschedule",
        json={"clientId": world.client_id, "startTime": "2030-01-01T10:00:00"},
    )
    assert (naive.status_code, list(naive.json["details"]["fields"])) == (400, ["startTime"])
    missing = lab.reschedule({"id": str(uuid.uuid4()), "clientId": world.client_id}, local(6, 11))
    assert missing.status_code == 404
    for booking, start in ((pending, local(4, 11)), (soon, local(1, 14)), (later, local(4, 15))):
        row = lab.row(booking["id"])
        assert (row.start_time, row.reschedule_count) == (start, 0)


def test_a_held_lock_on_the_new_slot_answers_slot_taken(lab: Lab) -> None:
    world = make_world(lab.sessions)
    booking = lab.confirmed(world, local(4, 11))
    new_start = local(5, 11)
    redis_client = lab.state.resources.redis
    key = slot_lock_key(uuid.UUID(world.artist_id), new_start)
    redis_client.set(key, "someone-else", px=5000)
    try:
        answer = lab.reschedule(booking, new_start)
    finally:
        redis_client.delete(key)
    assert (answer.status_code, answer.json["error"]) == (409, "SLOT_TAKEN")
    assert lab.row(booking["id"]).start_time == local(4, 11)


def test_a_stale_hold_on_the_new_slot_is_expired_by_the_move(
    lab: Lab, sessions: sessionmaker[Session]
) -> None:
    """A hold past its expiry (not yet swept) blocks nothing for the rules but is still
    live for the exclusion constraint: the move expires it under the artist's lock."""
    world = make_world(lab.sessions)
    booking = lab.confirmed(world, local(4, 11))
    other = make_world(lab.sessions)
    new_start = local(5, 11)
    stale = lab.book(world, new_start, client_id=other.client_id)
    with transaction(sessions) as session:
        row = session.get(Booking, uuid.UUID(stale["id"]))
        assert row is not None
        row.expires_at = lab.clock() - timedelta(seconds=1)
    answer = lab.reschedule(booking, new_start)
    assert answer.status_code == 200, answer.json
    assert lab.row(stale["id"]).status == "EXPIRED"


def test_idempotency_key_replays_a_reschedule(lab: Lab) -> None:
    world = make_world(lab.sessions)
    booking = lab.confirmed(world, local(4, 11))
    headers = {"Idempotency-Key": f"move-{uuid.uuid4()}"}

    first = lab.reschedule(booking, local(5, 11), headers=headers)
    again = lab.reschedule(booking, local(5, 11), headers=headers)
    other_body = lab.reschedule(booking, local(6, 11), headers=headers)

    assert first.status_code == again.status_code == 200, (first.json, again.json)
    assert again.json == first.json
    assert lab.row(booking["id"]).reschedule_count == 1
    assert (other_body.status_code, list(other_body.json["details"]["fields"])) == (
        400,
        ["Idempotency-Key"],
    )


# --------------------------------------------------------------------------- lists, leaves


def test_a_clients_bookings_by_status_and_range(lab: Lab) -> None:
    world = make_world(lab.sessions)
    early = lab.confirmed(world, local(3, 11))
    held = lab.book(world, local(4, 11))
    gone = lab.book(world, local(5, 11))
    assert lab.cancel(gone).status_code == 200
    path = f"/api/clients/{world.client_id}/bookings"

    def ids(query: str = "") -> list[str]:
        answer = lab.http.get(path + query)
        assert answer.status_code == 200, answer.json
        return [b["id"] for b in answer.json["items"]]

    assert ids() == [early["id"], held["id"], gone["id"]]
    assert ids("?status=CONFIRMED,PENDING_PAYMENT") == [early["id"], held["id"]]
    assert ids("?status=CONFIRMED&status=PENDING_PAYMENT") == [early["id"], held["id"]]
    assert ids("?status=CANCELLED") == [gone["id"]]
    start = local(4, 0).isoformat().replace("+", "%2B")
    end = local(5, 0).isoformat().replace("+", "%2B")
    assert ids(f"?from={start}&to={end}") == [held["id"]]
    assert ids(f"?from={start}") == [held["id"], gone["id"]]
    assert ids("?status=NO_SHOW") == []
    bad = lab.http.get(path + "?status=LIVE")
    assert (bad.status_code, list(bad.json["details"]["fields"])) == (400, ["status[0]"])
    assert lab.http.get(f"/api/clients/{uuid.uuid4()}/bookings").status_code == 404


def test_a_leave_lists_its_conflicts_and_cancels_them_when_asked(lab: Lab) -> None:
    world = make_world(lab.sessions)
    client_email, _ = emails(world, lab)
    paid = lab.confirmed(world, local(4, 11))
    held = lab.book(world, local(4, 14))
    outside = lab.confirmed(world, local(5, 11))
    leave_path = f"/api/admin/artists/{world.artist_id}/leaves"
    body = {"startTime": local(4, 10).isoformat(), "endTime": local(4, 16).isoformat()}

    listed = lab.http.post(leave_path, json={**body, "reason": "flu"}, headers=lab.admin)
    assert listed.status_code == 201, listed.json
    assert listed.json["conflicts"] == [paid["id"], held["id"]]
    assert listed.json["cancelled"] == []
    assert lab.row(paid["id"]).status == "CONFIRMED"

    cancelled = lab.http.post(
        leave_path, json={**body, "reason": "flu", "cancelConflicting": True}, headers=lab.admin
    )
    assert cancelled.status_code == 201, cancelled.json
    assert cancelled.json["conflicts"] == cancelled.json["cancelled"] == [paid["id"], held["id"]]
    for booking, deposit in ((paid, "REFUND_PENDING"), (held, "UNPAID")):
        row = lab.row(booking["id"])
        assert (row.status, row.cancelled_by, row.cancellation_reason) == (
            "CANCELLED",
            "ARTIST",
            "flu",
        )
        assert row.deposit_status in (deposit, "REFUNDED")
        assert client_email in {
            n.recipient for n in lab.notes(booking["id"]) if n.kind == "BOOKING_CANCELLED"
        }
    [owed] = lab.refunds(paid["id"])
    assert (owed.reason, owed.status) == (RefundReason.LEAVE_CONFLICT, RefundStatus.SUCCEEDED)
    assert lab.row(outside["id"]).status == "CONFIRMED"
    assert lab.emulator.payment_intent(held["paymentIntentId"])["status"] == "canceled"


def test_artists_carry_their_policy(lab: Lab) -> None:
    created = lab.http.post(
        "/api/admin/artists",
        json={
            "name": "Policy",
            "email": f"policy-{uuid.uuid4().hex[:6]}@example.com",
            "timezone": "Europe/Paris",
            "refundWindowHours": 72,
            "maxReschedules": 3,
            "noShowLimit": 2,
        },
        headers=lab.admin,
    )
    assert created.status_code == 201, created.json
    policy = {
        k: created.json[k]
        for k in (
            "refundWindowHours",
            "rescheduleNoticeHours",
            "maxReschedules",
            "reminderHours",
            "noShowLimit",
        )
    }
    assert policy == {
        "refundWindowHours": 72,
        "rescheduleNoticeHours": 48,
        "maxReschedules": 3,
        "reminderHours": 24,
        "noShowLimit": 2,
    }
    negative = lab.http.post(
        "/api/admin/artists",
        json={"name": "N", "email": "n@example.com", "timezone": "UTC", "noShowLimit": -1},
        headers=lab.admin,
    )
    assert (negative.status_code, list(negative.json["details"]["fields"])) == (
        400,
        ["noShowLimit"],
    )


def test_the_use_case_refuses_before_writing_anything(lab: Lab) -> None:
    """decide_requested maps the table's refusals onto the contract's errors."""
    world = make_world(lab.sessions)
    booking = lab.book(world, local(4, 11))
    with pytest.raises(DomainError) as refused:
        lab.state.lifecycle.complete(
            booking["id"], allowed=guard(OPERATOR, Access.ARTIST), now=lab.clock()
        )
    assert refused.value.details == {"status": "PENDING_PAYMENT"}
    assert lab.row(booking["id"]).status == "PENDING_PAYMENT"

"""Bookings in calendars, through the Flask app on real PostgreSQL: the artist's private
feed (parsed back with the `icalendar` library: events, UIDs, times, what is left out,
the window, ETag and 304, the token's rotation and key) and the invitations the
confirmation, reschedule, cancellation e-mails carry (sent over SMTP to a sink on
loopback, parsed back)."""

from __future__ import annotations

import uuid
from typing import Any
from urllib.parse import urlsplit

import icalendar
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from shared.adapters.db import transaction
from shared.adapters.models import Artist, NotificationKind
from shared.domain.calendar import token_digest
from shared.usecases import catalog
from tests.factories import World, make_world
from tests.fakes.smtp_sink import ReceivedMessage, SmtpSink
from tests.lab import JSON, Lab, instant, local, make_lab

BASE_URL = "https://book.example"


@pytest.fixture
def lab(make_app, sessions, admin_headers) -> Lab:
    return make_lab(make_app, sessions, admin_headers, public_base_url=BASE_URL)


def free_world(sessions: sessionmaker[Session], **artist: Any) -> World:
    """An artist whose service needs no deposit: bookings are CONFIRMED at once."""
    return make_world(sessions, deposit="0.00", price="120.00", duration_min=90, **artist)


def feed_path(lab: Lab, artist_id: str) -> str:
    url = lab.artist(artist_id)["calendarUrl"]
    assert url.startswith(f"{BASE_URL}/api/calendar/")
    assert url.endswith(".ics")
    return urlsplit(url).path


def get_feed(lab: Lab, path: str, **headers: str) -> Any:
    return lab.http.get(path, headers=headers)


def events_of(answer: Any) -> dict[str, icalendar.Event]:
    assert answer.status_code == 200, answer.data[:300]
    assert answer.mimetype == "text/calendar"
    cal = icalendar.Calendar.from_ical(answer.data)
    assert "METHOD" not in cal  # published, not an invitation
    return {str(e.uid): e for e in cal.events}


def uid(booking: JSON) -> str:
    return f"booking-{booking['id']}@inkflow"


# --------------------------------------------------------------------------- the feed


def test_the_feed_lists_the_artists_standing_bookings_with_their_times(
    lab: Lab, sessions: sessionmaker[Session]
) -> None:
    world = free_world(sessions)
    path = feed_path(lab, world.artist_id)
    first = lab.book(world, local(3, 11))
    second = lab.book(world, local(4, 14))
    gone = lab.book(world, local(5, 10))
    lab.cancel(gone)
    # An unpaid hold (a service with a deposit) is not a booking yet: left out.
    with transaction(sessions) as session:
        paid = catalog.create_service(
            session, world.artist_id, name="Sleeve", duration_min=60, price="300.00",
            deposit_amount="50.00", currency="eur",
        )  # fmt: skip
    hold = lab.book(world, local(6, 11), service_id=str(paid.id))
    assert hold["status"] == "PENDING_PAYMENT"
    # Another artist's bookings are in their own feed only.
    other = free_world(sessions)
    theirs = lab.book(other, local(3, 11))

    events = events_of(get_feed(lab, path))

    assert set(events) == {uid(first), uid(second)}
    for booking in (first, second):
        event = events[uid(booking)]
        assert event.start == instant(booking["startTime"])
        assert event.end == instant(booking["endTime"])
        assert event.sequence == 0
        assert event["STATUS"] == "CONFIRMED"
        assert str(event["ORGANIZER"]) == f"mailto:{lab.artist(world.artist_id)['email']}"
    assert "11:00–12:30 (Europe/Paris)" in str(events[uid(first)]["DESCRIPTION"])
    cal = icalendar.Calendar.from_ical(get_feed(lab, path).data)
    assert cal["X-WR-TIMEZONE"] == "Europe/Paris"
    assert set(events_of(get_feed(lab, feed_path(lab, other.artist_id)))) == {uid(theirs)}


def test_a_move_shows_at_once_with_a_higher_sequence_and_a_cancel_removes_the_event(
    lab: Lab, sessions: sessionmaker[Session]
) -> None:
    world = free_world(sessions)
    path = feed_path(lab, world.artist_id)
    booking = lab.book(world, local(5, 11))
    lab.reschedule(booking, local(6, 15))

    [event] = events_of(get_feed(lab, path)).values()
    assert event.uid == uid(booking)
    assert event.start == local(6, 15)
    assert event.sequence == 1
    assert lab.row(booking["id"]).calendar_sequence == 1

    lab.cancel(booking)
    assert events_of(get_feed(lab, path)) == {}
    assert lab.row(booking["id"]).calendar_sequence == 2


def test_the_window_is_30_days_back_to_365_ahead_and_closed_bookings_stay(
    lab: Lab, sessions: sessionmaker[Session]
) -> None:
    world = free_world(sessions, max_advance_days=400)
    path = feed_path(lab, world.artist_id)
    early = lab.book(world, local(2, 11))
    later = lab.book(world, local(20, 11))
    far = lab.book(world, local(390, 11))
    assert set(events_of(get_feed(lab, path))) == {uid(early), uid(later)}

    # Forty days on: `early` is more than 30 days back, `later` took place (completed),
    # `far` is now within the year ahead.
    lab.clock.advance(days=40)
    lab.staff(later, "complete")
    events = events_of(get_feed(lab, path))
    assert set(events) == {uid(later), uid(far)}
    assert events[uid(later)]["STATUS"] == "CONFIRMED"  # it happened: it stays


def test_etag_and_if_none_match(lab: Lab, sessions: sessionmaker[Session]) -> None:
    world = free_world(sessions)
    path = feed_path(lab, world.artist_id)
    lab.book(world, local(3, 11))

    first = get_feed(lab, path)
    etag = first.headers["ETag"]
    assert etag.startswith('"')
    assert not etag.startswith("W/")
    assert first.headers["Cache-Control"] in ("private, no-cache", "no-cache, private")
    assert get_feed(lab, path).headers["ETag"] == etag  # same content, same tag

    unchanged = get_feed(lab, path, **{"If-None-Match": etag})
    assert unchanged.status_code == 304
    assert unchanged.data == b""
    assert unchanged.headers["ETag"] == etag
    assert get_feed(lab, path, **{"If-None-Match": f'"other", W/{etag}'}).status_code == 304
    assert get_feed(lab, path, **{"If-None-Match": '"other"'}).status_code == 200

    lab.book(world, local(4, 11))
    changed = get_feed(lab, path, **{"If-None-Match": etag})
    assert changed.status_code == 200
    assert changed.headers["ETag"] != etag
    assert len(events_of(changed)) == 2


def test_an_unknown_or_malformed_token_is_not_found(lab: Lab) -> None:
    for token in ("A" * 43, "not-a-token", "A" * 44):
        answer = lab.http.get(f"/api/calendar/{token}.ics")
        assert answer.status_code == 404
        assert answer.json["error"] == "NOT_FOUND"


def test_rotation_retires_the_old_url_at_once(lab: Lab, sessions: sessionmaker[Session]) -> None:
    world = free_world(sessions)
    old = feed_path(lab, world.artist_id)
    booking = lab.book(world, local(3, 11))

    answer = lab.http.post(
        f"/api/admin/artists/{world.artist_id}/calendar-token", headers=lab.admin
    )

    assert answer.status_code == 200, answer.json
    new_url = answer.json["calendarUrl"]
    assert set(answer.json) == {"calendarUrl"}
    assert new_url.startswith(f"{BASE_URL}/api/calendar/")
    assert new_url != BASE_URL + old
    assert lab.http.get(old).status_code == 404
    assert set(events_of(lab.http.get(urlsplit(new_url).path))) == {uid(booking)}
    assert lab.artist(world.artist_id)["calendarUrl"] == new_url
    # Only the operator (or, with roles, the artist) may rotate; an unknown artist is 404.
    path = f"/api/admin/artists/{world.artist_id}/calendar-token"
    assert lab.http.post(path).status_code == 401
    unknown = lab.http.post(f"/api/admin/artists/{uuid.uuid4()}/calendar-token", headers=lab.admin)
    assert unknown.status_code == 404


def stored_hash(sessions: sessionmaker[Session], artist_id: str) -> str | None:
    with transaction(sessions) as session:
        return session.scalar(
            select(Artist.calendar_token_hash).where(Artist.id == uuid.UUID(artist_id))
        )


def test_only_the_tokens_hash_is_stored_from_the_artists_creation_on(
    lab: Lab, sessions: sessionmaker[Session]
) -> None:
    created = lab.http.post(
        "/api/admin/artists",
        json={"name": "Ana", "email": "ana@studio.example", "timezone": "Europe/Paris"},
        headers=lab.admin,
    )
    assert created.status_code == 201, created.json
    token = created.json["calendarUrl"].rsplit("/", 1)[1].removesuffix(".ics")
    assert stored_hash(sessions, created.json["id"]) == token_digest(token)
    with transaction(sessions) as session:
        row = session.get(Artist, uuid.UUID(created.json["id"]))
        assert row is not None
        assert token not in str(vars(row))  # the token itself is nowhere in the row
    # An artist that existed before feeds (no hash yet) gets one when its URL is shown.
    world = free_world(sessions)
    assert stored_hash(sessions, world.artist_id) is None
    listed = lab.http.get("/api/admin/artists", headers=lab.admin).json["items"]
    url = next(a["calendarUrl"] for a in listed if a["id"] == world.artist_id)
    assert stored_hash(sessions, world.artist_id) is not None
    assert lab.http.get(urlsplit(url).path).status_code == 200


def test_a_new_key_retires_every_url(
    lab: Lab, make_app, sessions: sessionmaker[Session], admin_headers
) -> None:
    world = free_world(sessions)
    old = feed_path(lab, world.artist_id)
    rekeyed = make_lab(
        make_app, sessions, admin_headers, public_base_url=BASE_URL,
        calendar_token_secret="a-new-calendar-secret",
    )  # fmt: skip
    # The stored hash still finds the artist, but the new key does not make that token.
    assert rekeyed.http.get(old).status_code == 404
    new = feed_path(rekeyed, world.artist_id)
    assert new != old
    assert rekeyed.http.get(new).status_code == 200


# --------------------------------------------------------------------------- invitations


def invitations(message: ReceivedMessage) -> list[tuple[str, icalendar.Calendar]]:
    """(method parameter, parsed calendar) of each text/calendar part."""
    found = []
    for part in message.calendar_parts:
        payload = part.get_payload(decode=True)
        assert isinstance(payload, bytes)
        found.append((str(part.get_param("method")), icalendar.Calendar.from_ical(payload)))
    return found


def the_invitation(message: ReceivedMessage) -> tuple[str, icalendar.Event]:
    (inline_method, inline), (attached_method, attached) = invitations(message)
    assert inline.to_ical() == attached.to_ical()  # the same document twice
    assert inline_method == attached_method == inline["METHOD"]
    assert message.calendar_parts[1].get_filename() == "invite.ics"
    [event] = inline.events
    return inline_method, event


def test_confirmation_reschedule_and_cancel_emails_carry_one_event_updated_then_cancelled(
    lab: Lab, sessions: sessionmaker[Session]
) -> None:
    world = free_world(sessions)
    artist = lab.artist(world.artist_id)
    booking = lab.book(world, local(5, 11))
    with SmtpSink() as sink:
        # The artist's confirmation is held back until after the cancel (the outbox may
        # deliver late): it then carries the cancellation, not the old time.
        confirmed = lab.notes(booking["id"], NotificationKind.BOOKING_CONFIRMED)
        late = next(n for n in confirmed if n.recipient == artist["email"])
        for note in confirmed:
            if note is not late:
                assert lab.send(note.id, sink) == "sent"
        lab.reschedule(booking, local(6, 15))
        for note in lab.notes(booking["id"], NotificationKind.BOOKING_RESCHEDULED):
            assert lab.send(note.id, sink) == "sent"
        lab.cancel(booking)
        for note in lab.notes(booking["id"], NotificationKind.BOOKING_CANCELLED):
            assert lab.send(note.id, sink) == "sent"
        assert lab.send(late.id, sink) == "sent"
        received = sink.wait_for(6)

    seen = [(m.subject, m.to, *the_invitation(m)) for m in received]
    methods = [(event.sequence, method, to) for _, to, method, event in seen]
    client, artist_email = received[0].to, artist["email"]
    assert sorted(methods[:1]) + sorted(methods[1:3]) + sorted(methods[3:]) == [
        (0, "REQUEST", client),  # confirmed
        (1, "REQUEST", artist_email),  # moved
        (1, "REQUEST", client),
        (2, "CANCEL", artist_email),  # cancelled, and the late confirmation
        (2, "CANCEL", artist_email),
        (2, "CANCEL", client),
    ]
    assert {str(event.uid) for *_, event in seen} == {uid(booking)}
    first, moved = seen[0][3], seen[1][3]
    assert first.start == local(5, 11)
    assert moved.start == local(6, 15)
    assert all(event["STATUS"] == "CANCELLED" for *_, method, event in seen if method == "CANCEL")
    assert str(first["ORGANIZER"]) == f"mailto:{artist_email}"
    assert [str(a) for a in first.attendees] == [f"mailto:{client}"]


def test_a_hold_that_never_was_confirmed_is_cancelled_without_an_invitation(
    lab: Lab, sessions: sessionmaker[Session]
) -> None:
    world = make_world(sessions)  # a deposit: the booking waits for it
    booking = lab.book(world, local(5, 11))
    lab.staff(booking, "cancel")  # the operator ends the hold: client and artist are told
    with SmtpSink() as sink:
        assert lab.send_pending(sink, booking["id"]) == ["sent", "sent"]
        received = sink.wait_for(2)
    assert all(m.content_types == ["text/plain", "text/html"] for m in received)

"""The iCalendar builder (parsed back with the `icalendar` library), the calendar rules
(invitation method, when SEQUENCE grows, the feed's token and window), the reminder time,
and the e-mail that carries an invitation."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser

import icalendar
import pytest

from shared.adapters import ics
from shared.adapters.email_templates import RenderedEmail
from shared.adapters.mail import Invitation, build_message
from shared.domain import calendar, reminders
from shared.domain.calendar import Method
from shared.domain.notifications import NotificationKind
from shared.domain.transitions import TABLE, Action, BookingStatus

BOOKING_ID = uuid.UUID("6f1c1a52-9a0e-4c61-9b0e-3f2b1d7c9a11")
ARTIST_ID = uuid.UUID("0b7c5d6e-1f2a-4b3c-8d4e-5f6a7b8c9d0e")
# Tuesday 5 May 2026, 14:00–15:30 in Paris (UTC+2).
START = datetime(2026, 5, 5, 12, 0, tzinfo=UTC)
END = START + timedelta(minutes=90)
EVENT = ics.BookingEvent(
    booking_id=BOOKING_ID,
    start=START,
    end=END,
    timezone="Europe/Paris",
    service_name="Half sleeve",
    artist_name="Ana Ink",
    artist_email="ana@studio.example",
    client_name="Zoé Martin, Jr.",
    client_email="zoe@example.com",
    deposit_amount=Decimal("50.000"),
    currency="eur",
    sequence=0,
    stamp=datetime(2026, 4, 1, 9, 30, 15, 123456, tzinfo=UTC),
)


def parse(data: bytes) -> icalendar.Calendar:
    return icalendar.Calendar.from_ical(data)


def only_event(cal: icalendar.Calendar) -> icalendar.Event:
    [event] = cal.events
    return event


# --------------------------------------------------------------------------- the builder


def test_an_invitation_is_one_event_in_utc_with_the_artists_zone_shown():
    cal = parse(ics.invitation(EVENT, Method.REQUEST))
    assert cal["METHOD"] == "REQUEST"
    assert cal["VERSION"] == "2.0"
    assert cal["PRODID"] == ics.PRODID
    assert cal["X-WR-TIMEZONE"] == "Europe/Paris"
    event = only_event(cal)
    assert event.uid == f"booking-{BOOKING_ID}@inkflow"
    assert event.sequence == 0
    assert (event.start, event.end) == (START, END)
    start = event.start
    assert isinstance(start, datetime)
    assert start.utcoffset() == timedelta(0)
    stamp = event.DTSTAMP
    assert stamp == datetime(2026, 4, 1, 9, 30, 15, tzinfo=UTC)  # whole seconds
    assert event["STATUS"] == "CONFIRMED"
    assert event["TRANSP"] == "OPAQUE"
    assert str(event["SUMMARY"]) == "Half sleeve: Zoé Martin, Jr. with Ana Ink"
    description = str(event["DESCRIPTION"])
    assert "Tuesday 5 May 2026, 14:00–15:30 (Europe/Paris)" in description
    assert "Deposit: 50.00 EUR" in description
    assert str(BOOKING_ID) in description
    # In the raw text the times are UTC ("Z"), never a floating or TZID local time.
    raw = ics.invitation(EVENT, Method.REQUEST).decode()
    assert "DTSTART:20260505T120000Z" in raw
    assert "DTEND:20260505T133000Z" in raw
    assert raw.count("\r\n") == len(raw.splitlines())  # CRLF line ends (RFC 5545)


def test_the_artist_organises_and_the_client_attends_without_a_reply_asked():
    event = only_event(parse(ics.invitation(EVENT, Method.REQUEST)))
    organizer = event["ORGANIZER"]
    assert str(organizer) == "mailto:ana@studio.example"
    assert organizer.params["CN"] == "Ana Ink"
    [attendee] = event.attendees
    assert str(attendee) == "mailto:zoe@example.com"
    assert attendee.params["CN"] == "Zoé Martin, Jr."  # the comma survives quoting
    assert attendee.params["PARTSTAT"] == "ACCEPTED"
    assert attendee.params["RSVP"] == "FALSE"
    assert attendee.params["ROLE"] == "REQ-PARTICIPANT"


def test_one_uid_for_the_bookings_whole_life_and_its_sequence_as_given():
    moved = replace(EVENT, start=START + timedelta(days=2), end=END + timedelta(days=2))
    first = only_event(parse(ics.invitation(EVENT, Method.REQUEST)))
    second = only_event(parse(ics.invitation(replace(moved, sequence=1), Method.REQUEST)))
    cancel = parse(ics.invitation(replace(moved, sequence=2, cancelled=True), Method.CANCEL))
    third = only_event(cancel)
    assert first.uid == second.uid == third.uid
    assert [first.sequence, second.sequence, third.sequence] == [0, 1, 2]
    assert second.start == START + timedelta(days=2)
    assert cancel["METHOD"] == "CANCEL"
    assert third["STATUS"] == "CANCELLED"
    assert str(third["DESCRIPTION"]).startswith("CANCELLED.")
    # Another booking, another UID.
    other = only_event(
        parse(ics.invitation(replace(EVENT, booking_id=uuid.uuid4()), Method.REQUEST))
    )
    assert other.uid != first.uid


def test_the_same_values_give_the_same_bytes():
    """The feed's ETag is a hash of its bytes: nothing may vary between two builds."""
    assert ics.invitation(EVENT, Method.REQUEST) == ics.invitation(EVENT, Method.REQUEST)
    builds = [
        ics.feed(calendar_id=ARTIST_ID, name="inkflow: Ana", timezone="UTC", events=[EVENT])
        for _ in range(2)
    ]
    assert builds[0] == builds[1]


def test_a_feed_is_published_not_sent_and_tells_apps_when_to_refresh():
    later = replace(EVENT, booking_id=uuid.uuid4(), start=END, end=END + timedelta(hours=1))
    data = ics.feed(
        calendar_id=ARTIST_ID,
        name="inkflow: Ana Ink",
        timezone="Europe/Paris",
        events=[EVENT, later],
    )
    cal = parse(data)
    assert "METHOD" not in cal
    assert cal["X-WR-CALNAME"] == "inkflow: Ana Ink"
    assert cal["X-WR-TIMEZONE"] == "Europe/Paris"
    assert cal["UID"] == f"calendar-{ARTIST_ID}@inkflow"
    assert [e.uid for e in cal.events] == [
        ics.event_uid(EVENT.booking_id),
        ics.event_uid(later.booking_id),
    ]
    assert "REFRESH-INTERVAL;VALUE=DURATION:PT1H" in data.decode()
    assert "X-PUBLISHED-TTL:PT1H" in data.decode()
    empty = parse(ics.feed(calendar_id=ARTIST_ID, name="x", timezone="UTC", events=[]))
    assert empty.events == []


def test_a_naive_time_is_refused():
    with pytest.raises(ValueError, match="naive"):
        ics.invitation(replace(EVENT, stamp=datetime(2026, 4, 1)), Method.REQUEST)


# --------------------------------------------------------------------------- the e-mail


def _message(invitation: Invitation | None) -> EmailMessage:
    rendered = RenderedEmail(subject="Your booking", text="Hello\n", html="<p>Hello</p>\n")
    built = build_message(
        uuid.uuid4(), "inkflow <a@inkflow.test>", "zoe@example.com", rendered, invitation
    )
    parsed = BytesParser(policy=policy.default).parsebytes(built.as_bytes())
    assert isinstance(parsed, EmailMessage)
    return parsed


@pytest.mark.parametrize("method", list(Method))
def test_an_email_carries_the_invitation_inline_and_attached(method: Method):
    data = ics.invitation(EVENT, method)
    message = _message(Invitation(data, method))
    assert message.get_content_type() == "multipart/mixed"
    alternative, attachment = message.iter_parts()
    assert alternative.get_content_type() == "multipart/alternative"
    types = [p.get_content_type() for p in alternative.iter_parts()]
    assert types == ["text/plain", "text/html", "text/calendar"]
    inline = list(alternative.iter_parts())[2]
    for part in (inline, attachment):
        assert part.get_content_type() == "text/calendar"
        assert part.get_param("method") == method.value
        payload = part.get_payload(decode=True)
        assert payload == data  # byte for byte: CRLF kept
        assert isinstance(payload, bytes)
        assert parse(payload)["METHOD"] == method.value
    assert inline.get_content_disposition() is None
    assert attachment.get_content_disposition() == "attachment"
    assert attachment.get_filename() == "invite.ics"
    # The readable bodies are still there for every client.
    text, html = (message.get_body(preferencelist=(kind,)) for kind in ("plain", "html"))
    assert text is not None
    assert html is not None
    assert (text.get_content(), html.get_content()) == ("Hello\n", "<p>Hello</p>\n")


def test_without_an_invitation_the_email_is_text_and_html_only():
    message = _message(None)
    assert message.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in message.iter_parts()] == ["text/plain", "text/html"]


# --------------------------------------------------------------------------- the rules


@pytest.mark.parametrize(
    ("kind", "status", "was_confirmed", "expected"),
    [
        (NotificationKind.BOOKING_CONFIRMED, BookingStatus.CONFIRMED, True, Method.REQUEST),
        (NotificationKind.BOOKING_RESCHEDULED, BookingStatus.CONFIRMED, True, Method.REQUEST),
        (NotificationKind.REMINDER, BookingStatus.CONFIRMED, True, Method.REQUEST),
        (NotificationKind.BOOKING_CANCELLED, BookingStatus.CANCELLED, True, Method.CANCEL),
        # The state when it is sent decides: a late confirmation of a cancelled booking
        # carries the cancellation.
        (NotificationKind.BOOKING_CONFIRMED, BookingStatus.CANCELLED, True, Method.CANCEL),
        (NotificationKind.BOOKING_CONFIRMED, BookingStatus.COMPLETED, True, Method.REQUEST),
        # A hold that was never confirmed never reached a calendar.
        (NotificationKind.BOOKING_CANCELLED, BookingStatus.CANCELLED, False, None),
        # Other e-mails carry nothing.
        (NotificationKind.PAYMENT_FAILED, BookingStatus.PENDING_PAYMENT, False, None),
        (NotificationKind.HOLD_EXPIRED, BookingStatus.EXPIRED, False, None),
        (NotificationKind.PAYMENT_REFUNDED, BookingStatus.CANCELLED, True, None),
        (NotificationKind.NO_SHOW_RECORDED, BookingStatus.NO_SHOW, True, None),
    ],
)
def test_which_emails_carry_which_method(kind, status, was_confirmed, expected):
    assert calendar.invitation_method(kind, status, was_confirmed=was_confirmed) == expected


def test_the_sequence_grows_when_a_confirmed_booking_moves_or_is_cancelled():
    changing = {(r.action, r.source, r.target) for r in TABLE if calendar.changes_event(r)}
    cancels = {
        Action.CLIENT_CANCEL,
        Action.ARTIST_CANCEL,
        Action.OPERATOR_CANCEL,
        Action.LEAVE_CANCEL,
    }
    assert changing == {
        (Action.RESCHEDULE, BookingStatus.CONFIRMED, BookingStatus.CONFIRMED),
        *((a, BookingStatus.CONFIRMED, BookingStatus.CANCELLED) for a in cancels),
    }


def test_the_feed_window_and_statuses():
    now = datetime(2026, 5, 1, tzinfo=UTC)
    assert calendar.feed_window(now) == (now - timedelta(days=30), now + timedelta(days=365))
    assert BookingStatus.PENDING_PAYMENT not in calendar.FEED_STATUSES
    assert BookingStatus.CANCELLED not in calendar.FEED_STATUSES


def test_feed_tokens_are_keyed_per_artist_and_version():
    key = calendar.feed_key(None, "admin-token")
    token = calendar.feed_token(key, ARTIST_ID, 0)
    assert calendar.looks_like_token(token)
    assert token == calendar.feed_token(key, ARTIST_ID, 0)  # derived, never stored
    assert token != calendar.feed_token(key, ARTIST_ID, 1)  # rotation
    assert token != calendar.feed_token(key, uuid.uuid4(), 0)
    # The key: CALENDAR_TOKEN_SECRET when set, else derived from (not equal to) the
    # admin token; changing either changes every token.
    assert key != b"admin-token"
    assert token != calendar.feed_token(calendar.feed_key(None, "other-admin-token"), ARTIST_ID, 0)
    assert calendar.feed_key("calendar-secret", "admin-token") == b"calendar-secret"
    assert token != calendar.feed_token(
        calendar.feed_key("calendar-secret", "admin-token"), ARTIST_ID, 0
    )
    digest = calendar.token_digest(token)
    assert len(digest) == 64
    assert token not in digest


@pytest.mark.parametrize(
    "text", ["", "short", "x" * 42, "x" * 44, "a+b/" + "c" * 39, "../" + "a" * 40]
)
def test_only_what_could_be_a_token_is_looked_up(text):
    assert not calendar.looks_like_token(text)


@pytest.mark.parametrize(
    ("hours", "lead", "expected_before_start"),
    [
        (24, timedelta(days=3), timedelta(hours=24)),
        (2, timedelta(hours=3), timedelta(hours=2)),
        (0, timedelta(days=3), None),  # reminders off
        (24, timedelta(hours=10), None),  # the moment has passed: none
        (24, timedelta(hours=24), None),  # exactly now counts as passed
    ],
)
def test_remind_at(hours, lead, expected_before_start):
    now = datetime(2026, 5, 1, 12, tzinfo=UTC)
    start = now + lead
    expected = None if expected_before_start is None else start - expected_before_start
    assert reminders.remind_at(start, hours, now) == expected


def test_a_reminder_applies_to_its_own_start_of_a_confirmed_booking_only():
    now = START - timedelta(hours=20)
    occasion = reminders.occasion(START)
    assert occasion == "2026-05-05T12:00:00.000Z"
    assert reminders.still_applies(BookingStatus.CONFIRMED, START, occasion, now)
    moved = START + timedelta(days=1)
    assert not reminders.still_applies(BookingStatus.CONFIRMED, moved, occasion, now)
    assert not reminders.still_applies(BookingStatus.CANCELLED, START, occasion, now)
    assert not reminders.still_applies(BookingStatus.CONFIRMED, START, occasion, START)

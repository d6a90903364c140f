"""iCalendar documents (RFC 5545), built with the `icalendar` package: the invitation an
e-mail carries (one event, with an iTIP method) and an artist's feed (every event, no
method). Both build the booking's event with `_event`, so a booking looks the same in a
calendar whichever way it arrived. Pure: plain values in, bytes out; no database, no clock.

How calendars are told apart and kept up to date:
- UID `booking-<id>@inkflow`, one per booking for its whole life. It is not derived from
  MAIL_FROM or PUBLIC_BASE_URL: a change of either would orphan every event already in a
  calendar (a later update or cancel would no longer find it).
- SEQUENCE is the booking's `calendar_sequence` (it grows when the booking moves or is
  cancelled); a calendar applies an update only if its SEQUENCE is not lower than what it
  holds, so mails arriving out of order cannot bring an old time back.
- Times are UTC (`...Z`): every calendar reads them, no VTIMEZONE needed. The artist's
  zone is shown instead: X-WR-TIMEZONE on the calendar, and the wall-clock time in the
  description.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from icalendar import Calendar, Event, vCalAddress, vDuration
from icalendar.enums import PARTSTAT, ROLE, STATUS, TRANSP

from shared.adapters.email_templates import format_deposit, format_local_span
from shared.domain.calendar import Method

PRODID = "-//inkflow//bookings//EN"
UID_DOMAIN = "inkflow"
# How often a subscribed calendar should fetch the feed again (RFC 7986, and the older
# X-PUBLISHED-TTL that Outlook reads). Google decides for itself (hours).
FEED_REFRESH = timedelta(hours=1)


@dataclass(frozen=True, slots=True)
class BookingEvent:
    """What a booking's event shows, as plain values."""

    booking_id: uuid.UUID
    start: datetime
    end: datetime
    timezone: str  # the artist's IANA zone
    service_name: str
    artist_name: str
    artist_email: str
    client_name: str
    client_email: str
    deposit_amount: Decimal
    currency: str
    sequence: int
    # DTSTAMP: when the invitation was made (an e-mail), when the booking last changed
    # (the feed).
    stamp: datetime
    cancelled: bool = False


def event_uid(booking_id: uuid.UUID) -> str:
    return f"booking-{booking_id}@{UID_DOMAIN}"


def _utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        raise ValueError("naive datetime")
    # Whole seconds: iCalendar has no fractions, and DTSTAMP must not move between two
    # builds of the same state.
    return moment.astimezone(UTC).replace(microsecond=0)


def summary(event: BookingEvent) -> str:
    """One title that reads well in both the client's and the artist's calendar."""
    return f"{event.service_name}: {event.client_name} with {event.artist_name}"


def description(event: BookingEvent) -> str:
    lines = [
        f"{event.service_name} with {event.artist_name} for {event.client_name}.",
        f"When: {format_local_span(event.start, event.end, event.timezone)}",
        f"Deposit: {format_deposit(event.deposit_amount, event.currency)}",
        f"Booking: {event.booking_id}",
    ]
    if event.cancelled:
        lines.insert(0, "CANCELLED.")
    return "\n".join(lines)


def _event(event: BookingEvent) -> Event:
    organizer = vCalAddress(f"mailto:{event.artist_email}")
    organizer.params["CN"] = event.artist_name
    # The client is already in: accepted, and no reply is asked for (nothing would read it).
    attendee = vCalAddress(f"mailto:{event.client_email}")
    attendee.params["CN"] = event.client_name
    attendee.params["ROLE"] = ROLE.REQ_PARTICIPANT
    attendee.params["PARTSTAT"] = PARTSTAT.ACCEPTED
    attendee.params["RSVP"] = "FALSE"
    return Event.new(
        uid=event_uid(event.booking_id),
        sequence=event.sequence,
        stamp=_utc(event.stamp),
        start=_utc(event.start),
        end=_utc(event.end),
        summary=summary(event),
        description=description(event),
        organizer=organizer,
        attendees=[attendee],
        status=STATUS.CANCELLED if event.cancelled else STATUS.CONFIRMED,
        transparency=TRANSP.OPAQUE,
    )


def _calendar(timezone: str) -> Calendar:
    calendar = Calendar()
    calendar.add("prodid", PRODID)
    calendar.add("version", "2.0")
    calendar.add("calscale", "GREGORIAN")
    calendar.add("x-wr-timezone", timezone)
    return calendar


def invitation(event: BookingEvent, method: Method) -> bytes:
    """The iMIP attachment of an e-mail (RFC 6047): METHOD:REQUEST adds or updates the
    event, METHOD:CANCEL (with STATUS:CANCELLED) removes it."""
    calendar = _calendar(event.timezone)
    calendar.add("method", method.value)
    calendar.add_component(_event(event))
    return bytes(calendar.to_ical())


def feed(
    *, calendar_id: uuid.UUID, name: str, timezone: str, events: Iterable[BookingEvent]
) -> bytes:
    """An artist's subscribed calendar: no METHOD (it is published, not sent). The same
    rows give the same bytes (the feed's ETag is their hash): nothing here reads the
    clock, and the calendar's own UID comes from `calendar_id`."""
    calendar = _calendar(timezone)
    calendar.add("uid", f"calendar-{calendar_id}@{UID_DOMAIN}")
    calendar.add("name", name)
    calendar.add("x-wr-calname", name)
    calendar.add("refresh-interval", FEED_REFRESH, parameters={"VALUE": "DURATION"})
    calendar.add("x-published-ttl", vDuration(FEED_REFRESH))
    for event in events:
        calendar.add_component(_event(event))
    return bytes(calendar.to_ical())

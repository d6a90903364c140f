"""What the dashboard's pages read: the week of an artist's bookings in the artist's time
zone, with the names a calendar shows (client, service). Writes go through the use cases
the management API uses (lifecycle, catalog, connect, calendars): one rule, two edges."""

from __future__ import annotations

import uuid
from collections.abc import Collection
from dataclasses import dataclass
from datetime import date, datetime
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from shared.adapters.email_templates import format_deposit
from shared.adapters.models import Artist, Booking, Client, Service
from shared.domain.week import Week, today_in, week_of
from shared.usecases.booking_search import BookingFilter, search_bookings
from shared.usecases.catalog import get_or_404

# More bookings than fit in a week of one artist's working hours; the page says so if a
# week ever holds more (it shows the first ones).
WEEK_LIMIT = 500


@dataclass(frozen=True, slots=True)
class BookingEntry:
    id: uuid.UUID
    start: datetime  # local, in the artist's zone
    end: datetime
    status: str
    deposit_status: str
    deposit: str  # "50.00 EUR"
    client_name: str
    client_email: str
    service_name: str
    reschedule_count: int


@dataclass(frozen=True, slots=True)
class Day:
    day: date
    is_today: bool
    bookings: tuple[BookingEntry, ...]


@dataclass(frozen=True, slots=True)
class WeekView:
    artist_id: uuid.UUID
    artist_name: str
    timezone: str
    week: Week
    today: date
    days: tuple[Day, ...]
    truncated: bool  # more than WEEK_LIMIT bookings start this week


def week_view(
    session: Session, artist_id: str | uuid.UUID, day: date | None, *, now: datetime
) -> WeekView:
    """The week holding `day` (today in the artist's zone when None): the bookings that
    start in it, any status, by start time, on the artist's local day of their start."""
    artist = get_or_404(session, Artist, artist_id)
    zone = ZoneInfo(artist.timezone)
    today = today_in(now, artist.timezone)
    week = week_of(day or today, artist.timezone)
    page = search_bookings(
        session,
        BookingFilter(artist_id=artist.id, start_from=week.start, start_before=week.end),
        after=None,
        limit=WEEK_LIMIT,
    )
    by_day: dict[date, list[BookingEntry]] = {d: [] for d in week.days}
    for entry in _entries(session, page.items, zone):
        by_day[entry.start.date()].append(entry)
    return WeekView(
        artist_id=artist.id,
        artist_name=artist.name,
        timezone=artist.timezone,
        week=week,
        today=today,
        days=tuple(Day(d, d == today, tuple(by_day[d])) for d in week.days),
        truncated=page.next_after is not None,
    )


def bookings_by_id(
    session: Session, ids: Collection[uuid.UUID], zone: ZoneInfo
) -> list[BookingEntry]:
    """These bookings, by start (a leave's conflicts)."""
    if not ids:
        return []
    rows = session.scalars(
        select(Booking).where(Booking.id.in_(list(ids))).order_by(Booking.start_time, Booking.id)
    )
    return _entries(session, list(rows), zone)


def _entries(session: Session, bookings: list[Booking], zone: ZoneInfo) -> list[BookingEntry]:
    names = _names(session, bookings)
    entries = []
    for booking in bookings:
        client_name, client_email, service_name = names[booking.id]
        entries.append(
            BookingEntry(
                id=booking.id,
                start=booking.start_time.astimezone(zone),
                end=booking.end_time.astimezone(zone),
                status=booking.status,
                deposit_status=booking.deposit_status,
                deposit=format_deposit(booking.deposit_amount, booking.currency),
                client_name=client_name,
                client_email=client_email,
                service_name=service_name,
                reschedule_count=booking.reschedule_count,
            )
        )
    return entries


def _names(session: Session, bookings: list[Booking]) -> dict[uuid.UUID, tuple[str, str, str]]:
    """Client name and email, service name, per booking: one query for the page."""
    if not bookings:
        return {}
    rows = session.execute(
        select(Booking.id, Client.name, Client.email, Service.name)
        .join(Client, Client.id == Booking.client_id)
        .join(Service, Service.id == Booking.service_id)
        .where(Booking.id.in_([b.id for b in bookings]))
    )
    return {row[0]: (row[1], row[2], row[3]) for row in rows}


def artist_choices(session: Session) -> list[tuple[uuid.UUID, str]]:
    """The operator's artist picker: (id, name), by name."""
    rows = session.execute(select(Artist.id, Artist.name).order_by(Artist.name, Artist.id))
    return [(row[0], row[1]) for row in rows]


def artist_of(session: Session, artist_id: str | uuid.UUID) -> Artist:
    """The artist a page is about (NOT_FOUND for an unknown id)."""
    return get_or_404(session, Artist, artist_id)

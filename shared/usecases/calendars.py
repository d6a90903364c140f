"""Bookings in calendars: the invitation an e-mail carries, and each artist's private feed
with its secret URL (the rules are `shared.domain.calendar`, the iCalendar text
`shared.adapters.ics`).

The feed's URL holds a token derived from a server key and the artist's
`calendar_token_version`; only its SHA-256 is stored (`calendar_token_hash`, unique), to
find the artist in one indexed look-up. The hash is written when the URL is first shown
(`calendar_url`, on any answer with the artist's JSON: its creation, too) and on
rotation; a feed request must also match the token the current key gives, so changing
CALENDAR_TOKEN_SECRET (or ADMIN_API_TOKEN without it) retires every URL at once.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from shared.adapters import ics
from shared.adapters.mail import Invitation
from shared.adapters.models import Artist, Booking, Client, Service
from shared.config import Settings
from shared.domain import calendar
from shared.domain.calendar import Method
from shared.domain.notifications import NotificationKind
from shared.domain.transitions import BookingStatus
from shared.usecases.catalog import get_or_404

FEED_PATH = "/api/calendar/{token}.ics"


# --------------------------------------------------------------------------- events


def event_of(
    booking: Booking,
    client: Client,
    artist: Artist,
    service: Service,
    *,
    stamp: datetime,
    cancelled: bool = False,
) -> ics.BookingEvent:
    return ics.BookingEvent(
        booking_id=booking.id,
        start=booking.start_time,
        end=booking.end_time,
        timezone=artist.timezone,
        service_name=service.name,
        artist_name=artist.name,
        artist_email=artist.email,
        client_name=client.name,
        client_email=client.email,
        deposit_amount=booking.deposit_amount,
        currency=booking.currency,
        sequence=booking.calendar_sequence,
        stamp=stamp,
        cancelled=cancelled,
    )


def invitation_for(
    kind: NotificationKind,
    booking: Booking,
    client: Client,
    artist: Artist,
    service: Service,
    *,
    stamp: datetime,
) -> Invitation | None:
    """The booking's event for an e-mail of `kind` sent now (None: that e-mail carries
    none; see `calendar.invitation_method`). `stamp`: when the e-mail was decided (its
    outbox row's creation), so a resent row carries the same DTSTAMP."""
    method = calendar.invitation_method(
        kind, BookingStatus(booking.status), was_confirmed=booking.confirmed_at is not None
    )
    if method is None:
        return None
    event = event_of(
        booking, client, artist, service, stamp=stamp, cancelled=method is Method.CANCEL
    )
    return Invitation(ics.invitation(event, method), method)


# --------------------------------------------------------------------------- feed URLs


def _key(settings: Settings) -> bytes:
    return calendar.feed_key(settings.calendar_token_secret, settings.admin_api_token)


def _token(settings: Settings, artist: Artist) -> str:
    return calendar.feed_token(_key(settings), artist.id, artist.calendar_token_version)


def _url(settings: Settings, token: str) -> str:
    return settings.public_base_url + FEED_PATH.format(token=token)


def calendar_url(session: Session, artist: Artist, settings: Settings) -> str:
    """The artist's feed URL, its hash stored if it is not yet (an artist created before
    feeds existed, or a new key): in the caller's transaction.

    The write is conditional on the version read: a rotation committed meanwhile is never
    undone by an older URL's hash (we read the artist again and show the new URL)."""
    for _ in range(2):
        token = _token(settings, artist)
        digest = calendar.token_digest(token)
        if artist.calendar_token_hash == digest:
            return _url(settings, token)
        stored = session.execute(
            update(Artist)
            .where(
                Artist.id == artist.id,
                Artist.calendar_token_version == artist.calendar_token_version,
            )
            .values(calendar_token_hash=digest)
        )
        if stored.rowcount == 1:  # type: ignore[attr-defined]
            set_committed_value(artist, "calendar_token_hash", digest)
            return _url(settings, token)
        session.refresh(artist)
    raise RuntimeError(f"artist {artist.id}: the calendar token keeps changing")


def rotate_token(session: Session, artist_id: str, settings: Settings) -> str:
    """A new feed URL for the artist; the old one answers 404 from this commit on."""
    artist = get_or_404(session, Artist, artist_id, lock="update")
    artist.calendar_token_version += 1
    token = _token(settings, artist)
    artist.calendar_token_hash = calendar.token_digest(token)
    return _url(settings, token)


# --------------------------------------------------------------------------- the feed


@dataclass(frozen=True, slots=True)
class Feed:
    body: bytes
    etag: str  # strong: the body's SHA-256


def _artist_of(session: Session, token: str, settings: Settings) -> Artist | None:
    if not calendar.looks_like_token(token):
        return None
    artist = session.scalar(
        select(Artist).where(Artist.calendar_token_hash == calendar.token_digest(token))
    )
    # The stored hash finds the artist; the current key decides (a URL made with a key
    # since replaced no longer works).
    if artist is None or not hmac.compare_digest(token, _token(settings, artist)):
        return None
    return artist


def load_feed(session: Session, token: str, settings: Settings, *, now: datetime) -> Feed | None:
    """The artist's bookings as an iCalendar feed, or None for a token that names nobody
    (unknown, rotated, malformed). Two indexed reads: the artist by token hash, the
    bookings by (artist_id, start_time)."""
    artist = _artist_of(session, token, settings)
    if artist is None:
        return None
    start, end = calendar.feed_window(now)
    rows = session.execute(
        select(Booking, Client, Service)
        .join(Client, Client.id == Booking.client_id)
        .join(Service, Service.id == Booking.service_id)
        .where(
            Booking.artist_id == artist.id,
            Booking.start_time >= start,
            Booking.start_time < end,
            Booking.status.in_(calendar.FEED_STATUSES),
        )
        .order_by(Booking.start_time, Booking.id)
    ).all()
    body = ics.feed(
        calendar_id=artist.id,
        name=f"inkflow: {artist.name}",
        timezone=artist.timezone,
        # DTSTAMP of a published event: when it last changed.
        events=[event_of(b, c, artist, s, stamp=b.updated_at) for b, c, s in rows],
    )
    return Feed(body, hashlib.sha256(body).hexdigest())

"""What reaches calendars, as rules: which bookings an artist's feed lists, which e-mails
carry an invitation and with which iTIP method, when a booking's event changes (its
SEQUENCE grows), and the feed's secret token.

The token is the feed's only credential (calendar apps cannot send an Authorization
header): urlsafe-base64(HMAC-SHA256(key, "calendar:<artist id>:<version>")). It is never
stored; only its SHA-256 is, to find the artist, so a database dump reveals no feed URL.
Rotation bumps the version: the old token no longer hashes to anything stored.

Pure: no I/O; `now` is an argument.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import uuid
from datetime import datetime, timedelta
from enum import StrEnum

from shared.domain.notifications import NotificationKind
from shared.domain.transitions import Action, BookingStatus, Rule

# The feed's window around now: what a calendar app shows of an artist's diary.
FEED_PAST = timedelta(days=30)
FEED_AHEAD = timedelta(days=365)

# The feed lists the appointments that stand or took place. PENDING_PAYMENT holds are
# left out: most are never paid, and a hold in a calendar would read as a booking.
# Completed and no-show bookings stay, so the 30 days back show what happened rather than
# only what nobody has closed yet.
FEED_STATUSES: tuple[BookingStatus, ...] = (
    BookingStatus.CONFIRMED,
    BookingStatus.COMPLETED,
    BookingStatus.NO_SHOW,
)

# The e-mails that carry the booking's event (client's and artist's alike).
WITH_INVITATION: frozenset[NotificationKind] = frozenset(
    {
        NotificationKind.BOOKING_CONFIRMED,
        NotificationKind.BOOKING_RESCHEDULED,
        NotificationKind.BOOKING_CANCELLED,
        NotificationKind.REMINDER,
    }
)


class Method(StrEnum):
    """iTIP methods (RFC 5546) of an e-mailed invitation."""

    REQUEST = "REQUEST"  # add or update the event
    CANCEL = "CANCEL"  # remove it


def feed_window(now: datetime) -> tuple[datetime, datetime]:
    """Bookings starting in [now - 30 days, now + 365 days) are in the feed."""
    return now - FEED_PAST, now + FEED_AHEAD


def invitation_method(
    kind: NotificationKind, status: BookingStatus, *, was_confirmed: bool
) -> Method | None:
    """The method of the invitation an e-mail of `kind` carries about a booking in
    `status` when it is sent, or None for none.

    The booking's state when the e-mail goes out decides, not the kind: a confirmation
    sent after the booking was cancelled carries the cancellation, so whatever order mails
    arrive in, the calendar ends on the latest SEQUENCE with the right state. A booking
    that was never confirmed (a hold cancelled before payment) never reached a calendar:
    nothing to add or remove."""
    if kind not in WITH_INVITATION or not was_confirmed:
        return None
    if status == BookingStatus.CANCELLED:
        return Method.CANCEL
    if status in FEED_STATUSES:
        return Method.REQUEST
    return None


def changes_event(rule: Rule) -> bool:
    """Does this transition change an event calendars hold (the booking's SEQUENCE grows)?
    A confirmed booking moved, or cancelled. Completing it, or recording a no-show,
    leaves the event as it was."""
    if rule.source != BookingStatus.CONFIRMED:
        return False
    return rule.action == Action.RESCHEDULE or (
        rule.changes_status and rule.target == BookingStatus.CANCELLED
    )


# -- the feed's token --------------------------------------------------------------------

_KEY_CONTEXT = b"inkflow calendar feed tokens v1"
# 32 bytes of HMAC in urlsafe base64 without padding.
_TOKEN = re.compile(r"^[A-Za-z0-9_-]{43}$")


def feed_key(calendar_secret: str | None, admin_token: str) -> bytes:
    """The HMAC key of feed tokens: CALENDAR_TOKEN_SECRET, or one derived from
    ADMIN_API_TOKEN (never the admin token itself: a feed token must say nothing of it)."""
    if calendar_secret:
        return calendar_secret.encode()
    return hmac.new(admin_token.encode(), _KEY_CONTEXT, hashlib.sha256).digest()


def feed_token(key: bytes, artist_id: uuid.UUID, version: int) -> str:
    message = f"calendar:{artist_id}:{version}".encode()
    digest = hmac.new(key, message, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def token_digest(token: str) -> str:
    """What is stored to find the artist by token: SHA-256, hex."""
    return hashlib.sha256(token.encode()).hexdigest()


def looks_like_token(text: str) -> bool:
    """A string that `feed_token` could have made (anything else is not looked up)."""
    return bool(_TOKEN.match(text))

"""An artist's private calendar feed: what Google, Apple and Outlook calendars subscribe to.
Public: the secret token in the URL is the credential (calendar apps send no headers)."""

from __future__ import annotations

from flask import Blueprint, Response, request

from services.api.openapi import PUBLIC, Header, Reply, operation
from services.api.state import autocommit, state
from shared.domain.errors import DomainError, ErrorCode
from shared.usecases import calendars

bp = Blueprint("calendar", __name__, url_prefix="/api/calendar")

ICALENDAR = "text/calendar"
ETAG = Header(
    "ETag",
    "The feed's version (strong, from its content): send it back in `If-None-Match`.",
    required=True,
)


@bp.get("/<token>.ics")
@operation(
    "getCalendarFeed",
    "An artist's bookings as an iCalendar feed",
    tag="calendar",
    security=PUBLIC,
    responses={
        200: Reply(
            "`text/calendar` (RFC 5545): one VEVENT per CONFIRMED, COMPLETED or NO_SHOW "
            "booking starting from 30 days ago to 365 days ahead (unpaid holds and "
            "cancelled bookings are not in it). Each event's UID is the booking's for its "
            "whole life, as in the e-mailed invitations; times are UTC, the artist's zone "
            "is X-WR-TIMEZONE and the local time is in the description.",
            media_type=ICALENDAR,
            headers=(ETAG,),
        ),
        304: Reply(
            "Unchanged since the ETag given in `If-None-Match`.",
            has_body=False,
            headers=(ETAG,),
        ),
    },
    errors=[ErrorCode.NOT_FOUND],
    headers=[Header("If-None-Match", "The ETag of the copy the caller holds.")],
    path_descriptions={
        "token": (
            "The artist's feed token, as in their `calendarUrl`. An unknown or replaced "
            "token answers NOT_FOUND."
        )
    },
    description=(
        "Subscribe to the artist's `calendarUrl` (from the artist's JSON); "
        "`POST /api/admin/artists/{artist_id}/calendar-token` replaces it."
    ),
)
def feed(token: str) -> Response:
    current = state()
    with autocommit() as session:
        found = calendars.load_feed(session, token, current.resources.settings, now=current.clock())
    if found is None:
        raise DomainError(ErrorCode.NOT_FOUND, "No calendar at this address.")
    response = Response(found.body, mimetype=ICALENDAR)
    response.set_etag(found.etag)
    # Kept by the subscriber only (the URL is a secret), and checked with it each time.
    response.cache_control.private = True
    response.cache_control.no_cache = True
    response.make_conditional(request)  # 304 (no body) when If-None-Match matches
    return response

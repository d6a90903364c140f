"""The management API under /api/admin: the operator's (ADMIN_API_TOKEN), and an
artist's for its own artist (an artist JWT: its profile, services, hours, leaves and
bookings). Each route's `security` says which (`services/api/auth.py` enforces it)."""

from __future__ import annotations

from functools import partial

from flask import Blueprint, Response, request
from sqlalchemy.orm import Session

from services.api import auth
from services.api import responses as out
from services.api.openapi import ARTIST, OPERATOR, Reply, operation
from services.api.responses import Items, reply
from services.api.schemas import (
    ArtistPatch,
    ArtistRequest,
    BookingListQuery,
    BookingRangeQuery,
    ClientPatch,
    ClientRequest,
    LeaveRequest,
    ServicePatch,
    ServiceRequest,
    WorkingHoursBody,
    parse_body,
    parse_query,
    parse_value,
)
from services.api.state import state, unit_of_work
from shared.adapters.models import Artist, Booking, Client
from shared.domain.access import Owner, Role
from shared.domain.errors import ErrorCode
from shared.usecases import calendars, catalog
from shared.usecases.booking_search import BookingFilter, search_bookings
from shared.usecases.ledger import booking_history

bp = Blueprint("admin", __name__, url_prefix="/api/admin")

admin_operation = partial(operation, tag="admin")
INVALID = ErrorCode.VALIDATION_ERROR
NOT_FOUND = ErrorCode.NOT_FOUND
PATCH_NOTE = (
    "Only the fields present change; `null` is accepted only by a nullable field (and "
    "clears it). Unknown fields are ignored. An empty object changes nothing."
)


def no_content() -> Response:
    return Response(status=204)


def artist_json(session: Session, artist: Artist) -> out.Artist:
    """The artist's JSON, with its feed URL (whose hash is stored if it was not yet)."""
    url = calendars.calendar_url(session, artist, state().resources.settings)
    return out.Artist.of(artist, calendar_url=url)


@bp.post("/clients")
@admin_operation(
    "createClient",
    "Create a client",
    security=OPERATOR,
    body=ClientRequest,
    responses={201: Reply("The created client, with its `id`.", out.Client)},
    errors=[INVALID],
    description="An email already in use is a VALIDATION_ERROR on `email`.",
)
def create_client() -> Response:
    body = parse_body(ClientRequest)
    with unit_of_work() as session:
        client = catalog.create_client(session, email=body.email, name=body.name)
    return reply(out.Client.of(client), 201)


@bp.get("/clients")
@admin_operation(
    "listClients",
    "List clients",
    security=OPERATOR,
    responses={200: Reply("All clients, oldest first.", Items[out.Client])},
)
def list_clients() -> Response:
    with unit_of_work() as session:
        rows = catalog.list_clients(session)
        return reply(Items[out.Client](items=[out.Client.of(c) for c in rows]))


@bp.get("/clients/<client_id>")
@admin_operation(
    "getClient",
    "A client",
    security=OPERATOR,
    responses={200: Reply("The client.", out.Client)},
    errors=[NOT_FOUND],
)
def get_client(client_id: str) -> Response:
    with unit_of_work() as session:
        return reply(out.Client.of(catalog.get_or_404(session, Client, client_id)))


@bp.patch("/clients/<client_id>")
@admin_operation(
    "updateClient",
    "Change a client",
    security=OPERATOR,
    body=ClientPatch,
    responses={200: Reply("The client as it is now.", out.Client)},
    errors=[INVALID, NOT_FOUND],
    description=f"{PATCH_NOTE} An email already in use is a VALIDATION_ERROR on `email`.",
)
def patch_client(client_id: str) -> Response:
    body = parse_body(ClientPatch)
    with unit_of_work() as session:
        client = catalog.update_client(session, client_id, catalog.ClientChanges(**body.changes()))
    return reply(out.Client.of(client))


@bp.post("/artists")
@admin_operation(
    "createArtist",
    "Create an artist",
    security=OPERATOR,
    body=ArtistRequest,
    responses={201: Reply("The created artist, with its `id`.", out.Artist)},
    errors=[INVALID],
    description=(
        "An unknown time zone, or an email or stripeAccountId already in use, is a "
        "VALIDATION_ERROR."
    ),
)
def create_artist() -> Response:
    body = parse_body(ArtistRequest)
    data = catalog.ArtistInput(
        name=body.name,
        email=body.email,
        timezone=body.timezone,
        stripe_account_id=body.stripe_account_id,
        charges_enabled=body.charges_enabled,
        buffer_min=body.buffer_min,
        min_notice_min=body.min_notice_min,
        max_advance_days=body.max_advance_days,
        refund_window_hours=body.refund_window_hours,
        reschedule_notice_hours=body.reschedule_notice_hours,
        max_reschedules=body.max_reschedules,
        reminder_hours=body.reminder_hours,
        no_show_limit=body.no_show_limit,
    )
    with unit_of_work() as session:
        artist = catalog.create_artist(session, data)
        answer = artist_json(session, artist)  # its feed's token hash is stored here
    return reply(answer, 201)


@bp.patch("/artists/<artist_id>")
@admin_operation(
    "updateArtist",
    "Change an artist's profile, booking rules or deposit policy",
    security=ARTIST,
    body=ArtistPatch,
    responses={200: Reply("The artist as it is now.", out.Artist)},
    errors=[INVALID, NOT_FOUND],
    description=(
        f"{PATCH_NOTE} Nullable: `stripeAccountId`, `refundWindowHours`. An unknown time "
        "zone, or an email or stripeAccountId already in use, is a VALIDATION_ERROR naming "
        "the field. Availability follows at once (time zone, buffer, notice and window). "
        "Bookings already made keep their times; the policy fields apply to what clients "
        "do from now on. `stripeAccountId` and `chargesEnabled` are the operator's: an "
        "artist's token that sends either is FORBIDDEN (nothing changes)."
    ),
)
def patch_artist(artist_id: str) -> Response:
    body = parse_body(ArtistPatch)
    if body.model_fields_set & ArtistPatch.OPERATOR_ONLY:
        auth.require(OPERATOR)
    with unit_of_work() as session:
        artist = catalog.update_artist(session, artist_id, catalog.ArtistChanges(**body.changes()))
        answer = artist_json(session, artist)
    return reply(answer)


@bp.get("/artists")
@admin_operation(
    "listArtists",
    "List artists",
    security=OPERATOR,
    responses={200: Reply("All artists, oldest first.", Items[out.Artist])},
)
def list_artists() -> Response:
    with unit_of_work() as session:
        rows = catalog.list_artists(session)
        return reply(Items[out.Artist](items=[artist_json(session, a) for a in rows]))


@bp.get("/artists/<artist_id>")
@admin_operation(
    "getArtist",
    "An artist",
    security=ARTIST,
    responses={200: Reply("The artist.", out.Artist)},
    errors=[NOT_FOUND],
)
def get_artist(artist_id: str) -> Response:
    with unit_of_work() as session:
        return reply(artist_json(session, catalog.get_or_404(session, Artist, artist_id)))


@bp.post("/artists/<artist_id>/calendar-token")
@admin_operation(
    "rotateCalendarToken",
    "Replace an artist's private calendar feed URL",
    security=ARTIST,
    responses={200: Reply("The new feed URL.", out.CalendarLink)},
    errors=[NOT_FOUND],
    description=(
        "The artist's `calendarUrl` changes and the previous URL answers 404 at once (for "
        "a URL that leaked). Calendars subscribed to the old one must subscribe again."
    ),
)
def rotate_calendar_token(artist_id: str) -> Response:
    with unit_of_work() as session:
        url = calendars.rotate_token(session, artist_id, state().resources.settings)
    return reply(out.CalendarLink(calendar_url=url))


@bp.post("/artists/<artist_id>/services")
@admin_operation(
    "createService",
    "Create a service of an artist",
    security=ARTIST,
    body=ServiceRequest,
    responses={201: Reply("The created service, with its `id`.", out.Service)},
    errors=[INVALID, NOT_FOUND],
)
def create_service(artist_id: str) -> Response:
    body = parse_body(ServiceRequest)
    with unit_of_work() as session:
        service = catalog.create_service(
            session,
            artist_id,
            name=body.name,
            duration_min=body.duration_min,
            price=body.price,
            deposit_amount=body.deposit_amount,
            currency=body.currency,
        )
    return reply(out.Service.of(service), 201)


@bp.get("/artists/<artist_id>/services")
@admin_operation(
    "listServices",
    "List an artist's services",
    security=ARTIST,
    responses={200: Reply("The services, oldest first.", Items[out.Service])},
    errors=[NOT_FOUND],
)
def list_services(artist_id: str) -> Response:
    with unit_of_work() as session:
        rows = catalog.list_services(session, artist_id)
        return reply(Items[out.Service](items=[out.Service.of(s) for s in rows]))


@bp.patch("/artists/<artist_id>/services/<service_id>")
@admin_operation(
    "updateService",
    "Change a service of an artist",
    security=ARTIST,
    body=ServicePatch,
    responses={200: Reply("The service as it is now.", out.Service)},
    errors=[INVALID, NOT_FOUND],
    description=(
        f"{PATCH_NOTE} The resulting price and deposit must be exact in the resulting "
        "currency and the deposit at most the price (VALIDATION_ERROR naming the field). "
        "Bookings already made keep their own deposit, currency and times. `active: false` "
        "hides the service from new bookings; `active: true` offers it again. A service "
        "that is not the artist's is NOT_FOUND."
    ),
)
def patch_service(artist_id: str, service_id: str) -> Response:
    body = parse_body(ServicePatch)
    changes = catalog.ServiceChanges(**body.changes())
    with unit_of_work() as session:
        service = catalog.update_service(session, artist_id, service_id, changes)
    return reply(out.Service.of(service))


@bp.delete("/artists/<artist_id>/services/<service_id>")
@admin_operation(
    "deleteService",
    "Delete a service, or deactivate it when it has bookings",
    security=ARTIST,
    responses={
        200: Reply(
            "The service has bookings (of any status), so it was deactivated instead "
            "(`active: false`): it takes no new bookings and its bookings keep it.",
            out.Service,
        ),
        204: Reply("The service never had a booking and is deleted.", has_body=False),
    },
    errors=[NOT_FOUND],
)
def delete_service(artist_id: str, service_id: str) -> Response:
    with unit_of_work() as session:
        kept = catalog.remove_service(session, artist_id, service_id)
    return no_content() if kept is None else reply(out.Service.of(kept))


@bp.put("/artists/<artist_id>/working-hours")
@admin_operation(
    "replaceWorkingHours",
    "Replace an artist's working hours",
    security=ARTIST,
    body=WorkingHoursBody,
    responses={200: Reply("The new working hours, by day and start.", Items[out.WorkingHours])},
    errors=[INVALID, NOT_FOUND],
)
def put_working_hours(artist_id: str) -> Response:
    body = parse_body(WorkingHoursBody)
    hours = [catalog.HoursInput(*interval) for interval in body.intervals()]
    with unit_of_work() as session:
        rows = catalog.replace_working_hours(session, artist_id, hours)
        return reply(Items[out.WorkingHours](items=[out.WorkingHours.of(r) for r in rows]))


@bp.get("/artists/<artist_id>/working-hours")
@admin_operation(
    "listWorkingHours",
    "An artist's working hours",
    security=ARTIST,
    responses={200: Reply("The working hours, by day and start.", Items[out.WorkingHours])},
    errors=[NOT_FOUND],
)
def get_working_hours(artist_id: str) -> Response:
    with unit_of_work() as session:
        rows = catalog.list_working_hours(session, artist_id)
        return reply(Items[out.WorkingHours](items=[out.WorkingHours.of(r) for r in rows]))


@bp.post("/artists/<artist_id>/leaves")
@admin_operation(
    "createLeave",
    "Add a leave (time off) to an artist",
    security=ARTIST,
    description=(
        "The answer lists in `conflicts` the bookings the leave overlaps. They stay unless "
        "`cancelConflicting` is true: then they are cancelled by the artist, a paid deposit "
        "is refunded in full and the clients are told (listed in `cancelled`)."
    ),
    body=LeaveRequest,
    responses={
        201: Reply("The created leave, with its `id` and conflicting bookings.", out.LeaveCreated)
    },
    errors=[INVALID, NOT_FOUND],
)
def create_leave(artist_id: str) -> Response:
    body = parse_body(LeaveRequest)
    current = state()
    added = current.lifecycle.add_leave(
        artist_id,
        start=body.start_time,
        end=body.end_time,
        reason=body.reason,
        cancel_conflicting=body.cancel_conflicting,
        now=current.clock(),
    )
    return reply(out.LeaveCreated.added(added), 201)


@bp.get("/artists/<artist_id>/leaves")
@admin_operation(
    "listLeaves",
    "An artist's leaves",
    security=ARTIST,
    responses={200: Reply("The leaves, by start.", Items[out.Leave])},
    errors=[NOT_FOUND],
)
def list_leaves(artist_id: str) -> Response:
    with unit_of_work() as session:
        rows = catalog.list_leaves(session, artist_id)
        return reply(Items[out.Leave](items=[out.Leave.of(le) for le in rows]))


@bp.delete("/artists/<artist_id>/leaves/<leave_id>")
@admin_operation(
    "deleteLeave",
    "Remove a leave of an artist",
    security=ARTIST,
    responses={204: Reply("Deleted; its time is bookable again.", has_body=False)},
    errors=[NOT_FOUND],
    description="A leave that is not the artist's is NOT_FOUND.",
)
def delete_leave(artist_id: str, leave_id: str) -> Response:
    with unit_of_work() as session:
        catalog.delete_leave(session, artist_id, leave_id)
    return no_content()


@bp.get("/artists/<artist_id>/bookings")
@admin_operation(
    "listArtistBookings",
    "An artist's bookings (any status) overlapping a range",
    security=ARTIST,
    query=BookingRangeQuery,
    responses={200: Reply("The bookings, by start.", Items[out.Booking])},
    errors=[INVALID, NOT_FOUND],
)
def list_artist_bookings(artist_id: str) -> Response:
    query = parse_value(BookingRangeQuery, request.args.to_dict())
    with unit_of_work() as session:
        rows = catalog.list_artist_bookings(session, artist_id, start=query.from_, end=query.to)
        return reply(Items[out.Booking](items=[out.Booking.of(b) for b in rows]))


@bp.get("/bookings")
@admin_operation(
    "listBookings",
    "All bookings, filtered, in start-time order, a page at a time",
    security=ARTIST,
    query=BookingListQuery,
    responses={200: Reply("One page of bookings, by start time then id.", out.BookingPage)},
    errors=[INVALID],
    description=(
        "Filters combine (all must hold); `status` and `depositStatus` each match any of "
        "their values. `from`/`to` bound the start time: `from` <= start < `to`. Keyset "
        "pagination: pass the answer's `nextCursor` as `cursor` to get the next page (null "
        "on the last one). A walk lists each booking once, in order, even while bookings "
        "are added. An id that is not a UUID, an unknown status, a limit outside 1–200 or "
        "a cursor this API did not give is a VALIDATION_ERROR naming the parameter. An "
        "artist's token lists its own bookings: `artistId` defaults to it, and another "
        "artist's is FORBIDDEN."
    ),
)
def list_bookings() -> Response:
    query = parse_query(BookingListQuery)
    artist_id = query.artist_id
    asking = auth.principal()
    if artist_id is None and asking.role is Role.ARTIST:
        artist_id = asking.id  # an artist's list is its own bookings
    auth.check(Owner(artist_id=artist_id))
    where = BookingFilter(
        artist_id=artist_id,
        client_id=query.client_id,
        statuses=query.status,
        deposit_statuses=query.deposit_status,
        start_from=query.from_,
        start_before=query.to,
    )
    with unit_of_work() as session:
        page = search_bookings(session, where, after=query.cursor, limit=query.limit)
        return reply(out.BookingPage.of(page))


@bp.get("/bookings/<booking_id>")
@admin_operation(
    "getBookingDetail",
    "A booking with its ledger and notifications",
    security=ARTIST,
    responses={
        200: Reply(
            "The booking, its transactions (`amount` in major units and `amountMinor` as "
            "Stripe's integer) and its notifications.",
            out.BookingDetail,
        )
    },
    errors=[NOT_FOUND],
)
def get_booking(booking_id: str) -> Response:
    with unit_of_work() as session:
        booking = catalog.get_or_404(session, Booking, booking_id)
        auth.check(booking.owner)
        transactions, notifications = booking_history(session, booking.id)
        return reply(out.BookingDetail.of(booking, transactions, notifications))

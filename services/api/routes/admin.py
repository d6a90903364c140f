"""The operator's management API under /api/admin, behind ADMIN_API_TOKEN."""

from __future__ import annotations

from functools import partial

from flask import Blueprint, Response, request

from services.api import responses as out
from services.api.auth import require_admin
from services.api.openapi import ADMIN, Reply, operation
from services.api.responses import Items, reply
from services.api.schemas import (
    ArtistRequest,
    BookingRangeQuery,
    ClientRequest,
    LeaveRequest,
    ServiceRequest,
    WorkingHoursBody,
    minutes_of,
    parse_body,
    parse_value,
)
from services.api.state import state, unit_of_work
from shared.adapters.models import Artist, Booking, Client
from shared.domain.errors import ErrorCode
from shared.usecases import catalog
from shared.usecases.ledger import booking_history

bp = Blueprint("admin", __name__, url_prefix="/api/admin")

admin_operation = partial(operation, tag="admin", security=ADMIN)
INVALID = ErrorCode.VALIDATION_ERROR
NOT_FOUND = ErrorCode.NOT_FOUND


@bp.before_request
def _authenticate() -> None:
    require_admin(state().resources.settings)


@bp.post("/clients")
@admin_operation(
    "createClient",
    "Create a client",
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
    responses={200: Reply("The client.", out.Client)},
    errors=[NOT_FOUND],
)
def get_client(client_id: str) -> Response:
    with unit_of_work() as session:
        return reply(out.Client.of(catalog.get_or_404(session, Client, client_id)))


@bp.post("/artists")
@admin_operation(
    "createArtist",
    "Create an artist",
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
    return reply(out.Artist.of(artist), 201)


@bp.get("/artists")
@admin_operation(
    "listArtists",
    "List artists",
    responses={200: Reply("All artists, oldest first.", Items[out.Artist])},
)
def list_artists() -> Response:
    with unit_of_work() as session:
        rows = catalog.list_artists(session)
        return reply(Items[out.Artist](items=[out.Artist.of(a) for a in rows]))


@bp.get("/artists/<artist_id>")
@admin_operation(
    "getArtist",
    "An artist",
    responses={200: Reply("The artist.", out.Artist)},
    errors=[NOT_FOUND],
)
def get_artist(artist_id: str) -> Response:
    with unit_of_work() as session:
        return reply(out.Artist.of(catalog.get_or_404(session, Artist, artist_id)))


@bp.post("/artists/<artist_id>/services")
@admin_operation(
    "createService",
    "Create a service of an artist",
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
    responses={200: Reply("The services, oldest first.", Items[out.Service])},
    errors=[NOT_FOUND],
)
def list_services(artist_id: str) -> Response:
    with unit_of_work() as session:
        rows = catalog.list_services(session, artist_id)
        return reply(Items[out.Service](items=[out.Service.of(s) for s in rows]))


@bp.put("/artists/<artist_id>/working-hours")
@admin_operation(
    "replaceWorkingHours",
    "Replace an artist's working hours",
    body=WorkingHoursBody,
    responses={200: Reply("The new working hours, by day and start.", Items[out.WorkingHours])},
    errors=[INVALID, NOT_FOUND],
)
def put_working_hours(artist_id: str) -> Response:
    body = parse_body(WorkingHoursBody)
    hours = [
        catalog.HoursInput(
            day_of_week=item.day_of_week,
            start_minute=minutes_of(item.start_time),
            end_minute=minutes_of(item.end_time),
        )
        for item in body.root
    ]
    with unit_of_work() as session:
        rows = catalog.replace_working_hours(session, artist_id, hours)
        return reply(Items[out.WorkingHours](items=[out.WorkingHours.of(r) for r in rows]))


@bp.get("/artists/<artist_id>/working-hours")
@admin_operation(
    "listWorkingHours",
    "An artist's working hours",
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
    responses={200: Reply("The leaves, by start.", Items[out.Leave])},
    errors=[NOT_FOUND],
)
def list_leaves(artist_id: str) -> Response:
    with unit_of_work() as session:
        rows = catalog.list_leaves(session, artist_id)
        return reply(Items[out.Leave](items=[out.Leave.of(le) for le in rows]))


@bp.get("/artists/<artist_id>/bookings")
@admin_operation(
    "listArtistBookings",
    "An artist's bookings (any status) overlapping a range",
    query=BookingRangeQuery,
    responses={200: Reply("The bookings, by start.", Items[out.Booking])},
    errors=[INVALID, NOT_FOUND],
)
def list_artist_bookings(artist_id: str) -> Response:
    query = parse_value(BookingRangeQuery, request.args.to_dict())
    with unit_of_work() as session:
        rows = catalog.list_artist_bookings(session, artist_id, start=query.from_, end=query.to)
        return reply(Items[out.Booking](items=[out.Booking.of(b) for b in rows]))


@bp.get("/bookings/<booking_id>")
@admin_operation(
    "getBookingDetail",
    "A booking with its ledger and notifications",
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
        transactions, notifications = booking_history(session, booking.id)
        return reply(out.BookingDetail.of(booking, transactions, notifications))

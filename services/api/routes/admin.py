"""The operator's management API under /api/admin, behind ADMIN_API_TOKEN."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify, request
from pydantic import RootModel

from services.api.auth import require_admin
from services.api.schemas import (
    ArtistRequest,
    BookingRangeQuery,
    ClientRequest,
    LeaveRequest,
    ServiceRequest,
    WorkingHoursItem,
    minutes_of,
    parse_body,
    parse_value,
)
from services.api.state import state, unit_of_work
from shared.adapters.models import Artist, Booking, Client
from shared.usecases import catalog
from shared.usecases.ledger import booking_history
from shared.views import (
    artist_json,
    booking_json,
    client_json,
    leave_json,
    notification_json,
    service_json,
    transaction_json,
    working_hours_json,
)

bp = Blueprint("admin", __name__, url_prefix="/api/admin")


@bp.before_request
def _authenticate() -> None:
    require_admin(state().resources.settings)


def _items(items: list[dict[str, Any]]) -> Response:
    return jsonify({"items": items})


@bp.post("/clients")
def create_client() -> tuple[Response, int]:
    body = parse_body(ClientRequest)
    with unit_of_work() as session:
        client = catalog.create_client(session, email=body.email, name=body.name)
    return jsonify(client_json(client)), 201


@bp.get("/clients")
def list_clients() -> Response:
    with unit_of_work() as session:
        return _items([client_json(c) for c in catalog.list_clients(session)])


@bp.get("/clients/<client_id>")
def get_client(client_id: str) -> Response:
    with unit_of_work() as session:
        return jsonify(client_json(catalog.get_or_404(session, Client, client_id)))


@bp.post("/artists")
def create_artist() -> tuple[Response, int]:
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
    )
    with unit_of_work() as session:
        artist = catalog.create_artist(session, data)
    return jsonify(artist_json(artist)), 201


@bp.get("/artists")
def list_artists() -> Response:
    with unit_of_work() as session:
        return _items([artist_json(a) for a in catalog.list_artists(session)])


@bp.get("/artists/<artist_id>")
def get_artist(artist_id: str) -> Response:
    with unit_of_work() as session:
        return jsonify(artist_json(catalog.get_or_404(session, Artist, artist_id)))


@bp.post("/artists/<artist_id>/services")
def create_service(artist_id: str) -> tuple[Response, int]:
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
    return jsonify(service_json(service)), 201


@bp.get("/artists/<artist_id>/services")
def list_services(artist_id: str) -> Response:
    with unit_of_work() as session:
        return _items([service_json(s) for s in catalog.list_services(session, artist_id)])


class WorkingHoursBody(RootModel[list[WorkingHoursItem]]):
    pass


@bp.put("/artists/<artist_id>/working-hours")
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
    return _items([working_hours_json(r) for r in rows])


@bp.get("/artists/<artist_id>/working-hours")
def get_working_hours(artist_id: str) -> Response:
    with unit_of_work() as session:
        return _items(
            [working_hours_json(r) for r in catalog.list_working_hours(session, artist_id)]
        )


@bp.post("/artists/<artist_id>/leaves")
def create_leave(artist_id: str) -> tuple[Response, int]:
    body = parse_body(LeaveRequest)
    with unit_of_work() as session:
        leave = catalog.add_leave(
            session, artist_id, start=body.start_time, end=body.end_time, reason=body.reason
        )
    return jsonify(leave_json(leave)), 201


@bp.get("/artists/<artist_id>/leaves")
def list_leaves(artist_id: str) -> Response:
    with unit_of_work() as session:
        return _items([leave_json(le) for le in catalog.list_leaves(session, artist_id)])


@bp.get("/artists/<artist_id>/bookings")
def list_artist_bookings(artist_id: str) -> Response:
    query = parse_value(BookingRangeQuery, request.args.to_dict())
    with unit_of_work() as session:
        rows = catalog.list_artist_bookings(session, artist_id, start=query.from_, end=query.to)
        return _items([booking_json(b) for b in rows])


@bp.get("/bookings/<booking_id>")
def get_booking(booking_id: str) -> Response:
    with unit_of_work() as session:
        booking = catalog.get_or_404(session, Booking, booking_id)
        transactions, notifications = booking_history(session, booking.id)
        return jsonify(
            {
                "booking": booking_json(booking),
                "transactions": [transaction_json(t) for t in transactions],
                "notifications": [notification_json(n) for n in notifications],
            }
        )

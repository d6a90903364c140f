"""POST /api/bookings/create and GET /api/bookings/{id}."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, request

from services.api.auth import client_subject, require_client, same_id
from services.api.schemas import CreateBookingRequest, parse_body
from services.api.state import state, unit_of_work
from shared import idempotency
from shared.booking import BookingRequest
from shared.catalog import get_or_404
from shared.errors import DomainError, ErrorCode
from shared.models import Booking
from shared.timeutil import iso_utc, utcnow
from shared.views import booking_json

bp = Blueprint("bookings", __name__)


@bp.post("/api/bookings/create")
def create_booking() -> tuple[Response, int]:
    current = state()
    settings = current.resources.settings
    client_subject(settings)  # 401 before looking at the body
    body = parse_body(CreateBookingRequest)
    require_client(settings, body.client_id)
    booking_request = BookingRequest(
        client_id=body.client_id,
        artist_id=body.artist_id,
        service_id=body.service_id,
        start_time=body.start_time,
    )
    raw_key = request.headers.get(idempotency.HEADER)
    if raw_key is None:
        created = current.bookings.create(booking_request, now=utcnow())
        return jsonify(created.to_json()), 201

    sessions = current.resources.sessions
    key = f"{client_subject(settings) or '*'}:{idempotency.check_key(raw_key)}"
    fingerprint = idempotency.request_fingerprint(
        {
            "clientId": body.client_id,
            "artistId": body.artist_id,
            "serviceId": body.service_id,
            "startTime": iso_utc(body.start_time),
        }
    )
    replay = idempotency.claim(sessions, key, fingerprint, now=utcnow())
    if replay is not None:
        return jsonify(replay.body), replay.status
    try:
        created = current.bookings.create(booking_request, now=utcnow())
    except BaseException:
        idempotency.release(sessions, key)
        raise
    payload = created.to_json()
    idempotency.store(sessions, key, status=201, body=payload, booking_id=created.booking.id)
    return jsonify(payload), 201


@bp.get("/api/bookings/<booking_id>")
def get_booking(booking_id: str) -> Response:
    settings = state().resources.settings
    subject = client_subject(settings)
    with unit_of_work() as session:
        booking = get_or_404(session, Booking, booking_id)
        if subject is not None and not same_id(subject, str(booking.client_id)):
            raise DomainError(ErrorCode.FORBIDDEN, "This booking belongs to another client.")
        return jsonify({"booking": booking_json(booking)})

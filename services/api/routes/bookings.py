"""POST /api/bookings/create and GET /api/bookings/{id}."""

from __future__ import annotations

import uuid
from typing import Any

from flask import Blueprint, Response, jsonify, request

from services.api.auth import client_subject, require_same_client, same_id
from services.api.schemas import CreateBookingRequest, parse_body
from services.api.state import state, unit_of_work
from shared.adapters.models import Booking
from shared.domain.errors import DomainError, ErrorCode
from shared.domain.timeutil import iso_utc
from shared.usecases import idempotency
from shared.usecases.booking import BookingRequest
from shared.usecases.catalog import get_or_404
from shared.views import booking_json

bp = Blueprint("bookings", __name__)


@bp.post("/api/bookings/create")
def create_booking() -> tuple[Response, int]:
    current = state()
    subject = client_subject(current.resources.settings)  # 401 before looking at the body
    body = parse_body(CreateBookingRequest)
    require_same_client(subject, body.client_id)
    booking_request = BookingRequest(
        client_id=body.client_id,
        artist_id=body.artist_id,
        service_id=body.service_id,
        start_time=body.start_time,
    )

    def produce() -> tuple[int, dict[str, Any], uuid.UUID | None]:
        created = current.bookings.create(booking_request, now=current.clock())
        return 201, created.to_json(), created.booking.id

    raw_key = request.headers.get(idempotency.HEADER)
    if raw_key is None:
        status, payload, _ = produce()
        return jsonify(payload), status
    answer = idempotency.run_once(
        current.resources.sessions,
        f"{subject or '*'}:{idempotency.check_key(raw_key)}",
        idempotency.request_fingerprint(
            {
                "clientId": body.client_id,
                "artistId": body.artist_id,
                "serviceId": body.service_id,
                "startTime": iso_utc(body.start_time),
            }
        ),
        produce,
        now=current.clock(),
    )
    return jsonify(answer.body), answer.status


@bp.get("/api/bookings/<booking_id>")
def get_booking(booking_id: str) -> Response:
    settings = state().resources.settings
    subject = client_subject(settings)
    with unit_of_work() as session:
        booking = get_or_404(session, Booking, booking_id)
        if subject is not None and not same_id(subject, str(booking.client_id)):
            raise DomainError(ErrorCode.FORBIDDEN, "This booking belongs to another client.")
        return jsonify({"booking": booking_json(booking)})

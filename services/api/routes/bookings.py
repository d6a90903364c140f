"""POST /api/bookings/create and GET /api/bookings/{id}."""

from __future__ import annotations

import uuid
from typing import Any

from flask import Blueprint, Response, jsonify, request

from services.api import auth
from services.api.openapi import CLIENT, Header, Reply, operation
from services.api.responses import BookingCreated, BookingEnvelope, reply
from services.api.schemas import CreateBookingRequest, parse_body
from services.api.state import state, unit_of_work
from shared.adapters.models import Booking
from shared.domain.access import Owner
from shared.domain.errors import ErrorCode
from shared.domain.timeutil import iso_utc
from shared.usecases import idempotency
from shared.usecases.booking import BookingRequest
from shared.usecases.catalog import get_or_404

bp = Blueprint("bookings", __name__)

IDEMPOTENCY_KEY = Header(
    idempotency.HEADER,
    "Makes the request safe to retry. A retry with the same key and body returns the first "
    "201 response instead of a conflict; the same key with another body is a "
    "VALIDATION_ERROR naming the header. Only a 201 is kept: after a failure the key is "
    "released so the client may retry. A second request arriving while the first runs waits "
    "for its answer (up to 10 s, then SLOT_TAKEN). Keys are kept 24 h, per client when "
    "client JWTs are on.",
    schema={"type": "string", "minLength": 1, "maxLength": idempotency.MAX_KEY_LENGTH},
)


@bp.post("/api/bookings/create")
@operation(
    "createBooking",
    "Hold a slot and create the deposit PaymentIntent",
    tag="client",
    security=CLIENT,
    description=(
        "Holds the slot as PENDING_PAYMENT for BOOKING_HOLD_SECONDS (default 900, see "
        "`expiresAt`) and returns the PaymentIntent whose `clientSecret` Stripe.js confirms. "
        "A Stripe webhook then confirms the booking; poll `GET /api/bookings/{booking_id}`. "
        "The rules are availability's: a slot it lists as unavailable is refused, one it "
        "lists as available is accepted unless taken meanwhile. A start off the availability "
        "grid is accepted if the whole slot fits inside one working interval and no rule "
        "refuses it. A deposit of 0 confirms the booking at once (confirmation emails are "
        "sent) and `paymentIntent` is null. With client JWTs on, `clientId` must be the "
        "token's `sub` (else FORBIDDEN, nothing created). A client with the artist's "
        "`noShowLimit` of no-shows with that artist is refused (POLICY_VIOLATION "
        "NO_SHOW_LIMIT)."
    ),
    headers=[IDEMPOTENCY_KEY],
    body=CreateBookingRequest,
    responses={
        201: Reply(
            "The booking (PENDING_PAYMENT, or CONFIRMED for a deposit of 0) and its "
            "PaymentIntent. Also the replayed first answer of an Idempotency-Key retry.",
            BookingCreated,
        )
    },
    errors=[
        ErrorCode.VALIDATION_ERROR,
        ErrorCode.FORBIDDEN,
        ErrorCode.NOT_FOUND,
        ErrorCode.SLOT_UNAVAILABLE,
        ErrorCode.SLOT_TAKEN,
        ErrorCode.STRIPE_NOT_CONFIGURED,
        ErrorCode.RATE_LIMITED,
        ErrorCode.POLICY_VIOLATION,
        ErrorCode.PAYMENT_PROVIDER_ERROR,
    ],
)
def create_booking() -> tuple[Response, int]:
    current = state()
    body = parse_body(CreateBookingRequest)  # (a bad token was refused before reading it)
    auth.check(Owner(client_id=auth.parse_id(body.client_id)))
    booking_request = BookingRequest(
        client_id=body.client_id,
        artist_id=body.artist_id,
        service_id=body.service_id,
        start_time=body.start_time,
    )

    def produce() -> tuple[int, dict[str, Any], uuid.UUID | None]:
        created = current.bookings.create(booking_request, now=current.clock())
        # A plain dict: the Idempotency-Key store keeps it for replays.
        return 201, BookingCreated.of(created).model_dump(mode="json"), created.booking.id

    raw_key = request.headers.get(idempotency.HEADER)
    if raw_key is None:
        status, payload, _ = produce()
        return jsonify(payload), status
    answer = idempotency.run_once(
        current.resources.sessions,
        f"{auth.idempotency_scope()}:{idempotency.check_key(raw_key)}",
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
@operation(
    "getBooking",
    "A booking (poll it until CONFIRMED)",
    tag="client",
    security=CLIENT,
    description=(
        "With client JWTs on, only the booking's own client may read it (FORBIDDEN otherwise)."
    ),
    responses={200: Reply("The booking.", BookingEnvelope)},
    errors=[ErrorCode.FORBIDDEN, ErrorCode.NOT_FOUND],
)
def get_booking(booking_id: str) -> Response:
    with unit_of_work() as session:
        booking = get_or_404(session, Booking, booking_id)
        auth.check(booking.owner)
        return reply(BookingEnvelope.of(booking))

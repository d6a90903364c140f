"""The booking lifecycle over HTTP: the client's cancel, reschedule and list of bookings,
and the artist's or operator's cancel, complete and no-show under /api/admin."""

from __future__ import annotations

import uuid
from functools import partial
from typing import Any

from flask import Blueprint, Response, jsonify, request

from services.api import auth
from services.api.openapi import ARTIST, CLIENT, Header, Reply, operation
from services.api.responses import Booking as BookingJson
from services.api.responses import BookingCancelled, BookingEnvelope, Items, reply
from services.api.schemas import (
    ClientBookingsQuery,
    ClientCancelRequest,
    RescheduleRequest,
    StaffCancelRequest,
    parse_body,
    parse_optional_body,
    parse_query,
)
from services.api.state import state, unit_of_work
from shared.domain.access import Role
from shared.domain.deposits import CancelledBy
from shared.domain.errors import ErrorCode
from shared.domain.timeutil import iso_utc
from shared.usecases import idempotency, lifecycle

client_bp = Blueprint("lifecycle", __name__)
admin_bp = Blueprint("admin_lifecycle", __name__, url_prefix="/api/admin")

admin_operation = partial(operation, tag="admin", security=ARTIST)
ACTING_CLIENT = (
    "The booking's own client only: the JWT's `sub` when client JWTs are on, else `clientId` "
    "in the body; anyone else is FORBIDDEN. The operator's token may act for any client."
)


# --------------------------------------------------------------------------- client


@client_bp.post("/api/bookings/<booking_id>/cancel")
@operation(
    "cancelBooking",
    "Cancel a booking (the client)",
    tag="client",
    security=CLIENT,
    description=(
        f"{ACTING_CLIENT} PENDING_PAYMENT: CANCELLED and its PaymentIntent cancelled (a "
        "payment racing the cancel is refunded in full). CONFIRMED before its start: "
        "CANCELLED; the deposit is refunded in full when cancelling at least the artist's "
        "`refundWindowHours` before the start, else kept (FORFEITED). After the start: "
        "POLICY_VIOLATION STARTED. Any other status: INVALID_STATE. The slot is free at once. "
        "Client and artist are emailed (not for an unpaid hold the client lets go)."
    ),
    body=ClientCancelRequest,
    body_required=False,
    responses={200: Reply("The cancelled booking and the refund it owes.", BookingCancelled)},
    errors=[
        ErrorCode.VALIDATION_ERROR,
        ErrorCode.FORBIDDEN,
        ErrorCode.NOT_FOUND,
        ErrorCode.INVALID_STATE,
        ErrorCode.POLICY_VIOLATION,
    ],
)
def cancel_booking(booking_id: str) -> Response:
    current = state()
    body = parse_optional_body(ClientCancelRequest)
    done = current.lifecycle.cancel_by_client(
        booking_id,
        allowed=auth.guard_for(auth.acting_client(body.client_id)),
        reason=body.reason,
        now=current.clock(),
    )
    return reply(BookingCancelled.of(done))


IDEMPOTENCY_KEY = Header(
    idempotency.HEADER,
    "Makes the request safe to retry: a retry with the same key and body returns the first "
    "200 answer (the booking is not moved twice); the same key with another body is a "
    "VALIDATION_ERROR naming the header. Only a success is kept. Keys are kept 24 h.",
    schema={"type": "string", "minLength": 1, "maxLength": idempotency.MAX_KEY_LENGTH},
)


@client_bp.post("/api/bookings/<booking_id>/reschedule")
@operation(
    "rescheduleBooking",
    "Move a confirmed booking to another start (the client)",
    tag="client",
    security=CLIENT,
    description=(
        f"{ACTING_CLIENT} Same booking id, same payment, new times, `rescheduleCount` + 1; "
        "client and artist are emailed. Only CONFIRMED (INVALID_STATE), only while the "
        "current start is at least the artist's `rescheduleNoticeHours` away "
        "(POLICY_VIOLATION TOO_LATE_TO_RESCHEDULE), at most `maxReschedules` times "
        "(RESCHEDULE_LIMIT). The new slot passes the rules of a new booking "
        "(SLOT_UNAVAILABLE with its reason) under the same guarantee (SLOT_TAKEN when "
        "another request holds or took it). The old slot is free in the same commit; a "
        "refused reschedule leaves the booking where it was."
    ),
    headers=[IDEMPOTENCY_KEY],
    body=RescheduleRequest,
    responses={200: Reply("The moved booking.", BookingEnvelope)},
    errors=[
        ErrorCode.VALIDATION_ERROR,
        ErrorCode.FORBIDDEN,
        ErrorCode.NOT_FOUND,
        ErrorCode.INVALID_STATE,
        ErrorCode.POLICY_VIOLATION,
        ErrorCode.SLOT_UNAVAILABLE,
        ErrorCode.SLOT_TAKEN,
    ],
)
def reschedule_booking(booking_id: str) -> tuple[Response, int]:
    current = state()
    body = parse_body(RescheduleRequest)
    actor = auth.acting_client(body.client_id)
    move = lifecycle.RescheduleRequest(booking_id=booking_id, start_time=body.start_time)

    def produce() -> tuple[int, dict[str, Any], uuid.UUID | None]:
        done = current.lifecycle.reschedule(
            move, allowed=auth.guard_for(actor), now=current.clock()
        )
        return 200, BookingEnvelope.of(done.booking).model_dump(mode="json"), done.booking.id

    raw_key = request.headers.get(idempotency.HEADER)
    if raw_key is None:
        status, payload, _ = produce()
        return jsonify(payload), status
    answer = idempotency.run_once(
        current.resources.sessions,
        f"{auth.idempotency_scope()}:reschedule:{idempotency.check_key(raw_key)}",
        idempotency.request_fingerprint(
            {
                "bookingId": booking_id,
                "clientId": None if actor.id is None else str(actor.id),
                "startTime": iso_utc(body.start_time),
            }
        ),
        produce,
        now=current.clock(),
    )
    return jsonify(answer.body), answer.status


@client_bp.get("/api/clients/<client_id>/bookings")
@operation(
    "listClientBookings",
    "A client's bookings",
    tag="client",
    security=CLIENT,
    description=(
        "Any status unless `status` is given, by start. With client JWTs on, only the "
        "client's own token may read them (FORBIDDEN otherwise)."
    ),
    query=ClientBookingsQuery,
    responses={200: Reply("The bookings, by start.", Items[BookingJson])},
    errors=[ErrorCode.VALIDATION_ERROR, ErrorCode.FORBIDDEN, ErrorCode.NOT_FOUND],
)
def list_client_bookings(client_id: str) -> Response:
    # The path's client_id is the owner: auth checked it before this runs.
    query = parse_query(ClientBookingsQuery)
    wanted = lifecycle.ClientBookingsQuery(
        client_id=client_id, statuses=frozenset(query.status), start=query.from_, end=query.to
    )
    with unit_of_work() as session:
        rows = lifecycle.client_bookings(session, wanted)
        return reply(Items[BookingJson](items=[BookingJson.of(b) for b in rows]))


# --------------------------------------------------------------------------- artist, operator


@admin_bp.post("/bookings/<booking_id>/cancel")
@admin_operation(
    "cancelBookingAsStaff",
    "Cancel a booking (the artist or the operator)",
    description=(
        "PENDING_PAYMENT or CONFIRMED (else INVALID_STATE), at any time: CANCELLED, "
        "`cancelledBy` ARTIST with the booking's artist's token, OPERATOR with the "
        "operator's. `refund` FULL (the default) gives a paid deposit back in full; NONE "
        "keeps it (FORFEITED). Client and artist are emailed."
    ),
    body=StaffCancelRequest,
    body_required=False,
    responses={200: Reply("The cancelled booking and the refund it owes.", BookingCancelled)},
    errors=[ErrorCode.VALIDATION_ERROR, ErrorCode.NOT_FOUND, ErrorCode.INVALID_STATE],
)
def cancel_booking_as_staff(booking_id: str) -> Response:
    current = state()
    body = parse_optional_body(StaffCancelRequest)
    done = current.lifecycle.cancel_by_staff(
        booking_id,
        allowed=auth.guard_for(),
        by=CancelledBy.ARTIST if auth.principal().role is Role.ARTIST else CancelledBy.OPERATOR,
        refund=body.refund == "FULL",
        reason=body.reason,
        now=current.clock(),
    )
    return reply(BookingCancelled.of(done))


@admin_bp.post("/bookings/<booking_id>/complete")
@admin_operation(
    "completeBooking",
    "Mark a booking completed",
    description=(
        "CONFIRMED only (else INVALID_STATE), once its start has passed (else "
        "POLICY_VIOLATION NOT_STARTED). The deposit counted toward the price: it stays PAID."
    ),
    responses={200: Reply("The completed booking.", BookingEnvelope)},
    errors=[ErrorCode.NOT_FOUND, ErrorCode.INVALID_STATE, ErrorCode.POLICY_VIOLATION],
)
def complete_booking(booking_id: str) -> Response:
    current = state()
    done = current.lifecycle.complete(booking_id, allowed=auth.guard_for(), now=current.clock())
    return reply(BookingEnvelope.of(done.booking))


@admin_bp.post("/bookings/<booking_id>/no-show")
@admin_operation(
    "recordNoShow",
    "Record that the client did not come",
    description=(
        "CONFIRMED only (else INVALID_STATE), once its start has passed (else "
        "POLICY_VIOLATION NOT_STARTED): NO_SHOW, the deposit is kept (FORFEITED) and the "
        "client is emailed. Counts toward the artist's `noShowLimit`."
    ),
    responses={200: Reply("The booking, now NO_SHOW.", BookingEnvelope)},
    errors=[ErrorCode.NOT_FOUND, ErrorCode.INVALID_STATE, ErrorCode.POLICY_VIOLATION],
)
def record_no_show(booking_id: str) -> Response:
    current = state()
    done = current.lifecycle.no_show(booking_id, allowed=auth.guard_for(), now=current.clock())
    return reply(BookingEnvelope.of(done.booking))

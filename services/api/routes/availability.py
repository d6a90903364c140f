"""POST /api/availability.

Answers are cached per gunicorn worker under the artist's schedule_version (bumped by
the database on every change that matters) and only until the first instant at which
`now` alone could change them, so a cached answer is the one a fresh computation would
give. A cache hit costs one primary-key read.

The answer is serialised by hand (`render`): a miss renders up to ~1,000 slots, and this
is a third faster than the pydantic model `responses.AvailabilityAnswer`, whose output a
test holds it byte for byte equal to.
"""

from __future__ import annotations

import json
from datetime import timedelta

from flask import Blueprint, Response

from services.api.openapi import CLIENT, Reply, operation
from services.api.responses import JSON, AvailabilityAnswer
from services.api.schemas import AvailabilityRequest, parse_body
from services.api.state import autocommit, state, unit_of_work
from shared.domain.errors import ErrorCode
from shared.domain.timeutil import iso_utc
from shared.usecases.schedule import (
    Availability,
    AvailabilityQuery,
    compute,
    peek_cache_key,
    resolve,
)

bp = Blueprint("availability", __name__)

# Memory hygiene only: correctness comes from the version and `valid_until`.
MAX_CACHE_AGE = timedelta(minutes=5)


def render(answer: Availability) -> bytes:
    """`AvailabilityAnswer.of(answer).model_dump_json()`, faster."""
    slots = [
        {"startTime": iso_utc(s.start), "endTime": iso_utc(s.end), "available": s.available}
        for s in answer.slots
    ]
    return json.dumps({"slots": slots, "timezone": answer.timezone}, separators=(",", ":")).encode()


@bp.post("/api/availability")
@operation(
    "getAvailability",
    "Free and taken slots of an artist",
    tag="client",
    security=CLIENT,
    description=(
        "Candidate slots start at each working interval's start and every `slotIntervalMin` "
        "after it, and end inside the same interval; only slots starting in "
        "`[startDate, endDate)` are listed, in time order. Working hours follow DST. "
        "`available` is false when the slot overlaps a leave, a CONFIRMED booking or an "
        "unexpired PENDING_PAYMENT hold (widened by the artist's `bufferMin` on both sides), "
        "starts in the past or within `minNoticeMin`, or beyond `maxAdvanceDays`. Give "
        "`serviceDurationMin` or `serviceId`."
    ),
    body=AvailabilityRequest,
    responses={200: Reply("The slots.", AvailabilityAnswer)},
    errors=[ErrorCode.VALIDATION_ERROR, ErrorCode.NOT_FOUND, ErrorCode.RATE_LIMITED],
)
def post_availability() -> Response:
    current = state()
    body = parse_body(AvailabilityRequest)
    query = AvailabilityQuery(
        artist_id=body.artist_id,
        start=body.start_date,
        end=body.end_date,
        duration_min=body.service_duration_min,
        service_id=body.service_id,
        step_min=body.slot_interval_min,
    )
    now = current.clock()
    with autocommit() as session:
        key = peek_cache_key(session, query)
    payload = current.availability_cache.get(key, now) if key is not None else None
    if payload is None:
        with unit_of_work() as session:
            resolved = resolve(session, query)
            answer = compute(session, resolved, now=now)
        payload = render(answer)
        # Stored under the version this computation read: never newer than its data.
        current.availability_cache.put(
            resolved.cache_key, payload, min(answer.valid_until, now + MAX_CACHE_AGE)
        )
    return Response(payload, mimetype=JSON)

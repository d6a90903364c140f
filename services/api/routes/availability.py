"""POST /api/availability."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from services.api.auth import client_subject
from services.api.schemas import AvailabilityRequest, parse_body
from services.api.state import state, unit_of_work
from shared.schedule import AvailabilityQuery, availability
from shared.timeutil import iso_utc, utcnow

bp = Blueprint("availability", __name__)


@bp.post("/api/availability")
def post_availability() -> Response:
    client_subject(state().resources.settings)
    body = parse_body(AvailabilityRequest)
    query = AvailabilityQuery(
        artist_id=body.artist_id,
        start=body.start_date,
        end=body.end_date,
        duration_min=body.service_duration_min,
        service_id=body.service_id,
        step_min=body.slot_interval_min,
    )
    with unit_of_work() as session:
        slots, timezone = availability(session, query, now=utcnow())
    return jsonify(
        {
            "slots": [
                {"startTime": iso_utc(s.start), "endTime": iso_utc(s.end), "available": s.available}
                for s in slots
            ],
            "timezone": timezone,
        }
    )

"""The availability answer is serialised by hand for speed; it must be exactly what its
pydantic model (and so the OpenAPI document) says."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from openapi_schema_validator import OAS31Validator

from services.api.openapi import build_openapi, document_app
from services.api.responses import AvailabilityAnswer
from services.api.routes.availability import render
from shared.domain.availability import Slot, SlotReason
from shared.usecases.schedule import Availability


def answer() -> Availability:
    paris = ZoneInfo("Europe/Paris")
    # Local zones, microseconds, both availabilities: what the renderer must normalise.
    first = datetime(2026, 3, 29, 1, 30, 0, 123456, tzinfo=paris)
    slots = [
        Slot(
            first + timedelta(minutes=30 * i),
            first + timedelta(minutes=30 * i + 60),
            available=i % 3 != 0,
            reason=None if i % 3 else SlotReason.ALREADY_BOOKED,
        )
        for i in range(50)
    ]
    return Availability(slots, "Europe/Paris", datetime(2026, 3, 30, tzinfo=UTC))


def test_render_is_the_models_serialisation_byte_for_byte():
    assert render(answer()) == AvailabilityAnswer.of(answer()).model_dump_json().encode()


def test_render_matches_the_documented_schema():
    document = build_openapi(document_app())
    schema = {
        "$ref": "#/components/schemas/AvailabilityAnswer",
        "components": document["components"],
    }
    payload = json.loads(render(answer()))
    OAS31Validator(schema).validate(payload)
    assert payload["slots"][0]["startTime"] == "2026-03-29T00:30:00.123Z"


def test_an_empty_answer():
    empty = Availability([], "UTC", datetime(2026, 1, 1, tzinfo=UTC))
    assert json.loads(render(empty)) == {"slots": [], "timezone": "UTC"}

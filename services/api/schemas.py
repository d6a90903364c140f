"""Request bodies: strict JSON shapes (pydantic), camelCase on the wire.

Strict mode: "30" is not an int and a timestamp needs an offset. Unknown fields are
ignored so that older servers accept newer clients.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, TypeVar

from flask import request
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic.alias_generators import to_camel

from shared.domain.errors import DomainError, ErrorCode


class RequestModel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, strict=True, frozen=True)


Model = TypeVar("Model", bound=BaseModel)

NonEmpty = Annotated[str, Field(min_length=1, max_length=200)]
Email = Annotated[str, Field(pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$", max_length=320)]
Minutes = Annotated[int, Field(ge=5, le=1440)]
Id = Annotated[str, Field(min_length=1, max_length=100)]
HHMM = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$|^24:00$")


def _field_name(loc: tuple[int | str, ...]) -> str:
    name = ""
    for part in loc:
        name += f"[{part}]" if isinstance(part, int) else (f".{part}" if name else str(part))
    return name or "body"


def validation_error(exc: ValidationError) -> DomainError:
    fields: dict[str, str] = {}
    for err in exc.errors(include_url=False, include_input=False):
        if err["type"] == "json_invalid":
            return DomainError(
                ErrorCode.VALIDATION_ERROR,
                "The body is not valid JSON.",
                {"fields": {"body": "invalid JSON"}},
            )
        fields.setdefault(_field_name(err["loc"]), err["msg"])
    return DomainError(ErrorCode.VALIDATION_ERROR, details={"fields": fields})


def parse_body(model: type[Model]) -> Model:
    raw = request.get_data(cache=True)
    if not raw.strip():
        raise DomainError(
            ErrorCode.VALIDATION_ERROR, "A JSON body is required.", {"fields": {"body": "required"}}
        )
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        raise validation_error(exc) from None


def parse_value(model: type[Model], data: Any) -> Model:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise validation_error(exc) from None


class AvailabilityRequest(RequestModel):
    artist_id: Id
    start_date: AwareDatetime
    end_date: AwareDatetime
    service_duration_min: int | None = None
    service_id: Id | None = None
    slot_interval_min: int = 30


class CreateBookingRequest(RequestModel):
    client_id: Id
    artist_id: Id
    service_id: Id
    start_time: AwareDatetime


class ClientRequest(RequestModel):
    email: Email
    name: NonEmpty


class ArtistRequest(RequestModel):
    name: NonEmpty
    email: Email
    timezone: Annotated[str, Field(min_length=1, max_length=64)]
    stripe_account_id: Annotated[str, Field(pattern=r"^acct_[A-Za-z0-9]+$")] | None = None
    charges_enabled: bool = False
    buffer_min: Annotated[int, Field(ge=0, le=1440)] = 0
    min_notice_min: Annotated[int, Field(ge=0, le=525_600)] = 0
    max_advance_days: Annotated[int, Field(ge=0, le=3650)] = 365


class ServiceRequest(RequestModel):
    name: NonEmpty
    duration_min: Minutes
    price: Annotated[str, Field(min_length=1, max_length=20)]
    deposit_amount: Annotated[str, Field(min_length=1, max_length=20)]
    currency: Annotated[str, Field(pattern=r"^[A-Za-z]{3}$")]


class WorkingHoursItem(RequestModel):
    day_of_week: Annotated[int, Field(ge=0, le=6)]
    start_time: str
    end_time: str

    @field_validator("start_time", "end_time")
    @classmethod
    def _hhmm(cls, value: str) -> str:
        if not HHMM.match(value):
            raise ValueError('must be a time "HH:MM" (24:00 allowed as an end)')
        return value


class LeaveRequest(RequestModel):
    start_time: AwareDatetime
    end_time: AwareDatetime
    reason: Annotated[str, Field(max_length=500)] | None = None


class BookingRangeQuery(RequestModel):
    # Query strings are text: parse timestamps from strings in lax mode.
    model_config = ConfigDict(alias_generator=to_camel, strict=False, frozen=True)
    from_: AwareDatetime | None = Field(default=None, alias="from")
    to: AwareDatetime | None = None


def minutes_of(hhmm: str) -> int:
    hours, minutes = hhmm.split(":")
    return int(hours) * 60 + int(minutes)

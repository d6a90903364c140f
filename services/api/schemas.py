"""Request bodies: strict JSON shapes (pydantic), camelCase on the wire.

Strict mode: "30" is not an int and a timestamp needs an offset. Unknown fields are
ignored so that older servers accept newer clients.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal, TypeVar

from flask import request
from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    RootModel,
    ValidationError,
    field_validator,
)
from pydantic.alias_generators import to_camel

from shared.domain.errors import DomainError, ErrorCode
from shared.domain.transitions import BookingStatus


class RequestModel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, strict=True, frozen=True)


Model = TypeVar("Model", bound=BaseModel)

NonEmpty = Annotated[str, Field(min_length=1, max_length=200)]
Email = Annotated[str, Field(pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$", max_length=320)]
Minutes = Annotated[int, Field(ge=5, le=1440)]
Id = Annotated[str, Field(min_length=1, max_length=100)]
Hours = Annotated[int, Field(ge=0, le=8760)]
Reason = Annotated[str, Field(max_length=500)]
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


def parse_optional_body(model: type[Model]) -> Model:
    """A body whose fields all have defaults: none at all means the defaults."""
    if not request.get_data(cache=True).strip():
        return model.model_validate({})
    return parse_body(model)


def parse_value(model: type[Model], data: Any) -> Model:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise validation_error(exc) from None


_ID = "A UUID. An id that is not a UUID (or names no row) answers NOT_FOUND."
_TS = "ISO 8601 with an offset (`2026-02-05T12:00:00+01:00`); without one: VALIDATION_ERROR."
_MONEY = (
    'A decimal *string* in major units (`"50.00"`), exact in the currency\'s minor unit '
    '(`"50.5"` is refused for JPY). Never a JSON number.'
)
_HHMM = (
    'Wall-clock time "HH:MM" in the artist\'s time zone; `endTime` may be "24:00". A local '
    "time that does not exist (spring forward) starts at the first instant after the gap; a "
    "repeated one (fall back) means its first occurrence."
)
STRICT_NOTE = (
    'Strict JSON: `"60"` is not an integer and a timestamp needs an offset. Unknown fields '
    "are ignored. Errors answer VALIDATION_ERROR with `details.fields` naming each field."
)


class AvailabilityRequest(RequestModel):
    artist_id: Id = Field(description=_ID)
    start_date: AwareDatetime = Field(description=f"Slots starting at or after this instant. {_TS}")
    end_date: AwareDatetime = Field(
        description=(
            f"Slots starting before this instant; after startDate, at most 62 days after it. {_TS}"
        )
    )
    service_duration_min: int | None = Field(
        default=None,
        json_schema_extra={"minimum": 5, "maximum": 1440},
        description="Slot length in minutes (5–1440); required without serviceId.",
    )
    service_id: Id | None = Field(
        default=None, description=f"With it the slot length is the service's duration. {_ID}"
    )
    slot_interval_min: int = Field(
        default=30,
        json_schema_extra={"minimum": 5, "maximum": 1440},
        description="Minutes between candidate starts (5–1440).",
    )


class CreateBookingRequest(RequestModel):
    client_id: Id = Field(description=f"{_ID} With client JWTs on, it must be the token's `sub`.")
    artist_id: Id = Field(description=_ID)
    service_id: Id = Field(description=f"A service of that artist. {_ID}")
    start_time: AwareDatetime = Field(
        description=(
            f"{_TS} A start that is not on the availability grid is accepted if the whole slot "
            "fits inside one working interval and no rule refuses it."
        )
    )


class ClientRequest(RequestModel):
    email: Email = Field(description="Stored lower-cased; unique.")
    name: NonEmpty


class ArtistRequest(RequestModel):
    name: NonEmpty
    email: Email = Field(description="Stored lower-cased; unique.")
    timezone: Annotated[str, Field(min_length=1, max_length=64)] = Field(
        description="An IANA time zone (`Europe/Paris`)."
    )
    stripe_account_id: Annotated[str, Field(pattern=r"^acct_[A-Za-z0-9]+$")] | None = Field(
        default=None, description="The Stripe Connect account receiving deposits."
    )
    charges_enabled: bool = Field(
        default=False, description="Kept in step with Stripe by `account.updated`."
    )
    buffer_min: Annotated[int, Field(ge=0, le=1440)] = Field(
        default=0, description="Minutes kept free before and after each booking."
    )
    min_notice_min: Annotated[int, Field(ge=0, le=525_600)] = Field(
        default=0, description="Minimum notice before a slot's start, in minutes."
    )
    max_advance_days: Annotated[int, Field(ge=0, le=3650)] = Field(
        default=365, description="Booking window: how far ahead a slot may start."
    )
    refund_window_hours: Hours | None = Field(
        default=None,
        description=(
            "null: a client who cancels never gets the deposit back; N: in full when "
            "cancelling at least N hours before the start."
        ),
    )
    reschedule_notice_hours: Hours = Field(
        default=48, description="A client may move a booking until this many hours before it."
    )
    max_reschedules: Annotated[int, Field(ge=0, le=100)] = Field(
        default=1, description="How many times a client may move one booking."
    )
    reminder_hours: Hours = Field(
        default=24, description="Remind the client this many hours before the start; 0 = off."
    )
    no_show_limit: Annotated[int, Field(ge=0, le=1000)] = Field(
        default=0,
        description=(
            "A client with this many no-shows with the artist may not book them again "
            "(POLICY_VIOLATION NO_SHOW_LIMIT); 0 = off."
        ),
    )


class ServiceRequest(RequestModel):
    name: NonEmpty
    duration_min: Minutes = Field(description="Minutes (5–1440).")
    price: Annotated[str, Field(min_length=1, max_length=20)] = Field(description=_MONEY)
    deposit_amount: Annotated[str, Field(min_length=1, max_length=20)] = Field(
        description=f"{_MONEY} At most the price; 0 means none."
    )
    currency: Annotated[str, Field(pattern=r"^[A-Za-z]{3}$")] = Field(
        description="ISO 4217 code; stored lower-case (`eur`)."
    )


class WorkingHoursItem(RequestModel):
    day_of_week: Annotated[int, Field(ge=0, le=6)] = Field(description="0 = Monday … 6 = Sunday.")
    start_time: str = Field(pattern=HHMM.pattern, description=_HHMM)
    end_time: str = Field(pattern=HHMM.pattern, description=_HHMM)

    @field_validator("start_time", "end_time")
    @classmethod
    def _hhmm(cls, value: str) -> str:
        if not HHMM.match(value):
            raise ValueError('must be a time "HH:MM" (24:00 allowed as an end)')
        return value


class WorkingHoursBody(RootModel[list[WorkingHoursItem]]):
    """Replaces all the artist's working hours. Several intervals per weekday are allowed;
    intervals of one weekday may not overlap; endTime after startTime."""


class LeaveRequest(RequestModel):
    start_time: AwareDatetime = Field(description=_TS)
    end_time: AwareDatetime = Field(description=f"After startTime. {_TS}")
    reason: Reason | None = None
    cancel_conflicting: bool = Field(
        default=False,
        description=(
            "Cancel the bookings the leave overlaps (by the artist, deposit refunded in full, "
            "clients told). Without it they stay and the answer lists them in `conflicts`."
        ),
    )


_ACTING_CLIENT = (
    "The acting client: required without client JWTs (it must be the booking's client, "
    "else FORBIDDEN); with them the token's `sub` is, and this field must match it if given."
)


class ClientCancelRequest(RequestModel):
    client_id: Id | None = Field(default=None, description=_ACTING_CLIENT)
    reason: Reason | None = Field(default=None, description="Kept as `cancellationReason`.")


class StaffCancelRequest(RequestModel):
    reason: Reason | None = Field(default=None, description="Kept as `cancellationReason`.")
    refund: Literal["FULL", "NONE"] = Field(
        default="FULL",
        description="FULL: a paid deposit goes back in full; NONE: it is kept (FORFEITED).",
    )


class RescheduleRequest(RequestModel):
    client_id: Id | None = Field(default=None, description=_ACTING_CLIENT)
    start_time: AwareDatetime = Field(
        description=(
            f"The new start; the booking keeps its length. {_TS} The same rules as a new "
            "booking apply (the booking itself does not block its new slot)."
        )
    )


class BookingRangeQuery(RequestModel):
    # Query strings are text: parse timestamps from strings in lax mode.
    model_config = ConfigDict(alias_generator=to_camel, strict=False, frozen=True)
    from_: AwareDatetime | None = Field(
        default=None,
        alias="from",
        description=f"Bookings ending after this instant. {_TS} Encode `+` as `%2B`.",
    )
    to: AwareDatetime | None = Field(
        default=None,
        description=f"Bookings starting before this instant. {_TS} Encode `+` as `%2B`.",
    )


_STATUS = "|".join(s.value for s in BookingStatus)


class ClientBookingsQuery(BookingRangeQuery):
    status: Annotated[str, Field(pattern=rf"^({_STATUS})(,({_STATUS}))*$")] | None = Field(
        default=None,
        description="Only these statuses, comma-separated (`PENDING_PAYMENT,CONFIRMED`).",
    )

    def statuses(self) -> frozenset[BookingStatus]:
        if not self.status:
            return frozenset()
        return frozenset(BookingStatus(s) for s in self.status.split(","))


class StripeEvent(BaseModel):
    """A Stripe Event object, signed by Stripe. Documentation only: the receiver verifies
    the signature on the raw bytes and reads `id`, `type` and `created` itself."""

    model_config = ConfigDict(extra="allow")

    id: str = Field(examples=["evt_123"])
    type: str = Field(examples=["payment_intent.succeeded"])
    created: int | None = None
    data: dict[str, Any] | None = None


def minutes_of(hhmm: str) -> int:
    hours, minutes = hhmm.split(":")
    return int(hours) * 60 + int(minutes)

"""Request bodies: strict JSON shapes (pydantic), camelCase on the wire.

Strict mode: "30" is not an int and a timestamp needs an offset. Unknown fields are
ignored so that older servers accept newer clients.

What PostgreSQL or Python cannot hold is refused here, once for every field, as a
VALIDATION_ERROR naming it: every request model derives from `RequestModel`, which refuses
NUL in any string (PostgreSQL text cannot hold it; the JSON parser already refuses lone
surrogates), and every timestamp is a `Timestamp`, limited to the supported range
(`shared.domain.timeutil`). A test holds every model of every operation to both.
"""

from __future__ import annotations

import re
import uuid
from datetime import datetime
from typing import Annotated, Any, ClassVar, Literal, TypeVar, get_origin
from urllib.parse import urlsplit

from flask import request
from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    PlainValidator,
    RootModel,
    ValidationError,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
)
from pydantic.alias_generators import to_camel

from shared.domain.deposits import DepositStatus
from shared.domain.errors import DomainError, ErrorCode
from shared.domain.event_bodies import EVENT_ID_MAX_LENGTH, EVENT_TYPE_MAX_LENGTH, MAX_CREATED
from shared.domain.pagination import CursorError, Keyset
from shared.domain.policy import DEFAULT_POLICY
from shared.domain.timeutil import EARLIEST, LATEST, in_supported_range
from shared.domain.transitions import BookingStatus

NUL = "\x00"


def _holds_nul(value: Any) -> bool:
    if isinstance(value, str):
        return NUL in value
    if isinstance(value, list | tuple | set | frozenset):
        return any(_holds_nul(item) for item in value)
    if isinstance(value, dict):
        return any(_holds_nul(key) or _holds_nul(item) for key, item in value.items())
    return False


class RequestModel(BaseModel):
    """The base of every request model (body or query)."""

    model_config = ConfigDict(alias_generator=to_camel, strict=True, frozen=True)

    @field_validator("*")
    @classmethod
    def _no_nul(cls, value: Any) -> Any:
        # After the field's own validation (a "before" validator would hand strict mode
        # Python objects, where a timestamp must be a datetime): "a\x00@b.co" passes an
        # email pattern, "UTC\x00" a length check.
        if _holds_nul(value):
            raise ValueError("must not contain NUL characters (\\u0000)")
        return value


Model = TypeVar("Model", bound=BaseModel)

NonEmpty = Annotated[str, Field(min_length=1, max_length=200)]
Email = Annotated[str, Field(pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$", max_length=320)]
Minutes = Annotated[int, Field(ge=5, le=1440)]
Id = Annotated[str, Field(min_length=1, max_length=100)]
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


def parse_query(model: type[Model]) -> Model:
    """The query string as `model`: a parameter whose field is a list may repeat and may
    hold comma-separated values (an empty one is an invalid value, not no filter); any
    other takes its first value."""
    data: dict[str, Any] = {}
    for name, info in model.model_fields.items():
        key = info.alias or name
        values = request.args.getlist(key)
        if not values:
            continue
        if get_origin(info.annotation) is list:
            data[key] = [part for value in values for part in value.split(",")]
        else:
            data[key] = values[0]
    return parse_value(model, data)


_ID = "A UUID. An id that is not a UUID (or names no row) answers NOT_FOUND."
_SINCE = f"{EARLIEST:%Y-%m-%dT%H:%M:%SZ}"
_UNTIL = f"{LATEST:%Y-%m-%dT%H:%M:%SZ}"
_TS = (
    "ISO 8601 with an offset (`2026-02-05T12:00:00+01:00`); without one, before "
    f"{_SINCE} or from {_UNTIL} on: VALIDATION_ERROR."
)


def _supported(moment: datetime) -> datetime:
    if not in_supported_range(moment):
        raise ValueError(f"must be at or after {_SINCE} and before {_UNTIL}")
    return moment


# Every timestamp of every request: with an offset, inside the supported range.
Timestamp = Annotated[AwareDatetime, AfterValidator(_supported)]
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
    start_date: Timestamp = Field(description=f"Slots starting at or after this instant. {_TS}")
    end_date: Timestamp = Field(
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
    start_time: Timestamp = Field(
        description=(
            f"{_TS} A start that is not on the availability grid is accepted if the whole slot "
            "fits inside one working interval and no rule refuses it."
        )
    )


class ClientRequest(RequestModel):
    email: Email = Field(description="Stored lower-cased; unique.")
    name: NonEmpty


# The artist's fields, with their bounds, shared by creation and PATCH.
Timezone = Annotated[
    str, Field(min_length=1, max_length=64, description="An IANA time zone (`Europe/Paris`).")
]
StripeAccountId = Annotated[
    str,
    Field(
        pattern=r"^acct_[A-Za-z0-9]+$",
        description="The Stripe Connect account receiving deposits; unique.",
    ),
]
BufferMin = Annotated[
    int, Field(ge=0, le=1440, description="Minutes kept free before and after each booking.")
]
MinNoticeMin = Annotated[
    int, Field(ge=0, le=525_600, description="Minimum notice before a slot's start, in minutes.")
]
MaxAdvanceDays = Annotated[
    int, Field(ge=0, le=3650, description="Booking window: how far ahead a slot may start.")
]
MAX_POLICY_HOURS = 8760  # a year
RefundWindowHours = Annotated[
    int,
    Field(
        ge=0,
        le=MAX_POLICY_HOURS,
        description=(
            "A client who cancels at least this many hours before the start gets the deposit "
            "back in full; null: never."
        ),
    ),
]
RescheduleNoticeHours = Annotated[
    int,
    Field(
        ge=0,
        le=MAX_POLICY_HOURS,
        description="A client may move a booking only while its start is this many hours away.",
    ),
]
MaxReschedules = Annotated[
    int, Field(ge=0, le=100, description="How many times a client may move one booking.")
]
ReminderHours = Annotated[
    int,
    Field(
        ge=0,
        le=MAX_POLICY_HOURS,
        description="The reminder email goes this many hours before the start; 0: none.",
    ),
]
NoShowLimit = Annotated[
    int,
    Field(
        ge=0,
        le=100,
        description=(
            "A client with this many NO_SHOW bookings with the artist may not book them again; "
            "0: no limit."
        ),
    ),
]


class ArtistRequest(RequestModel):
    name: NonEmpty
    email: Email = Field(description="Stored lower-cased; unique.")
    timezone: Timezone
    stripe_account_id: StripeAccountId | None = None
    charges_enabled: bool = Field(
        default=False, description="Kept in step with Stripe by `account.updated`."
    )
    buffer_min: BufferMin = 0
    min_notice_min: MinNoticeMin = 0
    max_advance_days: MaxAdvanceDays = 365
    refund_window_hours: RefundWindowHours | None = DEFAULT_POLICY.refund_window_hours
    reschedule_notice_hours: RescheduleNoticeHours = DEFAULT_POLICY.reschedule_notice_hours
    max_reschedules: MaxReschedules = DEFAULT_POLICY.max_reschedules
    reminder_hours: ReminderHours = DEFAULT_POLICY.reminder_hours
    no_show_limit: NoShowLimit = DEFAULT_POLICY.no_show_limit


# A service's fields, shared by creation and PATCH.
DurationMin = Annotated[int, Field(ge=5, le=1440, description="Minutes (5–1440).")]
Price = Annotated[str, Field(min_length=1, max_length=20, description=_MONEY)]
DepositAmount = Annotated[
    str,
    Field(min_length=1, max_length=20, description=f"{_MONEY} At most the price; 0 means none."),
]
CurrencyCode = Annotated[
    str,
    Field(
        pattern=r"^[A-Za-z]{3}$",
        description=(
            "An ISO 4217 code Stripe can charge in (funds, metals, units of account and test "
            "codes are refused); stored lower-case (`eur`)."
        ),
    ),
]


class ServiceRequest(RequestModel):
    name: NonEmpty
    duration_min: DurationMin
    price: Price
    deposit_amount: DepositAmount
    currency: CurrencyCode


# --------------------------------------------------------------------------- PATCH bodies


def _drop_null_where_not_nullable(schema: dict[str, Any], model: type[BaseModel]) -> None:
    """Document a PATCH body as it is validated: every field optional, `null` accepted only
    by the nullable ones, and no default (an absent field is left as it is)."""
    nullable: frozenset[str] = getattr(model, "NULLABLE", frozenset())
    aliases = {field.alias or name: name for name, field in model.model_fields.items()}
    for key, prop in schema.get("properties", {}).items():
        prop.pop("default", None)
        if aliases.get(key) in nullable:
            continue
        variants = [v for v in prop.pop("anyOf", []) if v != {"type": "null"}]
        if len(variants) == 1:
            prop.update({k: v for k, v in variants[0].items() if k not in prop})


class PatchModel(RequestModel):
    """Only the fields present change. `null` is refused except by the fields named in
    NULLABLE, where it clears the value."""

    model_config = ConfigDict(json_schema_extra=_drop_null_where_not_nullable)
    NULLABLE: ClassVar[frozenset[str]] = frozenset()

    @field_validator("*", mode="before")
    @classmethod
    def _null_only_where_nullable(cls, value: Any, info: ValidationInfo) -> Any:
        if value is None and info.field_name not in cls.NULLABLE:
            raise ValueError("may not be null")
        return value

    def changes(self) -> dict[str, Any]:
        """The fields the body gave, by their Python names."""
        return {name: getattr(self, name) for name in self.model_fields_set}


class ClientPatch(PatchModel):
    email: Email | None = Field(default=None, description="Stored lower-cased; unique.")
    name: NonEmpty | None = None


class ArtistPatch(PatchModel):
    NULLABLE = frozenset({"stripe_account_id", "refund_window_hours"})
    # Where deposits go, and whether Stripe lets them: the operator's and Stripe's (its
    # `account.updated`), never the artist's own token.
    OPERATOR_ONLY: ClassVar[frozenset[str]] = frozenset({"stripe_account_id", "charges_enabled"})

    name: NonEmpty | None = None
    email: Email | None = Field(default=None, description="Stored lower-cased; unique.")
    timezone: Timezone | None = None
    stripe_account_id: StripeAccountId | None = Field(
        default=None,
        description=(
            "The Stripe Connect account receiving deposits; null removes it. Changing it "
            "without `chargesEnabled` sets chargesEnabled to false until Stripe's "
            "`account.updated` (or the operator) says the new account can take charges."
        ),
    )
    charges_enabled: bool | None = Field(
        default=None, description="Kept in step with Stripe by `account.updated`."
    )
    buffer_min: BufferMin | None = None
    min_notice_min: MinNoticeMin | None = None
    max_advance_days: MaxAdvanceDays | None = None
    refund_window_hours: RefundWindowHours | None = None
    reschedule_notice_hours: RescheduleNoticeHours | None = None
    max_reschedules: MaxReschedules | None = None
    reminder_hours: ReminderHours | None = None
    no_show_limit: NoShowLimit | None = None


class ServicePatch(PatchModel):
    name: NonEmpty | None = None
    duration_min: DurationMin | None = Field(
        default=None, description="Minutes (5–1440). Existing bookings keep their times."
    )
    price: Price | None = None
    deposit_amount: DepositAmount | None = Field(
        default=None,
        description=(
            f"{_MONEY} At most the price; 0 means none. Existing bookings keep their deposit "
            "and currency."
        ),
    )
    currency: CurrencyCode | None = None
    active: bool | None = Field(
        default=None,
        description=(
            "false hides the service from new bookings and availability (NOT_FOUND); its "
            "bookings are untouched. true offers it again."
        ),
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

    def intervals(self) -> list[tuple[int, int, int]]:
        """(dayOfWeek, start minute, end minute) of each interval, as the catalogue takes them."""
        return [
            (item.day_of_week, minutes_of(item.start_time), minutes_of(item.end_time))
            for item in self.root
        ]


class LeaveRequest(RequestModel):
    start_time: Timestamp = Field(description=_TS)
    end_time: Timestamp = Field(description=f"After startTime. {_TS}")
    reason: Reason | None = None
    cancel_conflicting: bool = Field(
        default=False,
        description=(
            "Cancel the bookings the leave overlaps (by the artist, deposit refunded in full, "
            "clients told). Without it they stay and the answer lists them in `conflicts`."
        ),
    )


# An absolute http(s) URI as RFC 3986 spells it (what `format: uri` promises): ASCII only,
# `%` followed by two hex digits, one `?` part and one `#` part at most.
_URI_CHAR = r"(?:[A-Za-z0-9\-._~!$&'()*+,;=:@]|%[0-9A-Fa-f]{2})"
HTTP_URL = (
    rf"^https?://(?:{_URI_CHAR}|[\[\]])+(?:/{_URI_CHAR}*)*"
    rf"(?:\?(?:{_URI_CHAR}|[/?])*)?(?:#(?:{_URI_CHAR}|[/?])*)?$"
)


def _absolute_http_url(value: str) -> str:
    try:
        # urlsplit raises ValueError for a malformed authority ("http://[::1"), `.port`
        # for a port that is not a number.
        parts = urlsplit(value)
        valid = bool(re.fullmatch(HTTP_URL, value) and parts.hostname) and (
            parts.port is None or parts.port >= 0
        )
    except ValueError:
        valid = False
    if not valid:
        raise ValueError("must be an absolute http(s) URL")
    return value


AbsoluteUrl = Annotated[
    str,
    Field(max_length=2048, json_schema_extra={"format": "uri", "pattern": HTTP_URL}),
    AfterValidator(_absolute_http_url),
]


class OnboardingRequest(RequestModel):
    return_url: AbsoluteUrl = Field(
        description=(
            "Where Stripe sends the artist when they leave or finish the onboarding (it does "
            "not mean the account is enabled: `account.updated` says so). An absolute http(s) "
            "URL."
        )
    )
    refresh_url: AbsoluteUrl = Field(
        description=(
            "Where Stripe sends the artist when the link has expired or was used: it should "
            "ask this endpoint for a new link. An absolute http(s) URL."
        )
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
    start_time: Timestamp = Field(
        description=(
            f"The new start; the booking keeps its length. {_TS} The same rules as a new "
            "booking apply (the booking itself does not block its new slot)."
        )
    )


class BookingRangeQuery(RequestModel):
    # Query strings are text: parse timestamps from strings in lax mode.
    model_config = ConfigDict(alias_generator=to_camel, strict=False, frozen=True)
    from_: Timestamp | None = Field(
        default=None,
        alias="from",
        description=f"Bookings ending after this instant. {_TS} Encode `+` as `%2B`.",
    )
    to: Timestamp | None = Field(
        default=None,
        description=f"Bookings starting before this instant. {_TS} Encode `+` as `%2B`.",
    )


class ClientBookingsQuery(BookingRangeQuery):
    status: list[BookingStatus] = Field(
        default=[],
        description=(
            "Only these statuses; repeat the parameter (`status=A&status=B`) or separate "
            "values with commas (`status=A,B`)."
        ),
    )


def _keyset(value: Any) -> Keyset:
    if not isinstance(value, str):
        raise ValueError("must be a string")
    try:
        keyset = Keyset.decode(value)
    except CursorError as exc:
        raise ValueError(str(exc)) from None
    if not in_supported_range(keyset.start):
        raise ValueError("not a cursor this API gave")
    return keyset


Cursor = Annotated[
    Keyset,
    PlainValidator(_keyset),
    WithJsonSchema({"type": "string", "maxLength": 200}),
]
# The booking list's multi-valued filters.
_MANY = (
    "Any of these; repeat the parameter (`{name}=A&{name}=B`) or separate values with commas "
    "(`{name}=A,B`)."
)
MAX_PAGE = 200


class BookingListQuery(RequestModel):
    model_config = ConfigDict(alias_generator=to_camel, strict=False, frozen=True)
    artist_id: uuid.UUID | None = Field(default=None, description="Only this artist's bookings.")
    client_id: uuid.UUID | None = Field(default=None, description="Only this client's bookings.")
    status: list[BookingStatus] = Field(default=[], description=_MANY.format(name="status"))
    deposit_status: list[DepositStatus] = Field(
        default=[],
        description=(
            f"{_MANY.format(name='depositStatus')} `REFUND_FAILED` lists the refunds Stripe "
            "refused."
        ),
    )
    from_: Timestamp | None = Field(
        default=None,
        alias="from",
        description=f"Bookings starting at or after this instant. {_TS} Encode `+` as `%2B`.",
    )
    to: Timestamp | None = Field(
        default=None,
        description=f"Bookings starting before this instant. {_TS} Encode `+` as `%2B`.",
    )
    limit: int = Field(default=50, ge=1, le=MAX_PAGE, description="Page size (1–200).")
    cursor: Cursor | None = Field(
        default=None,
        description=(
            "The previous page's `nextCursor`, as it was given (opaque). Anything else is a "
            "VALIDATION_ERROR."
        ),
    )


class StripeEventData(BaseModel):
    model_config = ConfigDict(extra="allow")

    object: dict[str, Any] = Field(description="The object the event is about.")


class StripeEvent(BaseModel):
    """A Stripe Event object, signed by Stripe. Documentation only: the receiver verifies
    the signature on the raw bytes and reads the event itself. NUL and lone surrogates
    inside strings are stored as U+FFFD; a body the inbox can never store (these bounds,
    nesting over 64 levels, NaN or Infinity) is refused with VALIDATION_ERROR."""

    model_config = ConfigDict(extra="allow")

    id: str = Field(min_length=1, max_length=EVENT_ID_MAX_LENGTH, examples=["evt_123"])
    type: str = Field(
        min_length=1, max_length=EVENT_TYPE_MAX_LENGTH, examples=["payment_intent.succeeded"]
    )
    created: int | None = Field(default=None, ge=0, le=MAX_CREATED)
    data: StripeEventData


def minutes_of(hhmm: str) -> int:
    hours, minutes = hhmm.split(":")
    return int(hours) * 60 + int(minutes)

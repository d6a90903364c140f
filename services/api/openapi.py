"""The OpenAPI 3.1 document of the API, served at GET /openapi.json.

Request bodies are generated from the pydantic models in `services.api.schemas` (so
they cannot drift from what the handlers accept); response bodies mirror
`shared.views` and are written out here. `build_openapi()` is pure and cached.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from functools import cache
from typing import Any

from pydantic import BaseModel

from services.api import schemas
from shared.adapters.models import (
    BookingStatus,
    NotificationKind,
    NotificationStatus,
    TransactionKind,
    TransactionStatus,
)
from shared.domain.availability import SlotReason
from shared.domain.errors import HTTP_STATUS, ErrorCode
from shared.usecases.idempotency import HEADER as IDEMPOTENCY_HEADER
from shared.usecases.idempotency import MAX_KEY_LENGTH

Schema = dict[str, Any]

OPENAPI_VERSION = "3.1.0"
REF = "#/components/schemas/{model}"
JSON = "application/json"

# The reasons of SLOT_UNAVAILABLE (details.reason).
SLOT_REASONS = [reason.value for reason in SlotReason]

# --------------------------------------------------------------------------- helpers


def ref(name: str) -> Schema:
    return {"$ref": REF.format(model=name)}


def nullable(schema: Schema) -> Schema:
    return {"anyOf": [schema, {"type": "null"}]}


def obj(
    properties: dict[str, Schema], *, required: list[str] | None = None, **extra: Any
) -> Schema:
    """An object whose listed properties are always present (views never omit a key)."""
    return {
        "type": "object",
        "required": list(properties) if required is None else required,
        "properties": properties,
        **extra,
    }


def items_of(name: str) -> Schema:
    return obj({"items": {"type": "array", "items": ref(name)}})


def json_content(schema: Schema, **extra: Any) -> dict[str, Any]:
    return {JSON: {"schema": schema, **extra}}


def response(description: str, schema: Schema | None = None, **extra: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"description": description}
    if schema is not None:
        out["content"] = json_content(schema)
    out.update(extra)
    return out


def error_ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/responses/{name}"}


def path_param(name: str, kind: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "description": (
            f"The {kind} id (a UUID). An id that is not a UUID cannot name a row and answers "
            "NOT_FOUND, like an unknown one."
        ),
        "schema": {"type": "string"},
    }


# --------------------------------------------------------------------------- request bodies

# Field notes added to the generated request schemas: descriptions, and bounds that the
# handlers enforce outside pydantic. `setdefault` semantics: the model wins when it says more.
_ID_NOTE = "A UUID. An id that is not a UUID (or names no row) answers NOT_FOUND."
_TS_NOTE = "ISO 8601 with an offset (`2026-02-05T12:00:00+01:00`); without one: VALIDATION_ERROR."
_MONEY_NOTE = (
    'A decimal *string* in major units (`"50.00"`), exact in the currency\'s minor unit '
    '(`"50.5"` is refused for JPY). Never a JSON number.'
)
_HHMM_NOTE = (
    'Wall-clock time "HH:MM" in the artist\'s time zone; `endTime` may be "24:00". A local '
    "time that does not exist (spring forward) starts at the first instant after the gap; a "
    "repeated one (fall back) means its first occurrence."
)
_FIELD_NOTES: dict[str, dict[str, Schema]] = {
    "AvailabilityRequest": {
        "artistId": {"description": _ID_NOTE},
        "startDate": {"description": f"Slots starting at or after this instant. {_TS_NOTE}"},
        "endDate": {
            "description": (
                f"Slots starting before this instant; after startDate, at most 62 days after "
                f"it. {_TS_NOTE}"
            )
        },
        "serviceDurationMin": {
            "minimum": 5,
            "maximum": 1440,
            "description": "Slot length in minutes (5–1440); required without serviceId.",
        },
        "serviceId": {
            "description": f"With it the slot length is the service's duration. {_ID_NOTE}"
        },
        "slotIntervalMin": {
            "minimum": 5,
            "maximum": 1440,
            "description": "Minutes between candidate starts (5–1440).",
        },
    },
    "CreateBookingRequest": {
        "clientId": {
            "description": f"{_ID_NOTE} With client JWTs on, it must be the token's `sub`."
        },
        "artistId": {"description": _ID_NOTE},
        "serviceId": {"description": f"A service of that artist. {_ID_NOTE}"},
        "startTime": {
            "description": (
                f"{_TS_NOTE} A start that is not on the availability grid is accepted if the "
                "whole slot fits inside one working interval and no rule refuses it."
            )
        },
    },
    "ClientRequest": {"email": {"description": "Stored lower-cased; unique."}},
    "ArtistRequest": {
        "email": {"description": "Stored lower-cased; unique."},
        "timezone": {"description": "An IANA time zone (`Europe/Paris`)."},
        "stripeAccountId": {"description": "The Stripe Connect account receiving deposits."},
        "chargesEnabled": {"description": "Kept in step with Stripe by `account.updated`."},
        "bufferMin": {"description": "Minutes kept free before and after each booking."},
        "minNoticeMin": {"description": "Minimum notice before a slot's start, in minutes."},
        "maxAdvanceDays": {"description": "Booking window: how far ahead a slot may start."},
    },
    "ServiceRequest": {
        "durationMin": {"description": "Minutes (5–1440)."},
        "price": {"description": _MONEY_NOTE},
        "depositAmount": {"description": f"{_MONEY_NOTE} At most the price; 0 means none."},
        "currency": {"description": "ISO 4217 code; stored lower-case (`eur`)."},
    },
    "WorkingHoursItem": {
        "dayOfWeek": {"description": "0 = Monday … 6 = Sunday."},
        "startTime": {"pattern": schemas.HHMM.pattern, "description": _HHMM_NOTE},
        "endTime": {"pattern": schemas.HHMM.pattern, "description": _HHMM_NOTE},
    },
    "LeaveRequest": {
        "startTime": {"description": _TS_NOTE},
        "endTime": {"description": f"After startTime. {_TS_NOTE}"},
    },
}

_STRICT_NOTE = (
    'Strict JSON: `"60"` is not an integer and a timestamp needs an offset. Unknown fields '
    "are ignored. Errors answer VALIDATION_ERROR with `details.fields` naming each field."
)

# The pydantic models whose JSON schema documents a request body.
_REQUEST_MODELS: tuple[type[BaseModel], ...] = (
    schemas.AvailabilityRequest,
    schemas.CreateBookingRequest,
    schemas.ClientRequest,
    schemas.ArtistRequest,
    schemas.ServiceRequest,
    schemas.WorkingHoursItem,
    schemas.LeaveRequest,
)


def _walk(node: Any, visit: Any) -> None:
    if isinstance(node, dict):
        visit(node)
        for value in node.values():
            _walk(value, visit)
    elif isinstance(node, list):
        for value in node:
            _walk(value, visit)


def _rewrite_refs(node: Any) -> None:
    """`#/$defs/X` → `#/components/schemas/X` (in case a model sets its own ref template)."""

    def visit(item: dict[str, Any]) -> None:
        target = item.get("$ref")
        if isinstance(target, str) and target.startswith("#/$defs/"):
            item["$ref"] = REF.format(model=target.removeprefix("#/$defs/"))

    _walk(node, visit)


def _request_schemas() -> dict[str, Schema]:
    out: dict[str, Schema] = {}
    for model in _REQUEST_MODELS:
        generated = model.model_json_schema(by_alias=True, ref_template=REF)
        defs = generated.pop("$defs", {})
        for name, schema in [*defs.items(), (model.__name__, generated)]:
            _rewrite_refs(schema)
            for prop in schema.get("properties", {}).values():
                prop.pop("title", None)  # "Artistid": pydantic's generated noise
            for field, notes in _FIELD_NOTES.get(name, {}).items():
                prop = schema.get("properties", {}).get(field)
                if prop is not None:
                    for key, value in notes.items():
                        prop.setdefault(key, value)
            out.setdefault(name, schema)
    return out


# --------------------------------------------------------------------------- responses


def _response_schemas() -> dict[str, Schema]:
    uuid_ = ref("Uuid")
    ts = ref("Timestamp")
    money = ref("Money")
    currency = ref("Currency")
    return {
        "Uuid": {"type": "string", "format": "uuid"},
        "Timestamp": {
            "type": "string",
            "format": "date-time",
            "description": "UTC with milliseconds and `Z`.",
            "examples": ["2026-02-05T11:00:00.000Z"],
        },
        "Money": {
            "type": "string",
            "pattern": r"^\d+(\.\d+)?$",
            "description": "Decimal string in major units, as many decimals as the currency has.",
            "examples": ["50.00", "5000"],
        },
        "Currency": {"type": "string", "pattern": "^[a-z]{3}$", "examples": ["eur"]},
        "BookingStatus": {"type": "string", "enum": [s.value for s in BookingStatus]},
        "Booking": obj(
            {
                "id": uuid_,
                "clientId": uuid_,
                "artistId": uuid_,
                "serviceId": uuid_,
                "startTime": ts,
                "endTime": ts,
                "status": ref("BookingStatus"),
                "depositAmount": money,
                "currency": currency,
                "expiresAt": {
                    **nullable(ts),
                    "description": (
                        "End of the unpaid hold: after it the booking no longer blocks the "
                        "slot and the worker marks it EXPIRED."
                    ),
                },
                "createdAt": ts,
                "confirmedAt": nullable(ts),
                "paymentIntentId": {
                    **nullable({"type": "string"}),
                    "description": "The deposit's PaymentIntent; null for a deposit of 0.",
                },
            }
        ),
        "PaymentIntent": obj(
            {
                "id": {"type": "string", "examples": ["pi_123"]},
                "clientSecret": {
                    "type": "string",
                    "description": "For Stripe.js `confirmPayment` on the frontend.",
                },
                "amount": {
                    "type": "integer",
                    "minimum": 0,
                    "description": "In the currency's minor unit (5000 = 50.00 EUR).",
                },
                "currency": currency,
            }
        ),
        "BookingCreated": obj(
            {
                "booking": ref("Booking"),
                "paymentIntent": {
                    **nullable(ref("PaymentIntent")),
                    "description": "null when the deposit is 0 (the booking is CONFIRMED).",
                },
            }
        ),
        "BookingEnvelope": obj({"booking": ref("Booking")}),
        "BookingDetail": obj(
            {
                "booking": ref("Booking"),
                "transactions": {"type": "array", "items": ref("Transaction")},
                "notifications": {"type": "array", "items": ref("Notification")},
            }
        ),
        "Slot": obj({"startTime": ts, "endTime": ts, "available": {"type": "boolean"}}),
        "AvailabilityResponse": obj(
            {
                "slots": {
                    "type": "array",
                    "items": ref("Slot"),
                    "description": "In time order.",
                },
                "timezone": {"type": "string", "examples": ["Europe/Paris"]},
            }
        ),
        "Artist": obj(
            {
                "id": uuid_,
                "name": {"type": "string"},
                "email": {"type": "string"},
                "timezone": {"type": "string"},
                "stripeAccountId": nullable({"type": "string"}),
                "chargesEnabled": {"type": "boolean"},
                "bufferMin": {"type": "integer"},
                "minNoticeMin": {"type": "integer"},
                "maxAdvanceDays": {"type": "integer"},
                "createdAt": ts,
            }
        ),
        "Client": obj(
            {"id": uuid_, "email": {"type": "string"}, "name": {"type": "string"}, "createdAt": ts}
        ),
        "Service": obj(
            {
                "id": uuid_,
                "artistId": uuid_,
                "name": {"type": "string"},
                "durationMin": {"type": "integer"},
                "price": money,
                "depositAmount": money,
                "currency": currency,
                "createdAt": ts,
            }
        ),
        "WorkingHours": obj(
            {
                "id": uuid_,
                "dayOfWeek": {"type": "integer", "minimum": 0, "maximum": 6},
                "startTime": {"type": "string", "examples": ["10:00"]},
                "endTime": {"type": "string", "examples": ["18:00", "24:00"]},
            },
            description="Wall-clock interval in the artist's time zone (follows DST).",
        ),
        "Leave": obj(
            {
                "id": uuid_,
                "artistId": uuid_,
                "startTime": ts,
                "endTime": ts,
                "reason": nullable({"type": "string"}),
                "createdAt": ts,
            }
        ),
        "Transaction": obj(
            {
                "id": uuid_,
                "kind": {"type": "string", "enum": [k.value for k in TransactionKind]},
                "status": {"type": "string", "enum": [s.value for s in TransactionStatus]},
                "amount": {**money, "description": "Major units, decimal string."},
                "amountMinor": {"type": "integer", "description": "Stripe's integer amount."},
                "currency": currency,
                "paymentIntentId": nullable({"type": "string"}),
                "stripeObjectId": {"type": "string"},
                "stripeEventId": nullable({"type": "string"}),
                "failureCode": nullable({"type": "string"}),
                "failureMessage": nullable({"type": "string"}),
                "createdAt": ts,
            },
            description=(
                "A ledger row. A payment whose amount, currency, intent or destination does "
                "not match its booking is recorded here but never confirms the booking."
            ),
        ),
        "Notification": obj(
            {
                "id": uuid_,
                "kind": {"type": "string", "enum": [k.value for k in NotificationKind]},
                "channel": {"type": "string", "enum": ["email"]},
                "recipient": {"type": "string"},
                "status": {"type": "string", "enum": [s.value for s in NotificationStatus]},
                "sentAt": nullable(ts),
            }
        ),
        "ArtistList": items_of("Artist"),
        "ClientList": items_of("Client"),
        "ServiceList": items_of("Service"),
        "WorkingHoursList": items_of("WorkingHours"),
        "LeaveList": items_of("Leave"),
        "BookingList": items_of("Booking"),
        "WorkingHoursBody": {
            "type": "array",
            "items": ref("WorkingHoursItem"),
            "description": (
                "Replaces all the artist's working hours. Several intervals per weekday are "
                "allowed; intervals of one weekday may not overlap; endTime after startTime."
            ),
        },
        "StripeEvent": {
            "type": "object",
            "required": ["id", "type"],
            "properties": {
                "id": {"type": "string", "examples": ["evt_123"]},
                "type": {"type": "string", "examples": ["payment_intent.succeeded"]},
                "created": {"type": "integer"},
                "data": {"type": "object"},
            },
            "additionalProperties": True,
            "description": "A Stripe Event object, signed by Stripe (verified on the raw body).",
        },
        "WebhookAck": obj({"received": {"const": True}}),
        "Health": obj({"status": {"const": "ok"}}),
        "Readiness": obj(
            {
                "status": {"type": "string", "enum": ["ok", "unavailable"]},
                "failed": {
                    "type": "array",
                    "items": {"type": "string", "enum": ["database", "redis", "broker"]},
                },
                "checks": {
                    "type": "object",
                    "additionalProperties": {"type": "string"},
                    "examples": [{"database": "ok", "redis": "unreachable: ConnectionError"}],
                },
            },
            required=["status", "checks"],
            description="`failed` is present (and status `unavailable`) only with a 503.",
        ),
        # Errors.
        "ErrorCode": {
            "type": "string",
            "enum": [c.value for c in ErrorCode],
            "description": "; ".join(f"{c.value}: HTTP {HTTP_STATUS[c]}" for c in ErrorCode),
        },
        "Error": obj(
            {
                "error": ref("ErrorCode"),
                "message": {"type": "string", "description": "For humans; may change."},
                "details": {"type": "object", "additionalProperties": True},
            },
            required=["error", "message"],
            description="Every error. No stack trace, SQL or secret ever appears in it.",
        ),
        _error_name(ErrorCode.VALIDATION_ERROR): _error_of(
            ErrorCode.VALIDATION_ERROR,
            {
                "type": "object",
                "properties": {
                    "fields": {
                        "type": "object",
                        "additionalProperties": {"type": "string"},
                        "description": "Field (or header) name → what is wrong with it.",
                        "examples": [{"startDate": "Input should have timezone info"}],
                    }
                },
            },
        ),
        _error_name(ErrorCode.SLOT_UNAVAILABLE): _error_of(
            ErrorCode.SLOT_UNAVAILABLE,
            obj({"reason": {"type": "string", "enum": SLOT_REASONS}}),
            required_details=True,
        ),
        **{
            _error_name(code): _error_of(code)
            for code in ErrorCode
            if code not in (ErrorCode.VALIDATION_ERROR, ErrorCode.SLOT_UNAVAILABLE)
        },
    }


def _error_name(code: ErrorCode) -> str:
    """SLOT_TAKEN → SlotTakenError, VALIDATION_ERROR → ValidationError."""
    name = "".join(part.capitalize() for part in code.value.split("_"))
    return name if name.endswith("Error") else f"{name}Error"


def _error_of(
    code: ErrorCode, details: Schema | None = None, *, required_details: bool = False
) -> Schema:
    own: Schema = {"properties": {"error": {"const": code.value}}}
    if details is not None:
        own["properties"]["details"] = details
    if required_details:
        own["required"] = ["details"]
    return {"allOf": [ref("Error"), own]}


_ERROR_RESPONSES: dict[str, tuple[str, list[ErrorCode]]] = {
    "ValidationError": (
        "VALIDATION_ERROR: malformed JSON, a missing or wrongly typed field, a timestamp "
        "without offset, a range too long… `details.fields` names the fields.",
        [ErrorCode.VALIDATION_ERROR],
    ),
    "Unauthorized": (
        "UNAUTHORIZED: a required token is missing or invalid.",
        [ErrorCode.UNAUTHORIZED],
    ),
    "Forbidden": (
        "FORBIDDEN: a valid client token that may not act for this client.",
        [ErrorCode.FORBIDDEN],
    ),
    "NotFound": (
        "NOT_FOUND: unknown (or non-UUID) artist, service, client or booking id, or a service "
        "that is not the artist's. `details` names the kind and the id.",
        [ErrorCode.NOT_FOUND],
    ),
    "SlotConflict": (
        "SLOT_UNAVAILABLE: the slot breaks a rule (`details.reason`). SLOT_TAKEN: another "
        "request holds the slot's lock, the in-transaction check or the database constraint "
        "found an overlap, or a request with the same Idempotency-Key is still running after "
        "10 s. Ask availability again.",
        [ErrorCode.SLOT_UNAVAILABLE, ErrorCode.SLOT_TAKEN],
    ),
    "StripeNotConfigured": (
        "STRIPE_NOT_CONFIGURED: the artist has no Stripe Connect account able to take charges.",
        [ErrorCode.STRIPE_NOT_CONFIGURED],
    ),
    "RateLimited": (
        "RATE_LIMITED: too many unpaid holds for this client (`MAX_OPEN_HOLDS_PER_CLIENT`); "
        "`details` gives `openHolds` and `limit`.",
        [ErrorCode.RATE_LIMITED],
    ),
    "PaymentProviderError": (
        "PAYMENT_PROVIDER_ERROR: Stripe failed or timed out; the booking was cancelled and the "
        "slot is free again. Safe to retry.",
        [ErrorCode.PAYMENT_PROVIDER_ERROR],
    ),
    "InvalidSignature": (
        "INVALID_SIGNATURE: the Stripe-Signature header is missing, wrong or older than 300 s. "
        "VALIDATION_ERROR: a correctly signed body that is not a Stripe event object.",
        [ErrorCode.INVALID_SIGNATURE, ErrorCode.VALIDATION_ERROR],
    ),
    "InternalError": (
        "INTERNAL_ERROR: anything unexpected (logged server-side, never detailed here).",
        [ErrorCode.INTERNAL_ERROR],
    ),
}


def _error_responses() -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, (description, codes) in _ERROR_RESPONSES.items():
        variants = [ref(_error_name(code)) for code in codes]
        schema = variants[0] if len(variants) == 1 else {"oneOf": variants}
        out[name] = response(description, schema)
    return out


# --------------------------------------------------------------------------- operations

ADMIN = [{"adminToken": []}]
# With AUTH_JWT_SECRET unset the client endpoints are public: `{}` is "no auth".
CLIENT = [{"clientJwt": []}, {}]
PUBLIC: list[dict[str, list[str]]] = []


def _operation(
    operation_id: str,
    summary: str,
    *,
    tag: str,
    security: list[dict[str, list[str]]],
    responses: dict[str, Any],
    errors: Sequence[tuple[int, str]] = (),
    description: str | None = None,
    body: Schema | None = None,
    body_description: str | None = None,
    parameters: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    op: dict[str, Any] = {"operationId": operation_id, "summary": summary, "tags": [tag]}
    if description:
        op["description"] = description
    op["security"] = security
    if parameters:
        op["parameters"] = parameters
    if body is not None:
        op["requestBody"] = {
            "required": True,
            "description": body_description or _STRICT_NOTE,
            "content": json_content(body),
        }
    all_responses = dict(responses)
    for status, name in errors:
        all_responses[str(status)] = error_ref(name)
    op["responses"] = dict(sorted(all_responses.items()))
    return op


_ADMIN_ERRORS = [(401, "Unauthorized"), (500, "InternalError")]


def _admin(operation_id: str, summary: str, **kwargs: Any) -> dict[str, Any]:
    errors = [*kwargs.pop("errors", []), *_ADMIN_ERRORS]
    return _operation(operation_id, summary, tag="admin", security=ADMIN, errors=errors, **kwargs)


def _created(name: str) -> dict[str, Any]:
    return {"201": response(f"The created {name}, with its `id`.", ref(name))}


def _paths() -> dict[str, Any]:
    artist_id = path_param("artist_id", "artist")
    booking_id = path_param("booking_id", "booking")
    client_id = path_param("client_id", "client")
    idempotency_key = {
        "name": IDEMPOTENCY_HEADER,
        "in": "header",
        "required": False,
        "schema": {"type": "string", "minLength": 1, "maxLength": MAX_KEY_LENGTH},
        "description": (
            "Makes the request safe to retry. A retry with the same key and body returns the "
            "first 201 response instead of a conflict; the same key with another body is a "
            "VALIDATION_ERROR naming the header. Only a 201 is kept: after a failure the key is "
            "released so the client may retry. A second request arriving while the first runs "
            "waits for its answer (up to 10 s, then SLOT_TAKEN). Keys are kept 24 h, per "
            "client when client JWTs are on."
        ),
    }
    stripe_signature = {
        "name": "Stripe-Signature",
        "in": "header",
        "required": True,
        "schema": {"type": "string"},
        "description": (
            "Stripe's signature of the raw body, checked against STRIPE_WEBHOOK_SECRET with a "
            "tolerance of 300 s. Missing, wrong or too old: INVALID_SIGNATURE."
        ),
    }
    range_params = [
        {
            "name": name,
            "in": "query",
            "required": False,
            "schema": {"type": "string", "format": "date-time"},
            "description": f"{text} {_TS_NOTE} Encode `+` as `%2B`.",
        }
        for name, text in (
            ("from", "Bookings ending after this instant."),
            ("to", "Bookings starting before this instant."),
        )
    ]
    return {
        "/api/availability": {
            "post": _operation(
                "getAvailability",
                "Free and taken slots of an artist",
                tag="client",
                security=CLIENT,
                description=(
                    "Candidate slots start at each working interval's start and every "
                    "`slotIntervalMin` after it, and end inside the same interval; only slots "
                    "starting in `[startDate, endDate)` are listed, in time order. Working "
                    "hours follow DST. `available` is false when the slot overlaps a leave, a "
                    "CONFIRMED booking or an unexpired PENDING_PAYMENT hold (widened by the "
                    "artist's `bufferMin` on both sides), starts in the past or within "
                    "`minNoticeMin`, or beyond `maxAdvanceDays`. Give `serviceDurationMin` or "
                    "`serviceId`."
                ),
                body=ref("AvailabilityRequest"),
                responses={"200": response("The slots.", ref("AvailabilityResponse"))},
                errors=[
                    (400, "ValidationError"),
                    (401, "Unauthorized"),
                    (404, "NotFound"),
                    (500, "InternalError"),
                ],
            )
        },
        "/api/bookings/create": {
            "post": _operation(
                "createBooking",
                "Hold a slot and create the deposit PaymentIntent",
                tag="client",
                security=CLIENT,
                description=(
                    "Holds the slot as PENDING_PAYMENT for BOOKING_HOLD_SECONDS (default 900, "
                    "see `expiresAt`) and returns the PaymentIntent whose `clientSecret` "
                    "Stripe.js confirms. A Stripe webhook then confirms the booking; poll "
                    "`GET /api/bookings/{booking_id}`. The rules are availability's: a slot it "
                    "lists as unavailable is refused, one it lists as available is accepted "
                    "unless taken meanwhile. A start off the availability grid is accepted if "
                    "the whole slot fits inside one working interval and no rule refuses it. A "
                    "deposit of 0 confirms the booking at once (confirmation emails are sent) "
                    "and `paymentIntent` is null. With client JWTs on, `clientId` must be the "
                    "token's `sub` (else FORBIDDEN, nothing created)."
                ),
                parameters=[idempotency_key],
                body=ref("CreateBookingRequest"),
                responses={
                    "201": response(
                        "The booking (PENDING_PAYMENT, or CONFIRMED for a deposit of 0) and "
                        "its PaymentIntent. Also the replayed first answer of an "
                        "Idempotency-Key retry.",
                        ref("BookingCreated"),
                    )
                },
                errors=[
                    (400, "ValidationError"),
                    (401, "Unauthorized"),
                    (403, "Forbidden"),
                    (404, "NotFound"),
                    (409, "SlotConflict"),
                    (422, "StripeNotConfigured"),
                    (429, "RateLimited"),
                    (500, "InternalError"),
                    (502, "PaymentProviderError"),
                ],
            )
        },
        "/api/bookings/{booking_id}": {
            "get": _operation(
                "getBooking",
                "A booking (poll it until CONFIRMED)",
                tag="client",
                security=CLIENT,
                description=(
                    "With client JWTs on, only the booking's own client may read it "
                    "(FORBIDDEN otherwise)."
                ),
                parameters=[booking_id],
                responses={"200": response("The booking.", ref("BookingEnvelope"))},
                errors=[
                    (401, "Unauthorized"),
                    (403, "Forbidden"),
                    (404, "NotFound"),
                    (500, "InternalError"),
                ],
            )
        },
        "/api/webhooks/stripe": {
            "post": _operation(
                "receiveStripeWebhook",
                "Stripe webhook receiver",
                tag="webhooks",
                security=PUBLIC,
                description=(
                    "Verifies `Stripe-Signature` on the raw body, stores the event durably "
                    "(deduplicated by event id) and enqueues it; 200 only once the event is "
                    "stored (a duplicate delivery also answers 200). Workers apply "
                    "`payment_intent.succeeded` (confirms; a payment for an EXPIRED booking "
                    "confirms it if the slot is still free, else it is refunded in full), "
                    "`payment_intent.payment_failed` (recorded, the hold is kept), "
                    "`payment_intent.canceled`, `charge.refunded` and `account.updated`; other "
                    "types are stored and ignored. Each event is applied at most once, in any "
                    "order. A payment whose amount, currency, intent or destination does not "
                    "match the booking is recorded in the ledger but never confirms; the inbox "
                    "row keeps the reason. `account.updated` events apply in `created` order "
                    "(an older one arriving late is ignored)."
                ),
                parameters=[stripe_signature],
                body=ref("StripeEvent"),
                body_description="The raw event as Stripe sent it (never re-serialised).",
                responses={"200": response("Stored (or already stored).", ref("WebhookAck"))},
                errors=[(400, "InvalidSignature"), (500, "InternalError")],
            )
        },
        "/api/admin/clients": {
            "post": _admin(
                "createClient",
                "Create a client",
                body=ref("ClientRequest"),
                responses=_created("Client"),
                errors=[(400, "ValidationError")],
                description="An email already in use is a VALIDATION_ERROR on `email`.",
            ),
            "get": _admin(
                "listClients",
                "List clients",
                responses={"200": response("All clients, oldest first.", ref("ClientList"))},
            ),
        },
        "/api/admin/clients/{client_id}": {
            "get": _admin(
                "getClient",
                "A client",
                parameters=[client_id],
                responses={"200": response("The client.", ref("Client"))},
                errors=[(404, "NotFound")],
            )
        },
        "/api/admin/artists": {
            "post": _admin(
                "createArtist",
                "Create an artist",
                body=ref("ArtistRequest"),
                responses=_created("Artist"),
                errors=[(400, "ValidationError")],
                description=(
                    "An unknown time zone, or an email or stripeAccountId already in use, is a "
                    "VALIDATION_ERROR."
                ),
            ),
            "get": _admin(
                "listArtists",
                "List artists",
                responses={"200": response("All artists, oldest first.", ref("ArtistList"))},
            ),
        },
        "/api/admin/artists/{artist_id}": {
            "get": _admin(
                "getArtist",
                "An artist",
                parameters=[artist_id],
                responses={"200": response("The artist.", ref("Artist"))},
                errors=[(404, "NotFound")],
            )
        },
        "/api/admin/artists/{artist_id}/services": {
            "post": _admin(
                "createService",
                "Create a service of an artist",
                parameters=[artist_id],
                body=ref("ServiceRequest"),
                responses=_created("Service"),
                errors=[(400, "ValidationError"), (404, "NotFound")],
            ),
            "get": _admin(
                "listServices",
                "List an artist's services",
                parameters=[artist_id],
                responses={"200": response("The services, oldest first.", ref("ServiceList"))},
                errors=[(404, "NotFound")],
            ),
        },
        "/api/admin/artists/{artist_id}/working-hours": {
            "put": _admin(
                "replaceWorkingHours",
                "Replace an artist's working hours",
                parameters=[artist_id],
                body=ref("WorkingHoursBody"),
                body_description=f"{_HHMM_NOTE} {_STRICT_NOTE}",
                responses={
                    "200": response(
                        "The new working hours, by day and start.", ref("WorkingHoursList")
                    )
                },
                errors=[(400, "ValidationError"), (404, "NotFound")],
            ),
            "get": _admin(
                "listWorkingHours",
                "An artist's working hours",
                parameters=[artist_id],
                responses={
                    "200": response("The working hours, by day and start.", ref("WorkingHoursList"))
                },
                errors=[(404, "NotFound")],
            ),
        },
        "/api/admin/artists/{artist_id}/leaves": {
            "post": _admin(
                "createLeave",
                "Add a leave (time off) to an artist",
                parameters=[artist_id],
                body=ref("LeaveRequest"),
                responses=_created("Leave"),
                errors=[(400, "ValidationError"), (404, "NotFound")],
            ),
            "get": _admin(
                "listLeaves",
                "An artist's leaves",
                parameters=[artist_id],
                responses={"200": response("The leaves, by start.", ref("LeaveList"))},
                errors=[(404, "NotFound")],
            ),
        },
        "/api/admin/artists/{artist_id}/bookings": {
            "get": _admin(
                "listArtistBookings",
                "An artist's bookings (any status) overlapping a range",
                parameters=[artist_id, *range_params],
                responses={"200": response("The bookings, by start.", ref("BookingList"))},
                errors=[(400, "ValidationError"), (404, "NotFound")],
            )
        },
        "/api/admin/bookings/{booking_id}": {
            "get": _admin(
                "getBookingDetail",
                "A booking with its ledger and notifications",
                parameters=[booking_id],
                responses={
                    "200": response(
                        "The booking, its transactions (`amount` in major units and "
                        "`amountMinor` as Stripe's integer) and its notifications.",
                        ref("BookingDetail"),
                    )
                },
                errors=[(404, "NotFound")],
            )
        },
        "/healthz": {
            "get": _operation(
                "healthz",
                "Liveness: the process is up",
                tag="operations",
                security=PUBLIC,
                responses={"200": response("Up.", ref("Health"))},
            )
        },
        "/readyz": {
            "get": _operation(
                "readyz",
                "Readiness: database, Redis and broker reachable",
                tag="operations",
                security=PUBLIC,
                responses={
                    "200": response("All reachable.", ref("Readiness")),
                    "503": response(
                        'Something is unreachable: `{"status": "unavailable", "failed": '
                        '[...], "checks": {...}}`.',
                        ref("Readiness"),
                    ),
                },
            )
        },
        "/openapi.json": {
            "get": _operation(
                "openapi",
                "This document",
                tag="operations",
                security=PUBLIC,
                responses={
                    "200": {"description": "The OpenAPI 3.1 document.", "content": {JSON: {}}}
                },
            )
        },
    }


# --------------------------------------------------------------------------- document

_DESCRIPTION = """\
Booking backend for tattoo artists: clients ask for free slots, hold one and pay the \
deposit with Stripe.js; Stripe webhooks confirm bookings in the background; operators \
manage the catalogue under `/api/admin`.

Conventions:
- JSON field names are camelCase. Responses carry UTC timestamps with milliseconds and \
`Z`; requests accept any ISO 8601 timestamp with an offset (without one: VALIDATION_ERROR).
- Money: decimal strings in major units (`"50.00"`); Stripe amounts are integers in the \
currency's minor unit. Never a float.
- Ids are UUIDs. An id that is not a UUID answers NOT_FOUND (it cannot name a row); a \
wrong JSON type is a VALIDATION_ERROR.
- Requests are strict (`"60"` is not an integer); unknown fields are ignored.
- Every error is `{"error": CODE, "message": "…", "details": {…}}` (details optional). \
Requests the router refuses (405 method not allowed, 413 body over 1 MiB, 415) answer \
VALIDATION_ERROR with that status.
- Client endpoints (availability, booking create and read) are public unless the server \
sets AUTH_JWT_SECRET; then they need the `clientJwt` bearer token. Management endpoints \
need the `adminToken` bearer token (ADMIN_API_TOKEN).
"""


@cache
def build_openapi() -> dict[str, Any]:
    """The OpenAPI document. Cached: treat the returned dict as read-only."""
    request_schemas = _request_schemas()
    response_schemas = _response_schemas()
    clash = set(request_schemas) & set(response_schemas)
    if clash:  # pragma: no cover - a renamed model would shadow a response schema
        raise RuntimeError(f"OpenAPI schema names used twice: {sorted(clash)}")
    return {
        "openapi": OPENAPI_VERSION,
        "info": {"title": "inkflow API", "version": "0.1.0", "description": _DESCRIPTION},
        "tags": [
            {"name": "client", "description": "What the frontend calls."},
            {"name": "webhooks", "description": "What Stripe calls."},
            {"name": "admin", "description": "The operator's management API."},
            {"name": "operations", "description": "Probes and this document."},
        ],
        "paths": _paths(),
        "components": {
            "schemas": dict(sorted({**request_schemas, **response_schemas}.items())),
            "responses": _error_responses(),
            "securitySchemes": {
                "adminToken": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "`Authorization: Bearer <ADMIN_API_TOKEN>`.",
                },
                "clientJwt": {
                    "type": "http",
                    "scheme": "bearer",
                    "bearerFormat": "JWT",
                    "description": (
                        "Applies only when the server sets AUTH_JWT_SECRET: an HS256 JWT signed "
                        "with it, whose `sub` is the clientId and which has an `exp`. Missing, "
                        "badly signed, expired or without `exp`/`sub`: UNAUTHORIZED; valid but "
                        "for another client: FORBIDDEN."
                    ),
                },
            },
        },
    }


@cache
def openapi_json() -> bytes:
    """The document serialised once, for GET /openapi.json."""
    return json.dumps(build_openapi(), ensure_ascii=False).encode()

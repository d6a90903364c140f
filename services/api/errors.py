"""Every error leaves as the contract's JSON: no HTML page, no traceback, no SQL.

The domain raises `DomainError(code, message, details)`; this module owns how it looks on
the wire: the HTTP status of each code, the body `{"error", "message", "details"?}` and
the headers some codes carry (`WWW-Authenticate` on 401, `Retry-After` on 503).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, Literal

from flask import Flask, Response
from pydantic import BaseModel, ConfigDict, Field, create_model
from pydantic.json_schema import SkipJsonSchema
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from werkzeug.exceptions import HTTPException

from shared.adapters.db import is_momentary
from shared.domain.availability import SlotReason
from shared.domain.errors import DomainError, ErrorCode
from shared.domain.policy import PolicyReason
from shared.domain.transitions import BookingStatus

log = logging.getLogger("inkflow.api")

HTTP_STATUS: dict[ErrorCode, int] = {
    ErrorCode.VALIDATION_ERROR: 400,
    ErrorCode.INVALID_SIGNATURE: 400,
    ErrorCode.UNAUTHORIZED: 401,
    ErrorCode.FORBIDDEN: 403,
    ErrorCode.NOT_FOUND: 404,
    ErrorCode.SLOT_UNAVAILABLE: 409,
    ErrorCode.SLOT_TAKEN: 409,
    ErrorCode.INVALID_STATE: 409,
    ErrorCode.POLICY_VIOLATION: 409,
    ErrorCode.PAYLOAD_TOO_LARGE: 413,
    ErrorCode.STRIPE_NOT_CONFIGURED: 422,
    ErrorCode.RATE_LIMITED: 429,
    ErrorCode.INTERNAL_ERROR: 500,
    ErrorCode.PAYMENT_PROVIDER_ERROR: 502,
    ErrorCode.SERVICE_UNAVAILABLE: 503,
}

# When each code is answered, for the OpenAPI document (the contract's table).
WHEN: dict[ErrorCode, str] = {
    ErrorCode.VALIDATION_ERROR: (
        "malformed JSON, a missing or wrongly typed field, a timestamp without offset, a "
        "range too long…; `details.fields` names the fields (or headers). Also the status "
        "of a request the router refuses (405)."
    ),
    ErrorCode.INVALID_SIGNATURE: "the Stripe-Signature header is missing, wrong or too old.",
    ErrorCode.UNAUTHORIZED: "a required token is missing or invalid.",
    ErrorCode.FORBIDDEN: "a valid token that may not do this (e.g. act for another client).",
    ErrorCode.NOT_FOUND: (
        "unknown (or non-UUID) artist, service, client or booking id, or a service that is "
        "not the artist's; `details` names the kind and the id."
    ),
    ErrorCode.SLOT_UNAVAILABLE: "the slot breaks a rule; `details.reason` says which.",
    ErrorCode.SLOT_TAKEN: (
        "lost a race: another request holds the slot's lock, the in-transaction check or the "
        "database constraint found an overlap, or a request with the same Idempotency-Key is "
        "still running after 10 s. Ask availability again."
    ),
    ErrorCode.INVALID_STATE: "the booking's status does not allow this (`details.status`).",
    ErrorCode.POLICY_VIOLATION: "the artist's policy refuses it (`details.reason`).",
    ErrorCode.PAYLOAD_TOO_LARGE: "a request body over 1 MiB.",
    ErrorCode.STRIPE_NOT_CONFIGURED: (
        "the artist has no Stripe Connect account able to take charges."
    ),
    ErrorCode.RATE_LIMITED: (
        "too many requests from this client or address (the operator's `RATE_LIMITS`): "
        "retry after `Retry-After` seconds (also `details.retryAfterSeconds`); or, on booking "
        "creation, too many unpaid holds for this client (`MAX_OPEN_HOLDS_PER_CLIENT`), "
        "with `details` giving `openHolds` and `limit`."
    ),
    ErrorCode.INTERNAL_ERROR: "anything unexpected (logged server-side, never detailed here).",
    ErrorCode.PAYMENT_PROVIDER_ERROR: (
        "Stripe failed or timed out; the booking was cancelled and the slot is free again. "
        "Safe to retry."
    ),
    ErrorCode.SERVICE_UNAVAILABLE: (
        "a dependency (database, lock) is momentarily unavailable; retry after `Retry-After` "
        "seconds."
    ),
}

# `details.retryAfterSeconds` of a SERVICE_UNAVAILABLE becomes its Retry-After header;
# without it, 2 s (a lock timeout is 5 s; most waits are over well before).
RETRY_AFTER_DETAIL = "retryAfterSeconds"
DEFAULT_RETRY_AFTER_SECONDS = 2

# The headers that come with a status, documented per response in the OpenAPI document.
STATUS_HEADERS: dict[int, dict[str, str]] = {
    401: {"WWW-Authenticate": 'The scheme to authenticate with: "Bearer".'},
    503: {"Retry-After": "Seconds to wait before retrying."},
}
# The same, for headers only some answers of the status carry.
OPTIONAL_STATUS_HEADERS: dict[int, dict[str, str]] = {
    429: {"Retry-After": "Seconds to wait before retrying (request-rate limits only)."},
}


def _absent_when_none(schema: dict[str, Any]) -> None:
    # Not sent at all rather than null: the schema has no default to show.
    schema.pop("default", None)


class ErrorBody(BaseModel):
    """Every error. No stack trace, SQL or secret ever appears in it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    error: ErrorCode
    message: str = Field(description="For humans; may change.")
    details: dict[str, Any] | SkipJsonSchema[None] = Field(
        default=None, json_schema_extra=_absent_when_none
    )


class FieldErrors(BaseModel):
    model_config = ConfigDict(extra="forbid")

    fields: dict[str, str] = Field(
        description="Field (or header) name → what is wrong with it.",
        examples=[{"startDate": "Input should have timezone info"}],
    )


class SlotUnavailableDetails(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: SlotReason


class InvalidStateDetails(BaseModel):
    model_config = ConfigDict(extra="forbid")

    status: BookingStatus = Field(description="The booking's status, which refuses the action.")


class PolicyViolationDetails(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: PolicyReason


def _variant_name(code: ErrorCode) -> str:
    """SLOT_TAKEN → SlotTakenError, VALIDATION_ERROR → ValidationError."""
    name = "".join(part.capitalize() for part in code.value.split("_"))
    return name if name.endswith("Error") else f"{name}Error"


class _Variant(ErrorBody):
    pass


class _ValidationVariant(_Variant):
    details: FieldErrors | SkipJsonSchema[None] = Field(  # type: ignore[assignment]
        default=None, json_schema_extra=_absent_when_none
    )


class _SlotUnavailableVariant(_Variant):
    details: SlotUnavailableDetails  # type: ignore[assignment]


class _InvalidStateVariant(_Variant):
    details: InvalidStateDetails  # type: ignore[assignment]


class _PolicyViolationVariant(_Variant):
    details: PolicyViolationDetails  # type: ignore[assignment]


_VARIANT_BASES: dict[ErrorCode, type[_Variant]] = {
    ErrorCode.VALIDATION_ERROR: _ValidationVariant,
    ErrorCode.SLOT_UNAVAILABLE: _SlotUnavailableVariant,
    ErrorCode.INVALID_STATE: _InvalidStateVariant,
    ErrorCode.POLICY_VIOLATION: _PolicyViolationVariant,
}


def _variant(code: ErrorCode) -> type[BaseModel]:
    """The body of one code, for the document: `error` is that code, `details` its shape."""
    this_code: Any = Literal[code.value]
    return create_model(
        _variant_name(code),
        __base__=_VARIANT_BASES.get(code, _Variant),
        __doc__=f"{code.value}: {WHEN[code]}",
        error=(this_code, ...),
    )


# One model per code: the response schemas of the OpenAPI document are made of these.
ERROR_MODELS: dict[ErrorCode, type[BaseModel]] = {code: _variant(code) for code in ErrorCode}


def error_response(
    error: DomainError,
    status: int | None = None,
    headers: Mapping[str, str] | None = None,
) -> Response:
    """The error's JSON with its status and headers (plus `headers`, which win)."""
    body = ErrorBody(error=error.code, message=error.message, details=error.details or None)
    response = Response(
        body.model_dump_json(exclude_none=True),
        status=status or HTTP_STATUS[error.code],
        mimetype="application/json",
    )
    response.headers.update(_headers(error))
    if headers:
        response.headers.update(headers)
    return response


def _headers(error: DomainError) -> Mapping[str, str]:
    if error.code == ErrorCode.UNAUTHORIZED:
        return {"WWW-Authenticate": "Bearer"}
    if error.code == ErrorCode.SERVICE_UNAVAILABLE:
        seconds = (error.details or {}).get(RETRY_AFTER_DETAIL, DEFAULT_RETRY_AFTER_SECONDS)
        return {"Retry-After": str(int(seconds))}
    return {}


# Werkzeug's own refusals (unknown route, wrong method, body too large …) as our codes.
_HTTP_CODES = {
    401: ErrorCode.UNAUTHORIZED,
    403: ErrorCode.FORBIDDEN,
    404: ErrorCode.NOT_FOUND,
    413: ErrorCode.PAYLOAD_TOO_LARGE,
    429: ErrorCode.RATE_LIMITED,
    503: ErrorCode.SERVICE_UNAVAILABLE,
}


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(DomainError)
    def _domain(error: DomainError) -> Response:
        return error_response(error)

    @app.errorhandler(HTTPException)
    def _http(error: HTTPException) -> Response:
        status = error.code or 500
        code = _HTTP_CODES.get(status)
        if code is None:
            # 405, 415 ...: the request itself is wrong; keep werkzeug's status.
            code = ErrorCode.VALIDATION_ERROR if status < 500 else ErrorCode.INTERNAL_ERROR
        message = error.description if status < 500 else None
        # Keep what werkzeug says besides its HTML (the Allow header of a 405).
        extra = {k: v for k, v in error.get_headers() if k.lower() != "content-type"}
        return error_response(DomainError(code, message), status, extra)

    @app.errorhandler(Exception)
    def _unexpected(error: Exception) -> Response:
        log.exception("unhandled error")
        return error_response(DomainError(ErrorCode.INTERNAL_ERROR))

    @app.errorhandler(DBAPIError)
    def _database(error: DBAPIError) -> Response:
        # A lock or statement timeout, or a database that does not answer just now, is
        # not a bug: the client may retry (nothing half-written stays, the transaction
        # was rolled back).
        if not is_momentary(error):
            return _unexpected(error)
        log.warning("database momentarily unavailable: %s", type(error.orig).__name__)
        return error_response(DomainError(ErrorCode.SERVICE_UNAVAILABLE))

    @app.errorhandler(PoolTimeout)
    def _pool_exhausted(error: PoolTimeout) -> Response:
        log.warning("no database connection free in time")
        return error_response(DomainError(ErrorCode.SERVICE_UNAVAILABLE))

"""Domain errors: one code per contract error, and the user-facing messages in one place.

How an error looks on the wire (HTTP status, JSON body, headers) is the API's business:
see `services/api/errors.py`."""

from __future__ import annotations

from enum import StrEnum
from typing import Any


class ErrorCode(StrEnum):
    VALIDATION_ERROR = "VALIDATION_ERROR"
    UNAUTHORIZED = "UNAUTHORIZED"
    FORBIDDEN = "FORBIDDEN"
    NOT_FOUND = "NOT_FOUND"
    SLOT_UNAVAILABLE = "SLOT_UNAVAILABLE"
    SLOT_TAKEN = "SLOT_TAKEN"
    STRIPE_NOT_CONFIGURED = "STRIPE_NOT_CONFIGURED"
    PAYMENT_PROVIDER_ERROR = "PAYMENT_PROVIDER_ERROR"
    RATE_LIMITED = "RATE_LIMITED"
    INVALID_SIGNATURE = "INVALID_SIGNATURE"
    INVALID_STATE = "INVALID_STATE"
    POLICY_VIOLATION = "POLICY_VIOLATION"
    PAYLOAD_TOO_LARGE = "PAYLOAD_TOO_LARGE"
    SERVICE_UNAVAILABLE = "SERVICE_UNAVAILABLE"
    INTERNAL_ERROR = "INTERNAL_ERROR"


MESSAGES: dict[ErrorCode, str] = {
    ErrorCode.VALIDATION_ERROR: "The request is not valid.",
    ErrorCode.UNAUTHORIZED: "A valid token is required.",
    ErrorCode.FORBIDDEN: "This token may not do that.",
    ErrorCode.NOT_FOUND: "Not found.",
    ErrorCode.SLOT_UNAVAILABLE: "This slot cannot be booked.",
    ErrorCode.SLOT_TAKEN: "Someone else just took this slot.",
    ErrorCode.STRIPE_NOT_CONFIGURED: "This artist cannot take payments yet.",
    ErrorCode.PAYMENT_PROVIDER_ERROR: "The payment provider failed; the slot was released.",
    ErrorCode.RATE_LIMITED: "Too many requests.",
    ErrorCode.INVALID_SIGNATURE: "The webhook signature is missing, wrong or too old.",
    ErrorCode.INVALID_STATE: "The booking's status does not allow this.",
    ErrorCode.POLICY_VIOLATION: "The artist's policy does not allow this.",
    ErrorCode.PAYLOAD_TOO_LARGE: "The request body is too large.",
    ErrorCode.SERVICE_UNAVAILABLE: "A service we depend on is momentarily unavailable; retry.",
    ErrorCode.INTERNAL_ERROR: "Something went wrong on our side.",
}


class DomainError(Exception):
    """An expected failure with a contract error code; never retried by workers."""

    def __init__(
        self,
        code: ErrorCode,
        message: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        self.code = code
        self.message = message or MESSAGES[code]
        self.details = details
        super().__init__(f"{code}: {self.message}")


def not_found(kind: str, ident: object) -> DomainError:
    return DomainError(ErrorCode.NOT_FOUND, f"{kind} not found.", {kind.lower(): str(ident)})

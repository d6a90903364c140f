"""Stripe-shaped error answers."""

from __future__ import annotations

from devtools.stripe_emulator.store import JSON


class ApiError(Exception):
    """A Stripe-shaped error answer; ``store=False`` marks validation errors (not idempotent)."""

    def __init__(
        self, status: int, message: str, code: str | None = None, param: str | None = None, *,
        type: str = "invalid_request_error", store: bool = True, extra: JSON | None = None,
    ) -> None:  # fmt: skip
        super().__init__(message)
        self.status, self.message, self.code, self.param = status, message, code, param
        self.type, self.store, self.extra = type, store, extra or {}

    def body(self) -> JSON:
        err: JSON = {"type": self.type, "message": self.message}
        if self.code:
            err["code"] = self.code
            err["doc_url"] = "https://stripe.com/docs/error-codes/" + self.code.replace("_", "-")
        if self.param:
            err["param"] = self.param
        return {"error": {**err, **self.extra}}


def invalid(message: str, param: str | None = None, code: str | None = None) -> ApiError:
    """A 400 for a malformed request: Stripe does not keep it under the Idempotency-Key."""
    return ApiError(400, message, code, param, store=False)


def missing(kind: str, obj_id: str, param: str = "id") -> ApiError:
    return ApiError(404, f"No such {kind}: '{obj_id}'", "resource_missing", param)

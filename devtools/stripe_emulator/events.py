"""Stripe Event objects, as a webhook endpoint receives them (serialise and sign them
yourself: ``stripe.WebhookSignature.generate_signature_header``)."""

from __future__ import annotations

from devtools.stripe_emulator.store import JSON, new_id, now
from devtools.stripe_emulator.wire import API_VERSION


def event(type: str, obj: JSON, *, event_id: str | None = None, created: int | None = None) -> JSON:
    """A complete Stripe Event wrapping ``obj``."""
    return {
        "id": event_id or new_id("evt_"), "object": "event", "api_version": API_VERSION,
        "created": now() if created is None else created, "data": {"object": obj},
        "livemode": False, "pending_webhooks": 1,
        "request": {"id": None, "idempotency_key": None}, "type": type,
    }  # fmt: skip

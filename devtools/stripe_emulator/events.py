"""Stripe Event objects, as a webhook endpoint receives them (serialise and sign them
yourself: ``stripe.WebhookSignature.generate_signature_header``).

``event()`` builds one; ``emit()`` builds one and keeps it in the store's ``events`` (in
the order things happened), as Stripe keeps the events it sends. Whatever delivers events
to a webhook endpoint reads them there.
"""

from __future__ import annotations

from devtools.stripe_emulator.store import JSON, Store, new_id, now
from devtools.stripe_emulator.wire import API_VERSION

# ``request`` of an event nobody's API request caused (Stripe acting on its own: a refund
# failing days later, ...).
AUTOMATIC: JSON = {"id": None, "idempotency_key": None}


def event(
    type: str,
    obj: JSON,
    *,
    event_id: str | None = None,
    created: int | None = None,
    previous_attributes: JSON | None = None,
    request: JSON | None = None,
) -> JSON:
    """A complete Stripe Event wrapping ``obj``. ``previous_attributes`` (the changed
    fields' values before the change) appear in ``data`` only when given, as at Stripe;
    ``request`` is the API request that caused the event (``{id, idempotency_key}``)."""
    data: JSON = {"object": obj}
    if previous_attributes is not None:
        data["previous_attributes"] = previous_attributes
    return {
        "id": event_id or new_id("evt_"), "object": "event", "api_version": API_VERSION,
        "created": now() if created is None else created, "data": data,
        "livemode": False, "pending_webhooks": 1, "request": dict(request or AUTOMATIC),
        "type": type,
    }  # fmt: skip


def emit(
    store: Store,
    type: str,
    obj: JSON,
    *,
    previous_attributes: JSON | None = None,
    request: JSON | None = None,
) -> JSON:
    """Build the event Stripe sends for a change that just happened, and keep it."""
    made = event(type, obj, previous_attributes=previous_attributes, request=request)
    store.events[made["id"]] = made
    return made


def api_request(idempotency_key: str | None) -> JSON:
    """``request`` of an event caused by an API request (the Dashboard's too)."""
    return {"id": new_id("req_", 14), "idempotency_key": idempotency_key}

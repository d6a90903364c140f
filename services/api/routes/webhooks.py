"""POST /api/webhooks/stripe: verify, store, enqueue, 200 — in milliseconds."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, request

from services.api.state import state
from shared.usecases.inbox import receive

bp = Blueprint("webhooks", __name__)


@bp.post("/api/webhooks/stripe")
def stripe_webhook() -> Response:
    current = state()
    # The signature covers the raw bytes: never re-serialise before verifying.
    stored = receive(
        current.resources, request.get_data(cache=False), request.headers.get("Stripe-Signature")
    )
    current.effects.run(stored)
    return jsonify({"received": True})

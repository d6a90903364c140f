"""POST /api/webhooks/stripe: verify, store, enqueue, 200 — in milliseconds."""

from __future__ import annotations

from flask import Blueprint, Response, request

from services.api.openapi import PUBLIC, Header, Reply, operation
from services.api.responses import JSON, WebhookAck
from services.api.schemas import StripeEvent
from services.api.state import state
from shared.domain.errors import ErrorCode
from shared.usecases.inbox import SIGNATURE_TOLERANCE_SECONDS, receive

bp = Blueprint("webhooks", __name__)

# The same bytes every time: no serialisation on the webhook path.
_ACK = WebhookAck(received=True).model_dump_json().encode()


@bp.post("/api/webhooks/stripe")
@operation(
    "receiveStripeWebhook",
    "Stripe webhook receiver",
    tag="webhooks",
    security=PUBLIC,
    description=(
        "Verifies `Stripe-Signature` on the raw body, stores the event durably (deduplicated "
        "by event id) and enqueues it; 200 only once the event is stored (a duplicate "
        "delivery also answers 200). Workers apply `payment_intent.succeeded` (confirms; a "
        "payment for an EXPIRED booking confirms it if the slot is still free, else it is "
        "refunded in full), `payment_intent.payment_failed` (recorded, the hold is kept), "
        "`payment_intent.canceled`, `charge.refunded`, `refund.updated`, `refund.failed`, "
        "`charge.refund.updated` (each refund of the charge, whoever made it, recorded once "
        "with the deposit status and one e-mail per refund; a failed one sets REFUND_FAILED; "
        "the booking's status never changes) and `account.updated`; other types are "
        "stored and ignored. Each event is applied at most once, in any order. A payment "
        "whose amount, currency, intent or destination does not match the booking is "
        "recorded in the ledger but never confirms; the inbox row keeps the reason. "
        "`account.updated` events (from the Connect endpoint: the artist's `chargesEnabled`, "
        "`payoutsEnabled` and `requirementsDue`) apply in `created` order (an older one "
        "arriving late is ignored)."
    ),
    headers=[
        Header(
            "Stripe-Signature",
            "Stripe's signature of the raw body, checked against STRIPE_WEBHOOK_SECRET (the "
            "platform endpoint's) or STRIPE_CONNECT_WEBHOOK_SECRET (the Connect endpoint's, "
            f"when set) with a tolerance of {SIGNATURE_TOLERANCE_SECONDS} s. Missing, wrong "
            "or too old: INVALID_SIGNATURE.",
            required=True,
        )
    ],
    body=StripeEvent,
    body_description="The raw event as Stripe sent it (never re-serialised).",
    responses={200: Reply("Stored (or already stored).", WebhookAck)},
    errors=[ErrorCode.INVALID_SIGNATURE, ErrorCode.VALIDATION_ERROR],
)
def stripe_webhook() -> Response:
    current = state()
    # The signature covers the raw bytes: never re-serialise before verifying.
    stored = receive(
        current.resources, request.get_data(cache=False), request.headers.get("Stripe-Signature")
    )
    current.effects.run(stored)
    return Response(_ACK, mimetype=JSON)

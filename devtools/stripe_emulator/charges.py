"""Charges: made when an intent succeeds; retrieve. Rendered from their intent and refunds."""

from __future__ import annotations

import copy

from stripe import params as sp

from devtools.stripe_emulator.cards import Card
from devtools.stripe_emulator.errors import missing
from devtools.stripe_emulator.routing import route
from devtools.stripe_emulator.store import JSON, Store, new_id, now
from devtools.stripe_emulator.wire import RecordedRequest


def record(store: Store, pi_id: str, payment_method: str, card: Card) -> str:
    """A new charge of the intent, paid with ``card``; returns its id."""
    ch_id = new_id("ch_")
    store.charges[ch_id] = {
        "id": ch_id, "payment_intent": pi_id, "created": now(), "refunds": [],
        "payment_method": payment_method, "card": {"brand": card.brand, "last4": card.last4},
    }  # fmt: skip
    return ch_id


def refunded_amount(store: Store, ch_id: str) -> int:
    return sum(store.refunds[r]["amount"] for r in store.charges[ch_id]["refunds"])


def charge_json(store: Store, ch_id: str) -> JSON:
    """The charge as Stripe shows it; ``refunded`` once refunds cover the amount."""
    ch = store.charges[ch_id]
    pi = store.intents[ch["payment_intent"]]
    refunds = [copy.deepcopy(store.refunds[r]) for r in ch["refunds"]]
    refunded = sum(r["amount"] for r in refunds)
    # fmt: off
    return {
        "id": ch_id, "object": "charge", "amount": pi["amount"],
        "amount_captured": pi["amount"], "amount_refunded": refunded,
        "refunded": refunded >= pi["amount"], "captured": True, "paid": True,
        "application_fee_amount": pi["application_fee_amount"], "balance_transaction": None,
        "created": ch["created"], "currency": pi["currency"], "livemode": False,
        "metadata": dict(pi["metadata"]), "payment_intent": pi["id"],
        "payment_method": ch["payment_method"], "status": "succeeded",
        "payment_method_details": {"type": "card", "card": {
            "brand": "visa", "last4": "4242", **ch.get("card", {}), "exp_month": 12,
            "exp_year": 2034, "funding": "credit", "country": "US"}},
        "transfer_data": copy.deepcopy(pi["transfer_data"]), "on_behalf_of": pi["on_behalf_of"],
        "failure_code": None, "failure_message": None,
        "refunds": {"object": "list", "data": refunds, "has_more": False,
                    "total_count": len(refunds), "url": f"/v1/charges/{ch_id}/refunds"},
    }
    # fmt: on


def retrieve(store: Store, req: RecordedRequest, ch_id: str) -> JSON:
    if ch_id not in store.charges:
        raise missing("charge", ch_id)
    return charge_json(store, ch_id)


ROUTES = [
    route("GET", r"/v1/charges/([^/]+)", retrieve, sp.ChargeRetrieveParams),
]

"""Charges: made when an intent succeeds; retrieve. Rendered from their intent and refunds.

A destination charge (``transfer_data[destination]``) makes a transfer to the connected
account, and its ``application_fee_amount`` an application fee; refunds reverse them in
proportion when asked to (see ``refunds.create``). Both are kept inside the charge's record
and shown by ``transfer_json`` / ``application_fee_json``.

As in API versions since 2022-11-15, a charge does not list its refunds unless asked to
(``expand[]=refunds``): list them with ``GET /v1/refunds?charge=…``.
"""

from __future__ import annotations

import copy

from stripe import params as sp

from devtools.stripe_emulator.cards import Card
from devtools.stripe_emulator.errors import missing
from devtools.stripe_emulator.routing import route
from devtools.stripe_emulator.store import JSON, Store, new_id, now
from devtools.stripe_emulator.wire import RecordedRequest

# Refunds that count in ``amount_refunded``: a failed or canceled one gave nothing back.
COUNTED = ("succeeded", "pending", "requires_action")


def record(store: Store, pi_id: str, payment_method: str, card: Card) -> str:
    """A new charge of the intent paid with ``card`` (with its transfer and application
    fee); returns its id."""
    pi = store.intents[pi_id]
    ch_id = new_id("ch_")
    transfer = None
    if pi["transfer_data"]:
        # fmt: off
        transfer = {
            "id": new_id("tr_"), "destination": pi["transfer_data"]["destination"],
            "amount": pi["transfer_data"].get("amount", pi["amount"]), "created": now(),
            "reversals": [],
        }
        # fmt: on
    fee = None
    if pi["application_fee_amount"]:
        fee = {"id": new_id("fee_"), "amount": pi["application_fee_amount"], "refunds": []}
    store.charges[ch_id] = {
        "id": ch_id, "payment_intent": pi_id, "created": now(), "refunds": [],
        "payment_method": payment_method, "card": {"brand": card.brand, "last4": card.last4},
        "transfer": transfer, "application_fee": fee, "failing_refunds": {},
    }  # fmt: skip
    return ch_id


def charge(store: Store, ch_id: str) -> JSON:
    """The charge's record (not its API form: see ``charge_json``)."""
    if ch_id not in store.charges:
        raise missing("charge", ch_id)
    return store.charges[ch_id]


def refunded_amount(store: Store, ch_id: str) -> int:
    """``amount_refunded``: what the charge's refunds give back (failed ones do not)."""
    return sum(
        store.refunds[r]["amount"]
        for r in store.charges[ch_id]["refunds"]
        if store.refunds[r]["status"] in COUNTED
    )


def charge_json(store: Store, ch_id: str, *, with_refunds: bool = False) -> JSON:
    """The charge as Stripe shows it (API version 2026-10-28); ``refunded`` once refunds
    cover the amount; its refunds only ``with_refunds`` (``expand[]=refunds``)."""
    ch = store.charges[ch_id]
    pi = store.intents[ch["payment_intent"]]
    refunded = refunded_amount(store, ch_id)
    transfer, fee = ch["transfer"], ch["application_fee"]
    # fmt: off
    shown: JSON = {
        "id": ch_id, "object": "charge", "amount": pi["amount"],
        "amount_captured": pi["amount"], "amount_refunded": refunded, "application": None,
        "application_fee": fee["id"] if fee else None,
        "application_fee_amount": pi["application_fee_amount"],
        "balance_transaction": "txn_" + ch_id.removeprefix("ch_"),
        "billing_details": {"address": None, "email": None, "name": None, "phone": None},
        "calculated_statement_descriptor": "INKFLOW", "captured": True,
        "created": ch["created"], "currency": pi["currency"], "customer": pi["customer"],
        "description": pi["description"], "disputed": False,
        "failure_balance_transaction": None, "failure_code": None, "failure_message": None,
        "fraud_details": {}, "livemode": False, "metadata": dict(pi["metadata"]),
        "on_behalf_of": pi["on_behalf_of"],
        "outcome": {"network_status": "approved_by_network", "reason": None,
                    "risk_level": "normal", "seller_message": "Payment complete.",
                    "type": "authorized"},
        "paid": True, "payment_intent": pi["id"], "payment_method": ch["payment_method"],
        "payment_method_details": {"card": {"brand": "visa", "last4": "4242",
                                            **ch.get("card", {}),
                                            "exp_month": 12, "exp_year": 2034,
                                            "country": "US", "funding": "credit"},
                                   "type": "card"},
        "receipt_email": pi["receipt_email"], "receipt_number": None,
        "receipt_url": f"https://pay.stripe.com/receipts/{ch_id}",
        "refunded": refunded >= pi["amount"], "review": None, "shipping": None,
        "source_transfer": None, "statement_descriptor": pi["statement_descriptor"],
        "statement_descriptor_suffix": pi["statement_descriptor_suffix"],
        "status": "succeeded", "transfer": transfer["id"] if transfer else None,
        "transfer_data": copy.deepcopy(pi["transfer_data"]),
        "transfer_group": pi["transfer_group"],
    }
    # fmt: on
    if with_refunds:
        refunds = [copy.deepcopy(store.refunds[r]) for r in reversed(ch["refunds"])]
        shown["refunds"] = {
            "object": "list",
            "data": refunds,
            "has_more": False,
            "total_count": len(refunds),
            "url": f"/v1/charges/{ch_id}/refunds",
        }
    return shown


def transfer_json(store: Store, ch_id: str) -> JSON | None:
    """The transfer of a destination charge to the connected account, with its reversals."""
    ch = store.charges[ch_id]
    transfer = ch["transfer"]
    if transfer is None:
        return None
    currency = store.intents[ch["payment_intent"]]["currency"]
    reversals = [
        {
            "id": r["id"],
            "object": "transfer_reversal",
            "amount": r["amount"],
            "created": r["created"],
            "currency": currency,
            "metadata": {},
            "source_refund": r["refund"],
            "transfer": transfer["id"],
            "destination_payment_refund": None,
            "balance_transaction": None,
        }
        for r in transfer["reversals"]
    ]
    reversed_amount = sum(r["amount"] for r in reversals)
    # fmt: off
    return {
        "id": transfer["id"], "object": "transfer", "amount": transfer["amount"],
        "amount_reversed": reversed_amount, "created": transfer["created"],
        "currency": currency, "destination": transfer["destination"], "livemode": False,
        "metadata": {}, "reversed": reversed_amount >= transfer["amount"],
        "reversals": {"object": "list", "data": reversals, "has_more": False,
                      "total_count": len(reversals),
                      "url": f"/v1/transfers/{transfer['id']}/reversals"},
        "source_transaction": ch_id, "source_type": "card", "transfer_group": None,
    }
    # fmt: on


def application_fee_json(store: Store, ch_id: str) -> JSON | None:
    """The platform's application fee on the charge, with its refunds."""
    ch = store.charges[ch_id]
    fee = ch["application_fee"]
    if fee is None:
        return None
    pi = store.intents[ch["payment_intent"]]
    refunded = sum(r["amount"] for r in fee["refunds"])
    # fmt: off
    return {
        "id": fee["id"], "object": "application_fee", "amount": fee["amount"],
        "amount_refunded": refunded, "charge": ch_id, "currency": pi["currency"],
        "account": (pi["transfer_data"] or {}).get("destination"), "livemode": False,
        "refunded": refunded >= fee["amount"],
        "refunds": {"object": "list", "data": [
                        {"id": r["id"], "object": "fee_refund", "amount": r["amount"],
                         "created": r["created"], "currency": pi["currency"], "fee": fee["id"],
                         "metadata": {}, "balance_transaction": None}
                        for r in fee["refunds"]],
                    "has_more": False, "total_count": len(fee["refunds"]),
                    "url": f"/v1/application_fees/{fee['id']}/refunds"},
    }
    # fmt: on


def retrieve(store: Store, req: RecordedRequest, ch_id: str) -> JSON:
    charge(store, ch_id)
    expand = req.params.get("expand") or []
    return charge_json(store, ch_id, with_refunds="refunds" in expand)


ROUTES = [
    route("GET", r"/v1/charges/([^/]+)", retrieve, sp.ChargeRetrieveParams),
]

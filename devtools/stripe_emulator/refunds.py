"""Refunds of a succeeded intent's charge: create (whole or partial), retrieve."""

from __future__ import annotations

import copy

from stripe import params as sp

from devtools.stripe_emulator import charges, events
from devtools.stripe_emulator.errors import ApiError, invalid, missing
from devtools.stripe_emulator.params import (
    parse_bool,
    parse_enum,
    parse_int,
    parse_metadata,
    refuse_unmodelled,
)
from devtools.stripe_emulator.payment_intents import intent
from devtools.stripe_emulator.routing import route
from devtools.stripe_emulator.store import JSON, Store, new_id, now
from devtools.stripe_emulator.wire import Headers, RecordedRequest

REASONS = ("duplicate", "fraudulent", "requested_by_customer")


def create(store: Store, req: RecordedRequest, _: str) -> JSON:
    p = req.params
    refuse_unmodelled(p, ("payment_intent", "charge", "amount", "reason", "metadata",
                          "reverse_transfer", "refund_application_fee"))  # fmt: skip
    reason = parse_enum(p, "reason", REASONS)
    reverse = parse_bool(p, "reverse_transfer")
    parse_bool(p, "refund_application_fee")
    amount = parse_int(p, "amount", minimum=1)
    metadata = parse_metadata(p.get("metadata"))
    if "charge" in p:
        if p["charge"] not in store.charges:
            raise missing("charge", p["charge"], "charge")
        pi = store.intents[store.charges[p["charge"]]["payment_intent"]]
    elif "payment_intent" in p:
        pi = intent(store, p["payment_intent"])
    else:
        msg = "One of the following params should be provided: payment_intent, charge."
        raise invalid(msg, None, "parameter_missing")
    if pi["status"] != "succeeded":
        msg = f"This PaymentIntent ({pi['id']}) does not have a successful charge to refund."
        raise ApiError(400, msg, "charge_not_refundable", "payment_intent")
    ch_id = pi["latest_charge"]
    left = pi["amount"] - charges.refunded_amount(store, ch_id)
    if left <= 0:
        raise ApiError(400, f"Charge {ch_id} has already been refunded.", "charge_already_refunded")
    if amount is not None and amount > left:
        msg = f"Refund amount ({amount}) is greater than unrefunded amount on charge ({left})"
        raise ApiError(400, msg, "amount_too_large", "amount")
    re_id = new_id("re_")
    # fmt: off
    store.refunds[re_id] = {
        "id": re_id, "object": "refund", "amount": amount or left, "balance_transaction": None,
        "charge": ch_id, "created": now(), "currency": pi["currency"],
        "destination_details": None, "metadata": metadata, "payment_intent": pi["id"],
        "reason": reason, "receipt_number": None, "source_transfer_reversal": None,
        "status": "succeeded",
        "transfer_reversal": new_id("trr_") if reverse and pi["transfer_data"] else None,
    }
    # fmt: on
    store.charges[ch_id]["refunds"].append(re_id)
    events.emit(store, "charge.refunded", charges.charge_json(store, ch_id))
    return copy.deepcopy(store.refunds[re_id])


def refund_out_of_band(store: Store, pi_id: str, amount: int | None = None) -> JSON:
    """A refund made outside the API (e.g. in the Dashboard)."""
    params = {"payment_intent": pi_id} | ({"amount": str(amount)} if amount else {})
    return create(store, RecordedRequest("POST", "", params, Headers()), "")


def retrieve(store: Store, req: RecordedRequest, re_id: str) -> JSON:
    if re_id not in store.refunds:
        raise missing("refund", re_id)
    return copy.deepcopy(store.refunds[re_id])


ROUTES = [
    route("POST", r"/v1/refunds", create, sp.RefundCreateParams),
    route("GET", r"/v1/refunds/([^/]+)", retrieve, sp.RefundRetrieveParams),
]

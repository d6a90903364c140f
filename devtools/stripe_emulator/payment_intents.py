"""PaymentIntents: create, retrieve, update, cancel; and what the customer does out of band
(pay: ``succeed``, a declined attempt: ``fail``)."""

from __future__ import annotations

import copy

from stripe import params as sp

from devtools.stripe_emulator import charges
from devtools.stripe_emulator.accounts import account
from devtools.stripe_emulator.errors import ApiError, invalid, missing
from devtools.stripe_emulator.params import (
    parse_bool,
    parse_enum,
    parse_int,
    parse_metadata,
    refuse_unmodelled,
)
from devtools.stripe_emulator.routing import route
from devtools.stripe_emulator.store import JSON, Store, new_id, now
from devtools.stripe_emulator.wire import RecordedRequest

# fmt: off
ZERO_DECIMAL = frozenset({"bif", "clp", "djf", "gnf", "jpy", "kmf", "krw", "mga", "pyg", "rwf",
                          "ugx", "vnd", "vuv", "xaf", "xof", "xpf"})
# Stripe's minimum charge amounts (smallest unit); other supported currencies: 1.
MIN_AMOUNT = {"usd": 50, "eur": 50, "gbp": 30, "chf": 50, "cad": 50, "aud": 50, "nzd": 50,
              "sgd": 50, "dkk": 250, "nok": 300, "sek": 300, "pln": 200, "czk": 1500,
              "huf": 17500, "ron": 200, "bgn": 100, "hkd": 400, "mxn": 1000, "brl": 50,
              "jpy": 50, "inr": 50, "aed": 200, "thb": 1000, "myr": 200}
CURRENCIES = ZERO_DECIMAL | set(MIN_AMOUNT) | {
    "ars", "cop", "egp", "ils", "isk", "kzt", "mad", "ngn", "php", "pkr", "qar", "rsd", "sar",
    "try", "twd", "uah", "zar", "idr"}
CANCELABLE = ("requires_payment_method", "requires_capture", "requires_confirmation",
              "requires_action")
# fmt: on
CANCEL_REASONS = ("duplicate", "fraudulent", "requested_by_customer", "abandoned")
# Parameters stored as given and shown back.
_ECHOED = ("description", "customer", "receipt_email", "statement_descriptor",
           "statement_descriptor_suffix", "setup_future_usage", "transfer_group",
           "on_behalf_of")  # fmt: skip


def intent(store: Store, pi_id: str) -> JSON:
    if pi_id not in store.intents:
        raise missing("payment_intent", pi_id, "intent")
    return store.intents[pi_id]


def _transition(store: Store, pi_id: str, status: str) -> JSON:
    pi = intent(store, pi_id)
    if pi["status"] not in (*CANCELABLE, "processing"):
        raise ValueError(f"cannot move {pi_id} from {pi['status']} to {status}")
    pi["status"] = status
    return pi


def succeed(store: Store, pi_id: str) -> JSON:
    """The customer paid: status ``succeeded`` with a new charge as ``latest_charge``."""
    pi = _transition(store, pi_id, "succeeded")
    pm_id = new_id("pm_")
    ch_id = charges.record(store, pi_id, pm_id)
    pi.update(amount_received=pi["amount"], latest_charge=ch_id, payment_method=pm_id)
    pi["last_payment_error"] = None
    return copy.deepcopy(pi)


def fail(
    store: Store, pi_id: str, code: str = "card_declined", message: str = "Your card was declined."
) -> JSON:
    """A payment attempt failed: back to ``requires_payment_method`` with the error."""
    pi = _transition(store, pi_id, "requires_payment_method")
    pi["last_payment_error"] = {
        "type": "card_error", "code": code, "message": message,
        "decline_code": "generic_decline" if code == "card_declined" else None,
        "doc_url": "https://stripe.com/docs/error-codes/" + code.replace("_", "-"),
    }  # fmt: skip
    return copy.deepcopy(pi)


def latest_charge(store: Store, pi_id: str, *, with_refunds: bool = False) -> JSON:
    """The intent's latest charge as Stripe shows it (e.g. ``charge.refunded`` payloads)."""
    pi = intent(store, pi_id)
    if not pi["latest_charge"]:
        raise ValueError(f"{pi_id} has no charge: succeed it first")
    return charges.charge_json(store, pi["latest_charge"], with_refunds=with_refunds)


def create(store: Store, req: RecordedRequest, _: str) -> JSON:
    p = req.params
    refuse_unmodelled(p, ("amount", "currency", "automatic_payment_methods", "metadata",
                          "transfer_data", "application_fee_amount", *_ECHOED))  # fmt: skip
    amount = parse_int(p, "amount", minimum=1) or 0
    currency = str(p["currency"]).lower()
    if currency not in CURRENCIES:
        raise invalid(f"Invalid currency: {p['currency']}.", "currency", "parameter_invalid")
    least = MIN_AMOUNT.get(currency, 1)
    if amount < least:
        shown = least if currency in ZERO_DECIMAL else f"{least / 100:.2f}"
        raise invalid(f"Amount must be at least {shown} {currency}", "amount", "amount_too_small")
    if amount > 99_999_999:
        raise invalid("Amount must be no more than 99999999", "amount", "amount_too_large")
    apm = p.get("automatic_payment_methods")
    if isinstance(apm, dict):
        enabled = parse_bool(apm, "enabled", "automatic_payment_methods[enabled]")
        apm = {"enabled": enabled, "allow_redirects": apm.get("allow_redirects", "always")}
    transfer = p.get("transfer_data")
    if isinstance(transfer, dict):
        transfer = _transfer_data(store, transfer, amount)
    fee = parse_int(p, "application_fee_amount")
    if fee is not None and not (transfer or req.stripe_account):
        msg = (
            "Can only apply an application_fee_amount when the PaymentIntent is attempting "
            "a direct payment (using an OAuth key or Stripe-Account header) or destination "
            "payment (using `transfer_data[destination]`)."
        )
        raise invalid(msg, "application_fee_amount")
    if fee is not None and fee > amount:
        raise invalid("The application fee cannot exceed the amount.", "application_fee_amount")
    pi_id = new_id("pi_")
    # fmt: off
    pi: JSON = {
        "id": pi_id, "object": "payment_intent", "amount": amount, "amount_capturable": 0,
        "amount_received": 0, "application": None, "application_fee_amount": fee,
        "automatic_payment_methods": apm, "canceled_at": None, "cancellation_reason": None,
        "capture_method": "automatic_async", "client_secret": f"{pi_id}_secret_{new_id('')}",
        "confirmation_method": "automatic", "created": now(), "currency": currency,
        "last_payment_error": None, "latest_charge": None, "livemode": False,
        "metadata": parse_metadata(p.get("metadata")), "next_action": None,
        "payment_method": None, "payment_method_options": {},
        "payment_method_types": ["card"], "processing": None,
        "status": "requires_payment_method", "transfer_data": transfer,
        **{k: p.get(k) for k in _ECHOED},
    }
    # fmt: on
    store.intents[pi_id] = pi
    return copy.deepcopy(pi)


def _transfer_data(store: Store, transfer: JSON, amount: int) -> JSON:
    dest, param = str(transfer["destination"]), "transfer_data[destination]"
    if not dest.startswith("acct_"):
        raise invalid(f"No such destination: '{dest}'", param, "resource_missing")
    if not account(store, dest)["charges_enabled"]:
        msg = (
            "Your destination account needs to have at least one of the following "
            "capabilities enabled: transfers, crypto_transfers, legacy_payments"
        )
        raise ApiError(400, msg, "insufficient_capabilities_for_transfer", param)
    share = parse_int(transfer, "amount", "transfer_data[amount]")
    if share is not None and share > amount:
        raise invalid("transfer_data[amount] cannot exceed amount", "transfer_data[amount]")
    return {"destination": dest} | ({} if share is None else {"amount": share})


def retrieve(store: Store, req: RecordedRequest, pi_id: str) -> JSON:
    return copy.deepcopy(intent(store, pi_id))


def update(store: Store, req: RecordedRequest, pi_id: str) -> JSON:
    refuse_unmodelled(req.params, ("metadata", "description"))
    pi = intent(store, pi_id)
    pi["metadata"] = parse_metadata(req.params.get("metadata"), pi["metadata"])
    pi["description"] = req.params.get("description", pi["description"])
    return copy.deepcopy(pi)


def cancel(store: Store, req: RecordedRequest, pi_id: str) -> JSON:
    reason = parse_enum(req.params, "cancellation_reason", CANCEL_REASONS)
    pi = intent(store, pi_id)
    if pi["status"] not in CANCELABLE:
        msg = (
            f"You cannot cancel this PaymentIntent because it has a status of {pi['status']}."
            f" Only a PaymentIntent with one of the following statuses may be canceled: "
            f"{', '.join(CANCELABLE)}."
        )
        extra = {"payment_intent": copy.deepcopy(pi)}
        raise ApiError(400, msg, "payment_intent_unexpected_state", extra=extra)
    pi.update(status="canceled", canceled_at=now(), cancellation_reason=reason)
    return copy.deepcopy(pi)


ROUTES = [
    route("POST", r"/v1/payment_intents", create, sp.PaymentIntentCreateParams),
    route("GET", r"/v1/payment_intents/([^/]+)", retrieve, sp.PaymentIntentRetrieveParams),
    route("POST", r"/v1/payment_intents/([^/]+)", update, sp.PaymentIntentUpdateParams),
    route("POST", r"/v1/payment_intents/([^/]+)/cancel", cancel, sp.PaymentIntentCancelParams),
]

"""PaymentIntents: create, retrieve, update, confirm (with Stripe's test cards, also from a
browser with a publishable key and the intent's client secret, as Stripe.js does), cancel;
and what the customer does out of band (pay: ``succeed``, a declined attempt: ``fail``).
Each state change emits its events (``payment_intent.created``, ``charge.succeeded`` and
``payment_intent.succeeded``, ``payment_intent.payment_failed``, ``payment_intent.canceled``)."""

from __future__ import annotations

import copy

from stripe import params as sp

from devtools.stripe_emulator import cards, charges, events
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


def succeed(store: Store, pi_id: str, card: cards.Card | None = None) -> JSON:
    """The customer paid: status ``succeeded`` with a new charge as ``latest_charge``."""
    pi = _transition(store, pi_id, "succeeded")
    pm_id = new_id("pm_")
    ch_id = charges.record(store, pi_id, pm_id, card or cards.by_payment_method("pm_card_visa"))
    pi.update(amount_received=pi["amount"], latest_charge=ch_id, payment_method=pm_id)
    pi["last_payment_error"] = None
    events.emit(store, "charge.succeeded", charges.charge_json(store, ch_id))
    events.emit(store, "payment_intent.succeeded", pi)
    return copy.deepcopy(pi)


def fail(
    store: Store, pi_id: str, code: str = "card_declined", message: str = "Your card was declined.",
    decline_code: str | None = None,
) -> JSON:  # fmt: skip
    """A payment attempt failed: back to ``requires_payment_method`` with the error."""
    pi = _transition(store, pi_id, "requires_payment_method")
    if decline_code is None and code == "card_declined":
        decline_code = "generic_decline"
    pi["last_payment_error"] = {
        "type": "card_error", "code": code, "message": message, "decline_code": decline_code,
        "doc_url": "https://stripe.com/docs/error-codes/" + code.replace("_", "-"),
    }  # fmt: skip
    events.emit(store, "payment_intent.payment_failed", pi)
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
    events.emit(store, "payment_intent.created", pi)
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
    pi = intent(store, pi_id)
    if req.publishable and req.params.get("client_secret") != pi["client_secret"]:
        raise missing("payment_intent", pi_id, "intent")
    return copy.deepcopy(pi)


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
    events.emit(store, "payment_intent.canceled", pi)
    return copy.deepcopy(pi)


CONFIRMABLE = ("requires_payment_method", "requires_confirmation")
# What Stripe.js sends beside the SDK's confirm parameters.
CLIENT_PARAMS = (
    "key",
    "client_secret",
    "payment_method_data[card]",
    "expected_payment_method_type",
)
_CONFIRM_MODELLED = ("payment_method", "payment_method_data", "return_url", "use_stripe_sdk",
                     "expected_payment_method_type", "key", "client_secret")  # fmt: skip


def confirm(store: Store, req: RecordedRequest, pi_id: str) -> JSON:
    """Pay with a test PaymentMethod (``payment_method=pm_card_visa``) or a test card
    number (``payment_method_data[type]=card&payment_method_data[card][number]=4242…``).
    A declined card answers 402 ``card_error`` with the intent, as Stripe does."""
    p = req.params
    refuse_unmodelled(p, _CONFIRM_MODELLED)
    pi = intent(store, pi_id)
    if req.publishable and p.get("client_secret") != pi["client_secret"]:
        msg = "The client_secret provided does not match the client_secret of this PaymentIntent."
        raise ApiError(400, msg, "payment_intent_invalid_parameter", "client_secret", store=False)
    if pi["status"] not in CONFIRMABLE:
        msg = f"You cannot confirm this PaymentIntent because it has a status of {pi['status']}."
        extra = {"payment_intent": copy.deepcopy(pi)}
        raise ApiError(400, msg, "payment_intent_unexpected_state", extra=extra)
    card = _card(p)
    outcome = card.outcome
    if outcome.code is None:
        return succeed(store, pi_id, card)
    failed = fail(store, pi_id, outcome.code, outcome.message, outcome.decline_code)
    error = {"decline_code": outcome.decline_code, "payment_intent": failed}
    raise ApiError(402, outcome.message, outcome.code, type="card_error", extra=error)


def _card(p: JSON) -> cards.Card:
    if p.get("payment_method"):
        return cards.by_payment_method(str(p["payment_method"]))
    data = p.get("payment_method_data")
    if isinstance(data, dict):
        if data.get("type") != "card":
            msg = "The Stripe emulator models card payments only: payment_method_data[type]=card"
            raise invalid(msg, "payment_method_data[type]", "emulator_unsupported_parameter")
        card = data.get("card")
        number = card.get("number") if isinstance(card, dict) else None
        if not isinstance(number, str):
            msg = "Missing required param: payment_method_data[card][number]."
            raise invalid(msg, "payment_method_data[card][number]", "parameter_missing")
        return cards.by_number(number)
    msg = (
        "You cannot confirm this PaymentIntent because it's missing a payment method. "
        "Pass payment_method (e.g. pm_card_visa) or payment_method_data."
    )
    raise invalid(msg, "payment_method", "payment_intent_unexpected_state")


ROUTES = [
    route("POST", r"/v1/payment_intents", create, sp.PaymentIntentCreateParams),
    route(
        "GET",
        r"/v1/payment_intents/([^/]+)",
        retrieve,
        sp.PaymentIntentRetrieveParams,
        publishable=True,
        client_params=("key",),
    ),
    route("POST", r"/v1/payment_intents/([^/]+)", update, sp.PaymentIntentUpdateParams),
    route("POST", r"/v1/payment_intents/([^/]+)/cancel", cancel, sp.PaymentIntentCancelParams),
    route(
        "POST",
        r"/v1/payment_intents/([^/]+)/confirm",
        confirm,
        sp.PaymentIntentConfirmParams,
        publishable=True,
        client_params=CLIENT_PARAMS,
    ),
]

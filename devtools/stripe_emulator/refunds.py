"""Refunds of a succeeded intent's charge: create (whole or partial), retrieve, list; what
Stripe does with them later (a pending refund succeeds or fails), and the events it sends.

- Several refunds per charge; the charge's ``amount_refunded`` is their running total
  (failed and canceled ones excluded).
- ``reverse_transfer`` (destination charges only) reverses the charge's transfer to the
  connected account, ``refund_application_fee`` refunds the platform's fee, each in
  proportion to the amount refunded (all of them once all is refunded): the refund's
  ``transfer_reversal`` names the reversal, ``charges.transfer_json`` and
  ``charges.application_fee_json`` show both.
- ``plan_failures(n)``: the next ``n`` refunds created fail, as Stripe's do: answered
  ``pending`` and failed when Stripe processes them (``settle``), or answered ``failed``
  at once. ``plan_pending(n)``: answered ``pending``, they succeed at ``settle``.
  ``fail(re_id)`` fails one that exists (even one that succeeded: a card closed meanwhile).
- Events, built here and kept by ``events.emit``: ``refund.created`` and ``charge.refunded``
  when a refund is made (not for one failed at once), ``refund.updated`` (with
  ``previous_attributes``) when its status changes, and ``refund.failed`` when it fails.
"""

from __future__ import annotations

import copy
from typing import Any

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
# Stripe's documented failure reasons.
FAILURE_REASONS = ("lost_or_stolen_card", "expired_or_canceled_card",
                   "charge_for_pending_refund_disputed", "insufficient_funds", "declined",
                   "merchant_request", "unknown")  # fmt: skip


# --- out-of-band: what the next refunds do, and what Stripe does later --------------------


def plan_failures(
    store: Store, n: int = 1, reason: str = "expired_or_canceled_card", *, at_once: bool = False
) -> None:
    """The next ``n`` refunds created fail with ``reason``: answered ``pending`` and failed
    at the next ``settle`` (as Stripe does, asynchronously), or answered ``failed``."""
    if reason not in FAILURE_REASONS:
        raise ValueError(f"unknown failure reason {reason!r}: one of {FAILURE_REASONS}")
    store.refund_plans.extend({"reason": reason, "at_once": at_once} for _ in range(n))


def plan_pending(store: Store, n: int = 1) -> None:
    """The next ``n`` refunds created are answered ``pending`` and succeed at the next
    ``settle`` (as for payment methods whose refunds take days)."""
    store.refund_plans.extend({"reason": None, "at_once": False} for _ in range(n))


def settle(store: Store) -> list[JSON]:
    """Stripe processes the pending refunds: those planned to fail fail, the others
    succeed. Returns the events sent."""
    sent: list[JSON] = []
    for re_id, refund in list(store.refunds.items()):
        if refund["status"] != "pending":
            continue
        failing = store.charges[refund["charge"]]["failing_refunds"]
        if re_id in failing:
            sent += fail(store, re_id, failing.pop(re_id))
        else:
            sent += _change_status(store, re_id, "succeeded")
    return sent


def fail(store: Store, re_id: str, reason: str = "expired_or_canceled_card") -> list[JSON]:
    """The refund fails (pending, or even succeeded: the card was closed meanwhile); its
    amount no longer counts as refunded. Returns the events sent."""
    refund = stored(store, re_id)
    if refund["status"] in ("failed", "canceled"):
        raise ValueError(f"refund {re_id} is already {refund['status']}")
    if reason not in FAILURE_REASONS:
        raise ValueError(f"unknown failure reason {reason!r}: one of {FAILURE_REASONS}")
    store.charges[refund["charge"]]["failing_refunds"].pop(re_id, None)
    sent = _change_status(
        store,
        re_id,
        "failed",
        failure_reason=reason,
        failure_balance_transaction="txn_" + new_id(""),
    )
    return [*sent, events.emit(store, "refund.failed", copy.deepcopy(refund))]


def _change_status(store: Store, re_id: str, status: str, **changes: str) -> list[JSON]:
    refund = store.refunds[re_id]
    previous: JSON = {"status": refund["status"]}
    previous.update({key: refund.get(key) for key in changes})
    refund.update(status=status, **changes)
    return [refund_event(store, "refund.updated", re_id, previous=previous, emit=True)]


# --- event payloads (Stripe's shapes for API version 2026-10-28) ----------------------------


def refund_event(
    store: Store,
    type: str,
    re_id: str,
    *,
    previous: JSON | None = None,
    request: JSON | None = None,
    emit: bool = False,
    **at: Any,
) -> JSON:
    """``refund.created`` / ``refund.updated`` / ``refund.failed`` about the refund as it
    is now (``previous``: the changed fields' former values, for ``refund.updated``);
    ``emit``: as sent now (kept in the store); ``at``: ``event_id``, ``created``."""
    obj = copy.deepcopy(stored(store, re_id))
    if emit:
        return events.emit(store, type, obj, previous_attributes=previous, request=request)
    return events.event(type, obj, previous_attributes=previous, request=request, **at)


def charge_refunded_event(
    store: Store,
    ch_id: str,
    *,
    refund_id: str | None = None,
    request: JSON | None = None,
    emit: bool = False,
    **at: Any,
) -> JSON:
    """``charge.refunded`` as Stripe sends it after the refund ``refund_id`` (by default the
    charge's latest): the charge as it is now, without its refunds (current API versions
    send only the running total ``amount_refunded``), and ``previous_attributes`` holding
    what ``amount_refunded`` (and ``refunded``) were before that refund."""
    ch = charges.charge(store, ch_id)
    made = ch["refunds"]
    counted = [r for r in made if store.refunds[r]["status"] in charges.COUNTED]
    if refund_id is None and not counted:
        raise ValueError(f"charge {ch_id} has no refund")
    refund_id = refund_id or counted[-1]
    if refund_id not in made:
        raise ValueError(f"refund {refund_id} is not one of charge {ch_id}'s")
    shown = charges.charge_json(store, ch_id)
    earlier = made[: made.index(refund_id)]
    before = sum(store.refunds[r]["amount"] for r in earlier if r in counted)
    previous: JSON = {"amount_refunded": before}
    if shown["refunded"] != (before >= shown["amount"]):
        previous["refunded"] = before >= shown["amount"]
    if emit:
        return events.emit(
            store, "charge.refunded", shown, previous_attributes=previous, request=request
        )
    return events.event(
        "charge.refunded", shown, previous_attributes=previous, request=request, **at
    )


# --- the API --------------------------------------------------------------------------------


def create(store: Store, req: RecordedRequest, _: str) -> JSON:
    p = req.params
    refuse_unmodelled(p, ("payment_intent", "charge", "amount", "reason", "metadata",
                          "reverse_transfer", "refund_application_fee"))  # fmt: skip
    reason = parse_enum(p, "reason", REASONS)
    reverse = parse_bool(p, "reverse_transfer")
    refund_fee = parse_bool(p, "refund_application_fee")
    amount = parse_int(p, "amount", minimum=1)
    metadata = parse_metadata(p.get("metadata"))
    if "charge" in p:
        ch_id = str(p["charge"])
        if ch_id not in store.charges:
            raise missing("charge", ch_id, "charge")
        pi = store.intents[store.charges[ch_id]["payment_intent"]]
    elif "payment_intent" in p:
        pi = intent(store, p["payment_intent"])
    else:
        msg = "One of the following params should be provided: payment_intent, charge."
        raise invalid(msg, None, "parameter_missing")
    if pi["status"] != "succeeded":
        msg = f"This PaymentIntent ({pi['id']}) does not have a successful charge to refund."
        raise ApiError(400, msg, "charge_not_refundable", "payment_intent")
    ch_id = pi["latest_charge"]
    ch = store.charges[ch_id]
    if reverse and ch["transfer"] is None:
        msg = (
            f"The charge {ch_id} has no transfer to reverse: reverse_transfer applies to "
            "destination charges (transfer_data[destination]) only."
        )
        raise invalid(msg, "reverse_transfer")
    left = pi["amount"] - charges.refunded_amount(store, ch_id)
    if left <= 0:
        raise ApiError(400, f"Charge {ch_id} has already been refunded.", "charge_already_refunded")
    if amount is not None and amount > left:
        msg = f"Refund amount ({amount}) is greater than unrefunded amount on charge ({left})"
        raise ApiError(400, msg, "amount_too_large", "amount")
    amount = amount or left
    plan = store.refund_plans.pop(0) if store.refund_plans else None
    re_id = new_id("re_")
    # fmt: off
    refund: JSON = {
        "id": re_id, "object": "refund", "amount": amount,
        "balance_transaction": "txn_" + new_id(""), "charge": ch_id, "created": now(),
        "currency": pi["currency"],
        "destination_details": {"card": {"reference": None, "reference_status": "pending",
                                         "reference_type": "acquirer_reference_number",
                                         "type": "refund"},
                                "type": "card"},
        "metadata": metadata, "payment_intent": pi["id"], "reason": reason,
        "receipt_number": None, "source_transfer_reversal": None,
        "status": "succeeded", "transfer_reversal": None,
    }
    # fmt: on
    if plan is not None and plan["at_once"]:
        refund.update(status="failed", failure_reason=plan["reason"],
                      failure_balance_transaction="txn_" + new_id(""))  # fmt: skip
    elif plan is not None:
        refund["status"] = "pending"
        if plan["reason"]:
            ch["failing_refunds"][re_id] = plan["reason"]
    store.refunds[re_id] = refund
    if reverse and refund["status"] != "failed":
        refund["transfer_reversal"] = _reverse(store, ch["transfer"], amount, pi["amount"], re_id)
    if refund_fee and ch["application_fee"] is not None and refund["status"] != "failed":
        _refund_fee(store, ch["application_fee"], amount, pi["amount"], re_id)
    ch["refunds"].append(re_id)
    if refund["status"] != "failed":
        request = events.api_request(req.idempotency_key)
        refund_event(store, "refund.created", re_id, request=request, emit=True)
        charge_refunded_event(store, ch_id, refund_id=re_id, request=request, emit=True)
    return copy.deepcopy(refund)


def _share(total: int, of: int, before: int, amount: int) -> int:
    """The part of ``total`` that refunding ``amount`` more of ``of`` (``before`` refunded
    with it so far) gives back: cumulative shares, rounded, so the parts add up to ``total``
    once everything is refunded."""
    return round(total * (before + amount) / of) - round(total * before / of)


def _reverse(store: Store, transfer: JSON, amount: int, charged: int, re_id: str) -> str:
    before = sum(store.refunds[r["refund"]]["amount"] for r in transfer["reversals"])
    trr_id = new_id("trr_")
    share = _share(transfer["amount"], charged, before, amount)
    transfer["reversals"].append({"id": trr_id, "amount": share, "created": now(), "refund": re_id})
    return trr_id


def _refund_fee(store: Store, fee: JSON, amount: int, charged: int, re_id: str) -> None:
    before = sum(store.refunds[r["refund"]]["amount"] for r in fee["refunds"])
    share = _share(fee["amount"], charged, before, amount)
    fee["refunds"].append({"id": new_id("fr_"), "amount": share, "created": now(), "refund": re_id})


def refund_out_of_band(store: Store, pi_id: str, amount: int | None = None) -> JSON:
    """A refund made outside the API (e.g. in the Dashboard: a connected account's
    destination charge is refunded with the transfer reversed, as the Dashboard offers)."""
    pi = intent(store, pi_id)
    params: JSON = {"payment_intent": pi_id} | ({"amount": str(amount)} if amount else {})
    if pi["latest_charge"] and store.charges[pi["latest_charge"]]["transfer"]:
        params["reverse_transfer"] = "true"
    headers = Headers([("Idempotency-Key", "dashboard-" + new_id(""))])
    return create(store, RecordedRequest("POST", "", params, headers), "")


def stored(store: Store, re_id: str) -> JSON:
    """The refund as kept (and shown)."""
    if re_id not in store.refunds:
        raise missing("refund", re_id)
    return store.refunds[re_id]


def retrieve(store: Store, req: RecordedRequest, re_id: str) -> JSON:
    return copy.deepcopy(stored(store, re_id))


def list_(store: Store, req: RecordedRequest, _: str) -> JSON:
    """``GET /v1/refunds``: newest first, optionally of one charge or payment intent;
    ``limit`` (1-100, default 10), ``starting_after`` / ``ending_before`` cursors."""
    p = req.params
    refuse_unmodelled(p, ("charge", "payment_intent", "limit", "starting_after",
                          "ending_before"))  # fmt: skip
    limit = parse_int(p, "limit", minimum=1)
    if limit is not None and limit > 100:
        raise invalid("This value must be less than or equal to 100.", "limit")
    found = [
        r
        for r in reversed(store.refunds.values())
        if p.get("charge") in (None, r["charge"])
        and p.get("payment_intent") in (None, r["payment_intent"])
    ]
    ids = [r["id"] for r in found]
    for cursor in ("starting_after", "ending_before"):
        if cursor in p and p[cursor] not in store.refunds:
            raise missing("refund", str(p[cursor]), cursor)
    if "starting_after" in p:
        found = found[ids.index(p["starting_after"]) + 1 :] if p["starting_after"] in ids else []
    elif "ending_before" in p:
        found = found[: ids.index(p["ending_before"])] if p["ending_before"] in ids else []
        found = found[-(limit or 10) :]
    page = found[: limit or 10]
    return {
        "object": "list", "data": copy.deepcopy(page), "has_more": len(found) > len(page),
        "url": "/v1/refunds",
    }  # fmt: skip


ROUTES = [
    route("POST", r"/v1/refunds", create, sp.RefundCreateParams),
    route("GET", r"/v1/refunds", list_, sp.RefundListParams),
    route("GET", r"/v1/refunds/([^/]+)", retrieve, sp.RefundRetrieveParams),
]

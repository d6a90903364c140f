"""The JSON control API under ``/_emulator/`` (no auth): what tests and tools outside the
process (``inkflow pay``/``trigger``/``demo``) use to act as the customer or the Dashboard,
to watch webhook deliveries, and to inject failures.

Answers 200 with the result (``{"ok": true}`` for actions), 400/404 with ``{"error": …}``.
Bodies are the keywords of the ``StripeEmulator`` method a route calls; GET routes take
them as query parameters.

    POST payment_intents/{id}/succeed | fail {code, message, decline_code} | refund {amount}
    GET  payment_intents/{id} | payment_intents/{id}/charge | …/refunds | …/transfer
         | …/application_fee
    GET  refunds/{id};  POST refunds/{id}/fail {reason}
    POST fail_next_refunds {n, reason, at_once} | pend_next_refunds {n} | settle_refunds
    POST accounts/{id} {charges_enabled, payouts_enabled}      (emits account.updated)
    GET  accounts/{id}                       an account made or named (404 otherwise)
    GET  account_links/{token}               an Account Link (token: its URL's last part)
    POST account_links/{token}/complete      the user completes that onboarding: the
                                             account is enabled (emits account.updated)
    POST account_links/{token}/expire        the link is past its expires_at
    POST events {type, object} | {type, payment_intent} | {type: "charge.refunded",
         payment_intent, refund?} | {type: "refund.*", refund}   (optional id, created;
         built, not sent) — with "send": true it is logged and delivered like an emitted one
    GET  emitted_events                      the events Stripe sent, oldest first
    GET  events ?related_to=pi_…             the same, about one object
    POST events/{id}/resend                  deliver a logged event again
    GET  webhook | POST webhook {url, secret, enabled_events, retry: {…}, connect_url,
         connect_secret}                     (connect_*: the Connect endpoint, optional)
    GET  deliveries ?related_to=pi_…&event_id=evt_…           delivery attempts, oldest first
    POST wait_for_deliveries {timeout}       {"idle": bool}: nothing due or in flight
    POST latency {ms}                        added to every API call from now on
    POST fail_next {n, status, error_type, path_prefix, method, code, message, always}
    POST delay_next {seconds, n, path_prefix, method, phase}
    POST reset_failures | reset | clear
    GET  requests
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

from devtools.stripe_emulator.delivery import RetryPolicy, describe
from devtools.stripe_emulator.errors import ApiError
from devtools.stripe_emulator.store import JSON
from devtools.stripe_emulator.wire import Response

if TYPE_CHECKING:
    from devtools.stripe_emulator.emulator import StripeEmulator

PREFIX = "/_emulator/"

# (method, path with the id as "*") -> action(emulator, body, id)
Action = Callable[["StripeEmulator", JSON, str], Any]


def _fail(emu: StripeEmulator, d: JSON) -> None:
    """``{n, status, error_type, path_prefix, method, code, message}``; ``always: true``."""
    if d.pop("always", False):
        d.pop("n", None)
        emu.fail_always(**d)
    else:
        emu.fail_next(**d)


def _event(emu: StripeEmulator, d: JSON) -> JSON:
    """``{"type", "object"}``, or built from current state: ``{"type", "payment_intent"}``
    (``charge.*`` types wrap the intent's charge; ``charge.refunded`` as Stripe sends it
    after ``refund``, by default the latest), ``{"type": "refund.…", "refund"}``; optional
    ``id`` and ``created``."""
    kind, obj = str(d["type"]), d.get("object")
    at = {"event_id": d.get("id"), "created": d.get("created")}
    if obj is None and kind == "charge.refunded":
        return emu.charge_refunded_event(d["payment_intent"], d.get("refund"), **at)
    if obj is None and kind.startswith("refund."):
        return emu.refund_event(kind, d["refund"], **at)
    if obj is None:
        pi_id = d["payment_intent"]
        obj = emu.charge_object(pi_id) if kind.startswith("charge.") else emu.payment_intent(pi_id)
    if d.get("send"):
        return emu.send_event(kind, obj)
    return emu.event(kind, obj, **at)


def _webhook(emu: StripeEmulator, d: JSON) -> JSON:
    retry = d.get("retry")
    policy = RetryPolicy(**retry) if isinstance(retry, dict) else None
    emu.configure_webhook(
        d.get("url"),
        d.get("secret", ""),
        d.get("enabled_events") or ("*",),
        policy,
        connect_url=d.get("connect_url"),
        connect_secret=d.get("connect_secret", ""),
    )
    return describe(emu.delivery.endpoint, emu.delivery.policy, emu.delivery.connect)


ROUTES: dict[tuple[str, str], Action] = {
    ("POST", "payment_intents/*/succeed"): lambda e, d, i: e.succeed_payment_intent(i),
    ("POST", "payment_intents/*/fail"): lambda e, d, i: e.fail_payment_intent(i, **d),
    ("POST", "payment_intents/*/refund"): lambda e, d, i: e.refund_payment_intent(
        i, d.get("amount")
    ),
    ("GET", "payment_intents/*"): lambda e, d, i: e.payment_intent(i),
    ("GET", "payment_intents/*/charge"): lambda e, d, i: e.charge_object(i),
    ("GET", "payment_intents/*/refunds"): lambda e, d, i: e.refunds_of(i),
    ("GET", "payment_intents/*/transfer"): lambda e, d, i: e.transfer(i),
    ("GET", "payment_intents/*/application_fee"): lambda e, d, i: e.application_fee(i),
    ("GET", "refunds/*"): lambda e, d, i: e.refund(i),
    ("POST", "refunds/*/fail"): lambda e, d, i: e.fail_refund(i, **d),
    ("POST", "fail_next_refunds"): lambda e, d, i: e.fail_next_refunds(**d),
    ("POST", "pend_next_refunds"): lambda e, d, i: e.pend_next_refunds(**d),
    ("POST", "settle_refunds"): lambda e, d, i: e.settle_refunds(),
    ("GET", "emitted_events"): lambda e, d, i: e.emitted_events(),
    ("POST", "accounts/*"): lambda e, d, i: e.set_account(i, **d),
    ("GET", "accounts/*"): lambda e, d, i: e.account(i),
    ("GET", "account_links/*"): lambda e, d, i: e.account_link(i),
    ("POST", "account_links/*/complete"): lambda e, d, i: e.complete_onboarding(i),
    ("POST", "account_links/*/expire"): lambda e, d, i: e.expire_account_link(i),
    ("POST", "events"): lambda e, d, i: _event(e, d),
    ("GET", "events"): lambda e, d, i: e.logged_events(d.get("related_to")),
    ("POST", "events/*/resend"): lambda e, d, i: e.resend_event(i),
    ("GET", "webhook"): lambda e, d, i: describe(
        e.delivery.endpoint, e.delivery.policy, e.delivery.connect
    ),
    ("POST", "webhook"): lambda e, d, i: _webhook(e, d),
    ("GET", "deliveries"): lambda e, d, i: [
        a.to_json() for a in e.deliveries(d.get("related_to"), d.get("event_id"))
    ],
    ("POST", "wait_for_deliveries"): lambda e, d, i: {
        "idle": e.wait_for_deliveries(float(d.get("timeout", 10)))
    },
    ("POST", "latency"): lambda e, d, i: setattr(e, "latency_ms", float(d["ms"])),
    ("POST", "fail_next"): lambda e, d, i: _fail(e, d),
    ("POST", "delay_next"): lambda e, d, i: e.delay_next(**d),
    ("POST", "reset_failures"): lambda e, d, i: e.reset_failures(),
    ("POST", "reset"): lambda e, d, i: e.reset(),
    ("POST", "clear"): lambda e, d, i: e.clear(),
    ("GET", "requests"): lambda e, d, i: [r.to_dict() for r in e.requests],
}


def handle(
    emulator: StripeEmulator, method: str, path: str, body: str, query: str = ""
) -> Response:
    parts = path.removeprefix(PREFIX).strip("/").split("/")
    obj_id = parts[1] if len(parts) > 1 else ""
    route = "/".join("*" if n == 1 else part for n, part in enumerate(parts))
    action = ROUTES.get((method, route))
    if action is None:
        return Response(404, {"error": f"no control route {method} {path}"})
    try:
        args = dict(parse_qsl(query)) if method == "GET" else json.loads(body or "{}")
        result = action(emulator, args, obj_id)
        return Response(200, {"ok": True} if result is None else result)
    except ApiError as e:
        return Response(e.status, e.body())
    except (ValueError, TypeError, KeyError) as e:
        return Response(400, {"error": f"{type(e).__name__}: {e}"})

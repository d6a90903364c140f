"""Stripe Event objects: what a state change emits, the event log (``GET /v1/events``) and
what a webhook endpoint receives.

A handler that changes an object calls ``emit(store, type, obj)``: the event goes into the
log and the store's outbox, which the emulator hands to its webhook delivery
(``delivery.py``) once the request is answered. ``event()`` alone builds one without
emitting it (tests sign such payloads themselves:
``stripe.WebhookSignature.generate_signature_header``).
"""

from __future__ import annotations

import copy

from stripe import params as sp

from devtools.stripe_emulator.errors import missing
from devtools.stripe_emulator.params import parse_int
from devtools.stripe_emulator.routing import route
from devtools.stripe_emulator.store import JSON, Store, new_id, now
from devtools.stripe_emulator.wire import API_VERSION, RecordedRequest

# Events kept in the log (Stripe keeps 30 days); older ones are forgotten.
LOG_SIZE = 1000
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
    account: str | None = None,
) -> JSON:
    """A complete Stripe Event wrapping ``obj``. ``previous_attributes`` (the changed
    fields' values before the change) appear in ``data`` only when given, as at Stripe;
    ``request`` is the API request that caused the event (``{id, idempotency_key}``);
    ``account`` the connected account it happened on (a Connect event), else absent."""
    data: JSON = {"object": obj}
    if previous_attributes is not None:
        data["previous_attributes"] = previous_attributes
    made: JSON = {
        "id": event_id or new_id("evt_"), "object": "event", "api_version": API_VERSION,
        "created": now() if created is None else created, "data": data,
        "livemode": False, "pending_webhooks": 1, "request": dict(request or AUTOMATIC),
        "type": type,
    }  # fmt: skip
    if account is not None:
        made["account"] = account
    return made


def emit(
    store: Store,
    type: str,
    obj: JSON,
    *,
    previous_attributes: JSON | None = None,
    request: JSON | None = None,
    account: str | None = None,
) -> JSON:
    """The event Stripe sends for a change that just happened (``obj`` as it is now):
    kept in the log and queued for webhook delivery (``account``: see ``event``)."""
    made = event(
        type,
        copy.deepcopy(obj),
        previous_attributes=previous_attributes,
        request=request,
        account=account,
    )
    store.events[made["id"]] = made
    while len(store.events) > LOG_SIZE:
        del store.events[next(iter(store.events))]
    store.outbox.append(made)
    return copy.deepcopy(made)


def api_request(idempotency_key: str | None) -> JSON:
    """``request`` of an event caused by an API request (the Dashboard's too)."""
    return {"id": new_id("req_", 14), "idempotency_key": idempotency_key}


def related_ids(evt: JSON) -> set[str]:
    """Ids an event is about: its object, and the intent and charge that object names
    (so that "the events of pi_…" includes its charges' and refunds')."""
    obj = evt["data"]["object"]
    ids = {obj.get("id")} | {obj.get(k) for k in ("payment_intent", "charge")}
    return {i for i in ids if isinstance(i, str)}


def list_events(store: Store, req: RecordedRequest, _: str) -> JSON:
    limit = parse_int(req.params, "limit", minimum=1) or 10
    wanted = req.params.get("type")
    found = [e for e in reversed(store.events.values()) if wanted in (None, e["type"])]
    return {
        "object": "list", "url": "/v1/events", "has_more": len(found) > limit,
        "data": copy.deepcopy(found[: min(limit, 100)]),
    }  # fmt: skip


def retrieve(store: Store, req: RecordedRequest, evt_id: str) -> JSON:
    if evt_id not in store.events:
        raise missing("event", evt_id)
    return copy.deepcopy(store.events[evt_id])


ROUTES = [
    route("GET", r"/v1/events", list_events, sp.EventListParams),
    route("GET", r"/v1/events/([^/]+)", retrieve, sp.EventRetrieveParams),
]

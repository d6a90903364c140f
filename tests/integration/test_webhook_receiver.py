"""POST /api/webhooks/stripe through the Flask app: signatures checked on the raw body
with Stripe's scheme, events stored once, enqueued after the commit; 5xx when the database
cannot store, 200 when only the broker is down (the inbox sweeper re-enqueues)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest
import stripe
from flask import Flask
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, sessionmaker

from devtools.stripe_emulator import StripeEmulator
from shared.adapters.db import transaction
from shared.adapters.models import EventStatus, StripeEvent
from shared.adapters.runtime import build_resources
from shared.config import Settings
from shared.domain.timeutil import utcnow
from shared.tasks import APPLY_STRIPE_EVENT
from shared.usecases.inbox import MAX_AUTOMATIC_ATTEMPTS, redeliver_stale_events
from tests import support
from tests.fakes.queue import RecordingQueue

PATH = "/api/webhooks/stripe"


def sign(body: str, *, age: int = 0, secret: str = support.WEBHOOK_SECRET) -> str:
    return stripe.WebhookSignature.generate_signature_header(
        body, secret, timestamp=int(time.time()) - age
    )


def event_body(emulator: StripeEmulator, type_: str = "payment_intent.succeeded") -> str:
    obj = {"id": "pi_1Receiver", "object": "payment_intent", "amount": 5000, "metadata": {}}
    return json.dumps(emulator.event(type_, obj))


def stored(sessions: sessionmaker[Session]) -> list[StripeEvent]:
    with transaction(sessions) as session:
        return list(session.scalars(select(StripeEvent).order_by(StripeEvent.received_at)))


@pytest.fixture
def queue() -> RecordingQueue:
    return RecordingQueue()


@pytest.fixture
def app(make_app: Callable[..., Flask], queue: RecordingQueue) -> Flask:
    return make_app(queue=queue)


def test_a_signed_event_is_stored_enqueued_and_acknowledged(
    app: Flask, queue: RecordingQueue, sessions: sessionmaker[Session], stripe_emulator: Any
) -> None:
    # Signed bytes as sent, whitespace and non-ASCII included: never re-serialised.
    payload = json.loads(event_body(stripe_emulator))
    payload["data"]["object"]["description"] = "Tätowierung – 刺青"
    body = json.dumps(payload, indent=2, ensure_ascii=False)

    response = app.test_client().post(
        PATH,
        data=body.encode(),
        headers={"Stripe-Signature": sign(body), "Content-Type": "application/json"},
    )

    assert response.status_code == 200
    assert response.json == {"received": True}
    [event] = stored(sessions)
    assert (event.id, event.type, event.status) == (
        payload["id"],
        "payment_intent.succeeded",
        EventStatus.RECEIVED,
    )
    assert event.payload == payload
    assert event.stripe_created == payload["created"]
    assert event.received_at is not None
    assert event.attempts == 0
    assert event.processed_at is None
    assert queue.sent == [(APPLY_STRIPE_EVENT, (payload["id"],))]


def test_a_rotated_secret_header_with_several_signatures_is_accepted(
    app: Flask, queue: RecordingQueue, sessions: sessionmaker[Session], stripe_emulator: Any
) -> None:
    body = event_body(stripe_emulator)
    old = sign(body, secret="whsec_old_secret").split(",")[1]
    response = app.test_client().post(
        PATH, data=body, headers={"Stripe-Signature": f"{sign(body)},{old}"}
    )
    assert response.status_code == 200
    assert len(stored(sessions)) == 1


CONNECT_SECRET = "whsec_test_inkflow_connect"


def test_the_connect_endpoints_secret_is_accepted_once_configured(
    make_app: Callable[..., Flask],
    queue: RecordingQueue,
    sessions: sessionmaker[Session],
    stripe_emulator: Any,
) -> None:
    """Stripe signs the events of connected accounts (account.updated) sent to the Connect
    endpoint with that endpoint's own secret."""
    account = {"id": "acct_1Connect", "object": "account", "charges_enabled": True}
    payload = stripe_emulator.event("account.updated", account) | {"account": "acct_1Connect"}
    body = json.dumps(payload)
    headers = {"Stripe-Signature": sign(body, secret=CONNECT_SECRET)}

    without = make_app(queue=queue).test_client().post(PATH, data=body, headers=headers)
    assert without.status_code == 400
    assert without.json is not None
    assert without.json["error"] == "INVALID_SIGNATURE"
    assert stored(sessions) == []

    both = make_app(queue=queue, stripe_connect_webhook_secret=CONNECT_SECRET).test_client()
    assert both.post(PATH, data=body, headers=headers).status_code == 200
    other = event_body(stripe_emulator)  # the platform's secret still works beside it
    assert both.post(PATH, data=other, headers={"Stripe-Signature": sign(other)}).status_code == 200
    wrong = event_body(stripe_emulator)
    refused = both.post(
        PATH, data=wrong, headers={"Stripe-Signature": sign(wrong, secret="whsec_nobody")}
    )
    assert refused.status_code == 400
    assert [e.id for e in stored(sessions)] == [payload["id"], json.loads(other)["id"]]


@pytest.mark.parametrize(
    "case", ["missing", "wrong secret", "stale (301 s)", "other body", "garbage", "v0 only"]
)
def test_bad_signatures_are_refused_and_nothing_is_stored(
    app: Flask,
    queue: RecordingQueue,
    sessions: sessionmaker[Session],
    stripe_emulator: Any,
    case: str,
) -> None:
    body = event_body(stripe_emulator)
    headers = {
        "missing": {},
        "wrong secret": {"Stripe-Signature": sign(body, secret="whsec_someone_else")},
        "stale (301 s)": {"Stripe-Signature": sign(body, age=301)},
        "other body": {"Stripe-Signature": sign(body.replace("5000", "1"))},
        "garbage": {"Stripe-Signature": "not a signature"},
        "v0 only": {"Stripe-Signature": sign(body).replace("v1=", "v0=")},
    }[case]

    response = app.test_client().post(PATH, data=body, headers=headers)

    assert response.status_code == 400
    assert response.json is not None
    assert response.json["error"] == "INVALID_SIGNATURE"
    assert stored(sessions) == []
    assert queue.sent == []


def test_a_signature_inside_the_tolerance_is_accepted(
    app: Flask, queue: RecordingQueue, sessions: sessionmaker[Session], stripe_emulator: Any
) -> None:
    body = event_body(stripe_emulator)
    response = app.test_client().post(
        PATH, data=body, headers={"Stripe-Signature": sign(body, age=290)}
    )
    assert response.status_code == 200
    assert len(stored(sessions)) == 1


def test_a_signed_body_that_is_not_an_event_is_a_validation_error(
    app: Flask, queue: RecordingQueue, sessions: sessionmaker[Session]
) -> None:
    for body in ('{"object": "event"}', "[1, 2]", "not json"):
        response = app.test_client().post(PATH, data=body, headers={"Stripe-Signature": sign(body)})
        assert response.status_code == 400, body
        assert response.json is not None
        assert response.json["error"] == "VALIDATION_ERROR"
    assert stored(sessions) == []
    assert queue.sent == []


def test_duplicate_deliveries_are_stored_and_enqueued_once(
    app: Flask, queue: RecordingQueue, sessions: sessionmaker[Session], stripe_emulator: Any
) -> None:
    body = event_body(stripe_emulator)

    def deliver(_: int) -> int:
        # Stripe signs every delivery anew.
        response = app.test_client().post(PATH, data=body, headers={"Stripe-Signature": sign(body)})
        return response.status_code

    with ThreadPoolExecutor(max_workers=4) as pool:
        statuses = list(pool.map(deliver, range(4)))
    statuses.append(deliver(4))

    assert statuses == [200] * 5
    [event] = stored(sessions)
    assert queue.sent == [(APPLY_STRIPE_EVENT, (event.id,))]


def test_the_database_down_is_a_5xx_so_that_stripe_retries(
    make_app: Callable[..., Flask], stripe_emulator: Any
) -> None:
    closed = support.free_port()
    queue = RecordingQueue()
    app = make_app(
        database_url=f"postgresql+psycopg://postgres@127.0.0.1:{closed}/inkflow", queue=queue
    )
    body = event_body(stripe_emulator)

    response = app.test_client().post(PATH, data=body, headers={"Stripe-Signature": sign(body)})

    # A database that does not answer is momentary: 503 with Retry-After, never 2xx.
    assert response.status_code == 503
    assert response.json is not None
    assert response.json["error"] == "SERVICE_UNAVAILABLE"
    assert int(response.headers["Retry-After"]) > 0
    assert "SELECT" not in response.text
    assert "INSERT" not in response.text
    assert queue.sent == []


def test_the_broker_down_still_answers_200_fast_and_the_sweeper_enqueues_later(
    make_app: Callable[..., Flask],
    settings: Settings,
    sessions: sessionmaker[Session],
    stripe_emulator: Any,
) -> None:
    closed = support.free_port()
    app = make_app(celery_broker_url=f"redis://127.0.0.1:{closed}/0")
    body = event_body(stripe_emulator)

    began = time.monotonic()
    response = app.test_client().post(PATH, data=body, headers={"Stripe-Signature": sign(body)})
    elapsed = time.monotonic() - began

    assert response.status_code == 200
    assert elapsed < 1.0, f"the receiver waited {elapsed:.2f} s on a broker that is down"
    [event] = stored(sessions)
    assert event.status == EventStatus.RECEIVED

    # The inbox sweeper (a beat task) re-enqueues it once it is older than the delay.
    resources = build_resources(settings, pool_size=1)
    try:
        delay = timedelta(seconds=settings.inbox_redelivery_seconds)
        assert not redeliver_stale_events(resources, now=utcnow())
        later = utcnow() + delay + timedelta(seconds=1)
        again = redeliver_stale_events(resources, now=later)
    finally:
        resources.close()
    assert again.tasks == ((APPLY_STRIPE_EVENT, (event.id,)),)


def test_the_sweeper_skips_applied_events_and_those_left_to_the_operator(
    app: Flask, queue: RecordingQueue, settings: Settings, sessions: sessionmaker[Session],
    stripe_emulator: Any,
) -> None:  # fmt: skip
    ids = []
    for _ in range(4):
        body = event_body(stripe_emulator)
        assert app.test_client().post(
            PATH, data=body, headers={"Stripe-Signature": sign(body)}
        ).status_code == 200  # fmt: skip
        ids.append(json.loads(body)["id"])
    received, failed, processed, exhausted = ids
    with transaction(sessions) as session:
        for event_id, values in [
            (failed, {"status": EventStatus.FAILED, "attempts": 2}),
            (processed, {"status": EventStatus.PROCESSED, "attempts": 1}),
            (exhausted, {"status": EventStatus.FAILED, "attempts": MAX_AUTOMATIC_ATTEMPTS}),
        ]:
            session.execute(update(StripeEvent).where(StripeEvent.id == event_id).values(**values))
        assert session.scalar(select(func.count()).select_from(StripeEvent)) == 4

    resources = build_resources(replace(settings, inbox_redelivery_seconds=1), pool_size=1)
    try:
        later = utcnow() + timedelta(seconds=5)
        again = redeliver_stale_events(resources, now=later)
        # A second sweep within the delay adds no copy: the first may only be waiting in a
        # backlog (each sweep re-enqueuing every stale event filled the queue under load).
        twice = redeliver_stale_events(resources, now=later + timedelta(seconds=1))
    finally:
        resources.close()
    assert sorted(args[0] for _, args in again.tasks) == sorted([received, failed])
    assert twice.tasks == ()

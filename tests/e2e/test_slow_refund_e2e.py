"""No Stripe call inside a database transaction, end to end: a late payment whose slot
was taken is refunded while Stripe takes 7 s to answer, and meanwhile a client books
another slot of the same artist through the API.

When the refund was made inside the event's transaction, the worker held the artist's
advisory lock for those 7 s, the booking waited for it and failed after `lock_timeout`
(5 s) with a 500. Now the decision is committed first and the refund runs afterwards:
the booking answers 201 at once and the refund still happens, once.

Everything is a real process or socket: gunicorn, a Celery worker subprocess (with a
Stripe timeout longer than the delay, so that the slow answer is not a timeout), the
Stripe emulator, PostgreSQL, Redis.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis
import stripe
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from devtools import commands
from devtools.processes import Child
from devtools.stripe_emulator import StripeEmulator
from shared.adapters.db import transaction
from shared.adapters.models import Booking, BookingStatus, StripeTransaction
from tests import support
from tests.e2e.conftest import LiveServer
from tests.factories import World, make_world

JSON = dict[str, Any]
REFUND_DELAY_SECONDS = 7.0


@pytest.fixture(scope="module")
def own_queue() -> Iterator[str]:
    """A broker queue for this module's server and worker only: no other worker (with
    another Stripe timeout) may pick up these tasks."""
    name = f"inkflow-test-slow-{uuid.uuid4().hex[:8]}"
    yield name
    client = redis.Redis.from_url(support.TEST_REDIS_URL)
    client.delete(name, *client.keys(f"*{name}*"))
    client.close()


@pytest.fixture(scope="module")
def server(start_server: Callable[..., LiveServer], own_queue: str) -> LiveServer:
    return start_server(workers=2, CELERY_QUEUE=own_queue)


@pytest.fixture(scope="module")
def slow_stripe_worker(e2e_env: dict[str, str], own_queue: str, log_dir: Path) -> Iterator[Child]:
    env = {**e2e_env, "CELERY_QUEUE": own_queue, "STRIPE_TIMEOUT_SECONDS": "15"}
    args = ["worker", "-Q", own_queue, "--concurrency=1", "--pool=prefork"]
    args += ["--without-mingle", "--without-gossip", "--loglevel=INFO"]
    worker = support.start_child("celery-worker", commands.celery(*args), env, log_dir)
    try:
        worker.wait_ready(lambda: worker.printed("ready."), timeout=30)
        yield worker
    finally:
        worker.stop(timeout=15)


def book(server: LiveServer, world: World, start: datetime, client_id: str) -> Any:
    return server.post(
        "/api/bookings/create",
        json={
            "clientId": client_id,
            "artistId": world.artist_id,
            "serviceId": world.service_id,
            "startTime": start.isoformat(),
        },
    )


def signed_post(server: LiveServer, payload: JSON) -> Any:
    body = json.dumps(payload)
    header = stripe.WebhookSignature.generate_signature_header(body, support.WEBHOOK_SECRET)
    return server.post(
        "/api/webhooks/stripe",
        data=body,
        headers={"Stripe-Signature": header, "Content-Type": "application/json"},
    )


def refunds_in_ledger(sessions: sessionmaker[Session], booking_id: str) -> list[int]:
    with transaction(sessions) as session:
        return list(
            session.scalars(
                select(StripeTransaction.amount_minor).where(
                    StripeTransaction.booking_id == uuid.UUID(booking_id),
                    StripeTransaction.kind == "REFUND",
                )
            )
        )


def status_of(sessions: sessionmaker[Session], booking_id: str) -> str:
    with transaction(sessions) as session:
        status = session.scalar(select(Booking.status).where(Booking.id == uuid.UUID(booking_id)))
        assert status is not None
        return status


def test_a_slow_late_refund_never_blocks_booking_another_slot_of_the_artist(
    server: LiveServer,
    slow_stripe_worker: Child,
    stripe_emulator: StripeEmulator,
    sessions: sessionmaker[Session],
) -> None:
    world = make_world(sessions)
    taker_client = make_world(sessions).client_id
    other_client = make_world(sessions).client_id
    day = datetime.now(UTC).date() + timedelta(days=9)
    start = datetime(day.year, day.month, day.day, 11, tzinfo=UTC)

    # The client pays after the hold ran out (the sweeper marked it EXPIRED), and someone
    # else holds the slot by then: the payment must be refunded in full.
    first = book(server, world, start, world.client_id)
    assert first.status_code == 201, first.text
    late = first.json()["booking"]
    paid = stripe_emulator.succeed_payment_intent(late["paymentIntentId"])
    with transaction(sessions) as session:
        session.execute(
            update(Booking)
            .where(Booking.id == uuid.UUID(late["id"]))
            .values(status=BookingStatus.EXPIRED, expired_at=datetime.now(UTC))
        )
    taker = book(server, world, start, taker_client)
    assert taker.status_code == 201, taker.text

    def refund_calls() -> int:
        return len(
            [
                r
                for r in stripe_emulator.requests_to("/v1/refunds", "POST")
                if r.params.get("payment_intent") == paid["id"]
            ]
        )

    stripe_emulator.delay_next(REFUND_DELAY_SECONDS, path_prefix="/v1/refunds", phase="before")
    try:
        payload = stripe_emulator.event("payment_intent.succeeded", paid)
        assert signed_post(server, payload).status_code == 200
        # The worker is now waiting on Stripe for the refund.
        assert support.wait_until(lambda: refund_calls() == 1, timeout=20), (
            slow_stripe_worker.output()
        )

        began = time.monotonic()
        other = book(server, world, start + timedelta(hours=2), other_client)
        elapsed = time.monotonic() - began

        assert other.status_code == 201, other.text
        assert elapsed < 2.0, f"booking another slot waited {elapsed:.1f} s for the refund"

        # The refund still happens, once.
        assert support.wait_until(
            lambda: refunds_in_ledger(sessions, late["id"]) == [5000], timeout=30
        ), slow_stripe_worker.output()
    finally:
        stripe_emulator.reset_failures()
    refunds = stripe_emulator.refunds_of(paid["id"])
    assert [r["amount"] for r in refunds] == [5000]
    assert refunds_in_ledger(sessions, late["id"]) == [5000]
    assert status_of(sessions, late["id"]) == BookingStatus.EXPIRED
    assert status_of(sessions, taker.json()["booking"]["id"]) == BookingStatus.PENDING_PAYMENT
    assert status_of(sessions, other.json()["booking"]["id"]) == BookingStatus.PENDING_PAYMENT

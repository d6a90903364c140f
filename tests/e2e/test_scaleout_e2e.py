"""More than one machine's worth: two API instances (two gunicorns, each its own
processes and pools) and two Celery workers against one PostgreSQL and one Redis, as a
scaled-out deployment runs. The guarantees must not depend on there being one of each:

- one slot requested 300 times at once, half through each instance: exactly one
  booking, every other answer a 409 (SLOT_TAKEN on the lock, or SLOT_UNAVAILABLE
  ALREADY_BOOKED once the winner committed), none slower than the HTTP timeout;
- overlapping starts (11:00, 11:30, 12:00 for a 60-minute service) on both instances:
  no two live bookings overlap (a SQL self-join, not the application's word);
- each payment event delivered to both instances, twice, concurrently: applied once
  (PROCESSED after 1 attempt, one ledger row, two outbox rows, two e-mails).

The verdicts come from the database and the SMTP sink. Bounded: a few seconds each.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
import stripe
from sqlalchemy import func, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from devtools.stripe_emulator import StripeEmulator
from shared.adapters.db import transaction
from shared.adapters.models import Notification, StripeEvent, StripeTransaction
from tests import support
from tests.e2e.conftest import LiveServer
from tests.e2e.load import Outcome, _post, live_bookings, overlapping_pairs, tally
from tests.e2e.test_webhooks_e2e import Worker, addresses, mails_to, wait_status
from tests.factories import World, make_world
from tests.fakes.smtp_sink import SmtpSink

SAME_SLOT_REQUESTS = 300
EVENTS = 8
LOSERS = {"SLOT_TAKEN", "SLOT_UNAVAILABLE"}


@pytest.fixture(scope="module")
def instances(start_server: Callable[..., LiveServer]) -> list[LiveServer]:
    """Two API instances, 2 processes each (gthread, the default threads)."""
    return [start_server(workers=2), start_server(workers=2)]


@pytest.fixture(scope="module")
def workers(
    e2e_env: dict[str, str], celery_queue_name: str, log_dir: Path
) -> Iterator[list[Worker]]:
    """Two Celery workers on the one queue (two machines' worth)."""
    started = [Worker(e2e_env, celery_queue_name, log_dir).start(concurrency=2) for _ in range(2)]
    yield started
    for worker in started:
        worker.stop()


def _fire(urls: list[str], bodies: list[dict[str, str]]) -> list[Outcome]:
    """One thread per body, alternating instances, all released by one barrier."""
    barrier = threading.Barrier(len(bodies))
    outcomes: list[Outcome | None] = [None] * len(bodies)

    def shoot(i: int) -> None:
        with requests.Session() as http:
            barrier.wait(timeout=60)
            outcomes[i] = _post(http, urls[i % len(urls)], bodies[i])

    threads = [threading.Thread(target=shoot, args=(i,)) for i in range(len(bodies))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(90)
    return [o for o in outcomes if o is not None]


def _body(world: World, start: datetime) -> dict[str, str]:
    return world.booking(start)


def _day(days: int) -> datetime:
    day = datetime.now(UTC).date() + timedelta(days=days)
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def test_one_slot_asked_300_times_over_two_instances_has_one_winner(
    sessions: sessionmaker[Session], engine: Engine, instances: list[LiveServer]
) -> None:
    world = make_world(sessions)
    for server in instances:  # every process of both instances warm (imports, pools)
        for _ in range(4):
            assert server.get("/readyz").status_code == 200
    start = _day(5) + timedelta(hours=10)  # 11:00 or 12:00 in Paris
    outcomes = _fire([s.url for s in instances], [_body(world, start)] * SAME_SLOT_REQUESTS)
    counts = tally(outcomes)
    assert len(outcomes) == SAME_SLOT_REQUESTS
    assert counts.get("201") == 1, counts
    assert set(counts) - {"201"} <= LOSERS, counts
    late = [o for o in outcomes if o.error == "SLOT_UNAVAILABLE"]
    assert all(o.reason == "ALREADY_BOOKED" for o in late), [o.payload for o in late[:3]]
    live = live_bookings(engine, [world.artist_id])
    assert [b["start_time"] for b in live] == [start]
    print(f"\n{SAME_SLOT_REQUESTS} requests over 2 instances: {counts}")


def test_overlapping_starts_on_two_instances_never_overlap(
    sessions: sessionmaker[Session], engine: Engine, instances: list[LiveServer]
) -> None:
    world = make_world(sessions)
    base = _day(6) + timedelta(hours=9)  # 10:00 or 11:00 in Paris
    starts = [base, base + timedelta(minutes=30), base + timedelta(hours=1)]
    bodies = [_body(world, starts[i % 3]) for i in range(60)]
    outcomes = _fire([s.url for s in instances], bodies)
    counts = tally(outcomes)
    assert set(counts) - {"201"} <= LOSERS, counts
    assert 1 <= counts.get("201", 0) <= 2, counts  # 10:00 + 11:00, or 10:30 alone
    assert overlapping_pairs(engine, [world.artist_id], with_buffer=False) == []
    assert len(live_bookings(engine, [world.artist_id])) == counts["201"]


def _signed(payload: dict[str, Any]) -> tuple[str, dict[str, str]]:
    body = json.dumps(payload)
    header = stripe.WebhookSignature.generate_signature_header(body, support.WEBHOOK_SECRET)
    return body, {"Stripe-Signature": header, "Content-Type": "application/json"}


def test_events_delivered_to_both_instances_are_applied_once(
    sessions: sessionmaker[Session],
    instances: list[LiveServer],
    workers: list[Worker],
    stripe_emulator: StripeEmulator,
    smtp_sink: SmtpSink,
) -> None:
    world = make_world(sessions)
    client_email, artist_email = addresses(sessions, world)
    bookings = []
    for i in range(EVENTS):
        start = _day(8 + i // 7) + timedelta(hours=9 + i % 7)  # 10:00-16:00 in Paris
        response = instances[i % 2].post("/api/bookings/create", json=_body(world, start))
        assert response.status_code == 201, response.text
        bookings.append(response.json()["booking"])
    deliveries = []
    event_ids = []
    for booking in bookings:
        paid = stripe_emulator.succeed_payment_intent(booking["paymentIntentId"])
        event = stripe_emulator.event("payment_intent.succeeded", paid)
        event_ids.append(event["id"])
        body, headers = _signed(event)
        # Twice to each instance, all four at once.
        deliveries += [(server, body, headers) for server in instances * 2]
    barrier = threading.Barrier(len(deliveries))
    answers: list[int] = []

    def deliver(server: LiveServer, body: str, headers: dict[str, str]) -> None:
        with requests.Session() as http:
            barrier.wait(timeout=60)
            answer = http.post(server.url + "/api/webhooks/stripe", data=body, headers=headers)
            answers.append(answer.status_code)

    threads = [threading.Thread(target=deliver, args=d) for d in deliveries]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert answers == [200] * len(deliveries)
    for booking in bookings:
        wait_status(instances[0], booking["id"], "CONFIRMED", timeout=30)
    ids = [uuid.UUID(b["id"]) for b in bookings]
    # The mails are sent after the confirmations (lower priority): wait for them too.
    assert support.wait_until(
        lambda: (
            len(mails_to(smtp_sink, client_email)) >= EVENTS
            and len(mails_to(smtp_sink, artist_email)) >= EVENTS
        ),
        timeout=30,
    ), (len(mails_to(smtp_sink, client_email)), len(mails_to(smtp_sink, artist_email)))
    with transaction(sessions) as session:
        events = session.execute(
            select(StripeEvent.status, StripeEvent.attempts).where(StripeEvent.id.in_(event_ids))
        ).all()
        payments = session.execute(
            select(StripeTransaction.booking_id, func.count())
            .where(StripeTransaction.booking_id.in_(ids), StripeTransaction.kind == "PAYMENT")
            .group_by(StripeTransaction.booking_id)
        ).all()
        notes = session.execute(
            select(Notification.booking_id, func.count())
            .where(Notification.booking_id.in_(ids))
            .group_by(Notification.booking_id)
        ).all()
    assert sorted(events) == [("PROCESSED", 1)] * EVENTS
    assert sorted(n for _, n in payments) == [1] * EVENTS
    assert sorted(n for _, n in notes) == [2] * EVENTS
    assert len(mails_to(smtp_sink, client_email)) == EVENTS
    assert len(mails_to(smtp_sink, artist_email)) == EVENTS

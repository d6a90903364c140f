"""Refunds end to end, every part a real process or socket: gunicorn, a Celery worker
subprocess (Stripe timeout 1 s, retries with the task's own backoff), the Stripe emulator,
PostgreSQL, Redis, the SMTP sink.

- A refund failing at Stripe — 500 twice, or answered too late once (Stripe made it, the
  answer was lost) — is retried by the worker's task with one idempotency key: one refund
  at Stripe, one ledger row, one e-mail; Stripe's events about it, delivered twice, add
  nothing.
- Refunds made in Stripe's Dashboard, reported by signed charge.refunded webhooks (the
  running total only): the worker lists them from Stripe, records each once and e-mails
  the client once per refund; the booking stays CONFIRMED.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from devtools import commands
from devtools.processes import Child
from devtools.stripe_emulator import StripeEmulator
from shared.adapters.db import transaction
from shared.adapters.models import Booking, DepositStatus, Refund, RefundReason, RefundStatus
from shared.adapters.payments import refund_idempotency_key
from shared.config import Settings
from tests import support
from tests.e2e.conftest import LiveServer
from tests.e2e.test_webhooks_e2e import (
    addresses,
    book,
    expire_now,
    in_days,
    ledger,
    mails_to,
    signed_post,
    wait_mails,
    wait_refund,
)
from tests.factories import World, make_world
from tests.fakes.smtp_sink import SmtpSink

JSON = dict[str, Any]


@pytest.fixture(scope="module")
def own_queue() -> Iterator[str]:
    """This module's server and worker only: no other worker (another Stripe timeout)
    takes these tasks."""
    name = f"inkflow-test-refunds-{uuid.uuid4().hex[:8]}"
    yield name
    client = redis.Redis.from_url(support.TEST_REDIS_URL)
    client.delete(name, *client.keys(f"*{name}*"))
    client.close()


@pytest.fixture(scope="module")
def env(e2e_env: dict[str, str], own_queue: str) -> dict[str, str]:
    return {**e2e_env, "CELERY_QUEUE": own_queue, "STRIPE_TIMEOUT_SECONDS": "1"}


@pytest.fixture(scope="module")
def server(start_server: Callable[..., LiveServer], env: dict[str, str]) -> LiveServer:
    return start_server(workers=2, **env)


@pytest.fixture(scope="module")
def worker(env: dict[str, str], own_queue: str, log_dir: Path) -> Iterator[Child]:
    args = ["worker", "-Q", own_queue, "--concurrency=1", "--pool=prefork"]
    args += ["--without-mingle", "--without-gossip", "--loglevel=INFO"]
    child = support.start_child("celery-worker", commands.celery(*args), env, log_dir)
    try:
        child.wait_ready(lambda: child.printed("ready."), timeout=30)
        yield child
    finally:
        child.stop(timeout=15)


def booking_row(sessions: sessionmaker[Session], booking_id: str) -> Booking:
    with transaction(sessions) as session:
        found = session.get(Booking, uuid.UUID(booking_id))
        assert found is not None
        return found


def deliver_all(server: LiveServer, payloads: list[JSON]) -> None:
    for payload in payloads:
        assert signed_post(server, payload).status_code == 200


@pytest.mark.parametrize("failure", ["500 twice", "answer lost once"])
def test_a_refund_failing_at_stripe_and_succeeding_on_retry_is_made_once(
    server: LiveServer,
    worker: Child,
    env: dict[str, str],
    stripe_emulator: StripeEmulator,
    smtp_sink: SmtpSink,
    sessions: sessionmaker[Session],
    failure: str,
) -> None:
    # A late payment whose slot was taken meanwhile: its refund is owed, made by a task.
    world = make_world(sessions)
    start = in_days(11 if failure == "500 twice" else 12)
    late = book(server, world, start)
    paid = stripe_emulator.succeed_payment_intent(late["paymentIntentId"])
    expire_now(Settings.from_env(env), sessions, late["id"])
    book(server, world, start, client_id=make_world(sessions).client_id)
    client_mail, _ = addresses(sessions, world)
    key = refund_idempotency_key(uuid.UUID(late["id"]), RefundReason.LATE_PAYMENT)

    def attempts() -> list[Any]:
        return [
            r
            for r in stripe_emulator.requests_to("/v1/refunds", "POST")
            if r.idempotency_key == key
        ]

    retries_before = worker.full_output().count("Retry in")
    if failure == "500 twice":
        stripe_emulator.fail_next(2, status=500, path_prefix="/v1/refunds", method="POST")
    else:  # processed, answered after the worker's 1 s timeout
        stripe_emulator.delay_next(2.0, path_prefix="/v1/refunds", method="POST")
    try:
        assert signed_post(server, stripe_emulator.event("payment_intent.succeeded", paid)).ok
        row = wait_refund(sessions, late["id"], RefundStatus.SUCCEEDED, timeout=40)
    finally:
        stripe_emulator.reset_failures()

    expected = [(500, False), (500, False), (200, False)]
    if failure == "answer lost once":
        expected = [(200, False), (200, True)]  # the second answer is Stripe's stored one
    assert [(r.status, r.replayed) for r in attempts()] == expected, worker.output()
    assert row.attempts == len(expected)
    made = stripe_emulator.refunds_of(paid["id"])
    assert [(r["status"], r["amount"]) for r in made] == [("succeeded", 5000)]
    transfer = stripe_emulator.transfer(paid["id"])
    assert transfer is not None
    assert transfer["amount_reversed"] == 5000
    # Retried by the task itself (Celery's autoretry with backoff), not by the sweeper.
    assert worker.full_output().count("Retry in") - retries_before == len(expected) - 1

    # Stripe's own reports of it (sent once the refund was made), delivered twice.
    deliver_all(
        server, stripe_emulator.emitted_events(payment_intent=paid["id"], about_refunds=True) * 2
    )
    wait_mails(smtp_sink, {client_mail: 2})  # hold expired, then one refund e-mail
    assert mails_to(smtp_sink, client_mail)[-1].subject == (
        "Your deposit of 50.00 EUR has been refunded"
    )
    assert ledger(sessions, late["id"]) == [
        ("PAYMENT", "SUCCEEDED", 5000),
        ("REFUND", "SUCCEEDED", 5000),
    ]
    after = booking_row(sessions, late["id"])
    assert (after.status, after.deposit_status, after.amount_refunded_minor) == (
        "EXPIRED",
        DepositStatus.REFUNDED,
        5000,
    )
    with transaction(sessions) as session:
        ours = list(session.scalars(select(Refund).where(Refund.booking_id == after.id)))
    assert [(r.status, r.stripe_refund_id) for r in ours] == [
        (RefundStatus.SUCCEEDED, made[0]["id"])
    ]


def test_refunds_made_in_the_dashboard_are_recorded_and_told_once_each(
    server: LiveServer,
    worker: Child,
    stripe_emulator: StripeEmulator,
    smtp_sink: SmtpSink,
    sessions: sessionmaker[Session],
) -> None:
    world: World = make_world(sessions)
    booking = book(server, world, in_days(13))
    paid = stripe_emulator.succeed_payment_intent(booking["paymentIntentId"])
    assert signed_post(server, stripe_emulator.event("payment_intent.succeeded", paid)).ok
    client_mail, artist_mail = addresses(sessions, world)
    wait_mails(smtp_sink, {client_mail: 1, artist_mail: 1})  # the confirmations

    stripe_emulator.refund_payment_intent(paid["id"], 1500)
    deliver_all(
        server, stripe_emulator.emitted_events(payment_intent=paid["id"], about_refunds=True) * 2
    )
    wait_mails(smtp_sink, {client_mail: 2, artist_mail: 1})
    assert mails_to(smtp_sink, client_mail)[-1].subject == (
        "15.00 EUR of your deposit has been refunded"
    )
    assert support.wait_until(
        lambda: booking_row(sessions, booking["id"]).amount_refunded_minor == 1500, timeout=20
    )
    assert booking_row(sessions, booking["id"]).deposit_status == DepositStatus.PARTIALLY_REFUNDED

    stripe_emulator.refund_payment_intent(paid["id"])  # the rest
    deliver_all(
        server, stripe_emulator.emitted_events(payment_intent=paid["id"], about_refunds=True)
    )
    wait_mails(smtp_sink, {client_mail: 3, artist_mail: 1})
    assert mails_to(smtp_sink, client_mail)[-1].subject == (
        "35.00 EUR of your deposit has been refunded"
    )
    assert support.wait_until(
        lambda: booking_row(sessions, booking["id"]).amount_refunded_minor == 5000, timeout=20
    )
    after = booking_row(sessions, booking["id"])
    assert (after.status, after.deposit_status) == ("CONFIRMED", DepositStatus.REFUNDED)
    assert ledger(sessions, booking["id"]) == [
        ("PAYMENT", "SUCCEEDED", 5000),
        ("REFUND", "SUCCEEDED", 1500),
        ("REFUND", "SUCCEEDED", 3500),
    ]
    details = server.get(
        f"/api/admin/bookings/{booking['id']}",
        headers={"Authorization": f"Bearer {support.ADMIN_TOKEN}"},
    ).json()
    assert sorted(t["amount"] for t in details["transactions"] if t["kind"] == "REFUND") == [
        "15.00",
        "35.00",
    ]
    assert [n["kind"] for n in details["notifications"]].count("PAYMENT_REFUNDED") == 2

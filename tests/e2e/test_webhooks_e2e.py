"""Stripe webhooks end to end, every part a real process or a real socket: gunicorn serving
the API, a Celery worker subprocess on a Redis broker, PostgreSQL, the Stripe emulator (the
real SDK over HTTP), an SMTP server on loopback (aiosmtpd). Events are signed here with
Stripe's scheme (`t=…,v1=HMAC-SHA256("t.body")`).

Covered: the seed flow (availability → booking → signed payment_intent.succeeded →
CONFIRMED → two e-mails); one event delivered 5 times, some concurrently; payment_failed
after succeeded; bad and stale signatures; both late-payment branches; the worker killed
with SIGKILL while it makes a refund; the broker down when a webhook arrives. And the
latency figures: receiver p50/p95 and webhook → CONFIRMED p50/p95 over 200 events.

Tests that stop or kill things use a broker of their own (an embedded Valkey), so that
the shared Redis never sees a restored or abandoned message of ours.
"""

from __future__ import annotations

import contextlib
import json
import os
import statistics
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psutil
import pytest
import requests
import stripe
from sqlalchemy import select, text, update
from sqlalchemy.orm import Session, sessionmaker

from devtools import commands
from devtools.embedded import EmbeddedValkey
from devtools.processes import Child, port_is_open
from devtools.stripe_emulator import StripeEmulator
from shared.adapters.db import transaction
from shared.adapters.models import (
    Booking,
    Client,
    EventStatus,
    Notification,
    Refund,
    RefundReason,
    RefundStatus,
    StripeEvent,
    StripeTransaction,
)
from shared.adapters.payments import StripeGateway, refund_idempotency_key
from shared.adapters.queue import CeleryQueue
from shared.adapters.runtime import build_resources
from shared.config import Settings
from shared.tasks import APPLY_STRIPE_EVENT
from shared.usecases.effects import EffectRunner
from shared.usecases.holds import expire_holds
from tests import support
from tests.e2e.conftest import LiveServer
from tests.factories import World, make_world
from tests.fakes.smtp_sink import ReceivedMessage, SmtpSink

JSON = dict[str, Any]
WEBHOOK = "/api/webhooks/stripe"
ADMIN = {"Authorization": f"Bearer {support.ADMIN_TOKEN}"}
# Fixed ports below the ephemeral range (see FIELD-NOTES): a client retrying a stopped
# server's ephemeral port can connect to itself and keep the port from being bound again.
VALKEY_PORTS = range(26391, 26399)
LATENCY_EVENTS = 200
LATENCY_REPORT = support.ROOT / "var" / "bench" / "webhook_latency.json"


# --- processes ------------------------------------------------------------------------------


class Worker:
    """A Celery worker subprocess (optionally with embedded beat) that can be SIGKILLed."""

    def __init__(
        self, env: dict[str, str], queue: str, log_dir: Path, *, beat_schedule: Path | None = None,
        loglevel: str = "INFO",
    ) -> None:  # fmt: skip
        self.env, self.queue, self.log_dir, self.beat_schedule = env, queue, log_dir, beat_schedule
        self.loglevel = loglevel
        self.process: Child | None = None

    def start(self, concurrency: int = 1) -> Worker:
        args = [
            "worker", "-Q", self.queue, f"--concurrency={concurrency}", "--pool=prefork",
            "--without-mingle", "--without-gossip", f"--loglevel={self.loglevel}",
        ]  # fmt: skip
        if self.beat_schedule is not None:
            args += ["--beat", "--schedule", str(self.beat_schedule)]
        process = support.start_child(
            "celery-worker", commands.celery(*args), self.env, self.log_dir
        )
        self.process = process
        process.wait_ready(lambda: process.printed("ready."), timeout=30)
        return self

    def output(self) -> str:
        return self.process.output() if self.process else ""

    def full_log(self) -> str:
        return self.process.full_output() if self.process else ""

    def pool_pids(self) -> list[int]:
        assert self.process is not None
        return [p.pid for p in self.process.family()[1:]]

    def kill(self, *, pool_only: bool) -> None:
        """SIGKILL the pool processes only (the main process survives and notices), or the
        main process first and then its children (nothing gets to react)."""
        assert self.process is not None
        main = psutil.Process(self.process.pid)
        children = main.children(recursive=True)
        if not pool_only:
            main.kill()
            self.process.wait(10)
        for child in children:
            with contextlib.suppress(psutil.NoSuchProcess):
                child.kill()
        psutil.wait_procs(children, timeout=10)
        if not pool_only:
            self.stop()

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop(timeout=15)
            self.process = None


def alive(pid: int) -> bool:
    try:
        return bool(psutil.Process(pid).status() != psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return False


@pytest.fixture(scope="module")
def celery_worker(
    e2e_env: dict[str, str], celery_queue_name: str, log_dir: Path
) -> Iterator[Worker]:
    """One worker process, one task at a time, on the shared Redis and this run's queue.
    At DEBUG: Celery's line per task (with its result, "'already processed'" for a
    duplicate) is DEBUG, and the tests count duplicates by it."""
    worker = Worker(e2e_env, celery_queue_name, log_dir, loglevel="DEBUG").start(concurrency=1)
    yield worker
    worker.stop()


@pytest.fixture(scope="module")
def valkey(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedValkey]:
    """A broker of our own, which tests may stop and start."""
    port = next((p for p in VALKEY_PORTS if not port_is_open(p)), None)
    if port is None:
        pytest.fail(f"no free port for Valkey in {VALKEY_PORTS}")
    server = EmbeddedValkey(tmp_path_factory.mktemp("valkey"), port=port)
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def valkey_env(e2e_env: dict[str, str], valkey: EmbeddedValkey) -> dict[str, str]:
    return {
        **e2e_env,
        "CELERY_BROKER_URL": valkey.url,
        # A task whose worker was killed outright is handed out again by the next worker
        # that starts (kombu restores unacknowledged messages older than this).
        "CELERY_VISIBILITY_TIMEOUT": "1",
        # The inbox sweeper, for workers started with beat.
        "INBOX_SWEEP_SECONDS": "1",
        "INBOX_REDELIVERY_SECONDS": "2",
        "HOLD_SWEEP_SECONDS": "3600",
    }


@pytest.fixture(scope="module")
def valkey_server(
    start_server: Callable[..., LiveServer], valkey_env: dict[str, str]
) -> LiveServer:
    """The API with the Valkey broker."""
    return start_server(workers=2, **valkey_env)


# --- helpers --------------------------------------------------------------------------------


def signed_post(
    server: LiveServer, payload: JSON, *, http: requests.Session | None = None
) -> requests.Response:
    """POST the event as Stripe does: the raw JSON, signed `t=<now>,v1=<HMAC>`."""
    body = json.dumps(payload)
    header = stripe.WebhookSignature.generate_signature_header(body, support.WEBHOOK_SECRET)
    return (http or server.http).post(
        server.url + WEBHOOK,
        data=body,
        headers={"Stripe-Signature": header, "Content-Type": "application/json"},
        timeout=30,
    )


def book(server: LiveServer, world: World, start: datetime, client_id: str | None = None) -> JSON:
    response = server.post(
        "/api/bookings/create",
        json={
            "clientId": client_id or world.client_id,
            "artistId": world.artist_id,
            "serviceId": world.service_id,
            "startTime": start.isoformat(),
        },
    )
    assert response.status_code == 201, response.text
    booking: JSON = response.json()["booking"]
    return booking


def in_days(days: int, hour: int = 11) -> datetime:
    """A slot `days` ahead, at `hour` UTC (inside make_world's Paris working hours)."""
    day = datetime.now(UTC).date() + timedelta(days=days)
    return datetime(day.year, day.month, day.day, hour, tzinfo=UTC)


def status_of(server: LiveServer, booking_id: str) -> str:
    response = server.get(f"/api/bookings/{booking_id}")
    assert response.status_code == 200, response.text
    status: str = response.json()["booking"]["status"]
    return status


def wait_status(server: LiveServer, booking_id: str, status: str, timeout: float = 20) -> None:
    if not support.wait_until(lambda: status_of(server, booking_id) == status, timeout=timeout):
        raise AssertionError(
            f"booking {booking_id} is {status_of(server, booking_id)}, not {status}"
        )


def event_row(sessions: sessionmaker[Session], event_id: str) -> StripeEvent | None:
    with transaction(sessions) as session:
        return session.get(StripeEvent, event_id)


def wait_event(
    sessions: sessionmaker[Session], event_id: str, status: str = "PROCESSED", timeout: float = 20
) -> StripeEvent:
    def done() -> bool:
        row = event_row(sessions, event_id)
        return row is not None and row.status == status

    if not support.wait_until(done, timeout=timeout, interval=0.05):
        raise AssertionError(f"event {event_id} is {event_row(sessions, event_id)!r}")
    row = event_row(sessions, event_id)
    assert row is not None
    return row


def ledger(sessions: sessionmaker[Session], booking_id: str) -> list[tuple[str, str, int]]:
    with transaction(sessions) as session:
        rows = session.scalars(
            select(StripeTransaction).where(StripeTransaction.booking_id == uuid.UUID(booking_id))
        )
        return sorted((t.kind, t.status, t.amount_minor) for t in rows)


def outbox(sessions: sessionmaker[Session], booking_id: str) -> list[tuple[str, str, str]]:
    with transaction(sessions) as session:
        rows = session.scalars(
            select(Notification).where(Notification.booking_id == uuid.UUID(booking_id))
        )
        return sorted((n.kind, n.recipient, n.status) for n in rows)


def addresses(sessions: sessionmaker[Session], world: World) -> tuple[str, str]:
    from shared.adapters.models import Artist

    with transaction(sessions) as session:
        client = session.get(Client, uuid.UUID(world.client_id))
        artist = session.get(Artist, uuid.UUID(world.artist_id))
        assert client is not None
        assert artist is not None
        return client.email, artist.email


def mails_to(sink: SmtpSink, address: str) -> list[ReceivedMessage]:
    return [m for m in sink.messages if address in m.envelope_to]


def wait_mails(sink: SmtpSink, expected: dict[str, int], timeout: float = 20) -> None:
    """Until each address got (at least) its count; then a short grace period in which no
    extra copy may arrive."""

    def arrived() -> bool:
        return all(len(mails_to(sink, a)) >= n for a, n in expected.items())

    assert support.wait_until(arrived, timeout=timeout), {
        a: len(mails_to(sink, a)) for a in expected
    }
    time.sleep(0.5)
    assert {a: len(mails_to(sink, a)) for a in expected} == expected


def wait_log_count(worker: Worker, needle: str, count: int, timeout: float = 20) -> None:
    found = support.wait_until(lambda: worker.full_log().count(needle) >= count, timeout=timeout)
    assert found, worker.output()


def expire_now(settings: Settings, sessions: sessionmaker[Session], booking_id: str) -> None:
    """The hold runs out: backdate it and let the real sweeper expire it (it cannot cancel
    the intent any more, which succeeded meanwhile)."""
    with transaction(sessions) as session:
        session.execute(
            update(Booking)
            .where(Booking.id == uuid.UUID(booking_id))
            .values(expires_at=text("now() - interval '1 second'"))
        )
    resources = build_resources(settings, pool_size=1)
    queue = CeleryQueue(settings)
    try:
        effects = EffectRunner(queue, StripeGateway(settings))
        result = expire_holds(resources, effects, now=datetime.now(UTC))
    finally:
        queue.close()
        resources.close()
    assert result.expired == 1


def refund_row(sessions: sessionmaker[Session], booking_id: str) -> Refund | None:
    with transaction(sessions) as session:
        return session.scalar(select(Refund).where(Refund.booking_id == uuid.UUID(booking_id)))


def wait_refund(
    sessions: sessionmaker[Session], booking_id: str, status: str, timeout: float = 30
) -> Refund:
    def reached() -> bool:
        row = refund_row(sessions, booking_id)
        return row is not None and row.status == status

    if not support.wait_until(reached, timeout=timeout, interval=0.05):
        raise AssertionError(f"refund of {booking_id}: {refund_row(sessions, booking_id)!r}")
    row = refund_row(sessions, booking_id)
    assert row is not None
    return row


@pytest.fixture
def settings_e2e(e2e_env: dict[str, str]) -> Settings:
    return Settings.from_env(e2e_env)


# --- the flows ------------------------------------------------------------------------------


def test_seed_flow_availability_booking_signed_webhook_confirmed_two_emails(
    live_server: LiveServer,
    celery_worker: Worker,
    e2e_env: dict[str, str],
    stripe_emulator: StripeEmulator,
    smtp_sink: SmtpSink,
    sessions: sessionmaker[Session],
) -> None:
    seeded = subprocess.run(
        commands.seed(),
        env=e2e_env,
        cwd=support.ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    ids = json.loads(seeded.stdout)
    now = datetime.now(UTC)
    slots = live_server.post(
        "/api/availability",
        json={
            "artistId": ids["artistId"],
            "serviceId": ids["serviceId"],
            "startDate": (now + timedelta(days=1)).isoformat(),
            "endDate": (now + timedelta(days=8)).isoformat(),
        },
    )
    assert slots.status_code == 200, slots.text
    start = next(s["startTime"] for s in slots.json()["slots"] if s["available"])
    created = live_server.post(
        "/api/bookings/create",
        json={
            "clientId": ids["clientId"],
            "artistId": ids["artistId"],
            "serviceId": ids["serviceId"],
            "startTime": start,
        },
    )
    assert created.status_code == 201, created.text
    booking, intent = created.json()["booking"], created.json()["paymentIntent"]
    assert booking["status"] == "PENDING_PAYMENT"

    client_mail, artist_mail = "demo-client@inkflow.local", "demo-artist@inkflow.local"
    before = {a: len(mails_to(smtp_sink, a)) for a in (client_mail, artist_mail)}
    # The client pays (Stripe.js in the browser); Stripe posts the signed event.
    paid = stripe_emulator.succeed_payment_intent(intent["id"])
    payload = stripe_emulator.event("payment_intent.succeeded", paid)
    response = signed_post(live_server, payload)
    assert response.status_code == 200
    assert response.json() == {"received": True}

    wait_status(live_server, booking["id"], "CONFIRMED")
    wait_mails(smtp_sink, {a: n + 1 for a, n in before.items()})
    [to_client] = mails_to(smtp_sink, client_mail)[before[client_mail] :]
    [to_artist] = mails_to(smtp_sink, artist_mail)[before[artist_mail] :]
    assert "Demo Artist" in (to_client.text or "")
    assert to_client.html is not None
    assert to_client.subject != to_artist.subject

    details = live_server.get(f"/api/admin/bookings/{booking['id']}", headers=ADMIN).json()
    assert details["booking"]["status"] == "CONFIRMED"
    assert details["booking"]["confirmedAt"]
    assert [(t["kind"], t["status"], t["amount"]) for t in details["transactions"]] == [
        ("PAYMENT", "SUCCEEDED", "50.00")
    ]
    assert sorted((n["recipient"], n["status"]) for n in details["notifications"]) == [
        (artist_mail, "SENT"),
        (client_mail, "SENT"),
    ]


def test_one_event_delivered_five_times_some_concurrently_is_applied_once(
    live_server: LiveServer,
    celery_worker: Worker,
    settings_e2e: Settings,
    stripe_emulator: StripeEmulator,
    smtp_sink: SmtpSink,
    sessions: sessionmaker[Session],
) -> None:
    world = make_world(sessions)
    booking = book(live_server, world, in_days(3))
    paid = stripe_emulator.succeed_payment_intent(booking["paymentIntentId"])
    payload = stripe_emulator.event("payment_intent.succeeded", paid)
    duplicates_before = celery_worker.full_log().count("'already processed'")

    # Three deliveries at once (each on its own connection), then two more.
    barrier = threading.Barrier(3)

    def deliver(_: int) -> int:
        with requests.Session() as http:
            barrier.wait()
            return signed_post(live_server, payload, http=http).status_code

    with ThreadPoolExecutor(max_workers=3) as pool:
        statuses = list(pool.map(deliver, range(3)))
    statuses.append(signed_post(live_server, payload).status_code)
    wait_status(live_server, booking["id"], "CONFIRMED")
    statuses.append(signed_post(live_server, payload).status_code)
    assert statuses == [200] * 5

    # Redis may hand a task out twice (acks_late): enqueue the event twice more by hand.
    queue = CeleryQueue(settings_e2e)
    try:
        assert queue.enqueue(APPLY_STRIPE_EVENT, payload["id"])
        assert queue.enqueue(APPLY_STRIPE_EVENT, payload["id"])
    finally:
        queue.close()
    wait_log_count(celery_worker, "'already processed'", duplicates_before + 2)
    client_mail, artist_mail = addresses(sessions, world)
    wait_mails(smtp_sink, {client_mail: 1, artist_mail: 1})

    assert ledger(sessions, booking["id"]) == [("PAYMENT", "SUCCEEDED", 5000)]
    assert outbox(sessions, booking["id"]) == [
        ("BOOKING_CONFIRMED", artist_mail, "SENT"),
        ("BOOKING_CONFIRMED", client_mail, "SENT"),
    ]
    event = event_row(sessions, payload["id"])
    assert event is not None
    assert event.status == EventStatus.PROCESSED
    assert event.attempts == 1


def test_payment_failed_after_succeeded_stays_confirmed(
    live_server: LiveServer,
    celery_worker: Worker,
    stripe_emulator: StripeEmulator,
    smtp_sink: SmtpSink,
    sessions: sessionmaker[Session],
) -> None:
    world = make_world(sessions)
    booking = book(live_server, world, in_days(4))
    failed = stripe_emulator.fail_payment_intent(booking["paymentIntentId"])
    paid = stripe_emulator.succeed_payment_intent(booking["paymentIntentId"])
    succeeded_event = stripe_emulator.event("payment_intent.succeeded", paid)
    failed_event = stripe_emulator.event("payment_intent.payment_failed", failed)

    assert signed_post(live_server, succeeded_event).status_code == 200
    wait_status(live_server, booking["id"], "CONFIRMED")
    assert signed_post(live_server, failed_event).status_code == 200
    wait_event(sessions, failed_event["id"])

    assert status_of(live_server, booking["id"]) == "CONFIRMED"
    assert ledger(sessions, booking["id"]) == [
        ("PAYMENT", "FAILED", 5000),
        ("PAYMENT", "SUCCEEDED", 5000),
    ]
    client_mail, artist_mail = addresses(sessions, world)
    wait_mails(smtp_sink, {client_mail: 1, artist_mail: 1})  # the confirmations only
    assert {kind for kind, _, _ in outbox(sessions, booking["id"])} == {"BOOKING_CONFIRMED"}


@pytest.mark.parametrize("case", ["missing", "wrong", "stale"])
def test_bad_and_stale_signatures_are_refused_and_nothing_is_stored(
    live_server: LiveServer,
    stripe_emulator: StripeEmulator,
    sessions: sessionmaker[Session],
    case: str,
) -> None:
    payload = stripe_emulator.event("payment_intent.succeeded", {"id": "pi_1Nobody"})
    body = json.dumps(payload)
    header = {
        "missing": None,
        "wrong": stripe.WebhookSignature.generate_signature_header(body, "whsec_wrong"),
        "stale": stripe.WebhookSignature.generate_signature_header(
            body, support.WEBHOOK_SECRET, timestamp=int(time.time()) - 301
        ),
    }[case]
    headers = {"Content-Type": "application/json"}
    if header is not None:
        headers["Stripe-Signature"] = header
    response = live_server.post(WEBHOOK, data=body, headers=headers)
    assert response.status_code == 400
    assert response.json()["error"] == "INVALID_SIGNATURE"
    assert event_row(sessions, payload["id"]) is None


@pytest.mark.parametrize("slot", ["still free", "taken"])
def test_late_payment_confirmed_or_refunded(
    live_server: LiveServer,
    celery_worker: Worker,
    settings_e2e: Settings,
    stripe_emulator: StripeEmulator,
    smtp_sink: SmtpSink,
    sessions: sessionmaker[Session],
    slot: str,
) -> None:
    world = make_world(sessions)
    start = in_days(5)
    booking = book(live_server, world, start)
    paid = stripe_emulator.succeed_payment_intent(booking["paymentIntentId"])
    expire_now(settings_e2e, sessions, booking["id"])
    assert status_of(live_server, booking["id"]) == "EXPIRED"
    client_mail, artist_mail = addresses(sessions, world)
    if slot == "taken":
        other = make_world(sessions)
        taker = book(live_server, world, start, client_id=other.client_id)
        assert taker["status"] == "PENDING_PAYMENT"

    payload = stripe_emulator.event("payment_intent.succeeded", paid)
    assert signed_post(live_server, payload).status_code == 200
    wait_event(sessions, payload["id"])

    refunds = stripe_emulator.refunds_of(paid["id"])
    if slot == "still free":
        assert status_of(live_server, booking["id"]) == "CONFIRMED"
        assert ledger(sessions, booking["id"]) == [("PAYMENT", "SUCCEEDED", 5000)]
        assert refunds == []
        # The hold-expired notice (sent by the sweep), then the confirmations.
        wait_mails(smtp_sink, {client_mail: 2, artist_mail: 1})
    else:
        assert status_of(live_server, booking["id"]) == "EXPIRED"
        assert status_of(live_server, taker["id"]) == "PENDING_PAYMENT"
        # The refund is made after the event's commit, by a task of its own.
        wait_refund(sessions, booking["id"], RefundStatus.SUCCEEDED)
        refunds = stripe_emulator.refunds_of(paid["id"])
        [refund] = refunds
        assert refund["amount"] == 5000
        assert refund["transfer_reversal"]
        assert refund["metadata"] == {"bookingId": booking["id"], "reason": "late_payment"}
        assert ledger(sessions, booking["id"]) == [
            ("PAYMENT", "SUCCEEDED", 5000),
            ("REFUND", "SUCCEEDED", 5000),
        ]
        wait_mails(smtp_sink, {client_mail: 2, artist_mail: 0})
        assert "refund" in mails_to(smtp_sink, client_mail)[-1].subject.lower()


# --- crashes and outages --------------------------------------------------------------------


@pytest.mark.parametrize("victim", ["pool process", "whole worker"])
def test_worker_killed_while_making_a_refund_makes_it_once_after_restart(
    valkey_server: LiveServer,
    valkey_env: dict[str, str],
    celery_queue_name: str,
    log_dir: Path,
    stripe_emulator: StripeEmulator,
    smtp_sink: SmtpSink,
    sessions: sessionmaker[Session],
    victim: str,
) -> None:
    """A late payment whose slot was taken: the event's transaction owes the refund and
    commits; a task of its own then asks Stripe. Stripe is slow to answer; the worker is
    SIGKILLed meanwhile (Stripe does refund). After the restart the task runs again: the
    refund's idempotency key (from the booking) makes Stripe answer with the same refund."""
    world = make_world(sessions)
    start = in_days(6)
    booking = book(valkey_server, world, start)
    paid = stripe_emulator.succeed_payment_intent(booking["paymentIntentId"])
    expire_now(Settings.from_env(valkey_env), sessions, booking["id"])
    book(valkey_server, world, start, client_id=make_world(sessions).client_id)
    client_mail, _ = addresses(sessions, world)
    key = refund_idempotency_key(uuid.UUID(booking["id"]), RefundReason.LATE_PAYMENT)

    def refund_calls() -> list[Any]:
        return [r for r in stripe_emulator.requests_to("/v1/refunds") if r.idempotency_key == key]

    worker = Worker(valkey_env, celery_queue_name, log_dir).start(concurrency=1)
    try:
        stripe_emulator.delay_next(4.0, path_prefix="/v1/refunds", phase="before")
        payload = stripe_emulator.event("payment_intent.succeeded", paid)
        assert signed_post(valkey_server, payload).status_code == 200
        assert support.wait_until(lambda: len(refund_calls()) == 1, timeout=20)
        # Decided and committed before Stripe was asked: no transaction waits on it.
        row = event_row(sessions, payload["id"])
        assert row is not None
        assert row.status == EventStatus.PROCESSED
        owed = refund_row(sessions, booking["id"])
        assert owed is not None
        assert owed.status == RefundStatus.PENDING
        pids = worker.pool_pids()
        worker.kill(pool_only=victim == "pool process")
        assert not [pid for pid in pids if alive(pid)]
        if victim == "whole worker":
            worker.start(concurrency=1)
        wait_refund(sessions, booking["id"], RefundStatus.SUCCEEDED)
        wait_mails(smtp_sink, {client_mail: 2})  # hold expired, then refunded
    finally:
        stripe_emulator.reset_failures()
        worker.stop()

    assert status_of(valkey_server, booking["id"]) == "EXPIRED"
    refunds = stripe_emulator.refunds_of(paid["id"])
    assert len(refunds) == 1  # Stripe refunded once
    assert len(refund_calls()) >= 2  # ... although asked again after the restart
    assert ledger(sessions, booking["id"]) == [
        ("PAYMENT", "SUCCEEDED", 5000),
        ("REFUND", "SUCCEEDED", 5000),
    ]
    assert [k for k, _, _ in outbox(sessions, booking["id"]) if k == "PAYMENT_REFUNDED"] == [
        "PAYMENT_REFUNDED"
    ]


def test_broker_down_when_the_webhook_arrives_then_applied_once_it_is_back(
    valkey: EmbeddedValkey,
    valkey_server: LiveServer,
    valkey_env: dict[str, str],
    celery_queue_name: str,
    log_dir: Path,
    tmp_path: Path,
    stripe_emulator: StripeEmulator,
    smtp_sink: SmtpSink,
    sessions: sessionmaker[Session],
) -> None:
    world = make_world(sessions)
    booking = book(valkey_server, world, in_days(7))
    paid = stripe_emulator.succeed_payment_intent(booking["paymentIntentId"])
    payload = stripe_emulator.event("payment_intent.succeeded", paid)
    client_mail, artist_mail = addresses(sessions, world)

    worker = Worker(
        valkey_env, celery_queue_name, log_dir, beat_schedule=tmp_path / "beat-schedule"
    ).start(concurrency=1)
    try:
        valkey.stop()
        began = time.monotonic()
        response = signed_post(valkey_server, payload)
        elapsed = time.monotonic() - began
        assert response.status_code == 200
        assert response.json() == {"received": True}
        assert elapsed < 1.0, f"the receiver waited {elapsed:.2f} s for the broker"
        row = event_row(sessions, payload["id"])
        assert row is not None
        assert row.status == EventStatus.RECEIVED
        time.sleep(1.0)
        assert status_of(valkey_server, booking["id"]) == "PENDING_PAYMENT"

        valkey.start()
        # The inbox sweeper (beat) re-enqueues it; the worker applies it.
        wait_status(valkey_server, booking["id"], "CONFIRMED", timeout=45)
        wait_mails(smtp_sink, {client_mail: 1, artist_mail: 1})
    finally:
        if not valkey.is_running():
            valkey.start()
        worker.stop()
    row = event_row(sessions, payload["id"])
    assert row is not None
    assert row.status == EventStatus.PROCESSED
    assert ledger(sessions, booking["id"]) == [("PAYMENT", "SUCCEEDED", 5000)]


# --- latency --------------------------------------------------------------------------------


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


@pytest.mark.slow
def test_webhook_latency_over_200_events_with_one_worker(
    live_server: LiveServer,
    celery_worker: Worker,
    stripe_emulator: StripeEmulator,
    sessions: sessionmaker[Session],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """200 bookings made through the API, each paid on the emulator and reported with a
    signed payment_intent.succeeded, one at a time (the next is posted once the previous
    booking is CONFIRMED). Receiver latency: the webhook's HTTP round trip. Webhook →
    CONFIRMED: from just before the POST to the booking's confirmedAt (set by the worker,
    same clock)."""
    world = make_world(
        sessions,
        timezone="UTC",
        hours=[(d, 0, 1440) for d in range(7)],
        duration_min=30,
    )
    first = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) + timedelta(days=1)
    starts = [first + timedelta(minutes=30 * i) for i in range(LATENCY_EVENTS)]
    with ThreadPoolExecutor(max_workers=4) as pool:
        bookings = list(pool.map(lambda s: book(live_server, world, s), starts))
    payloads = [
        stripe_emulator.event(
            "payment_intent.succeeded", stripe_emulator.succeed_payment_intent(b["paymentIntentId"])
        )
        for b in bookings
    ]

    def confirmed_at(booking_id: str) -> datetime | None:
        with transaction(sessions) as session:
            return session.scalar(
                select(Booking.confirmed_at).where(Booking.id == uuid.UUID(booking_id))
            )

    receiver_ms: list[float] = []
    confirm_ms: list[float] = []
    began = time.monotonic()
    for booking, payload in zip(bookings, payloads, strict=True):
        sent_at = datetime.now(UTC)
        t0 = time.perf_counter()
        response = signed_post(live_server, payload)
        receiver_ms.append((time.perf_counter() - t0) * 1000)
        assert response.status_code == 200
        done: list[datetime] = []

        def confirmed(booking_id: str = booking["id"], out: list[datetime] = done) -> bool:
            moment = confirmed_at(booking_id)
            if moment is not None:
                out.append(moment)
            return moment is not None

        assert support.wait_until(confirmed, timeout=30, interval=0.002)
        confirm_ms.append((done[0] - sent_at).total_seconds() * 1000)
    total = time.monotonic() - began

    report = {
        "events": LATENCY_EVENTS,
        "celeryWorkers": 1,
        "celeryConcurrency": 1,
        "gunicornWorkers": 4,
        "mode": "one event at a time (next posted when the previous is CONFIRMED)",
        "receiverMs": {
            "p50": round(_percentile(receiver_ms, 50), 2),
            "p95": round(_percentile(receiver_ms, 95), 2),
            "max": round(max(receiver_ms), 2),
        },
        "webhookToConfirmedMs": {
            "p50": round(_percentile(confirm_ms, 50), 2),
            "p95": round(_percentile(confirm_ms, 95), 2),
            "max": round(max(confirm_ms), 2),
        },
        "meanConfirmedMs": round(statistics.fmean(confirm_ms), 2),
        "seconds": round(total, 2),
        "cpuCount": os.cpu_count(),
        "measuredAt": datetime.now(UTC).isoformat(),
    }
    LATENCY_REPORT.parent.mkdir(parents=True, exist_ok=True)
    LATENCY_REPORT.write_text(json.dumps(report, indent=2) + "\n")
    with capsys.disabled():
        print(f"\nwebhook latency ({LATENCY_REPORT}):\n{json.dumps(report, indent=2)}")
    assert len(confirm_ms) == LATENCY_EVENTS
    with transaction(sessions) as session:
        rows = session.scalars(
            select(StripeEvent.status).where(StripeEvent.id.in_([p["id"] for p in payloads]))
        ).all()
    assert rows.count(EventStatus.PROCESSED) == LATENCY_EVENTS

"""Stripe Connect onboarding offline, end to end, every part a real process: the Stripe
emulator as its own process delivering its events (the platform's to the platform
endpoint, the connected account's to the Connect endpoint with its own secret — both at
the one receiver), gunicorn serving the API, a Celery worker applying the events,
PostgreSQL, Redis.

An artist created without a Stripe account cannot take deposits; the operator asks for
an onboarding link (the Express account is made), the artist completes it, Stripe sends
`account.updated`, the worker applies it, and the artist takes a deposit: a booking
answers 201 with a PaymentIntent destined to the new account, which the client pays.
The trace of each step and its key values is printed (`pytest -s` shows it)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis
import requests
from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session

from devtools import commands
from devtools.processes import Child, port_is_open
from shared.adapters.models import EventStatus, StripeEvent
from tests import support
from tests.e2e.test_webhooks_e2e import Worker

JSON = dict[str, Any]
ADMIN = {"Authorization": f"Bearer {support.ADMIN_TOKEN}"}
CONNECT_SECRET = "whsec_test_inkflow_connect"
RETURN_URL = "https://studio.example/onboarding/done"
REFRESH_URL = "https://studio.example/onboarding/again"


class Stack:
    def __init__(self, api: str, emulator: str) -> None:
        self.api, self.emulator = api, emulator
        self.http = requests.Session()
        self.http.headers.update(ADMIN)
        self.started = time.monotonic()
        self.lines: list[str] = []

    def trace(self, step: str, **values: Any) -> None:
        shown = ", ".join(f"{k}={v}" for k, v in values.items())
        at = (time.monotonic() - self.started) * 1000
        self.lines.append(f"[{at:7.0f} ms] {step}: {shown}")

    def call(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        return self.http.request(method, f"{self.api}{path}", timeout=30, **kwargs)

    def created(self, path: str, body: Any, method: str = "POST") -> JSON:
        response = self.call(method, path, json=body)
        assert response.status_code in (200, 201), response.text
        answer: JSON = response.json()
        return answer

    def artist(self, artist_id: str) -> JSON:
        response = self.call("GET", f"/api/admin/artists/{artist_id}")
        assert response.status_code == 200, response.text
        found: JSON = response.json()
        return found

    def control(self, method: str, path: str, **kwargs: Any) -> Any:
        response = requests.request(
            method, f"{self.emulator}/_emulator/{path}", timeout=30, **kwargs
        )
        assert response.status_code == 200, response.text
        return response.json()


@pytest.fixture(scope="module")
def stack(e2e_env: dict[str, str], log_dir: Path) -> Iterator[Stack]:
    api_port, stripe_port = support.free_port(), support.free_port()
    api = f"http://127.0.0.1:{api_port}"
    emulator_url = f"http://127.0.0.1:{stripe_port}"
    queue = f"inkflow-test-connect-{uuid.uuid4().hex[:8]}"
    env = {
        **e2e_env,
        "STRIPE_API_BASE": emulator_url,
        "STRIPE_CONNECT_WEBHOOK_SECRET": CONNECT_SECRET,
        "CELERY_QUEUE": queue,
    }
    receiver = f"{api}/api/webhooks/stripe"
    # Stripe's Connect endpoint is an endpoint of its own (here the same receiver; the query
    # string, which Flask ignores, shows in the emulator's delivery log which one it was).
    connect_receiver = f"{receiver}?endpoint=connect"
    emulator = support.start_child(
        "stripe-emulator",
        commands.stripe_emulator(
            stripe_port,
            "--webhook-url", receiver, "--webhook-secret", support.WEBHOOK_SECRET,
            "--connect-webhook-url", connect_receiver,
            "--connect-webhook-secret", CONNECT_SECRET,
            "--webhook-backoff", "0.2", "--webhook-backoff-max", "1",
        ),
        env,
        log_dir,
    )  # fmt: skip
    children: list[Child] = [emulator]
    worker = Worker(env, queue, log_dir)
    try:
        emulator.wait_ready(lambda: port_is_open(stripe_port), timeout=30, what="listen")
        children.append(support.start_gunicorn(env, api_port, log_dir, workers=2))
        worker.start(concurrency=1)
        yield Stack(api, emulator_url)
    finally:
        worker.stop()
        for child in reversed(children):
            child.stop()
        client = redis.Redis.from_url(support.TEST_REDIS_URL)
        client.delete(queue, *client.keys(f"*{queue}*"))
        client.close()


def inbox_status(database_url: str, event_id: str) -> str | None:
    engine = create_engine(database_url)
    try:
        with Session(engine) as session:
            row = session.scalar(select(StripeEvent).where(StripeEvent.id == event_id))
            return None if row is None else str(row.status)
    finally:
        engine.dispose()


def test_an_artist_onboards_offline_then_takes_a_deposit(stack: Stack, database_url: str) -> None:
    tag = uuid.uuid4().hex[:6]
    stack.started = time.monotonic()
    client = stack.created("/api/admin/clients", {"email": f"c-{tag}@example.com", "name": "C"})
    artist = stack.created(
        "/api/admin/artists",
        {"name": f"Artist {tag}", "email": f"artist-{tag}@example.com", "timezone": "UTC"},
    )
    artist_id = artist["id"]
    stack.trace(
        "1. artist created",
        id=artist_id,
        stripeAccountId=artist["stripeAccountId"],
        chargesEnabled=artist["chargesEnabled"],
    )
    service = stack.created(
        f"/api/admin/artists/{artist_id}/services",
        {"name": "Flash", "durationMin": 60, "price": "120.00", "depositAmount": "40.00",
         "currency": "eur"},
    )  # fmt: skip
    stack.created(
        f"/api/admin/artists/{artist_id}/working-hours",
        [{"dayOfWeek": d, "startTime": "08:00", "endTime": "20:00"} for d in range(7)],
        method="PUT",
    )
    tomorrow = (datetime.now(UTC) + timedelta(days=1)).date()
    booking = {
        "clientId": client["id"],
        "artistId": artist_id,
        "serviceId": service["id"],
        "startTime": datetime(
            tomorrow.year, tomorrow.month, tomorrow.day, 12, tzinfo=UTC
        ).isoformat(),
    }
    refused = stack.call("POST", "/api/bookings/create", json=booking)
    assert (refused.status_code, refused.json()["error"]) == (422, "STRIPE_NOT_CONFIGURED")
    stack.trace("2. booking before onboarding", status=refused.status_code,
                error=refused.json()["error"])  # fmt: skip

    # The operator (or, with roles, the artist) asks for the onboarding link.
    onboarding = stack.created(
        f"/api/admin/artists/{artist_id}/stripe/onboarding",
        {"returnUrl": RETURN_URL, "refreshUrl": REFRESH_URL},
    )
    account_id = onboarding["stripeAccountId"]
    assert account_id.startswith("acct_")
    assert onboarding["url"].startswith(f"{stack.emulator}/connect/setup/")
    pending = stack.artist(artist_id)
    assert pending["stripeAccountId"] == account_id
    assert (pending["chargesEnabled"], pending["payoutsEnabled"]) == (False, False)
    assert pending["requirementsDue"]
    stack.trace(
        "3. onboarding link",
        stripeAccountId=account_id,
        url=onboarding["url"],
        expiresAt=onboarding["expiresAt"],
    )
    stack.trace(
        "   artist now",
        chargesEnabled=pending["chargesEnabled"],
        payoutsEnabled=pending["payoutsEnabled"],
        requirementsDue=pending["requirementsDue"],
    )
    still = stack.call("POST", "/api/bookings/create", json=booking)
    assert (still.status_code, still.json()["error"]) == (422, "STRIPE_NOT_CONFIGURED")
    stack.trace("4. booking while onboarding is unfinished", status=still.status_code,
                error=still.json()["error"])  # fmt: skip

    # The artist completes Stripe's form (the emulator's control endpoint does what the
    # page's button does); Stripe sends account.updated to the Connect endpoint.
    token = onboarding["url"].rsplit("/", 1)[-1]
    completed_at = time.monotonic()
    account = stack.control("POST", f"account_links/{token}/complete")
    assert (account["charges_enabled"], account["payouts_enabled"]) == (True, True)
    stack.trace(
        "5. onboarding completed at Stripe",
        charges_enabled=account["charges_enabled"],
        payouts_enabled=account["payouts_enabled"],
        currently_due=account["requirements"]["currently_due"],
    )

    def delivered() -> list[JSON]:
        attempts: list[JSON] = stack.control("GET", "deliveries", params={"related_to": account_id})
        return [a for a in attempts if a["delivered"]]

    assert support.wait_until(lambda: delivered() != [], timeout=20)
    [attempt] = delivered()
    assert attempt["type"] == "account.updated"
    # Sent to the Connect endpoint, signed with its secret, and accepted by the receiver.
    assert attempt["url"].endswith("?endpoint=connect")
    [event] = [e for e in stack.control("GET", "emitted_events") if e["id"] == attempt["event_id"]]
    assert event["account"] == account_id
    stack.trace(
        "6. account.updated delivered (Connect endpoint, its own secret)",
        event=attempt["event_id"],
        url=attempt["url"],
        status=attempt["status"],
        attempt=attempt["attempt"],
    )
    assert support.wait_until(lambda: stack.artist(artist_id)["chargesEnabled"], timeout=20)
    applied_ms = (time.monotonic() - completed_at) * 1000
    enabled = stack.artist(artist_id)
    assert (enabled["payoutsEnabled"], enabled["requirementsDue"]) == (True, [])
    assert support.wait_until(
        lambda: inbox_status(database_url, attempt["event_id"]) == EventStatus.PROCESSED,
        timeout=10,
    )
    stack.trace(
        "7. applied by the worker",
        inbox=inbox_status(database_url, attempt["event_id"]),
        chargesEnabled=enabled["chargesEnabled"],
        payoutsEnabled=enabled["payoutsEnabled"],
        requirementsDue=enabled["requirementsDue"],
        ms_since_completion=round(applied_ms),
    )
    dashboard = stack.created(f"/api/admin/artists/{artist_id}/stripe/dashboard", None)
    assert dashboard["url"].startswith(f"{stack.emulator}/express/")
    stack.trace("8. Express Dashboard link", url=dashboard["url"])

    # The artist takes a deposit, without an operator having touched the account.
    created = stack.call("POST", "/api/bookings/create", json=booking)
    assert created.status_code == 201, created.text
    answer = created.json()
    intent_id = answer["paymentIntent"]["id"]
    intent = stack.control("GET", f"payment_intents/{intent_id}")
    assert intent["transfer_data"]["destination"] == account_id
    assert (intent["amount"], intent["currency"]) == (4000, "eur")
    stack.trace(
        "9. booking",
        status=created.status_code,
        booking=answer["booking"]["id"],
        bookingStatus=answer["booking"]["status"],
        paymentIntent=intent_id,
        amount=intent["amount"],
        destination=intent["transfer_data"]["destination"],
    )
    stack.control("POST", f"payment_intents/{intent_id}/succeed")
    booking_id = answer["booking"]["id"]

    def status() -> str:
        response = stack.call("GET", f"/api/bookings/{booking_id}")
        found: str = response.json()["booking"]["status"]
        return found

    assert support.wait_until(lambda: status() == "CONFIRMED", timeout=20)
    transfer = stack.control("GET", f"payment_intents/{intent_id}/transfer")
    assert transfer["destination"] == account_id
    stack.trace(
        "10. paid",
        bookingStatus=status(),
        transfer=transfer["id"],
        transferAmount=transfer["amount"],
        destination=transfer["destination"],
    )
    print("\nConnect onboarding, end to end:\n" + "\n".join(stack.lines))

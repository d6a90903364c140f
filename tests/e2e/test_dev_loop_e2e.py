"""The offline development loop end to end, every part a real process: the Stripe emulator
as its own process delivering its webhook events to the API (nothing is signed by the
test), gunicorn serving the API, a Celery worker, PostgreSQL, Redis, an SMTP sink — and
the `inkflow` CLI as a developer runs it (`inkflow pay`, `trigger`, `events`), in a
subprocess that talks to them over HTTP. Roles are on (AUTH_JWT_SECRET): the commands act
as the client where the API wants the client's token, and `inkflow token` mints one for
an artist."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis
import requests

from devtools import commands
from devtools.processes import Child, port_is_open
from tests import support
from tests.e2e.test_webhooks_e2e import Worker, mails_to, wait_mails
from tests.fakes.smtp_sink import SmtpSink

ADMIN = {"Authorization": f"Bearer {support.ADMIN_TOKEN}"}
JWT_SECRET = "dev-loop-e2e-jwt-secret-".ljust(48, "s")
CLIENT_MAIL, ARTIST_MAIL = "demo-client@inkflow.local", "demo-artist@inkflow.local"


class Loop:
    """The running system and the CLI's environment."""

    def __init__(
        self, api: str, emulator: str, cli_env: dict[str, str], logs: list[Path] | None = None
    ) -> None:
        self.api, self.emulator, self.cli_env = api, emulator, cli_env
        self.logs = logs or []  # the log files of the emulator, gunicorn and the worker
        self.http = requests.Session()
        self.http.headers.update(ADMIN)

    def inkflow(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "services.cli", *args],
            env=self.cli_env,
            cwd=support.ROOT,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def detail(self, booking_id: str) -> dict[str, Any]:
        response = self.http.get(f"{self.api}/api/admin/bookings/{booking_id}", timeout=10)
        assert response.status_code == 200, response.text
        detail: dict[str, Any] = response.json()
        return detail

    def book(self, ids: dict[str, str], start: datetime) -> str:
        response = self.http.post(
            f"{self.api}/api/bookings/create",
            json={
                "clientId": ids["clientId"],
                "artistId": ids["artistId"],
                "serviceId": ids["serviceId"],
                "startTime": start.isoformat(),
            },
            timeout=30,
        )
        assert response.status_code == 201, response.text
        booking_id: str = response.json()["booking"]["id"]
        return booking_id


@pytest.fixture(scope="module")
def loop(
    e2e_env: dict[str, str], smtp_sink: SmtpSink, log_dir: Path, database_url: str
) -> Iterator[Loop]:
    api_port, stripe_port = support.free_port(), support.free_port()
    api = f"http://127.0.0.1:{api_port}"
    stripe_url = f"http://127.0.0.1:{stripe_port}"
    queue = f"inkflow-test-devloop-{uuid.uuid4().hex[:8]}"
    env = {
        **e2e_env,
        "STRIPE_API_BASE": stripe_url,
        "CELERY_QUEUE": queue,
        "LOG_LEVEL": "INFO",
        "AUTH_JWT_SECRET": JWT_SECRET,
    }
    emulator = support.start_child(
        "stripe-emulator",
        commands.stripe_emulator(
            stripe_port,
            "--webhook-url",
            f"{api}/api/webhooks/stripe",
            "--webhook-secret",
            support.WEBHOOK_SECRET,
            "--webhook-backoff",
            "0.2",
            "--webhook-backoff-max",
            "1",
        ),
        env,
        log_dir,
    )
    children: list[Child] = [emulator]
    worker = Worker(env, queue, log_dir)
    try:
        emulator.wait_ready(lambda: port_is_open(stripe_port), timeout=30, what="listen")
        children.append(support.start_gunicorn(env, api_port, log_dir, workers=2))
        worker.start(concurrency=2)
        # What a developer's shell has: nothing but where things are (here as real
        # environment variables; beside `make run` they come from var/run.env).
        cli_env = {
            "PATH": "/usr/bin:/bin",
            "PYTHONPATH": str(support.ROOT),
            "INKFLOW_RUN_ENV": str(log_dir / "no-run.env"),
            "INKFLOW_API_URL": api,
            "STRIPE_API_BASE": stripe_url,
            "STRIPE_EMULATOR_URL": stripe_url,
            "STRIPE_SECRET_KEY": env["STRIPE_SECRET_KEY"],
            "STRIPE_PUBLISHABLE_KEY": "pk_test_inkflow",
            "STRIPE_WEBHOOK_SECRET": support.WEBHOOK_SECRET,
            "ADMIN_API_TOKEN": support.ADMIN_TOKEN,
            "DATABASE_URL": database_url,
            "REDIS_URL": support.TEST_REDIS_URL,
            "CELERY_QUEUE": queue,
            "AUTH_JWT_SECRET": JWT_SECRET,
        }
        logs = [c.log_path for c in [*children, worker.process] if c and c.log_path]
        yield Loop(api, stripe_url, cli_env, logs)
    finally:
        worker.stop()
        for child in reversed(children):
            child.stop()
        client = redis.Redis.from_url(support.TEST_REDIS_URL)
        client.delete(queue, *client.keys(f"*{queue}*"))
        client.close()


@pytest.fixture
def demo_ids(loop: Loop) -> dict[str, str]:
    seeded = loop.inkflow("seed")
    assert seeded.returncode == 0, seeded.stderr
    ids: dict[str, str] = json.loads(seeded.stdout)
    return ids


def a_slot(days: int, hour: int = 11) -> datetime:
    day = datetime.now(UTC).date() + timedelta(days=days)
    start = datetime(day.year, day.month, day.day, hour, tzinfo=UTC)
    while start.weekday() not in (1, 2, 3, 4, 5):  # the demo artist works Tuesday-Saturday
        start += timedelta(days=1)
    return start


def test_inkflow_pay_declined_then_paid_confirms_through_the_emulators_webhooks(
    loop: Loop, demo_ids: dict[str, str], smtp_sink: SmtpSink
) -> None:
    booking_id = loop.book(demo_ids, a_slot(3))
    before = {a: len(mails_to(smtp_sink, a)) for a in (CLIENT_MAIL, ARTIST_MAIL)}

    declined = loop.inkflow("pay", booking_id, "--card", "insufficient_funds")
    assert declined.returncode == 0, declined.stderr
    assert "declined, card_declined (insufficient_funds)" in declined.stdout
    assert "payment_intent.payment_failed" in declined.stdout
    detail = loop.detail(booking_id)
    assert detail["booking"]["status"] == "PENDING_PAYMENT"  # the hold is kept
    [failed] = detail["transactions"]
    assert (failed["status"], failed["failureCode"]) == ("FAILED", "card_declined")
    assert failed["failureMessage"] == "Your card has insufficient funds."

    paid = loop.inkflow("pay", booking_id)
    assert paid.returncode == 0, paid.stderr
    assert f"Booking {booking_id} CONFIRMED" in paid.stdout
    assert "Webhook payment_intent.succeeded evt_" in paid.stdout
    assert "delivered (200)" in paid.stdout
    detail = loop.detail(booking_id)
    assert detail["booking"]["status"] == "CONFIRMED"
    assert sorted((t["kind"], t["status"]) for t in detail["transactions"]) == [
        ("PAYMENT", "FAILED"),
        ("PAYMENT", "SUCCEEDED"),
    ]
    # The payment failed email, then the two confirmations.
    wait_mails(
        smtp_sink, {CLIENT_MAIL: before[CLIENT_MAIL] + 2, ARTIST_MAIL: before[ARTIST_MAIL] + 1}
    )

    again = loop.inkflow("pay", booking_id)
    assert again.returncode == 1
    assert again.stderr == f"inkflow: booking {booking_id} is CONFIRMED: nothing to pay\n"

    # A refund made as from the Dashboard, sent by the emulator as charge.refunded.
    refunded = loop.inkflow("trigger", "charge.refunded", "--booking", booking_id)
    assert refunded.returncode == 0, refunded.stderr
    assert "charge.refunded" in refunded.stdout
    assert support.wait_until(
        lambda: any(t["kind"] == "REFUND" for t in loop.detail(booking_id)["transactions"]),
        timeout=15,
    )


def test_inkflow_trigger_and_the_inbox_commands(loop: Loop, demo_ids: dict[str, str]) -> None:
    for event_type in ("payment_intent.succeeded", "payment_intent.payment_failed"):
        triggered = loop.inkflow("trigger", event_type)
        assert triggered.returncode == 0, triggered.stderr
        assert f"Webhook {event_type} evt_" in triggered.stdout
    # The seed's artist loses its charges on Stripe's side: inkflow follows.
    artists = loop.http.get(f"{loop.api}/api/admin/artists", timeout=10).json()["items"]
    [artist] = [a for a in artists if a["id"] == demo_ids["artistId"]]
    disabled = loop.inkflow(
        "trigger", "account.updated", "--account", artist["stripeAccountId"], "--disable"
    )
    assert disabled.returncode == 0, disabled.stderr

    def charges_enabled() -> bool:
        response = loop.http.get(f"{loop.api}/api/admin/artists/{artist['id']}", timeout=10)
        enabled: bool = response.json()["chargesEnabled"]
        return enabled

    assert support.wait_until(lambda: not charges_enabled(), timeout=15)
    enabled = loop.inkflow("trigger", "account.updated", "--account", artist["stripeAccountId"])
    assert enabled.returncode == 0, enabled.stderr
    assert support.wait_until(charges_enabled, timeout=15)

    listed = loop.inkflow("events", "list")
    assert (listed.returncode, listed.stdout) == (0, "no unprocessed events\n")
    unknown = loop.inkflow("events", "replay", "evt_nope")
    assert (unknown.returncode, unknown.stderr) == (1, "inkflow: no such event: evt_nope\n")
    everything = loop.inkflow("events", "replay", "--all-unprocessed")
    assert (everything.returncode, everything.stdout) == (0, "no unprocessed events\n")


def test_inkflow_demo_as_the_client_and_an_artists_token(
    loop: Loop, demo_ids: dict[str, str]
) -> None:
    """With roles on, `demo` books and reads as the demo client (its own JWT), and the
    token `inkflow token --artist` prints lets the demo artist see that booking — and
    nothing of the operator's."""
    demo = loop.inkflow("demo", "--json")
    assert demo.returncode == 0, demo.stdout + demo.stderr
    booking = json.loads(demo.stdout)["booking"]
    assert (booking["status"], booking["clientId"]) == ("CONFIRMED", demo_ids["clientId"])

    minted = loop.inkflow("token", "--artist", demo_ids["artistId"], "--ttl", "5m")
    assert minted.returncode == 0, minted.stderr
    artist = {"Authorization": f"Bearer {minted.stdout.strip()}"}
    mine = requests.get(
        f"{loop.api}/api/admin/bookings", params={"status": "CONFIRMED"}, headers=artist, timeout=10
    )
    assert mine.status_code == 200, mine.text
    assert booking["id"] in {b["id"] for b in mine.json()["items"]}
    assert {b["artistId"] for b in mine.json()["items"]} == {demo_ids["artistId"]}
    clients = requests.get(f"{loop.api}/api/admin/clients", headers=artist, timeout=10)
    assert (clients.status_code, clients.json()["error"]) == (403, "FORBIDDEN")
    without = requests.get(f"{loop.api}/api/clients/{demo_ids['clientId']}/bookings", timeout=10)
    assert without.status_code == 401


def test_cli_errors_are_one_line_and_non_zero(loop: Loop, tmp_path: Path) -> None:
    missing = loop.inkflow("pay", str(uuid.uuid4()))
    assert missing.returncode == 1
    assert missing.stderr.startswith("inkflow: no booking ")
    assert missing.stderr.count("\n") == 1
    nothing_runs = {
        **loop.cli_env,
        "INKFLOW_API_URL": f"http://127.0.0.1:{support.free_port()}",
    }
    down = subprocess.run(
        [sys.executable, "-m", "services.cli", "demo"],
        env=nothing_runs,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert down.returncode == 1
    assert "cannot reach the inkflow API" in down.stderr
    assert "is `make run` running?" in down.stderr
    assert down.stderr.count("\n") == 1
    help_text = loop.inkflow("--help").stdout
    for command in ("seed", "events list", "events replay", "pay", "trigger", "demo"):
        assert any(line.strip().startswith(command) for line in help_text.splitlines()), command


# What must never reach a log line: a secret, a token, a card detail, an address.
LEAKS = {
    "a JWT": re.compile(r"eyJ[\w-]{5,}\.[\w-]{5,}\.[\w-]{5,}"),
    "a PaymentIntent client secret": re.compile(r"pi_\w+_secret_\w+"),
    "a card number": re.compile(r"\b(?:\d{4}[ -]?){3}\d{4}\b"),
    "an email address": re.compile(r"[\w.%+-]+@[\w-]+(?:\.[\w-]+)+"),
}


def test_the_logs_of_a_paid_then_refunded_booking_hold_no_secret(loop: Loop) -> None:
    """Book, pay with a card, have it refunded — then read every line the emulator,
    gunicorn and the worker logged (at INFO): no operator token, webhook or JWT secret,
    JWT, client secret, card number or email address."""
    seeded = loop.inkflow("seed")
    assert seeded.returncode == 0, seeded.stderr
    ids = json.loads(seeded.stdout)
    booking_id = loop.book(ids, a_slot(5, hour=14))
    created = loop.http.get(f"{loop.api}/api/admin/bookings/{booking_id}", timeout=10).json()
    paid = loop.inkflow("pay", booking_id)  # Stripe's test Visa, 4242 4242 4242 4242
    assert paid.returncode == 0, paid.stderr
    token = loop.inkflow("token", "--client", ids["clientId"]).stdout.strip()
    assert token.startswith("eyJ")
    as_client = {"Authorization": f"Bearer {token}"}
    mine = requests.get(f"{loop.api}/api/bookings/{booking_id}", headers=as_client, timeout=10)
    assert mine.json()["booking"]["status"] == "CONFIRMED"
    refunded = loop.inkflow("trigger", "charge.refunded", "--booking", booking_id)
    assert refunded.returncode == 0, refunded.stderr
    assert support.wait_until(
        lambda: any(t["kind"] == "REFUND" for t in loop.detail(booking_id)["transactions"]),
        timeout=15,
    )
    assert created["booking"]["paymentIntentId"]

    text = "\n".join(path.read_text(errors="replace") for path in loop.logs)
    assert "booking" in text.lower()  # the logs were written, at INFO
    for secret in (support.ADMIN_TOKEN, support.WEBHOOK_SECRET, JWT_SECRET, token):
        assert secret not in text
    for what, pattern in LEAKS.items():
        found = pattern.findall(text)
        assert not found, f"{what} in the logs: {found[:3]}"

"""Metrics and logs end to end: gunicorn (2 worker processes) and a Celery worker (2 pool
children) with JSON logs and their /metrics, the Stripe emulator, the SMTP sink.

One booking is made, refused a second time, paid (signed webhook), confirmed and mailed;
an abandoned hold is expired by the real sweeper task. Then /metrics on the API and on
the worker must show each of these (counted across processes: prometheus_client's
multiprocess mode), every series the alert rules read must be in their output, and the
request ids the test chose must be in the log lines of the worker tasks those requests
caused.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text, update
from sqlalchemy.orm import Session, sessionmaker

from devtools.stripe_emulator import StripeEmulator
from shared.adapters.db import transaction
from shared.adapters.models import Booking
from shared.adapters.queue import CeleryQueue
from shared.config import Settings
from shared.tasks import EXPIRE_HOLDS
from tests import support
from tests.e2e.conftest import LiveServer
from tests.e2e.test_webhooks_e2e import (
    Worker,
    addresses,
    in_days,
    mails_to,
    signed_post,
    wait_status,
)
from tests.factories import make_world
from tests.fakes.smtp_sink import SmtpSink
from tests.unit.test_monitoring_config import (
    alert_rules,
    metric_names,
    series_named,
)

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]
JSON_LOGS = {"LOG_FORMAT": "json", "LOG_LEVEL": "INFO"}


@pytest.fixture(scope="module")
def metrics_port() -> int:
    return support.free_port()


@pytest.fixture(scope="module")
def observed_server(start_server: Callable[..., LiveServer]) -> LiveServer:
    return start_server(workers=2, **JSON_LOGS)


@pytest.fixture(scope="module")
def observed_worker(
    e2e_env: dict[str, str], celery_queue_name: str, log_dir: Path, metrics_port: int
) -> Iterator[Worker]:
    env = {**e2e_env, **JSON_LOGS, "WORKER_METRICS_PORT": str(metrics_port)}
    worker = Worker(env, celery_queue_name, log_dir).start(concurrency=2)
    yield worker
    worker.stop()


def scrape(url: str) -> tuple[str, Samples]:
    response = requests.get(url, timeout=10)
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"].startswith("text/plain"), response.headers
    samples: Samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return response.text, samples


def value(samples: Samples, name: str, **labels: str) -> float:
    """The sample with exactly these labels (0 when absent: a counter never incremented)."""
    return samples.get((name, frozenset(labels.items())), 0.0)


def json_lines(log: str) -> list[dict[str, Any]]:
    lines = []
    for line in log.splitlines():
        if line.startswith("{"):
            lines.append(json.loads(line))
    return lines


def test_metrics_and_request_ids_after_a_paid_booking(
    observed_server: LiveServer,
    observed_worker: Worker,
    metrics_port: int,
    e2e_env: dict[str, str],
    stripe_emulator: StripeEmulator,
    smtp_sink: SmtpSink,
    sessions: sessionmaker[Session],
) -> None:
    server = observed_server
    world = make_world(sessions)
    booking_rid = f"test-booking-{uuid.uuid4().hex}"
    webhook_rid = f"test-webhook-{uuid.uuid4().hex}"
    body = world.booking(in_days(3))
    created = server.post("/api/bookings/create", json=body, headers={"X-Request-ID": booking_rid})
    assert created.status_code == 201, created.text
    assert created.headers["X-Request-ID"] == booking_rid
    booking, intent = created.json()["booking"], created.json()["paymentIntent"]
    again = server.post("/api/bookings/create", json=body)
    assert again.status_code == 409, again.text
    refusal = again.json()
    # No id sent: the server made one (32 hex digits).
    assert len(again.headers["X-Request-ID"]) == 32

    client_mail, artist_mail = addresses(sessions, world)
    paid = stripe_emulator.succeed_payment_intent(intent["id"])
    response = signed_post_with_id(
        server, stripe_emulator.event("payment_intent.succeeded", paid), webhook_rid
    )
    assert response.status_code == 200, response.text
    assert response.headers["X-Request-ID"] == webhook_rid
    wait_status(server, booking["id"], "CONFIRMED")
    assert support.wait_until(
        lambda: bool(mails_to(smtp_sink, client_mail) and mails_to(smtp_sink, artist_mail)),
        timeout=20,
    )

    # An abandoned hold, expired by the real sweeper task in the worker.
    abandoned = server.post(
        "/api/bookings/create", json={**body, "startTime": in_days(4).isoformat()}
    )
    assert abandoned.status_code == 201, abandoned.text
    with transaction(sessions) as session:
        session.execute(
            update(Booking)
            .where(Booking.id == uuid.UUID(abandoned.json()["booking"]["id"]))
            .values(expires_at=text("now() - interval '1 second'"))
        )
    queue = CeleryQueue(Settings.from_env(e2e_env))
    try:
        assert queue.enqueue(EXPIRE_HOLDS)
    finally:
        queue.close()
    wait_status(server, abandoned.json()["booking"]["id"], "EXPIRED")

    # --- the API's /metrics (the sum over its 2 gunicorn workers) ---
    api_text, api = scrape(server.url + "/metrics")
    assert value(api, "inkflow_booking_outcomes_total", code="201", reason="") == 2
    reason = (refusal.get("details") or {}).get("reason", "")
    assert value(api, "inkflow_booking_outcomes_total", code=refusal["error"], reason=reason) == 1
    create_route = {"route": "/api/bookings/create", "method": "POST"}
    assert (
        value(api, "inkflow_http_request_duration_seconds_count", **create_route, status="201") == 2
    )
    assert (
        value(api, "inkflow_http_request_duration_seconds_count", **create_route, status="409") == 1
    )
    assert value(api, "inkflow_http_request_duration_seconds_sum", **create_route, status="201") > 0
    # The URL rule, not the raw path: one series for every booking id.
    polled = {"route": "/api/bookings/<booking_id>", "method": "GET", "status": "200"}
    assert value(api, "inkflow_http_request_duration_seconds_count", **polled) >= 2
    assert booking["id"] not in api_text
    assert value(api, "inkflow_webhook_events_total", stage="received") == 1
    intents = {"operation": "POST /v1/payment_intents", "status": "200"}
    assert value(api, "inkflow_stripe_request_duration_seconds_count", **intents) == 2
    assert 0 < value(api, "inkflow_stripe_request_duration_seconds_sum", **intents) < 10

    # --- the worker's /metrics (its pool children's samples, and the gauges per scrape) ---
    worker_text, worker = scrape(f"http://127.0.0.1:{metrics_port}/metrics")
    assert value(worker, "inkflow_webhook_events_total", stage="applied") >= 1
    assert value(worker, "inkflow_emails_total", kind="BOOKING_CONFIRMED", result="sent") >= 2
    assert value(worker, "inkflow_holds_expired_total") >= 1
    # The sweeper cancelled the abandoned hold's intent on Stripe.
    cancel = {"operation": "POST /v1/payment_intents/{id}/cancel", "status": "200"}
    assert value(worker, "inkflow_stripe_request_duration_seconds_count", **cancel) >= 1
    assert value(worker, "inkflow_webhook_oldest_unapplied_age_seconds") >= 0
    assert ("inkflow_webhook_oldest_unapplied_age_seconds", frozenset()) in worker
    depth = ("inkflow_queue_depth", frozenset({("queue", e2e_env["CELERY_QUEUE"])}))
    assert depth in worker
    assert worker[depth] >= 0

    # --- every series the alerts use is exported (an error counter with no error yet, on
    # the dashboard, is not: tests/unit/test_monitoring_config.py checks those) ---
    exported = series_named(api_text) | series_named(worker_text)
    for rule in alert_rules():
        for name in metric_names(rule["expr"]):
            assert name in exported, f"alert {rule['alert']}: {name} is not exported"

    # --- the request ids followed the work into the worker's tasks ---
    api_lines = json_lines(server.process.full_output())
    assert any(
        line.get("request_id") == webhook_rid and "received" in line["message"]
        for line in api_lines
    ), api_lines[-20:]
    assert any(
        line.get("request_id") == booking_rid and "created" in line["message"] for line in api_lines
    ), api_lines[-20:]
    worker_lines = json_lines(observed_worker.full_log())
    # The task the webhook enqueued, and the e-mail tasks that one enqueued in turn.
    applied = [
        line
        for line in worker_lines
        if line.get("request_id") == webhook_rid and "stripe event" in line["message"]
    ]
    assert applied, worker_lines[-20:]
    assert "applied" in applied[0]["message"]
    assert applied[0]["logger"] == "inkflow.stripe_events"
    assert datetime.fromisoformat(applied[0]["time"]).utcoffset() == timedelta(0)
    sent = [
        line
        for line in worker_lines
        if line.get("request_id") == webhook_rid and line["message"].endswith("sent")
    ]
    assert len(sent) >= 2, worker_lines[-20:]


def signed_post_with_id(
    server: LiveServer, payload: dict[str, Any], request_id: str
) -> requests.Response:
    http = requests.Session()
    http.headers["X-Request-ID"] = request_id
    try:
        return signed_post(server, payload, http=http)
    finally:
        http.close()

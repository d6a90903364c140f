"""X-Request-ID through the app (every kind of answer) and into the task messages a
request enqueues (the real CeleryQueue on Redis)."""

from __future__ import annotations

import base64
import json
import uuid
from dataclasses import replace

import redis
from flask.testing import FlaskClient

from shared.adapters.queue import REQUEST_ID_TASK_HEADER, CeleryQueue
from shared.config import Settings
from shared.logging_setup import request_id_bound
from shared.tasks import SEND_NOTIFICATION
from tests import support

HEADER = "X-Request-ID"


def test_a_sane_id_is_echoed_on_every_kind_of_answer(client: FlaskClient) -> None:
    for method, path, status in [
        ("GET", "/healthz", 200),
        ("GET", "/metrics", 200),
        ("GET", "/api/bookings/not-a-uuid", 404),
        ("GET", "/no/such/route", 404),
        ("DELETE", "/healthz", 405),
        ("POST", "/api/availability", 400),
        ("POST", "/api/webhooks/stripe", 400),
    ]:
        answer = client.open(path, method=method, headers={HEADER: "caller-id.42"})
        assert answer.status_code == status, (method, path)
        assert answer.headers[HEADER] == "caller-id.42", (method, path)


def test_a_missing_or_insane_id_is_replaced(client: FlaskClient) -> None:
    seen = set()
    for sent in (None, "", "two words", "x" * 129, "evil\u2028line"):
        headers = {} if sent is None else {HEADER: sent}
        answer = client.get("/healthz", headers=headers)
        got = answer.headers[HEADER]
        assert got != sent
        assert len(got) == 32
        assert int(got, 16) >= 0
        seen.add(got)
    assert len(seen) == 5


def test_the_request_histogram_uses_the_url_rule(client: FlaskClient) -> None:
    booking = str(uuid.uuid4())
    client.get(f"/api/bookings/{booking}")
    client.get("/wp-admin/install.php")
    text = client.get("/metrics").get_data(as_text=True)
    assert 'route="/api/bookings/<booking_id>"' in text
    assert 'route="<unmatched>"' in text
    assert booking not in text
    assert "wp-admin" not in text


def test_an_enqueued_task_carries_the_id_in_its_headers(settings: Settings) -> None:
    queue_name = f"inkflow-test-rid-{uuid.uuid4().hex[:8]}"
    queue = CeleryQueue(replace(settings, celery_queue=queue_name))
    broker = redis.Redis.from_url(support.TEST_REDIS_URL)
    try:
        with request_id_bound("req-from-the-api"):
            assert queue.enqueue(SEND_NOTIFICATION, "n1")
        assert queue.enqueue(SEND_NOTIFICATION, "n2")  # outside a request: no header
        # Booking e-mails go at a low priority: kombu keeps them in a list of their own
        # beside the queue's (shared/tasks.py).
        lists = broker.keys(f"{queue_name}*")
        messages = [json.loads(m) for key in lists for m in broker.lrange(key, 0, -1)]
    finally:
        broker.delete(queue_name, *broker.keys(f"*{queue_name}*"))
        broker.close()
        queue.close()
    by_arg = {json.loads(base64.b64decode(m["body"]))[0][0]: m for m in messages}
    assert by_arg["n1"]["headers"][REQUEST_ID_TASK_HEADER] == "req-from-the-api"
    assert REQUEST_ID_TASK_HEADER not in by_arg["n2"]["headers"]

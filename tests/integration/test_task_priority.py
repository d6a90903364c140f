"""E-mails wait behind everything else on the broker: a worker process that frees up
takes the next webhook event before any mail, so a burst of payments confirms its
bookings first (README "What one request costs"). Checked on the real Redis with a real
Celery worker (one process, so the order it runs tasks in is the order it took them)."""

from __future__ import annotations

import uuid
from dataclasses import replace
from pathlib import Path

import redis

from devtools import commands
from shared.adapters.queue import CeleryQueue
from shared.config import Settings
from shared.tasks import APPLY_STRIPE_EVENT, SEND_NOTIFICATION
from tests import support


def test_mails_are_taken_after_the_events_queued_with_them(
    settings: Settings, database_url: str, log_dir: Path
) -> None:
    queue_name = f"inkflow-test-priority-{uuid.uuid4().hex[:8]}"
    producer = CeleryQueue(replace(settings, celery_queue=queue_name))
    client = redis.Redis.from_url(support.TEST_REDIS_URL)
    mails = [str(uuid.uuid4()) for _ in range(5)]
    events = [f"evt_priority_{i}" for i in range(5)]
    worker = None
    try:
        for mail, event in zip(mails, events, strict=True):  # mails first, interleaved
            assert producer.enqueue(SEND_NOTIFICATION, mail)
            assert producer.enqueue(APPLY_STRIPE_EVENT, event)
        assert client.llen(queue_name) == 5  # the events: the default list
        assert client.llen(f"{queue_name}\x06\x169") == 5  # the mails: priority 9
        env = support.base_env(database_url, CELERY_QUEUE=queue_name, LOG_LEVEL="DEBUG")
        worker = support.start_child(
            "priority-worker",
            commands.celery(
                "worker", "-Q", queue_name, "--pool=solo", "--without-mingle",
                "--without-gossip", "--without-heartbeat", "--loglevel=DEBUG",
            ),
            env,
            log_dir,
        )  # fmt: skip
        assert support.wait_until(
            lambda: all(m in worker.full_output() for m in mails), timeout=60
        ), worker.output()
        log = worker.full_output()
        # The unknown events and mails are no-ops for the task bodies; what matters is
        # the order Celery received them in.
        received = [
            line
            for line in log.splitlines()
            if "received" in line and ("send_notification" in line or "apply_stripe" in line)
        ]
        kinds = ["mail" if "send_notification" in line else "event" for line in received]
        assert kinds == ["event"] * 5 + ["mail"] * 5, received
    finally:
        if worker is not None:
            worker.stop()
        producer.close()
        client.delete(queue_name, *client.keys(f"*{queue_name}*"))
        client.close()

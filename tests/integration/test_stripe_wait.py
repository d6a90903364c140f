"""While booking creation waits on Stripe, it holds no PostgreSQL connection and no open
transaction: what lets one process run many threads (gunicorn_conf.py: 16) on a small
SQLAlchemy pool, and keeps PostgreSQL's connection budget independent of Stripe's
latency (README "Concurrency")."""

from __future__ import annotations

import threading
import time

from sqlalchemy import text

from services.api.app import create_app
from shared.adapters.runtime import build_resources
from tests.factories import make_world
from tests.integration.test_booking_api import book, next_local

CREATE = "/v1/payment_intents"


def test_no_connection_is_held_while_stripe_answers(settings, sessions, engine, stripe_emulator):
    world = make_world(sessions)
    resources = build_resources(settings)
    app = create_app(settings, resources=resources)
    app.testing = True
    try:
        client = app.test_client()
        stripe_emulator.clear()
        # Stripe takes 1.5 s to answer the two creations below (keyed and not keyed).
        stripe_emulator.delay_next(1.5, n=2, path_prefix=CREATE, method="POST", phase="before")
        answers: list[int] = []
        starts = [next_local(11), next_local(14)]
        keys = [None, {"Idempotency-Key": "held-nothing"}]
        threads = [
            threading.Thread(
                target=lambda s=s, h=h: answers.append(book(client, world, s, h).status_code)
            )
            for s, h in zip(starts, keys, strict=True)
        ]
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 10
        while len(stripe_emulator.requests_to(CREATE, "POST")) < 2:
            assert time.monotonic() < deadline, "the deposit intents were never asked for"
            time.sleep(0.01)
        # Both requests are inside the Stripe call now (1.5 s of it left at most).
        checked_out = resources.engine.pool.checkedout()  # type: ignore[attr-defined]
        with engine.connect() as conn:
            in_transaction = conn.execute(
                text(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                    " AND pid <> pg_backend_pid() AND state LIKE 'idle in transaction%'"
                )
            ).scalar_one()
        stripe_still_busy = len(answers) == 0
        for thread in threads:
            thread.join(10)
        assert stripe_still_busy
        assert checked_out == 0
        assert in_transaction == 0
        assert answers == [201, 201]
    finally:
        resources.close()

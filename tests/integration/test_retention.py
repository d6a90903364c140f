"""Retention (shared/usecases/retention.py): a purge under load deletes what is past its
age and nothing else, and never holds a writer up.

The database holds ten artists' history (2,000 bookings, 4,000 e-mails, 5,000 webhook
events over three years, 3,000 idempotency keys), plus what is still needed however old
it is: 200 events still to apply (RECEIVED), the FAILED ones, 200 e-mails still to send
(PENDING). While the purge runs in batches of 100, four writers work in parallel threads:
webhooks arriving (the inbox's INSERT), the old RECEIVED events being applied (the
worker's function), the old PENDING e-mails being sent (the worker's function, to an SMTP
sink) and idempotency keys being claimed.
"""

from __future__ import annotations

import statistics
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg

from shared.adapters.mail import SmtpBackend
from shared.adapters.payments import StripeGateway
from shared.adapters.runtime import build_resources
from shared.config import Settings
from shared.usecases import idempotency, inbox, notifications, retention, stripe_events
from tests import support
from tests.bench import bigdata
from tests.fakes.smtp_sink import SmtpSink

BATCH = 100
NEEDED = 200


@dataclass
class Writer:
    name: str
    work: Callable[[int], None]
    latencies: list[tuple[float, float]] = field(default_factory=list)  # (start, seconds)
    errors: list[BaseException] = field(default_factory=list)
    done: int = 0

    def during(self, began: float, ended: float) -> int:
        return sum(1 for start, _ in self.latencies if began <= start <= ended)


def run_writer(writer: Writer, stop: threading.Event, limit: int | None = None) -> None:
    i = 0
    while not stop.is_set() and (limit is None or i < limit):
        t0 = time.monotonic()
        try:
            writer.work(i)
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            writer.errors.append(exc)
            return
        writer.latencies.append((t0, time.monotonic() - t0))
        i += 1
    writer.done = i


def counts(conn: psycopg.Connection[Any], query: str, *params: object) -> int:
    row = conn.execute(query, params or None).fetchone()
    assert row is not None
    return int(row[0])


def census(
    conn: psycopg.Connection[Any], settings: Settings, now: datetime, run: str = "-"
) -> dict[str, int]:
    """Rows on either side of each cutoff, leaving out what the test itself added during
    the purge (events arrived or applied, keys claimed, the late e-mails sent)."""
    events = now - timedelta(days=settings.retention_events_days)
    mails = now - timedelta(days=settings.retention_notifications_days)
    keys = now - timedelta(hours=settings.retention_idempotency_hours)
    applied = (
        "SELECT count(*) FROM stripe_events WHERE status IN ('PROCESSED', 'IGNORED')"
        " AND id NOT LIKE 'evt_arrived_%%' AND id NOT LIKE 'evt_needed_%%' AND processed_at "
    )
    sent = "SELECT count(*) FROM notifications WHERE status = 'SENT' AND occasion = '' AND sent_at "
    key = "SELECT count(*) FROM idempotency_keys WHERE key NOT LIKE %s AND expires_at "
    return {
        "failed events": counts(conn, "SELECT count(*) FROM stripe_events WHERE status = 'FAILED'"),
        "young applied events": counts(conn, applied + ">= %s", events),
        "old applied events": counts(conn, applied + "< %s", events),
        "young sent mails": counts(conn, sent + ">= %s", mails),
        "old sent mails": counts(conn, sent + "< %s", mails),
        "live keys": counts(conn, key + "> %s", f"{run}:%", keys),
        "old keys": counts(conn, key + "<= %s", f"{run}:%", keys),
    }


def test_a_purge_under_load_keeps_what_is_needed_and_never_blocks_writers(
    settings: Settings, database_url: str, engine: Any
) -> None:
    url = support.libpq_url(database_url)
    with psycopg.connect(url, autocommit=True) as conn:
        bigdata.fill(conn, bigdata.Scale(10), keys_per_artist=300)
        # Old and still needed: events to apply, e-mails to send.
        conn.execute(
            "INSERT INTO stripe_events (id, type, payload, status, attempts, received_at)"
            " SELECT 'evt_needed_' || i, 'customer.updated', '{}'::jsonb, 'RECEIVED', 0,"
            " now() - interval '60 days' FROM generate_series(1, %s) AS i",
            (NEEDED,),
        )
        conn.execute(
            "INSERT INTO notifications (id, booking_id, kind, channel, recipient, occasion,"
            " status, attempts, created_at)"
            " SELECT gen_random_uuid(), b.id, 'BOOKING_CONFIRMED', 'email', c.email,"
            " 'late', 'PENDING', 0, now() - interval '200 days'"
            " FROM bookings b JOIN clients c ON c.id = b.client_id"
            " ORDER BY b.start_time LIMIT %s",
            (NEEDED,),
        )
        conn.execute("ANALYZE")
    now = datetime.now(UTC)
    with psycopg.connect(url, autocommit=True) as conn:
        before = census(conn, settings, now)
    # Enough of each for the purge to take many batches, and of what must stay.
    assert before["old applied events"] > 40 * BATCH
    assert before["old sent mails"] > 30 * BATCH
    assert before["old keys"] > 10 * BATCH
    assert min(before.values()) > 0, before

    tuned = replace(settings, retention_batch=BATCH, retention_budget_seconds=120.0)
    resources = build_resources(tuned, pool_size=6)
    gateway = StripeGateway(tuned)
    sink = SmtpSink().start()
    backend = SmtpBackend(sink.url)
    with psycopg.connect(url, autocommit=True) as conn:
        needed_events = [
            r[0] for r in conn.execute("SELECT id FROM stripe_events WHERE status = 'RECEIVED'")
        ]
        pending_mails = [
            r[0] for r in conn.execute("SELECT id FROM notifications WHERE status = 'PENDING'")
        ]
    run = uuid.uuid4().hex[:8]
    arrived: list[str] = []
    claimed: list[str] = []

    def receive(i: int) -> None:
        event_id = f"evt_arrived_{run}_{i}"
        body = {"id": event_id, "object": "event", "type": "customer.updated"}
        inbox.store_event(resources, inbox.VerifiedEvent(event_id, "customer.updated", 1, body))
        arrived.append(event_id)

    def apply(i: int) -> None:
        outcome = stripe_events.apply_event(
            resources, needed_events[i], now=datetime.now(UTC), stripe=gateway
        )
        assert outcome.note != "unknown event"

    def send(i: int) -> None:
        assert notifications.send_notification(resources, pending_mails[i], backend) == "sent"

    def claim(i: int) -> None:
        key = f"{run}:{i}"
        assert idempotency.claim(resources.sessions, key, "f", now=datetime.now(UTC)) is None
        claimed.append(key)

    writers = [
        Writer("webhook receive", receive),
        Writer("apply event", apply),
        Writer("send e-mail", send),
        Writer("idempotency claim", claim),
    ]
    limits = {"apply event": len(needed_events), "send e-mail": len(pending_mails)}
    stop = threading.Event()
    threads = [
        threading.Thread(target=run_writer, args=(w, stop, limits.get(w.name)), daemon=True)
        for w in writers
    ]
    try:
        for thread in threads:
            thread.start()
        assert support.wait_until(lambda: all(w.latencies for w in writers), 30, 0.01)
        began = time.monotonic()
        purged = [
            retention.purge_stripe_events(resources.sessions, tuned, now=now),
            retention.purge_notifications(resources.sessions, tuned, now=now),
            retention.purge_idempotency_keys(resources.sessions, tuned, now=now),
        ]
        ended = time.monotonic()
        stop.set()
        for thread in threads:
            thread.join(60)
    finally:
        stop.set()
        sink.stop()
        resources.engine.dispose()

    assert all(not w.errors for w in writers), {w.name: w.errors[:1] for w in writers}
    assert all(p.finished for p in purged), purged
    assert [p.deleted for p in purged] == [
        before["old applied events"],
        before["old sent mails"],
        before["old keys"],
    ], purged
    # Writers went on while the purge ran (each wrote during it), none waited long.
    for writer in writers:
        assert writer.during(began, ended) > 0, (writer.name, ended - began)
        seconds = [s for _, s in writer.latencies]
        assert max(seconds) < 2.0, (writer.name, max(seconds), statistics.median(seconds))

    with psycopg.connect(url, autocommit=True) as conn:
        after = census(conn, settings, now, run)
        needed_left = counts(
            conn, "SELECT count(*) FROM stripe_events WHERE id LIKE 'evt_needed_%'"
        )
        mails_left = counts(conn, "SELECT count(*) FROM notifications WHERE occasion = 'late'")
        arrived_left = counts(
            conn, "SELECT count(*) FROM stripe_events WHERE id LIKE %s", f"evt_arrived_{run}_%"
        )
        claimed_left = counts(
            conn, "SELECT count(*) FROM idempotency_keys WHERE key LIKE %s", f"{run}:%"
        )
    assert after == {
        **before,
        "old applied events": 0,
        "old sent mails": 0,
        "old keys": 0,
    }
    # Nothing still needed went, whether it was handled during the purge or not.
    assert needed_left == NEEDED
    assert mails_left == NEEDED
    assert arrived_left == len(arrived) > 0
    assert claimed_left == len(claimed) > 0

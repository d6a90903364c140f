"""Retention: what the system no longer needs is deleted, in bounded batches that never
make a writer wait.

Three tables grow with every request and are read only while their rows are young:

- `stripe_events` (the webhook inbox): an applied event (PROCESSED or IGNORED) is kept
  RETENTION_EVENTS_DAYS after it was applied, then deleted. The inbox deduplicates
  deliveries by event id, so an event must outlive Stripe's redeliveries of it (Stripe
  retries for up to 3 days): the setting refuses less than 7 days. RECEIVED and FAILED
  events (still to apply, or waiting for an operator) are never deleted.
  `stripe_transactions.stripe_event_id` names the event that recorded a payment; it is
  Stripe's id, not a foreign key, and stays valid as a reference after the inbox row
  is gone (the ledger row carries everything it needs).
- `notifications` (the outbox): a SENT mail is kept RETENTION_NOTIFICATIONS_DAYS after it
  was sent. PENDING (still to send) and FAILED (an operator's business) rows stay.
- `idempotency_keys`: a key is replayed until `expires_at` (24 h); it is deleted
  RETENTION_IDEMPOTENCY_HOURS after that.

Why batched deletes rather than time-partitioned `stripe_events` dropped a partition at a
time: a partitioned table's unique index must contain the partition key, so the event id
would be unique per partition only, and "every event stored and applied once" rests on
that id being unique across the whole inbox (`ON CONFLICT (id) DO NOTHING`). A partition
is also droppable only once every event in it is applied, which one FAILED event can hold
up forever. At the measured purge rate (docs/operations.md) a daily batch run keeps up
with far more traffic than today's.

Each batch is one short transaction: `DELETE ... WHERE pk = ANY(the pks of SELECT ... ORDER
BY <age> LIMIT n FOR UPDATE SKIP LOCKED)`, read through a partial index holding exactly the
deletable rows. SKIP LOCKED means the purge never waits for a writer (a row being applied
or sent is skipped, and taken by a later run); a writer that touches a row of the batch
being deleted waits for that one short transaction only, then finds the row gone (applying
a deleted event, or sending a deleted mail, is a no-op: both were done long ago). Nothing
references these rows by foreign key, so a delete takes no lock elsewhere. Batches repeat
until nothing is left past the cutoff or the time budget is spent.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Delete, Select, any_, cast, delete, func, select
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session, sessionmaker

from shared.adapters.db import transaction
from shared.adapters.models import (
    EventStatus,
    IdempotencyKey,
    Notification,
    NotificationStatus,
    StripeEvent,
)
from shared.config import Settings

log = logging.getLogger("inkflow.retention")

APPLIED = (EventStatus.PROCESSED.value, EventStatus.IGNORED.value)


@dataclass(frozen=True, slots=True)
class Purged:
    table: str
    deleted: int
    batches: int
    seconds: float
    # Nothing past the cutoff is left (False: the time budget ran out first).
    finished: bool


def _any_of(victims: Select[Any]) -> Any:
    """`= ANY((SELECT array_agg(pk) FROM (victims)))`: the batch is chosen once (an
    InitPlan), then deleted through the primary key. With `IN (subquery)` the planner may
    join the table to the batch with a sequential scan of the whole table instead."""
    chosen = victims.subquery()
    pks = select(func.array_agg(chosen.c[0])).scalar_subquery()
    # The cast makes it `ANY(<array expression>)`, not `ANY(<subquery>)` (which is IN).
    return any_(cast(pks, ARRAY(chosen.c[0].type)))


def applied_events_before(cutoff: datetime, batch: int) -> Delete:
    """Applied events older than `cutoff`: one batch, oldest first
    (ix_stripe_events_applied_processed_at)."""
    victims = (
        select(StripeEvent.id)
        .where(StripeEvent.status.in_(APPLIED), StripeEvent.processed_at < cutoff)
        .order_by(StripeEvent.processed_at)
        .limit(batch)
        .with_for_update(skip_locked=True)
    )
    return delete(StripeEvent).where(StripeEvent.id == _any_of(victims))


def sent_notifications_before(cutoff: datetime, batch: int) -> Delete:
    """Mails sent before `cutoff`: one batch, oldest first (ix_notifications_sent_at)."""
    victims = (
        select(Notification.id)
        .where(
            Notification.status == NotificationStatus.SENT.value,
            Notification.sent_at < cutoff,
        )
        .order_by(Notification.sent_at)
        .limit(batch)
        .with_for_update(skip_locked=True)
    )
    return delete(Notification).where(Notification.id == _any_of(victims))


def idempotency_keys_expired_before(cutoff: datetime, batch: int) -> Delete:
    """Keys that stopped being replayed before `cutoff`: one batch
    (ix_idempotency_keys_expires_at)."""
    victims = (
        select(IdempotencyKey.key)
        .where(IdempotencyKey.expires_at <= cutoff)
        .order_by(IdempotencyKey.expires_at)
        .limit(batch)
        .with_for_update(skip_locked=True)
    )
    return delete(IdempotencyKey).where(IdempotencyKey.key == _any_of(victims))


def purge(
    sessions: sessionmaker[Session],
    table: str,
    statement: Callable[[int], Delete],
    *,
    batch: int,
    budget_seconds: float,
) -> Purged:
    """Run `statement(batch)` in its own transaction until it deletes fewer than `batch`
    rows or `budget_seconds` have passed."""
    began = time.monotonic()
    deleted = batches = 0
    finished = False
    while True:
        with transaction(sessions) as session:
            count = int(session.execute(statement(batch)).rowcount or 0)  # type: ignore[attr-defined]
        deleted += count
        batches += 1
        if count < batch:
            finished = True
            break
        if time.monotonic() - began >= budget_seconds:
            break
    seconds = time.monotonic() - began
    if deleted:
        log.info(
            "retention: %d %s row(s) deleted in %d batch(es), %.1f s%s",
            deleted,
            table,
            batches,
            seconds,
            "" if finished else " (time budget spent: the next run goes on)",
        )
    return Purged(table, deleted, batches, round(seconds, 3), finished)


def purge_stripe_events(
    sessions: sessionmaker[Session], settings: Settings, *, now: datetime
) -> Purged:
    cutoff = now - timedelta(days=settings.retention_events_days)
    return purge(
        sessions,
        "stripe_events",
        lambda n: applied_events_before(cutoff, n),
        batch=settings.retention_batch,
        budget_seconds=settings.retention_budget_seconds,
    )


def purge_notifications(
    sessions: sessionmaker[Session], settings: Settings, *, now: datetime
) -> Purged:
    cutoff = now - timedelta(days=settings.retention_notifications_days)
    return purge(
        sessions,
        "notifications",
        lambda n: sent_notifications_before(cutoff, n),
        batch=settings.retention_batch,
        budget_seconds=settings.retention_budget_seconds,
    )


def purge_idempotency_keys(
    sessions: sessionmaker[Session], settings: Settings, *, now: datetime
) -> Purged:
    cutoff = now - timedelta(hours=settings.retention_idempotency_hours)
    return purge(
        sessions,
        "idempotency_keys",
        lambda n: idempotency_keys_expired_before(cutoff, n),
        batch=settings.retention_batch,
        budget_seconds=settings.retention_budget_seconds,
    )

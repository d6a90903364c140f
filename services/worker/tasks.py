"""Thin Celery tasks: each is a few lines around a service function in `shared`.

Domain errors are not retried; transient database, broker, Stripe and SMTP errors are,
with exponential backoff and jitter. Every task is idempotent.
"""

from __future__ import annotations

import uuid
from functools import cache
from typing import Any

import redis
from kombu.exceptions import OperationalError as BrokerError
from sqlalchemy.exc import InterfaceError, OperationalError

from services.worker.celery_app import app
from shared.adapters.payments import StripeGateway, TransientPaymentError
from shared.adapters.queue import CeleryQueue
from shared.adapters.runtime import Resources, build_resources
from shared.config import Settings
from shared.domain.timeutil import utcnow
from shared.tasks import (
    APPLY_STRIPE_EVENT,
    EXPIRE_HOLDS,
    PURGE_IDEMPOTENCY_KEYS,
    SEND_NOTIFICATION,
    SWEEP_INBOX,
    SWEEP_OUTBOX,
)
from shared.usecases import holds, idempotency, inbox, notifications, stripe_events

TRANSIENT = (
    OperationalError,
    InterfaceError,
    redis.ConnectionError,
    redis.TimeoutError,
    BrokerError,
    TransientPaymentError,
    notifications.TransientMailError,
)
RETRY: dict[str, Any] = {
    "autoretry_for": TRANSIENT,
    "retry_backoff": 2,
    "retry_backoff_max": 300,
    "retry_jitter": True,
    "max_retries": 12,
}


class Runtime:
    """Per-process resources, built in the worker child after fork (never inherited)."""

    def __init__(self, settings: Settings) -> None:
        self.resources: Resources = build_resources(settings, pool_size=2)
        self.gateway = StripeGateway(settings)
        self.queue = CeleryQueue(settings)


@cache
def runtime() -> Runtime:
    return Runtime(Settings.from_env())


@app.task(name=APPLY_STRIPE_EVENT, **RETRY)
def apply_stripe_event(event_id: str) -> str:
    rt = runtime()
    return stripe_events.apply_event(rt.resources, rt.gateway, rt.queue, event_id)


@app.task(name=SEND_NOTIFICATION, **RETRY)
def send_notification(notification_id: str) -> str:
    return notifications.send_notification(runtime().resources, uuid.UUID(notification_id))


@app.task(name=EXPIRE_HOLDS, **RETRY)
def expire_holds() -> int:
    rt = runtime()
    return holds.expire_holds(rt.resources, rt.gateway, rt.queue, now=utcnow()).expired


@app.task(name=SWEEP_INBOX, **RETRY)
def sweep_inbox() -> int:
    rt = runtime()
    return inbox.redeliver_stale_events(rt.resources, rt.queue, now=utcnow())


@app.task(name=SWEEP_OUTBOX, **RETRY)
def sweep_outbox() -> int:
    rt = runtime()
    return notifications.redeliver_pending(rt.resources, rt.queue)


@app.task(name=PURGE_IDEMPOTENCY_KEYS, **RETRY)
def purge_idempotency_keys() -> int:
    return idempotency.purge_expired(runtime().resources.sessions, now=utcnow())

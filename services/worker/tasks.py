"""Thin Celery tasks: each is a few lines around a service function in `shared`.

Domain errors are not retried; transient database, broker, Stripe and SMTP errors are,
with exponential backoff and jitter. Every task is idempotent.
"""

from __future__ import annotations

import logging
import uuid
from functools import cache
from typing import Any

import redis
from kombu.exceptions import OperationalError as BrokerError
from sqlalchemy.exc import InterfaceError, OperationalError

from services.worker.celery_app import app
from shared.adapters.payments import StripeGateway, TransientPaymentError
from shared.adapters.queue import CeleryQueue, TaskQueue
from shared.adapters.runtime import Resources, build_resources
from shared.config import Settings
from shared.domain.timeutil import Clock, utcnow
from shared.tasks import (
    APPLY_STRIPE_EVENT,
    EXPIRE_HOLDS,
    PROCESS_REFUND,
    PURGE_IDEMPOTENCY_KEYS,
    PURGE_NOTIFICATIONS,
    PURGE_STRIPE_EVENTS,
    RECONCILE_DEPOSIT_INTENTS,
    SEND_NOTIFICATION,
    SEND_SIGNIN_LINK,
    SWEEP_INBOX,
    SWEEP_OUTBOX,
    SWEEP_REFUNDS,
    SWEEP_REMINDERS,
)
from shared.usecases import (
    holds,
    inbox,
    intents,
    notifications,
    refunds,
    reminders,
    retention,
    signin,
    stripe_events,
)
from shared.usecases.effects import EffectRunner

log = logging.getLogger("inkflow.worker")

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
    """Per-process collaborators, built in the worker child after fork (never inherited).
    Like the app factory, it takes the ones a test wants to choose."""

    def __init__(
        self,
        settings: Settings,
        *,
        clock: Clock | None = None,
        queue: TaskQueue | None = None,
        gateway: StripeGateway | None = None,
        resources: Resources | None = None,
    ) -> None:
        self.resources = resources or build_resources(settings, pool_size=2)
        self.clock: Clock = clock or utcnow
        self.queue: TaskQueue = queue or CeleryQueue(settings)
        self.gateway = gateway or StripeGateway(settings)
        self.effects = EffectRunner(self.queue, self.gateway)


@cache
def runtime() -> Runtime:
    return Runtime(Settings.from_env())


@app.task(name=APPLY_STRIPE_EVENT, **RETRY)
def apply_stripe_event(event_id: str) -> str:
    rt = runtime()
    outcome = stripe_events.apply_event(rt.resources, event_id, now=rt.clock(), stripe=rt.gateway)
    rt.effects.run(outcome.effects)
    return outcome.note


@app.task(name=PROCESS_REFUND, **RETRY)
def process_refund(refund_id: str) -> str:
    rt = runtime()
    outcome = refunds.make(rt.resources, rt.gateway, uuid.UUID(refund_id), now=rt.clock())
    rt.effects.run(outcome.effects)
    return outcome.note


@app.task(name=SEND_NOTIFICATION, **RETRY)
def send_notification(notification_id: str) -> str:
    return notifications.send_notification(runtime().resources, uuid.UUID(notification_id))


@app.task(name=SEND_SIGNIN_LINK, **RETRY)
def send_signin_link(link_id: str) -> str:
    rt = runtime()
    secret = rt.resources.settings.web_secret_key
    if secret is None:
        # The dashboard cannot have issued it (its pages are off without the key); a
        # worker started without the key cannot sign it: say so where operators look.
        log.error("sign-in link %s not sent: this worker has no WEB_SECRET_KEY", link_id)
        return "skipped"
    return signin.send_link(rt.resources, secret, uuid.UUID(link_id), now=rt.clock())


@app.task(name=EXPIRE_HOLDS, **RETRY)
def expire_holds() -> int:
    rt = runtime()
    return holds.expire_holds(rt.resources, rt.effects, now=rt.clock()).expired


@app.task(name=SWEEP_INBOX, **RETRY)
def sweep_inbox() -> int:
    rt = runtime()
    return rt.effects.run(inbox.redeliver_stale_events(rt.resources, now=rt.clock())).enqueued


@app.task(name=SWEEP_OUTBOX, **RETRY)
def sweep_outbox() -> int:
    rt = runtime()
    return rt.effects.run(notifications.redeliver_pending(rt.resources)).enqueued


@app.task(name=SWEEP_REFUNDS, **RETRY)
def sweep_refunds() -> int:
    rt = runtime()
    return rt.effects.run(refunds.redeliver_pending(rt.resources, now=rt.clock())).enqueued


@app.task(name=SWEEP_REMINDERS, **RETRY)
def sweep_reminders() -> int:
    rt = runtime()
    return reminders.queue_due(rt.resources, rt.effects, now=rt.clock())


@app.task(name=PURGE_IDEMPOTENCY_KEYS, **RETRY)
def purge_idempotency_keys() -> int:
    rt = runtime()
    r = rt.resources
    return retention.purge_idempotency_keys(r.sessions, r.settings, now=rt.clock()).deleted


@app.task(name=PURGE_STRIPE_EVENTS, **RETRY)
def purge_stripe_events() -> int:
    rt = runtime()
    r = rt.resources
    return retention.purge_stripe_events(r.sessions, r.settings, now=rt.clock()).deleted


@app.task(name=PURGE_NOTIFICATIONS, **RETRY)
def purge_notifications() -> int:
    rt = runtime()
    r = rt.resources
    return retention.purge_notifications(r.sessions, r.settings, now=rt.clock()).deleted


@app.task(name=RECONCILE_DEPOSIT_INTENTS, **RETRY)
def reconcile_deposit_intents() -> str:
    rt = runtime()
    done = intents.reconcile_deposit_intents(rt.resources, rt.gateway, now=rt.clock())
    return (
        f"{len(done.attached)} attached, {len(done.cancelled)} cancelled, "
        f"{len(done.retry)} to retry, {len(done.stuck)} refused"
    )

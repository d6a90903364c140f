"""The worker's Celery settings that "never lose a task" rests on (FIELD-NOTES, Celery)."""

from __future__ import annotations

import ssl

from celery import Celery

from services.worker import tasks
from services.worker.celery_app import configure
from shared.adapters import broker
from shared.adapters.payments import PaymentProviderError, TransientPaymentError
from shared.adapters.queue import celery_config
from shared.config import Settings
from shared.tasks import (
    APPLY_STRIPE_EVENT,
    EXPIRE_HOLDS,
    PROCESS_REFUND,
    PURGE_IDEMPOTENCY_KEYS,
    PURGE_NOTIFICATIONS,
    PURGE_STRIPE_EVENTS,
    RECONCILE_DEPOSIT_INTENTS,
    SEND_NOTIFICATION,
    SWEEP_INBOX,
    SWEEP_REFUNDS,
    SWEEP_REMINDERS,
)
from shared.usecases.effects import Effects
from shared.usecases.notifications import TransientMailError
from tests.fakes.clock import FakeClock
from tests.fakes.queue import RecordingQueue

ENV = {
    "DATABASE_URL": "postgresql://u@h/db",
    "REDIS_URL": "redis://localhost:6379/0",
    "STRIPE_SECRET_KEY": "sk_test_x",
    "STRIPE_WEBHOOK_SECRET": "whsec_x",
    "ADMIN_API_TOKEN": "token",
    "HOLD_SWEEP_SECONDS": "45",
    "CELERY_VISIBILITY_TIMEOUT": "900",
    "REMINDER_SWEEP_SECONDS": "30",
    "RETENTION_SWEEP_SECONDS": "600",
}


def test_delivery_guarantees_and_schedule():
    app = Celery("probe", set_as_current=False)
    configure(app, Settings.from_env(ENV))
    conf = app.conf
    assert conf.task_acks_late is True
    assert conf.task_reject_on_worker_lost is True
    assert conf.worker_prefetch_multiplier == 1
    assert conf.worker_cancel_long_running_tasks_on_connection_loss is True
    assert conf.broker_transport_options["visibility_timeout"] == 900
    assert conf.task_serializer == "json"
    assert conf.accept_content == ["json"]
    schedule = {entry["task"]: entry["schedule"] for entry in conf.beat_schedule.values()}
    assert schedule[EXPIRE_HOLDS] == 45.0
    assert SWEEP_INBOX in schedule
    assert SWEEP_REFUNDS in schedule  # owed refunds whose task was lost
    assert schedule[RECONCILE_DEPOSIT_INTENTS] == 300.0  # intents no booking names
    assert schedule[SWEEP_REMINDERS] == 30.0
    for purge in (PURGE_IDEMPOTENCY_KEYS, PURGE_STRIPE_EVENTS, PURGE_NOTIFICATIONS):
        assert schedule[purge] == 600.0  # retention
    app.close()


def test_only_transient_errors_are_retried():
    retried = {
        tasks.apply_stripe_event.name: tasks.apply_stripe_event,
        tasks.send_notification.name: tasks.send_notification,
        tasks.process_refund.name: tasks.process_refund,
        tasks.sweep_reminders.name: tasks.sweep_reminders,
    }
    assert set(retried) == {APPLY_STRIPE_EVENT, SEND_NOTIFICATION, PROCESS_REFUND, SWEEP_REMINDERS}
    for task in retried.values():
        kinds = task.autoretry_for
        assert TransientMailError in kinds
        assert TransientPaymentError in kinds
        # A refused or invalid Stripe request will not succeed by retrying.
        assert PaymentProviderError not in kinds
        assert task.retry_backoff
        assert task.retry_jitter


def test_the_runtime_takes_the_collaborators_it_is_given():
    clock, queue = FakeClock(), RecordingQueue()
    runtime = tasks.Runtime(Settings.from_env(ENV), clock=clock, queue=queue)
    try:
        assert runtime.clock is clock
        assert runtime.queue is queue
        runtime.effects.run(Effects(tasks=((APPLY_STRIPE_EVENT, ("evt_1",)),)))
        assert queue.events() == ["evt_1"]  # the runner sends through the given queue
    finally:
        runtime.resources.close()


def test_redis_brokers_use_the_repaired_transport():
    """shared/adapters/broker.py: the worker survives its Redis broker dying mid-task."""
    for url, ssl_required in (
        ("redis://127.0.0.1:6379/0", None),
        ("rediss://:secret@redis.example:6380/0", ssl.CERT_REQUIRED),
        ("rediss://:secret@redis.example:6380/0?ssl_cert_reqs=optional", None),
    ):
        config = celery_config(Settings.from_env({**ENV, "CELERY_BROKER_URL": url}))
        assert config["broker_transport"] == broker.TRANSPORT
        # kombu's own default for a bare rediss:// is TLS without certificate checks.
        expected = {"ssl_cert_reqs": ssl_required} if ssl_required else None
        assert config.get("broker_use_ssl") == expected
    other = celery_config(Settings.from_env({**ENV, "CELERY_BROKER_URL": "amqp://h//"}))
    assert "broker_transport" not in other

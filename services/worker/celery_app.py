"""The Celery application: worker and beat. `celery -A services.worker.celery_app worker`.

Settings are read when Celery first loads its configuration (`on_configure`, at worker
or beat start-up), not at import.
"""

from __future__ import annotations

import os
from typing import Any

from celery import Celery, Task, signals

from shared.adapters import metrics_dir
from shared.adapters.queue import REQUEST_ID_TASK_HEADER, celery_config
from shared.config import ConfigError, Settings, check_safe_to_run, load_dotenv_for_development
from shared.logging_setup import (
    bind_request_id,
    configure_logging,
    demote,
    sanitise_request_id,
    unbind_request_id,
)
from shared.tasks import (
    EXPIRE_HOLDS,
    PURGE_IDEMPOTENCY_KEYS,
    PURGE_NOTIFICATIONS,
    PURGE_STRIPE_EVENTS,
    RECONCILE_DEPOSIT_INTENTS,
    SWEEP_INBOX,
    SWEEP_OUTBOX,
    SWEEP_REFUNDS,
    SWEEP_REMINDERS,
)

app = Celery("inkflow", include=["services.worker.tasks"])


def configure(celery: Celery, settings: Settings) -> None:
    celery.conf.update(celery_config(settings))
    celery.conf.update(
        # Never lose a task: acknowledge after it ran, requeue when the worker dies,
        # take one message at a time. Every task is idempotent, since Redis may deliver
        # twice (celery#5935, kombu#337).
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        worker_cancel_long_running_tasks_on_connection_loss=True,
        worker_hijack_root_logger=False,
        task_time_limit=300,
        task_soft_time_limit=240,
        beat_schedule={
            "expire-holds": {"task": EXPIRE_HOLDS, "schedule": float(settings.hold_sweep_seconds)},
            "sweep-inbox": {"task": SWEEP_INBOX, "schedule": float(settings.inbox_sweep_seconds)},
            "sweep-outbox": {"task": SWEEP_OUTBOX, "schedule": 60.0},
            "sweep-refunds": {"task": SWEEP_REFUNDS, "schedule": 60.0},
            "sweep-reminders": {
                "task": SWEEP_REMINDERS,
                "schedule": float(settings.reminder_sweep_seconds),
            },
            # Retention (shared/usecases/retention.py): bounded batches, never blocking.
            **{
                name: {"task": task, "schedule": float(settings.retention_sweep_seconds)}
                for name, task in (
                    ("purge-idempotency-keys", PURGE_IDEMPOTENCY_KEYS),
                    ("purge-stripe-events", PURGE_STRIPE_EVENTS),
                    ("purge-notifications", PURGE_NOTIFICATIONS),
                )
            },
            "reconcile-deposit-intents": {
                "task": RECONCILE_DEPOSIT_INTENTS,
                "schedule": float(settings.intent_reconcile_seconds),
            },
        },
    )


def quiet_routine_logs() -> None:
    """Beat's ticks and the worker's per-task lines at DEBUG: at INFO the log shows the
    business events (booking created, confirmed, expired, webhook received, applied)."""
    demote("celery.beat", "Scheduler: Sending due task")
    demote("celery.worker.strategy", "Task %(name)s[%(id)s] received")
    demote("celery.app.trace", "Task %(name)s[%(id)s] succeeded")


def _load_settings(sender: Celery, **_: Any) -> None:
    load_dotenv_for_development()
    settings = Settings.from_env()
    configure_logging(settings.log_level, settings.log_format)
    quiet_routine_logs()
    configure(sender, settings)


def _refuse_unsafe_start(**_: Any) -> None:
    """A worker or beat starting: stop it (exit status 1, one line naming the setting)
    with a setting missing, or a published development secret outside development. Not
    in `_load_settings`: Celery logs and swallows an exception there and would run on its
    defaults (a broker at amqp://localhost), and importing the tasks elsewhere (tests, the
    API's enqueueing) must not exit."""
    load_dotenv_for_development()
    try:
        check_safe_to_run(Settings.from_env())
    except ConfigError as exc:
        raise SystemExit(f"inkflow: {exc}") from None


app.on_configure.connect(_load_settings, weak=False)
signals.worker_init.connect(_refuse_unsafe_start, weak=False)
signals.beat_init.connect(_refuse_unsafe_start, weak=False)


# --- metrics and the request id (docs/observability.md) -------------------------------------
#
# shared.adapters.metrics imports prometheus_client, which chooses at import whether it
# writes to PROMETHEUS_MULTIPROC_DIR: the directory is set up when Celery is about to
# import the task modules (which count), and the module is imported in the handlers.


def _metrics_directory(**_: Any) -> None:
    """Before the task modules are imported (worker, beat, any command that loads them)."""
    metrics_dir.ensure()


def _wipe_metrics(**_: Any) -> None:
    """The worker's main process, before the pool forks (beat never gets here): the
    samples of a previous run in the directory are not this run's."""
    metrics_dir.wipe()


class _MetricsServer:
    server: Any = None
    collector: Any = None


def _serve_metrics(**_: Any) -> None:
    """GET /metrics on WORKER_METRICS_PORT, served by the main process from the pool
    children's samples and the backlog gauges (computed per scrape)."""
    from prometheus_client import start_http_server

    from shared.adapters import metrics

    settings = Settings.from_env()
    if not settings.worker_metrics_port:
        return
    metrics.check_multiprocess()
    _MetricsServer.collector = metrics.BacklogCollector(settings)
    _MetricsServer.server, _thread = start_http_server(
        settings.worker_metrics_port,
        addr=settings.worker_metrics_host,
        registry=metrics.registry([_MetricsServer.collector]),
    )


def _pool_child_exits(pid: int | None = None, **_: Any) -> None:
    from shared.adapters import metrics

    metrics.mark_process_dead(pid or os.getpid())


def _stop_metrics(**_: Any) -> None:
    if _MetricsServer.server is not None:
        _MetricsServer.server.shutdown()
        _MetricsServer.collector.close()
    metrics_dir.cleanup()


_bound: dict[str, object] = {}


def _bind_request_id(task_id: str, task: Task, **_: Any) -> None:
    """Every log line of the task carries the id of the request that caused it (and the
    tasks it enqueues carry it on)."""
    _bound[task_id] = bind_request_id(sanitise_request_id(task.request.get(REQUEST_ID_TASK_HEADER)))


def _unbind_request_id(task_id: str, **_: Any) -> None:
    token = _bound.pop(task_id, None)
    if token is not None:
        unbind_request_id(token)


signals.import_modules.connect(_metrics_directory, weak=False)
signals.celeryd_init.connect(_wipe_metrics, weak=False)
signals.worker_ready.connect(_serve_metrics, weak=False)
signals.worker_process_shutdown.connect(_pool_child_exits, weak=False)
signals.worker_shutdown.connect(_stop_metrics, weak=False)
signals.task_prerun.connect(_bind_request_id, weak=False)
signals.task_postrun.connect(_unbind_request_id, weak=False)

"""Enqueueing tasks by name, after the database commit, passing ids not objects.

Both the API (producer) and the worker build their Celery app from `celery_config`, so
they agree on serializer, queues and broker transport options without importing each
other.
"""

from __future__ import annotations

import logging
import ssl
from typing import Any, Protocol
from urllib.parse import parse_qs, urlsplit

from celery import Celery

from shared.adapters import broker
from shared.config import Settings
from shared.logging_setup import current_request_id
from shared.tasks import TASK_PRIORITY

log = logging.getLogger("inkflow.queue")

DEFAULT_QUEUE = "inkflow"
# The message header carrying the request id into the worker (services/worker/celery_app).
REQUEST_ID_TASK_HEADER = "inkflow_request_id"


def _transport(broker_url: str) -> dict[str, Any]:
    """kombu's Redis transport with the repair in `broker.py` for redis:// and rediss://
    URLs (any other broker keeps kombu's own). Naming the transport skips kombu's
    `rediss://` default of TLS without certificate checks: without `ssl_cert_reqs` in the
    URL, certificates are checked."""
    parts = urlsplit(broker_url)
    if parts.scheme not in ("redis", "rediss"):
        return {}
    config: dict[str, Any] = {"broker_transport": broker.TRANSPORT}
    if parts.scheme == "rediss" and "ssl_cert_reqs" not in parse_qs(parts.query):
        config["broker_use_ssl"] = {"ssl_cert_reqs": ssl.CERT_REQUIRED}
    return config


def celery_config(settings: Settings) -> dict[str, Any]:
    return {
        **_transport(settings.celery_broker_url),
        "broker_url": settings.celery_broker_url,
        "task_default_queue": settings.celery_queue,
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        "task_ignore_result": True,
        "broker_transport_options": {
            # CELERY_VISIBILITY_TIMEOUT: longer than the longest task (an SMTP send, a Stripe
            # call) so that Redis does not hand an unacknowledged task to a second worker
            # while the first still runs; a killed worker's task is handed out after it.
            "visibility_timeout": settings.celery_visibility_timeout,
            "socket_connect_timeout": 2,
            "socket_timeout": 5,
        },
        "broker_connection_retry_on_startup": True,
        "broker_connection_timeout": 2,
        "timezone": "UTC",
        "enable_utc": True,
    }


class TaskQueue(Protocol):
    def enqueue(self, task_name: str, *args: str) -> bool: ...


class CeleryQueue:
    """Sends tasks without waiting on a broker that is down: the durable state is in
    PostgreSQL and the sweepers re-enqueue what did not get through."""

    def __init__(self, settings: Settings) -> None:
        self._app = Celery("inkflow-producer", set_as_current=False)
        config = celery_config(settings)
        # One connection attempt per send: kombu would otherwise retry a refused connection
        # for `broker_connection_timeout` (2 s) even with retry=False, and a webhook or a
        # booking would wait that long for a broker that is down.
        config["broker_transport_options"] = {
            **config["broker_transport_options"],
            "max_retries": 0,
        }
        self._app.conf.update(config)
        self._queue = settings.celery_queue

    def enqueue(self, task_name: str, *args: str) -> bool:
        # The request (or task) this work comes from: the worker logs the task with its id.
        request_id = current_request_id()
        headers = {REQUEST_ID_TASK_HEADER: request_id} if request_id else None
        try:
            self._app.send_task(
                task_name,
                args=list(args),
                queue=self._queue,
                retry=False,
                headers=headers,
                priority=TASK_PRIORITY.get(task_name),
            )
        except Exception as exc:  # noqa: BLE001 - kombu raises a zoo of connection errors; the sweepers re-enqueue
            log.warning("could not enqueue %s%s: %s", task_name, args, exc)
            return False
        return True

    def close(self) -> None:
        self._app.close()

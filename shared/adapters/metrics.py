"""Every Prometheus series inkflow exports, defined once (docs/observability.md lists
them). The use cases count what happens; the API and the worker expose the sum at
GET /metrics.

Under gunicorn and Celery's prefork pool each process writes its samples to files in
PROMETHEUS_MULTIPROC_DIR (prometheus_client's multiprocess mode, chosen when it is first
imported: see `metrics_dir`); `exposition()` adds up the files of every process. Without
that variable (the in-process test apps) the process's own registry is exposed.

Recording costs a dictionary lookup and a write into a memory-mapped file: no I/O, no
database query on any request path. The gauges that need a query (the webhook backlog,
the queue depth) are computed when Prometheus scrapes the worker (`BacklogCollector`).
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable, Iterator
from urllib.parse import urlsplit

import redis
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
    values,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.pool import NullPool

from shared.adapters.metrics_dir import ENV as MULTIPROC_ENV
from shared.config import Settings

log = logging.getLogger("inkflow.metrics")

if os.environ.get(MULTIPROC_ENV) and values.ValueClass is values.MutexValue:
    # prometheus_client was imported before the directory was set up (the `celery` command
    # loads its plugins first, Flower's among them, which imports it): choose the storage
    # again before any series of ours exists, or the pool children's samples would stay
    # in their own memory and the worker's /metrics would show none of them.
    values.ValueClass = values.get_value_class()  # type: ignore[no-untyped-call]

CONTENT_TYPE = CONTENT_TYPE_LATEST

# Request latencies: from a cached availability answer (ms) to a booking waiting on
# Stripe (seconds); past 10 s gunicorn or the client gives up anyway.
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

HTTP_REQUEST_SECONDS = Histogram(
    "inkflow_http_request_duration_seconds",
    "API request latency, by route (the URL rule, not the raw path), method and status.",
    ["route", "method", "status"],
    buckets=_LATENCY_BUCKETS,
)
BOOKING_OUTCOMES = Counter(
    "inkflow_booking_outcomes_total",
    "Booking creation attempts by outcome: code 201, or the error code with its reason "
    "(SLOT_UNAVAILABLE ALREADY_BOOKED, SLOT_TAKEN, PAYMENT_PROVIDER_ERROR...).",
    ["code", "reason"],
)
WEBHOOK_EVENTS = Counter(
    "inkflow_webhook_events_total",
    "Stripe events by stage: received (stored, to apply), duplicate (or an ignored type), "
    "applied, failed (an attempt to apply raised).",
    ["stage"],
)
HOLDS_EXPIRED = Counter(
    "inkflow_holds_expired_total", "Unpaid holds marked EXPIRED by the sweeper."
)
EMAILS = Counter(
    "inkflow_emails_total",
    "E-mails by result: sent, failed (refused for good), retry (a momentary failure).",
    ["kind", "result"],
)
REFUND_FAILURES = Counter(
    "inkflow_refund_failures_total",
    "Refunds that failed: refused by Stripe when asked (source=request) or reported "
    "failed afterwards (source=stripe). Each leaves the deposit REFUND_FAILED for an operator.",
    ["source"],
)
STRIPE_REQUEST_SECONDS = Histogram(
    "inkflow_stripe_request_duration_seconds",
    "Stripe API calls (each HTTP attempt), by operation and HTTP status (0: no answer).",
    ["operation", "status"],
    buckets=_LATENCY_BUCKETS,
)
STRIPE_ERRORS = Counter(
    "inkflow_stripe_errors_total",
    "Stripe API calls that failed, by operation and kind: connection (no answer), 4xx, 5xx.",
    ["operation", "kind"],
)

# Exported at 0 from the start, so that rate() and increase() see the first event and the
# alert rules find their series before anything went wrong.
WEBHOOK_STAGES = ("received", "duplicate", "applied", "failed")
for _stage in WEBHOOK_STAGES:
    WEBHOOK_EVENTS.labels(_stage)
for _source in ("request", "stripe"):
    REFUND_FAILURES.labels(_source)

# Computed per scrape by the worker (`BacklogCollector`), not recorded.
WEBHOOK_BACKLOG_AGE = "inkflow_webhook_oldest_unapplied_age_seconds"
QUEUE_DEPTH = "inkflow_queue_depth"
SCRAPE_TIME_GAUGES = (WEBHOOK_BACKLOG_AGE, QUEUE_DEPTH)


def booking_outcome(code: str, reason: str | None = None) -> None:
    BOOKING_OUTCOMES.labels(code, reason or "").inc()


def webhook_event(stage: str) -> None:
    WEBHOOK_EVENTS.labels(stage).inc()


# Stripe ids in a path (pi_3QzX..., acct_1Nq..., re_...) become {id}: one series per
# operation. An id is a prefix, `_` and random base62 (digits, capitals); resource names
# (payment_intents, login_links) are lower-case words.
_STRIPE_ID = re.compile(r"^[a-z]+_(?=[A-Za-z0-9_]*[A-Z0-9])[A-Za-z0-9_]+$")


def stripe_operation(method: str, url: str) -> str:
    """`POST /v1/payment_intents/{id}/cancel` for a call on pi_123's cancel."""
    parts = [
        "{id}" if _STRIPE_ID.match(segment) else segment
        for segment in urlsplit(url).path.split("/")
    ]
    return f"{method.upper()} {'/'.join(parts)}"


def stripe_call(operation: str, status: int, seconds: float) -> None:
    STRIPE_REQUEST_SECONDS.labels(operation, str(status)).observe(seconds)
    if status == 0:
        STRIPE_ERRORS.labels(operation, "connection").inc()
    elif status >= 400:
        STRIPE_ERRORS.labels(operation, f"{status // 100}xx").inc()


# --------------------------------------------------------------------------- exposition


def multiprocess_mode() -> bool:
    return values.ValueClass is not values.MutexValue


def check_multiprocess() -> None:
    """Raise unless samples go to PROMETHEUS_MULTIPROC_DIR: a process serving the sum of
    its children's files would otherwise export nothing of what they count."""
    if not multiprocess_mode():
        raise RuntimeError(
            f"prometheus_client was imported before {MULTIPROC_ENV} was set "
            "(shared.adapters.metrics_dir.prepare() must run first)"
        )


def registry(extra: Iterable[Collector] = ()) -> CollectorRegistry:
    """What /metrics shows: every process's samples (multiprocess mode) or this
    process's, plus `extra` collectors computed at scrape time."""
    if multiprocess_mode() and os.environ.get(MULTIPROC_ENV):
        combined = CollectorRegistry()
        multiprocess.MultiProcessCollector(combined)  # type: ignore[no-untyped-call]
    else:
        combined = CollectorRegistry()
        combined.register(_Everything())
    for collector in extra:
        combined.register(collector)
    return combined


class _Everything(Collector):
    """The process's default registry, inside another registry."""

    def collect(self) -> Iterator[Metric]:
        yield from REGISTRY.collect()


def exposition(extra: Iterable[Collector] = ()) -> bytes:
    return generate_latest(registry(extra))


def mark_process_dead(pid: int) -> None:
    """A gunicorn worker or pool child exited: its live gauges stop counting (its
    counters and histograms stay in the sum)."""
    if os.environ.get(MULTIPROC_ENV):
        multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]


# --------------------------------------------------------------------------- the worker's gauges


def queue_keys(queue: str) -> list[str]:
    """The Redis lists kombu keeps a queue in: the name, and one per priority step
    (kombu's separator \\x06\\x16 and steps 3, 6, 9) for messages sent with a priority."""
    return [queue] + [f"{queue}\x06\x16{step}" for step in (3, 6, 9)]


class BacklogCollector(Collector):
    """Gauges computed when Prometheus scrapes the worker: the age of the oldest Stripe
    event not applied yet (one index-only read of the inbox's partial index on
    received_at) and the number of tasks waiting in the broker queue. A dependency that
    does not answer leaves its gauge out of that scrape (and logs why) instead of failing
    the scrape: the other series still arrive, and the alerts on absence fire."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._engine: Engine | None = None
        self._broker: redis.Redis | None = None

    def _db(self) -> Engine:
        if self._engine is None:
            # No pool: one connection per scrape (every 15 s or so), nothing for a forked
            # pool child to inherit.
            self._engine = create_engine(
                self._settings.database_url,
                poolclass=NullPool,
                connect_args={"connect_timeout": 2, "options": "-c statement_timeout=2000"},
            )
        return self._engine

    def _redis(self) -> redis.Redis:
        if self._broker is None:
            self._broker = redis.Redis.from_url(
                self._settings.celery_broker_url, socket_timeout=2, socket_connect_timeout=2
            )
        return self._broker

    def collect(self) -> Iterator[Metric]:
        try:
            with self._db().connect() as conn:
                age = conn.execute(
                    text(
                        "SELECT COALESCE(EXTRACT(EPOCH FROM now() - min(received_at)), 0) "
                        "FROM stripe_events WHERE status IN ('RECEIVED', 'FAILED')"
                    )
                ).scalar_one()
        except Exception as exc:  # noqa: BLE001 - a scrape reports what it can
            log.warning("metrics: webhook backlog unknown: %s", type(exc).__name__)
        else:
            yield GaugeMetricFamily(
                WEBHOOK_BACKLOG_AGE,
                "Age of the oldest Stripe event stored but not applied (0: none waits).",
                value=float(age),
            )
        queue = self._settings.celery_queue
        try:
            pipe = self._redis().pipeline(transaction=False)
            for key in queue_keys(queue):
                pipe.llen(key)
            depth = sum(int(n) for n in pipe.execute())
        except redis.RedisError as exc:
            log.warning("metrics: queue depth unknown: %s", type(exc).__name__)
        else:
            family = GaugeMetricFamily(
                QUEUE_DEPTH, "Tasks waiting in the broker queue.", labels=["queue"]
            )
            family.add_metric([queue], float(depth))
            yield family

    def close(self) -> None:
        if self._engine is not None:
            self._engine.dispose()
        if self._broker is not None:
            self._broker.close()

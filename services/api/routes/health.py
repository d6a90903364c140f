"""Liveness and readiness."""

from __future__ import annotations

from collections.abc import Callable

import redis
from flask import Blueprint, Response
from sqlalchemy import text

from services.api.openapi import PUBLIC, Reply, operation
from services.api.responses import Health, NotReady, Probe, Ready, reply
from services.api.state import state
from shared.adapters.runtime import make_redis

bp = Blueprint("health", __name__)


@bp.get("/healthz")
@operation(
    "healthz",
    "Liveness: the process is up",
    tag="operations",
    security=PUBLIC,
    responses={200: Reply("Up.", Health)},
    database=False,
)
def healthz() -> Response:
    return reply(Health(status="ok"))


def _check_database() -> None:
    with state().resources.engine.connect() as conn:
        conn.execute(text("SELECT 1"))


def _check_redis(client: redis.Redis) -> None:
    client.ping()


@bp.get("/readyz")
@operation(
    "readyz",
    "Readiness: database, Redis and broker reachable",
    tag="operations",
    security=PUBLIC,
    responses={
        200: Reply("All reachable.", Ready),
        503: Reply("Something is unreachable.", NotReady),
    },
    database=False,  # it reports a failing database itself
)
def readyz() -> Response:
    resources = state().resources
    settings = resources.settings
    checks: dict[Probe, str] = {}
    probes: dict[Probe, Callable[[], None]] = {
        "database": _check_database,
        "redis": lambda: _check_redis(resources.redis),
    }
    for name, probe in probes.items():
        try:
            probe()
            checks[name] = "ok"
        except Exception as exc:  # noqa: BLE001 - readiness reports any failure, it never raises
            checks[name] = f"unreachable: {type(exc).__name__}"
    if settings.celery_broker_url == settings.redis_url:
        checks["broker"] = checks["redis"]
    else:
        broker = make_redis(settings.celery_broker_url)
        try:
            _check_redis(broker)
            checks["broker"] = "ok"
        except Exception as exc:  # noqa: BLE001 - as above
            checks["broker"] = f"unreachable: {type(exc).__name__}"
        finally:
            broker.close()
    failed = sorted(name for name, result in checks.items() if result != "ok")
    if failed:
        return reply(NotReady(status="unavailable", failed=failed, checks=checks), 503)
    return reply(Ready(status="ok", checks=dict.fromkeys(checks, "ok")))

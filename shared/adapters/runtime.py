"""Long-lived resources of one process (API worker or Celery worker), built from Settings."""

from __future__ import annotations

from dataclasses import dataclass

import redis
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from shared.adapters.db import make_engine, make_session_factory
from shared.config import Settings


@dataclass(slots=True)
class Resources:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    # Single-statement reads and writes: no BEGIN/COMMIT round trips around them.
    autocommit_sessions: sessionmaker[Session]
    redis: redis.Redis

    def close(self) -> None:
        self.redis.close()
        self.engine.dispose()


def make_redis(url: str) -> redis.Redis:
    # Short timeouts: Redis only speeds booking up (locks); when it is down the database
    # constraint still guards, so waiting long on it would only add latency.
    return redis.Redis.from_url(
        url,
        socket_connect_timeout=0.5,
        socket_timeout=1.0,
        health_check_interval=30,
    )


# The API's pool: its 32 threads per process take turns on 10 connections kept open. No
# overflow: an overflow connection is closed as soon as it is returned, so a steady load
# above the pool size opened and closed connections many times a second (a PostgreSQL
# backend forked and authenticated, its prepared statements lost, each time): with 5 + 5
# the bench's booking stages spent ~0.5 of its 2 cores on that.
API_POOL_SIZE = 10
API_MAX_OVERFLOW = 0


def build_resources(settings: Settings, *, pool_size: int = 5, max_overflow: int = 5) -> Resources:
    """`pool_size`, `max_overflow`: the process kind's defaults (the API's above, the
    worker's 2 and 5), unless DATABASE_POOL_SIZE or DATABASE_MAX_OVERFLOW is set."""
    overflow = settings.database_max_overflow
    engine = make_engine(
        settings.database_url,
        pool_size=settings.database_pool_size or pool_size,
        max_overflow=max_overflow if overflow < 0 else overflow,
        lock_timeout_ms=settings.database_lock_timeout_ms,
        statement_timeout_ms=settings.database_statement_timeout_ms,
    )
    return Resources(
        settings=settings,
        engine=engine,
        sessions=make_session_factory(engine),
        autocommit_sessions=make_session_factory(
            engine.execution_options(isolation_level="AUTOCOMMIT")
        ),
        redis=make_redis(settings.redis_url),
    )

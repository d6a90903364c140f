"""Fixtures: one migrated PostgreSQL database per test run (dropped at the end), tables
emptied between tests, a Flask app on it, and helpers to create catalogue rows. Every
answer of the API that a test receives is checked against the OpenAPI document
(`tests/contract.py`)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import requests
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import text
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from devtools.stripe_emulator import StripeEmulator
from services.api.app import create_app
from services.api.state import EXTENSION_KEY, ApiState
from shared.adapters.db import Base, make_engine, make_session_factory, transaction
from shared.adapters.payments import StripeGateway
from shared.adapters.queue import TaskQueue
from shared.config import Settings
from shared.domain.timeutil import Clock
from tests import contract, support

_CALL_FAILED = pytest.StashKey[bool]()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    if report.when == "call":
        item.stash[_CALL_FAILED] = report.failed
    return report


@pytest.fixture(scope="session", autouse=True)
def _answers_checked_against_openapi() -> Iterator[None]:
    """Flask test clients and `requests` sessions check every answer of our API."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Flask, "test_client_class", contract.CheckedClient)
        patch.setattr(requests.Session, "send", contract.checked_send(requests.Session.send))
        yield


@pytest.fixture(autouse=True)
def _no_unreported_mismatch(request: pytest.FixtureRequest) -> Iterator[None]:
    """A mismatch raised where nobody looked (a worker thread, a swallowed exception)
    still fails the test that caused it."""
    contract.FINDINGS.take()
    yield
    missed = contract.FINDINGS.take()
    if missed and not request.node.stash.get(_CALL_FAILED, False):
        pytest.fail("answers the OpenAPI document does not allow:\n\n" + "\n\n".join(missed))


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    url = support.create_database()
    yield url
    support.drop_database(url)


@pytest.fixture(scope="session")
def log_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("logs")


@pytest.fixture(scope="session")
def stripe_emulator() -> Iterator[StripeEmulator]:
    with StripeEmulator() as emulator:
        yield emulator


@pytest.fixture(scope="session")
def celery_queue_name() -> Iterator[str]:
    with support.own_celery_queue() as name:
        yield name


@pytest.fixture(scope="session")
def base_settings(
    database_url: str, stripe_emulator: StripeEmulator, celery_queue_name: str
) -> Settings:
    return Settings.from_env(
        support.base_env(
            database_url,
            STRIPE_API_BASE=stripe_emulator.url,
            STRIPE_MAX_RETRIES="0",
            STRIPE_TIMEOUT_SECONDS="2",
            CELERY_QUEUE=celery_queue_name,
        )
    )


@pytest.fixture
def settings(base_settings: Settings) -> Settings:
    return base_settings


@pytest.fixture(scope="session")
def engine(database_url: str) -> Iterator[Any]:
    engine = make_engine(Settings.from_env(support.base_env(database_url)).database_url)
    yield engine
    engine.dispose()


@pytest.fixture(scope="session")
def sessions(engine: Any) -> Any:
    return make_session_factory(engine)


@pytest.fixture(autouse=True)
def _empty_tables(request: pytest.FixtureRequest) -> Iterator[None]:
    # Unit tests of pure code need no database at all.
    if "database_url" not in request.fixturenames and "app" not in request.fixturenames:
        yield
        return
    engine = request.getfixturevalue("engine")
    yield
    tables = ", ".join(t.name for t in Base.metadata.sorted_tables)
    # A worker process of an e2e module may still be finishing a task (an email, a
    # sweeper) and lock rows in another order: PostgreSQL then picks one side of the
    # deadlock, possibly this TRUNCATE, which is safe to run again.
    for attempt in range(5):
        try:
            with engine.begin() as conn:
                conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
            return
        except OperationalError as exc:
            if getattr(exc.orig, "sqlstate", None) != "40P01" or attempt == 4:
                raise
            time.sleep(0.2)


def close_app(app: Flask) -> None:
    state: ApiState = app.extensions[EXTENSION_KEY]
    state.close()


@pytest.fixture
def make_app(settings: Settings, database_url: str) -> Iterator[Callable[..., Flask]]:
    """`make_app(booking_hold_seconds=1, clock=FakeClock(), queue=RecordingQueue())`: an
    app on changed settings, with the collaborators given, closed afterwards."""
    apps: list[Flask] = []

    def factory(
        *,
        clock: Clock | None = None,
        queue: TaskQueue | None = None,
        gateway: StripeGateway | None = None,
        **changes: Any,
    ) -> Flask:
        app = create_app(replace(settings, **changes), clock=clock, queue=queue, gateway=gateway)
        app.testing = True
        apps.append(app)
        return app

    yield factory
    for app in apps:
        close_app(app)


@pytest.fixture
def app(make_app: Callable[..., Flask]) -> Flask:
    return make_app()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def admin_headers() -> dict[str, str]:
    return {"Authorization": f"Bearer {support.ADMIN_TOKEN}"}


@pytest.fixture
def session(sessions: Any) -> Iterator[Session]:
    with transaction(sessions) as s:
        yield s


def settings_with(settings: Settings, **changes: Any) -> Settings:
    return replace(settings, **changes)

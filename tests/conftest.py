"""Fixtures: one migrated PostgreSQL database per test run (dropped at the end), tables
emptied between tests, a Flask app on it, and helpers to create catalogue rows."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import text
from sqlalchemy.orm import Session

from services.api.app import create_app
from services.api.state import EXTENSION_KEY, ApiState
from shared.config import Settings
from shared.db import make_engine, make_session_factory, transaction
from shared.models import Base
from tests import support


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    url = support.create_database()
    yield url
    support.drop_database(url)


@pytest.fixture(scope="session")
def log_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("logs")


@pytest.fixture(scope="session")
def base_settings(database_url: str) -> Settings:
    return Settings.from_env(support.base_env(database_url))


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
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))


@pytest.fixture
def app(settings: Settings, database_url: str) -> Iterator[Flask]:
    app = create_app(settings)
    app.testing = True
    yield app
    state: ApiState = app.extensions[EXTENSION_KEY]
    state.resources.close()


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

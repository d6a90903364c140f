"""End-to-end fixtures: the API under a real gunicorn (several worker processes) on the
test database, Redis, the Stripe emulator and an SMTP sink — everything over real
sockets. The Celery worker process is test_webhooks_e2e.py's `Worker`."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests

from devtools.processes import Child
from devtools.stripe_emulator import StripeEmulator
from tests import support
from tests.fakes.smtp_sink import SmtpSink


@pytest.fixture(scope="session")
def smtp_sink() -> Iterator[SmtpSink]:
    with SmtpSink() as sink:
        yield sink


@pytest.fixture(scope="session")
def e2e_env(
    database_url: str,
    stripe_emulator: StripeEmulator,
    smtp_sink: SmtpSink,
    celery_queue_name: str,
) -> dict[str, str]:
    return support.base_env(
        database_url,
        STRIPE_API_BASE=stripe_emulator.url,
        STRIPE_MAX_RETRIES="0",
        STRIPE_TIMEOUT_SECONDS="5",
        CELERY_QUEUE=celery_queue_name,
        SMTP_URL=smtp_sink.url,
        MAIL_FROM="inkflow <bookings@inkflow.test>",
    )


class LiveServer:
    def __init__(self, process: Child, port: int) -> None:
        self.process = process
        self.url = f"http://127.0.0.1:{port}"
        self.http = requests.Session()

    def post(self, path: str, **kwargs: object) -> requests.Response:
        return self.http.post(self.url + path, timeout=30, **kwargs)  # type: ignore[arg-type]

    def get(self, path: str, **kwargs: object) -> requests.Response:
        return self.http.get(self.url + path, timeout=30, **kwargs)  # type: ignore[arg-type]

    def stop(self) -> None:
        self.http.close()
        self.process.stop()


def launch(env: dict[str, str], log_dir: Path, workers: int) -> LiveServer:
    port = support.free_port()
    return LiveServer(support.start_gunicorn(env, port, log_dir, workers=workers), port)


@pytest.fixture(scope="module")
def start_server(e2e_env: dict[str, str], log_dir: Path) -> Iterator[Callable[..., LiveServer]]:
    """`start_server(workers=4, **env)`: a gunicorn serving the API with changed settings,
    stopped at the end of the module (each holds database connections: PostgreSQL's
    max_connections is finite)."""
    servers: list[LiveServer] = []

    def start(workers: int = 4, **env: str) -> LiveServer:
        server = launch({**e2e_env, **env}, log_dir, workers)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture(scope="session")
def live_server(e2e_env: dict[str, str], log_dir: Path) -> Iterator[LiveServer]:
    server = launch(e2e_env, log_dir, workers=4)
    yield server
    server.stop()

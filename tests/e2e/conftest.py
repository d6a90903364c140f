"""End-to-end fixtures: the API under a real gunicorn (several worker processes) and a
real Celery worker process, on the test database, Redis, the Stripe emulator and an
SMTP sink — everything over real sockets."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests

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
    def __init__(self, process: support.Process, port: int) -> None:
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


class WorkerProcess:
    """A Celery worker as a real child process (so it can be SIGKILLed)."""

    def __init__(self, env: dict[str, str], queue: str, log_dir: Path) -> None:
        self._env, self._queue, self._log_dir = env, queue, log_dir
        self.process: support.Process | None = None

    def start(self, concurrency: int = 1) -> WorkerProcess:
        self.process = support.Process(
            "celery-worker",
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "services.worker.celery_app",
                "worker",
                "-Q",
                self._queue,
                f"--concurrency={concurrency}",
                "--pool=prefork",
                "--without-mingle",
                "--without-gossip",
                "--loglevel=INFO",
            ],
            self._env,
            self._log_dir,
        )
        ok = support.wait_until(
            lambda: "ready." in self.process.output() or self.process.proc.poll() is not None,
            timeout=30,
        )
        if not ok or self.process.proc.poll() is not None:
            raise RuntimeError(f"celery worker did not start:\n{self.process.output()}")
        return self

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop(timeout=15)
            self.process = None


@pytest.fixture
def worker(
    e2e_env: dict[str, str], celery_queue_name: str, log_dir: Path
) -> Iterator[WorkerProcess]:
    proc = WorkerProcess(e2e_env, celery_queue_name, log_dir)
    yield proc
    proc.stop()

"""Test plumbing shared by the suites: a throwaway database, servers as subprocesses."""

from __future__ import annotations

import os
import random
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import psycopg
from alembic import command
from alembic.config import Config
from sqlalchemy.engine import make_url

from devtools.embedded import port_is_open

ROOT = Path(__file__).resolve().parent.parent

TEST_DATABASE_URL = os.environ.get(
    "TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
TEST_REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
WEBHOOK_SECRET = "whsec_test_inkflow"
ADMIN_TOKEN = "test-admin-token"


def create_database() -> str:
    """A fresh, migrated database of our own; returns its URL."""
    server = make_url(libpq_url(TEST_DATABASE_URL))
    name = f"inkflow_test_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(server.render_as_string(hide_password=False), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = server.set(database=name).render_as_string(hide_password=False)
    config = Config(str(ROOT / "alembic.ini"))
    config.set_main_option("script_location", str(ROOT / "migrations"))
    config.attributes["configure_logger"] = False
    config.cmd_opts = None
    os.environ["DATABASE_URL"] = url
    try:
        command.upgrade(config, "head")
    except BaseException:
        drop_database(url)
        raise
    finally:
        del os.environ["DATABASE_URL"]
    return url


def drop_database(url: str) -> None:
    target = make_url(url)
    server = target.set(database=make_url(libpq_url(TEST_DATABASE_URL)).database)
    with psycopg.connect(server.render_as_string(hide_password=False), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{target.database}" WITH (FORCE)')


def free_port() -> int:
    """A free TCP port below 32768: an ephemeral-range port once connected to itself here
    and could not be bound (FIELD-NOTES)."""
    for _ in range(200):
        port = random.randint(20000, 32000)
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port between 20000 and 32000")


def libpq_url(url: str) -> str:
    """The URL without SQLAlchemy's driver name, for psycopg and libpq tools."""
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


def wait_until(predicate: Callable[[], bool], timeout: float, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


def base_env(database_url: str, **extra: str) -> dict[str, str]:
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "REDIS_URL": TEST_REDIS_URL,
        "STRIPE_SECRET_KEY": "sk_test_inkflow",
        "STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "ADMIN_API_TOKEN": ADMIN_TOKEN,
        "LOG_LEVEL": "WARNING",
        "PYTHONPATH": str(ROOT),
    }
    env.update(extra)
    return env


class Process:
    """A child process whose output goes to a log file we can show on failure."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], log_dir: Path) -> None:
        self.name = name
        self.log_path = log_dir / f"{name}-{uuid.uuid4().hex[:6]}.log"
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            args, env=env, cwd=ROOT, stdout=self._log, stderr=subprocess.STDOUT
        )

    def output(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")[-4000:]

    def stop(self, timeout: float = 10) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


def start_gunicorn(env: dict[str, str], port: int, log_dir: Path, workers: int = 4) -> Process:
    env = {**env, "PORT": str(port), "WEB_CONCURRENCY": str(workers)}
    proc = Process(
        "gunicorn",
        [
            sys.executable,
            "-m",
            "gunicorn",
            "--config",
            "python:services.api.gunicorn_conf",
            "services.api.wsgi:app",
        ],
        env,
        log_dir,
    )
    if not wait_until(lambda: port_is_open(port) or proc.proc.poll() is not None, timeout=30):
        proc.stop()
        raise RuntimeError(f"gunicorn did not start:\n{proc.output()}")
    if proc.proc.poll() is not None:
        raise RuntimeError(f"gunicorn exited:\n{proc.output()}")
    return proc

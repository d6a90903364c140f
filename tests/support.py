"""Test plumbing shared by the suites: a throwaway database, servers as subprocesses."""

from __future__ import annotations

import os
import random
import socket
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import redis
from alembic import command
from alembic.config import Config
from sqlalchemy.engine import make_url

from devtools import commands
from devtools.processes import Child, port_is_open
from devtools.processes import wait_until as wait_until  # the tests' polling helper
from tests.contract import register_api_server

ROOT = Path(__file__).resolve().parent.parent

TEST_DATABASE_URL = os.environ.get(
    "TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
TEST_REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
WEBHOOK_SECRET = "whsec_test_inkflow"
# Long enough to be accepted outside development (shared.config.ADMIN_TOKEN_MIN_CHARS).
ADMIN_TOKEN = "test-admin-token-" + "t" * 32
WEB_SECRET_KEY = "test-web-secret-key-for-the-pages-".ljust(48, "w")


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


@contextmanager
def own_celery_queue(prefix: str = "inkflow-test") -> Iterator[str]:
    """A broker queue of our own, deleted at the end with its priority lists (booking
    e-mails: shared/tasks.py) and kombu's routing keys for it: tests never touch others'
    keys."""
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    yield name
    client = redis.Redis.from_url(TEST_REDIS_URL)
    client.delete(name, *client.keys(f"*{name}*"))
    client.close()


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


def base_env(database_url: str, **extra: str) -> dict[str, str]:
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "REDIS_URL": TEST_REDIS_URL,
        "STRIPE_SECRET_KEY": "sk_test_inkflow",
        "STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "ADMIN_API_TOKEN": ADMIN_TOKEN,
        "WEB_SECRET_KEY": WEB_SECRET_KEY,
        "LOG_LEVEL": "WARNING",
        "PYTHONPATH": str(ROOT),
    }
    env.update(extra)
    return env


def start_child(name: str, args: list[str], env: dict[str, str], log_dir: Path) -> Child:
    """A child process whose output goes to its own log file under `log_dir`."""
    return Child(name, args, env=env, log_path=log_dir / f"{name}-{uuid.uuid4().hex[:6]}.log")


def start_gunicorn(env: dict[str, str], port: int, log_dir: Path, workers: int = 4) -> Child:
    env = {**env, "PORT": str(port), "WEB_CONCURRENCY": str(workers)}
    child = start_child("gunicorn", commands.api(), env, log_dir)
    child.wait_ready(lambda: port_is_open(port), timeout=30, what="listen")
    register_api_server(f"http://127.0.0.1:{port}")
    return child

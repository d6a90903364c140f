"""The command lines of inkflow's processes, as production runs them: one place for
`make run`, the bench and the end-to-end tests (docker-compose.yml says the same)."""

from __future__ import annotations

import sys

PY = sys.executable
CELERY_APP = "services.worker.celery_app"


def api() -> list[str]:
    """gunicorn with services/api/gunicorn_conf.py (HOST, PORT, WEB_CONCURRENCY, …)."""
    config = "python:services.api.gunicorn_conf"
    return [PY, "-m", "gunicorn", "--config", config, "services.api.wsgi:app"]


def celery(*args: str) -> list[str]:
    """``celery -A services.worker.celery_app ARGS`` (``worker …``, ``beat …``)."""
    return [PY, "-m", "celery", "-A", CELERY_APP, *args]


def stripe_emulator(port: int, *options: str) -> list[str]:
    """The emulator; `options` such as ``--webhook-url URL --state FILE`` (see its --help)."""
    return [PY, "-m", "devtools.stripe_emulator", "--port", str(port), *options]


def migrate() -> list[str]:
    return [PY, "-m", "alembic", "upgrade", "head"]


def seed() -> list[str]:
    return [PY, "-m", "services.cli", "seed"]

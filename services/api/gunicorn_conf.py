"""gunicorn settings (`--config python:services.api.gunicorn_conf`); overridable by env."""

import os

bind = f"{os.environ.get('HOST', '127.0.0.1')}:{os.environ.get('PORT', '8000')}"
# Processes for the CPU, threads (gthread) to overlap waits on PostgreSQL, Redis and
# above all Stripe (hundreds of ms in production): with 4 sync workers booking creation
# would be capped at a few requests per second per Stripe round trip. `make bench`.
workers = int(os.environ.get("WEB_CONCURRENCY", "4"))
threads = int(os.environ.get("GUNICORN_THREADS", "4"))
worker_class = "gthread" if threads > 1 else "sync"
timeout = 30
graceful_timeout = 10
keepalive = 5
accesslog = os.environ.get("GUNICORN_ACCESS_LOG") or None
errorlog = "-"
loglevel = os.environ.get("LOG_LEVEL", "info").lower()
# Each worker builds its own engine and Redis pool after fork (no preload).
preload_app = False

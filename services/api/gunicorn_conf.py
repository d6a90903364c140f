"""gunicorn settings (`--config python:services.api.gunicorn_conf`); overridable by env."""

import os
import sys
from typing import Any

bind = f"{os.environ.get('HOST', '127.0.0.1')}:{os.environ.get('PORT', '8000')}"
# Processes for the CPU, threads (gthread) to overlap waits on PostgreSQL, Redis and
# above all Stripe (hundreds of ms in production). A thread is busy for the whole Stripe
# call (no database connection is held meanwhile: shared/usecases/booking.py), so the
# threads that hold clients bound the booking rate at threads ÷ Stripe latency.
workers = int(os.environ.get("WEB_CONCURRENCY", "4"))
threads = int(os.environ.get("GUNICORN_THREADS", "32"))
worker_class = "gthread" if threads > 1 else "sync"
# A process never holds more client connections than it has threads. gunicorn does not
# spread connections over its processes: whichever wakes first accepts, and the bench saw
# 64 clients held as [45, 18, 1, 0] and [35, 29, 0, 0] by four processes of 16 threads,
# so one process queued its extra requests behind Stripe's 300 ms while two sat idle.
# With one thread per held connection, 4 × 32 serves 128 connections at once however
# they land; clients beyond that wait in the listen backlog, not behind a busy thread.
worker_connections = int(os.environ.get("GUNICORN_WORKER_CONNECTIONS", str(threads)))
# Connections the kernel queues before a worker accepts them: a burst of 2,000 clients
# for one slot waits here, not refused (the kernel caps it at net.core.somaxconn).
backlog = int(os.environ.get("GUNICORN_BACKLOG", "4096"))
timeout = 30
graceful_timeout = 10
keepalive = 5
accesslog = os.environ.get("GUNICORN_ACCESS_LOG") or None
errorlog = "-"
loglevel = os.environ.get("LOG_LEVEL", "info").lower()
# Each worker builds its own engine and Redis pool after fork (no preload).
preload_app = False
# gunicorn 25+ opens a control socket (for `gunicornc`) at one default path per user,
# $XDG_RUNTIME_DIR/gunicorn.ctl or ~/.gunicorn/gunicorn.ctl: every gunicorn of the user on
# the machine takes it over from the others, and removes it on exit. Off unless asked for
# with a path of this instance's own.
control_socket_path = os.environ.get("GUNICORN_CONTROL_SOCKET")
if control_socket_path:
    control_socket = control_socket_path
else:
    control_socket_disable = True


def on_starting(server: object) -> None:
    """Check the settings once in the master, before any worker forks: a refused start
    (a missing setting, a published development secret in production) is one line and
    exit status 1, instead of a traceback per worker and "Worker failed to boot"."""
    from shared.config import ConfigError, Settings, check_safe_to_run, load_dotenv_for_development

    load_dotenv_for_development()
    try:
        check_safe_to_run(Settings.from_env())
    except ConfigError as exc:
        raise SystemExit(f"inkflow: {exc}") from None


# --- metrics (prometheus_client's multiprocess mode, docs/observability.md) ------------
# Each worker writes its samples to PROMETHEUS_MULTIPROC_DIR and GET /metrics adds them
# up. Set up here, as the configuration loads: before the app (and prometheus_client) is
# imported, with preload_app or without, whatever the worker class. Once per master: a
# reload (HUP) reads this file again but must not wipe the files of live workers. Only
# when gunicorn loads it (the bench imports it to read the values above).
if "gunicorn.arbiter" in sys.modules and os.environ.get("INKFLOW_METRICS_MASTER") != str(
    os.getpid()
):
    from shared.adapters import metrics_dir

    metrics_dir.prepare()
    os.environ["INKFLOW_METRICS_MASTER"] = str(os.getpid())


def child_exit(server: object, worker: Any) -> None:
    """A worker is gone (exited, killed, recycled): its live gauges stop counting."""
    from shared.adapters import metrics

    metrics.mark_process_dead(worker.pid)


def on_exit(server: object) -> None:
    from shared.adapters import metrics_dir

    metrics_dir.cleanup()  # (the directory it made, if it made one)

"""gunicorn settings (`--config python:services.api.gunicorn_conf`); overridable by env."""

import os

bind = f"{os.environ.get('HOST', '127.0.0.1')}:{os.environ.get('PORT', '8000')}"
# Processes for the CPU, threads (gthread) to overlap waits on PostgreSQL, Redis and
# above all Stripe (hundreds of ms in production). A thread is busy for the whole Stripe
# call (no database connection is held meanwhile: shared/usecases/booking.py), so the
# threads of one instance bound its booking rate at threads ÷ Stripe latency: 4 × 16 = 64
# at 300 ms ≈ 210 bookings/s, what two cores serve when Stripe answers at once (measured:
# `make bench`, stage stripe_latency; 4 × 4 gave 53/s at 300 ms). README "Concurrency".
workers = int(os.environ.get("WEB_CONCURRENCY", "4"))
threads = int(os.environ.get("GUNICORN_THREADS", "16"))
worker_class = "gthread" if threads > 1 else "sync"
# A gthread worker otherwise accepts up to 1,000 keep-alive connections and keeps them:
# one worker could hold nearly every client and, bound by the GIL, use one core while
# the others idle (measured: 135 vs ~215 bookings/s). Beyond this, clients wait in the
# listen backlog for whichever worker has room; 4 x threads keeps most keep-alive
# connections open (2 x threads forced reconnects: availability fell 25%).
worker_connections = int(os.environ.get("GUNICORN_WORKER_CONNECTIONS", str(4 * threads)))
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

"""gunicorn settings (`--config python:services.api.gunicorn_conf`); overridable by env."""

import os

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

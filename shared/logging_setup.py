"""Logging configured by the process entry points (never at import time), and the
request id that follows one request's work through the API and into the Celery tasks it
caused (`X-Request-ID`; see docs/observability.md).

LOG_FORMAT=text (the default, for a terminal) or json (one object per line, for a log
shipper: python-json-logger). Either way every line logged while a request or a task
runs carries its request id.
"""

from __future__ import annotations

import logging
import random
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from pythonjsonlogger.json import JsonFormatter

LOG_FORMATS = ("text", "json")
REQUEST_ID_HEADER = "X-Request-ID"
# What a caller's id may be: a UUID, a trace id, a proxy's id. Anything else (too long,
# spaces, quotes, control characters: a way to forge log lines) is replaced by our own.
REQUEST_ID_MAX_LENGTH = 128
_SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@+=/-]*")

# The id of the request (or task) this thread is working for; None outside one.
_request_id: ContextVar[str | None] = ContextVar("inkflow_request_id", default=None)


def sanitise_request_id(raw: str | None) -> str | None:
    """The caller's id if it is safe to log and echo, else None."""
    if raw is None or not 0 < len(raw) <= REQUEST_ID_MAX_LENGTH:
        return None
    return raw if _SANE_REQUEST_ID.fullmatch(raw) else None


def new_request_id() -> str:
    """32 random hex digits, as a uuid4's. Not a secret, only a name to correlate log
    lines: `random` (reseeded in each forked process) spares every request the
    os.urandom system call of uuid4, which under gunicorn's threads also gives up and
    waits to take back the GIL."""
    return f"{random.getrandbits(128):032x}"


def current_request_id() -> str | None:
    return _request_id.get()


@contextmanager
def request_id_bound(request_id: str | None) -> Iterator[None]:
    """Every log line inside carries `request_id` (a task carries its request's id)."""
    token = _request_id.set(request_id)
    try:
        yield
    finally:
        _request_id.reset(token)


def bind_request_id(request_id: str | None) -> object:
    """For hooks that cannot wrap the work in a `with` (Flask's before/teardown, Celery's
    prerun/postrun signals): returns the token `unbind_request_id` takes."""
    return _request_id.set(request_id)


def unbind_request_id(token: object) -> None:
    _request_id.reset(token)  # type: ignore[arg-type]


class RequestIdFilter(logging.Filter):
    """Adds `request_id` to each record (None outside a request or task)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = _request_id.get()
        return True


class TextFormatter(logging.Formatter):
    """The development format, with the request id when there is one."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s [%(process)d] %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        request_id = getattr(record, "request_id", None)
        return f"{line} [request_id={request_id}]" if request_id else line


def json_formatter() -> logging.Formatter:
    # `time`: ISO 8601 in UTC, what log shippers parse without configuration.
    return JsonFormatter(
        "{levelname}{name}{process}{message}{request_id}",
        style="{",
        rename_fields={"levelname": "level", "name": "logger"},
        timestamp="time",
    )


def configure_logging(level: str, log_format: str = "text") -> None:
    # The Stripe SDK logs two INFO lines per API call: request boilerplate, DEBUG here.
    demote("stripe", "message='Request to Stripe api'", "message='Stripe API response'")
    root = logging.getLogger()
    if getattr(root, "_inkflow_configured", False):
        root.setLevel(level)
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(json_formatter() if log_format == "json" else TextFormatter())
    root.addHandler(handler)
    root.setLevel(level)
    root._inkflow_configured = True  # type: ignore[attr-defined]


class Demote(logging.Filter):
    """Shows a library's routine INFO lines (those starting with one of `prefixes`) at
    DEBUG only: a log at INFO keeps one line per business event, not per task or tick."""

    def __init__(self, *prefixes: str) -> None:
        super().__init__()
        self.prefixes = prefixes

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno == logging.INFO and str(record.msg).startswith(self.prefixes):
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
            return logging.getLogger().isEnabledFor(logging.DEBUG)
        return True


def demote(logger_name: str, *prefixes: str) -> None:
    logger = logging.getLogger(logger_name)
    if not any(isinstance(f, Demote) and f.prefixes == prefixes for f in logger.filters):
        logger.addFilter(Demote(*prefixes))

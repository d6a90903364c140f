"""Per-request telemetry: the request id (X-Request-ID) and the latency histogram.

The id is the caller's when it is sane (`shared.logging_setup.sanitise_request_id`),
else a new one; it is echoed in the response, carried by every log line of the request
and by the Celery tasks it enqueues (`shared.adapters.queue`), the ones the
EffectRunner sends after the commit included. The latency is recorded per route (the
URL rule, so `/api/bookings/<booking_id>` is one series however many bookings there
are), method and status.
"""

from __future__ import annotations

import time

from flask import Flask, Response, g, request

from shared.adapters import metrics
from shared.logging_setup import (
    REQUEST_ID_HEADER,
    bind_request_id,
    new_request_id,
    sanitise_request_id,
    unbind_request_id,
)

# A request no route matched (404, or 405 on a known path): one series for all of them,
# or any scanner would create a series per path it tries.
UNMATCHED = "<unmatched>"


def install(app: Flask) -> None:
    # First of the before_request hooks: the id is bound before anything can log, the
    # authentication and body checks included.
    app.before_request_funcs.setdefault(None, []).insert(0, _start)
    app.after_request(_finish)
    app.teardown_request(_unbind)


def _start() -> None:
    g.request_started = time.perf_counter()
    g.request_id = sanitise_request_id(request.headers.get(REQUEST_ID_HEADER)) or new_request_id()
    g.request_id_token = bind_request_id(g.request_id)


def _finish(response: Response) -> Response:
    # A response made without the before_request hooks (none today) still gets an id.
    request_id = g.get("request_id") or new_request_id()
    response.headers[REQUEST_ID_HEADER] = request_id
    started = g.get("request_started")
    if started is not None:
        rule = request.url_rule
        metrics.HTTP_REQUEST_SECONDS.labels(
            rule.rule if rule is not None else UNMATCHED, request.method, str(response.status_code)
        ).observe(time.perf_counter() - started)
    return response


def _unbind(_: BaseException | None) -> None:
    token = g.pop("request_id_token", None)
    if token is not None:
        unbind_request_id(token)

"""Request-rate limits on booking creation and availability (RATE_LIMITS), with
Flask-Limiter counting in the Redis the app already uses.

Each limited route has two counters, so that neither a client spread over many
addresses nor one address posing as many clients gets past: one per client — the
token's subject with client JWTs on (AUTH_JWT_SECRET), else the `clientId` the body names
(the address when it names none) — and one per address (`request.remote_addr`; behind a
reverse proxy set TRUSTED_PROXIES so that it is the client's). The operator's token is
never limited. A request over a limit answers 429 RATE_LIMITED with `Retry-After`.

RATE_LIMITS unset: nothing is installed, so load tests and benches are not throttled.
Redis unreachable: requests are not refused for it (they are what matters); the limiter
logs a warning and counts in the process's memory until Redis answers again.
"""

from __future__ import annotations

import hmac
import logging
import math
import time
from collections.abc import Callable
from typing import Any

from flask import Flask, Response, request
from flask_limiter import Limiter, RateLimitExceeded
from flask_limiter.util import get_remote_address

from services.api.bodies import MAX_BODY_BYTES
from services.api.errors import RETRY_AFTER_DETAIL, error_response
from shared.adapters import tokens
from shared.config import Settings
from shared.domain.errors import DomainError, ErrorCode

log = logging.getLogger("inkflow.api")

# The endpoints RATE_LIMITS names (`shared.config.RATE_LIMITED_ROUTES`).
ENDPOINTS = {"booking": "bookings.create_booking", "availability": "availability.post_availability"}
KEY_PREFIX = "inkflow-ratelimit"
# A Redis that does not answer must not hold a request up for long.
STORAGE_OPTIONS: dict[str, str | int] = {"socket_timeout": 1, "socket_connect_timeout": 1}


def install(app: Flask, settings: Settings) -> Limiter | None:
    """Limit the RATE_LIMITS routes of `app` (after its blueprints). None when unset."""
    if not settings.rate_limits:
        return None
    limiter = Limiter(
        get_remote_address,
        app=app,
        storage_uri=settings.redis_url,
        storage_options=STORAGE_OPTIONS,
        key_prefix=KEY_PREFIX,
        strategy="moving-window",
        # Redis down: count in memory (a warning, once) rather than answer 500.
        in_memory_fallback_enabled=True,
        swallow_errors=True,
    )
    limiter.logger = log.getChild("ratelimit")
    keys: dict[str, Callable[[], str]] = {
        "client": lambda: _client_key(settings),
        "ip": lambda: f"ip:{get_remote_address()}",
    }
    for entry, limits in settings.rate_limits:
        route, key = entry.split(".")
        endpoint = ENDPOINTS[route]
        limited: Any = limiter.limit(
            limits,
            key_func=keys[key],
            scope=entry,
            exempt_when=lambda: _is_operator(settings),
        )(app.view_functions[endpoint])
        # Flask-Limiter checks in the wrapper it returns: this app's endpoint serves it.
        app.view_functions[endpoint] = limited

    @app.errorhandler(RateLimitExceeded)
    def _too_many(error: RateLimitExceeded) -> Response:
        limit = limiter.current_limit
        reset_at = limit.reset_at if limit is not None else time.time() + 1
        seconds = max(1, math.ceil(reset_at - time.time()))
        problem = DomainError(
            ErrorCode.RATE_LIMITED,
            f"too many requests (at most {error.limit.limit}); retry after {seconds} s",
            {RETRY_AFTER_DETAIL: seconds},
        )
        return error_response(problem, headers={"Retry-After": str(seconds)})

    return limiter


def _bearer() -> str | None:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


def _is_operator(settings: Settings) -> bool:
    token = _bearer()
    return token is not None and hmac.compare_digest(
        token.encode(), settings.admin_api_token.encode()
    )


def _client_key(settings: Settings) -> str:
    """Who the request is for: the JWT's subject, else the body's clientId, else the
    address. An invalid token is keyed by address (auth answers it 401 right after)."""
    token = _bearer()
    if settings.auth_jwt_secret is not None and token is not None:
        try:
            principal = tokens.verify(settings.auth_jwt_secret, token)
        except tokens.InvalidToken:
            return f"ip:{get_remote_address()}"
        return f"{principal.role.value}:{principal.id}"
    # Only a body the handler will read anyway (JSON, within the limit): one too large must
    # reach the handler's 413, not fail here.
    size = request.content_length
    readable = request.is_json and size is not None and size <= MAX_BODY_BYTES
    body = request.get_json(silent=True) if readable else None
    client_id = body.get("clientId") if isinstance(body, dict) else None
    if isinstance(client_id, str) and client_id:
        return f"client:{client_id[:64]}"
    return f"ip:{get_remote_address()}"

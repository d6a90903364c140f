"""What every web page shares: the session cookie, CSRF, rendering and error pages.

The pages are server-rendered Jinja templates (services/api/templates) with hand-written
CSS and a little plain JavaScript (services/api/static): no build step, no CDN, no
inline script or style, so the Content-Security-Policy can forbid both. Each page
blueprint is made by `page_blueprint`, which

- leaves its routes out of the OpenAPI document (they answer HTML, not the JSON API)
  and out of the bearer-token rules: a page reads no token; one that is not for
  everyone checks the signed session cookie itself;
- checks a CSRF token on every POST, PUT, PATCH and DELETE (Flask-WTF's CSRFProtect,
  scoped to the page blueprints: the JSON API stays token-based and is not touched);
- answers errors as HTML pages, with the same statuses as the API.

The session is Flask's signed cookie, keyed by WEB_SECRET_KEY, which production requires
(`shared.config.check_safe_to_run`). In development without it the pages answer 503 and
say so; the JSON API runs as before.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from flask import Blueprint, Flask, Response, current_app, render_template, request
from flask.sessions import SecureCookieSession, SecureCookieSessionInterface
from flask.wrappers import Request
from flask_wtf.csrf import CSRFError, CSRFProtect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from werkzeug.exceptions import HTTPException

from services.api.errors import HTTP_STATUS
from services.api.openapi import undocumented
from shared.adapters.db import is_momentary
from shared.config import Settings
from shared.domain.errors import DomainError, ErrorCode

log = logging.getLogger("inkflow.pages")

HERE = Path(__file__).resolve().parent
TEMPLATES = str(HERE.parent / "templates")
STATIC = str(HERE.parent / "static")
CONFIGURED_KEY = "inkflow.pages"
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})

csrf = CSRFProtect()

# Where a signed-cookie session is opened: the page blueprints' prefixes (page_blueprint).
_SESSION_PREFIXES: list[str] = []


class PageSessions(SecureCookieSessionInterface):
    """Flask opens the session of every request (a serializer and a cookie parse); only the
    pages have one, so the JSON API and the webhook — the measured paths — skip it."""

    def open_session(self, app: Flask, request: Request) -> SecureCookieSession | None:
        if not request.path.startswith(tuple(_SESSION_PREFIXES)):
            return self.make_null_session(app)
        return super().open_session(app, request)


# The static files (CSS, JavaScript) of every page, under /static/.
assets = undocumented(
    Blueprint("assets", __name__, static_folder=STATIC, static_url_path="/static"),
    "the web pages' CSS and JavaScript",
    prefixes=("/static/",),
)

# What a page says for each error code (the API's messages are written for developers).
_SAYS: Mapping[ErrorCode, str] = {
    ErrorCode.NOT_FOUND: "We could not find that page. The link may be wrong or out of date.",
    ErrorCode.FORBIDDEN: (
        "This page is not yours to see. Open it from the link in your confirmation email."
    ),
    ErrorCode.SLOT_TAKEN: "Someone has just taken that time. Please choose another one.",
    ErrorCode.SLOT_UNAVAILABLE: "That time is no longer available. Please choose another one.",
    ErrorCode.STRIPE_NOT_CONFIGURED: (
        "This artist cannot take deposits online yet. Please contact them directly."
    ),
    ErrorCode.PAYMENT_PROVIDER_ERROR: (
        "The payment service did not answer. Nothing was charged; please try again."
    ),
    ErrorCode.RATE_LIMITED: "Too many requests. Please wait a moment and try again.",
    ErrorCode.SERVICE_UNAVAILABLE: "We are briefly unavailable. Please try again in a moment.",
    ErrorCode.INTERNAL_ERROR: "Something went wrong on our side. Please try again.",
}


def configure(app: Flask, settings: Settings) -> None:
    """The session cookie and CSRF for the page blueprints (call once, in the factory)."""
    app.config.update(
        SECRET_KEY=settings.web_secret_key,
        SESSION_COOKIE_NAME="inkflow_session",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=settings.public_base_url.startswith("https://"),
        # CSRF only where a page blueprint asks for it (`page_blueprint`): the JSON API
        # authenticates with bearer tokens, which a browser never sends on its own.
        WTF_CSRF_CHECK_DEFAULT=False,
        WTF_CSRF_TIME_LIMIT=2 * 3600,
    )
    app.session_interface = PageSessions()
    app.extensions[CONFIGURED_KEY] = settings.web_secret_key is not None
    if settings.web_secret_key is None:
        log.warning("WEB_SECRET_KEY is not set: the web pages answer 503 until it is")
    csrf.init_app(app)


def page_blueprint(name: str, import_name: str, *, prefixes: Sequence[str]) -> Blueprint:
    """A blueprint of HTML pages under `prefixes` (see the module docstring)."""
    bp = undocumented(
        Blueprint(name, import_name, template_folder=TEMPLATES),
        "HTML pages, not the JSON API",
        prefixes=prefixes,
    )
    _SESSION_PREFIXES.extend(p for p in prefixes if p not in _SESSION_PREFIXES)
    bp.before_request(_before_page)
    bp.after_request(_after_page)
    bp.register_error_handler(DomainError, _domain_error)
    bp.register_error_handler(CSRFError, _csrf_error)
    bp.register_error_handler(HTTPException, _http_error)
    bp.register_error_handler(Exception, _unexpected)
    return bp


def _before_page() -> Response | None:
    if not current_app.extensions.get(CONFIGURED_KEY):
        return error_page(
            503,
            "Web pages are switched off",
            "The server has no WEB_SECRET_KEY setting, which the web pages need.",
        )
    if request.method in UNSAFE_METHODS:
        csrf.protect()  # raises CSRFError (400): rendered by `_csrf_error`
    return None


def _after_page(response: Response) -> Response:
    # Pages show personal data (a booking, its client): never kept by a shared cache.
    response.headers.setdefault("Cache-Control", "no-store")
    response.vary.add("Cookie")
    return response


def render(template: str, http_status: int = 200, **context: Any) -> Response:
    response = Response(render_template(template, **context), status=http_status)
    response.mimetype = "text/html"
    return response


def error_page(status: int, title: str, message: str) -> Response:
    return render("pages/error.html", status, title=title, message=message)


def message_for(error: DomainError) -> str:
    return _SAYS.get(error.code) or error.message


def _domain_error(error: DomainError) -> Response:
    return error_page(HTTP_STATUS[error.code], "Sorry", message_for(error))


def _csrf_error(error: CSRFError) -> Response:
    return error_page(
        400,
        "Please try again",
        "This form was open too long or came from another site. Go back, reload the page "
        "and send it again.",
    )


def _http_error(error: HTTPException) -> Response:
    status = error.code or 500
    if status == 404:
        return error_page(404, "Not found", _SAYS[ErrorCode.NOT_FOUND])
    return error_page(status, error.name, error.description or "")


def _unexpected(error: Exception) -> Response:
    # A blueprint's handler wins over the app's JSON ones for every exception raised in
    # a page, so the database's momentary failures are told apart here too.
    if (isinstance(error, DBAPIError) and is_momentary(error)) or isinstance(error, PoolTimeout):
        log.warning("database momentarily unavailable on a page: %s", type(error).__name__)
        return error_page(503, "Please try again", _SAYS[ErrorCode.SERVICE_UNAVAILABLE])
    log.exception("unhandled error on a page")
    return error_page(500, "Sorry", _SAYS[ErrorCode.INTERNAL_ERROR])


PageView = Callable[..., Response]

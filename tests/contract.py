"""Every answer the test suite receives from the API is checked against the OpenAPI
document (openapi-core): its status must be declared for that operation, its body must
match that status's schema (strict: no unknown key, every key present), its declared
headers must be there.

`tests/conftest.py` switches this on for the whole session, so no test can forget it:
Flask test clients are `CheckedClient`s (checked against their app's document), and
`requests` responses from any API server the tests started (`support.start_gunicorn`
registers it) are checked in `Session.send` against the document of the routes — the
same code in the same checkout, which test_openapi holds equal to what is served.

A request for a route the API does not serve must answer 404 NOT_FOUND, and a method a
route does not serve 405 VALIDATION_ERROR; both are checked against the error schemas.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from typing import Any
from urllib.parse import urlsplit

import icalendar
import requests
from flask import Flask
from flask.testing import FlaskClient
from openapi_core import Config, OpenAPI
from openapi_core.contrib.requests import RequestsOpenAPIRequest, RequestsOpenAPIResponse
from openapi_core.contrib.werkzeug import WerkzeugOpenAPIRequest, WerkzeugOpenAPIResponse
from openapi_core.exceptions import OpenAPIError
from openapi_core.templating.paths.exceptions import OperationNotFound, PathNotFound
from openapi_schema_validator import OAS31Validator
from werkzeug.test import TestResponse

from services.api.openapi import document_app, openapi_json, undocumented_prefixes

REF = "#/components/schemas/{}"
# What the router answers for a path or a method it does not serve.
UNROUTED = {PathNotFound: (404, "NotFoundError"), OperationNotFound: (405, "ValidationError")}


class ResponseMismatch(AssertionError):
    """An answer the OpenAPI document does not allow."""


@dataclass
class Findings:
    """Mismatches seen since the last `take()`; a test's teardown fails on any it missed
    (one raised in a worker thread may have been swallowed)."""

    _lock: threading.Lock = field(default_factory=threading.Lock)
    _found: list[str] = field(default_factory=list)

    def add(self, message: str) -> None:
        with self._lock:
            self._found.append(message)

    def take(self) -> list[str]:
        with self._lock:
            found, self._found = self._found, []
        return found


FINDINGS = Findings()
_API_ORIGINS: set[str] = set()
_BUILD_LOCK = threading.Lock()


def _icalendar_loads(value: bytes, **parameters: str) -> str:
    """A `text/calendar` body (the artists' feeds) must parse as iCalendar; its schema then
    sees the text."""
    try:
        icalendar.Calendar.from_ical(value)
    except ValueError as exc:  # the library's parse errors are ValueErrors
        raise ValueError(f"not iCalendar: {exc}") from exc
    return value.decode(parameters.get("charset", "utf-8"))


# Media types our answers use that openapi-core would otherwise hand over as bytes.
_DESERIALIZERS: dict[str, Callable[[bytes], Any]] = {"text/calendar": _icalendar_loads}


@cache
def _build(document: bytes) -> tuple[OpenAPI, dict[str, Any]]:
    spec = json.loads(document)
    config = Config(extra_media_type_deserializers=_DESERIALIZERS)
    return OpenAPI.from_dict(spec, config=config), spec


def _openapi(document: bytes) -> tuple[OpenAPI, dict[str, Any]]:
    """One validator per distinct document (building it validates the document itself),
    built once even when many threads ask at the same time."""
    with _BUILD_LOCK:
        return _build(document)


def _describe(exc: Exception) -> str:
    schema_errors = getattr(exc.__cause__, "schema_errors", None)
    if not schema_errors:
        cause = f" ({type(exc.__cause__).__name__}: {exc.__cause__})" if exc.__cause__ else ""
        return f"{type(exc).__name__}: {exc}{cause}"
    lines = [f"{type(exc).__name__}: the body does not match the schema"]
    for error in schema_errors:
        where = "/".join(str(p) for p in error.absolute_path) or "(body)"
        lines.append(f"  at {where}: {error.message}")
    return "\n".join(lines)


def check(
    document: bytes,
    request: Any,
    response: Any,
    *,
    method: str,
    path: str,
    status: int,
    body: Callable[[], bytes],
) -> None:
    """Raise ResponseMismatch (and remember it) if `response` breaks `document`."""
    if path.startswith(undocumented_prefixes()):
        return  # the HTML reference (/docs), left out of the document on purpose
    api, spec = _openapi(document)
    try:
        api.validate_response(request, response)
        return
    except (PathNotFound, OperationNotFound) as exc:
        problem = _check_unrouted(spec, type(exc), status, body())
    except OpenAPIError as exc:
        problem = _describe(exc)
    if problem is None:
        return
    text = body()[:600].decode(errors="replace")
    message = (
        f"{method.upper()} {path} answered {status}, which the OpenAPI document does not "
        f"allow:\n{problem}\nbody: {text}"
    )
    FINDINGS.add(message)
    raise ResponseMismatch(message)


def _check_unrouted(
    spec: dict[str, Any], kind: type[OpenAPIError], status: int, body: bytes
) -> str | None:
    expected_status, schema_name = UNROUTED[kind]
    if status != expected_status:
        return f"{kind.__name__}: an unserved route or method answers {expected_status}"
    schema = {"$ref": REF.format(schema_name), "components": spec["components"]}
    try:
        payload = json.loads(body)
    except ValueError:
        return "not JSON"
    errors = [e.message for e in OAS31Validator(schema).iter_errors(payload)]
    return "; ".join(errors) or None


# --------------------------------------------------------------------------- Flask


class _AnsweredRequest(WerkzeugOpenAPIRequest):
    """The request, for finding its operation: the app has consumed its body already."""

    @property
    def body(self) -> bytes | None:
        return None


class CheckedClient(FlaskClient):
    """A Flask test client that checks every answer against the app's own document."""

    def open(self, *args: Any, **kwargs: Any) -> TestResponse:
        response = super().open(*args, **kwargs)
        app: Flask = self.application
        request = response.request
        check(
            openapi_json(app),
            _AnsweredRequest(request),
            WerkzeugOpenAPIResponse(response),
            method=request.method,
            path=request.path,
            status=response.status_code,
            body=lambda: response.get_data(),
        )
        return response


# --------------------------------------------------------------------------- requests


def register_api_server(origin: str) -> None:
    """Answers from `origin` (`http://127.0.0.1:PORT`) are checked from now on."""
    _API_ORIGINS.add(origin.rstrip("/"))


@cache
def _routes_document() -> bytes:
    return openapi_json(document_app())


def _document_for(origin: str) -> bytes:
    """All our servers run the code of this checkout: they serve the routes' document."""
    with _BUILD_LOCK:
        return _routes_document()


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def check_requests_response(response: requests.Response) -> None:
    prepared = response.request
    origin = _origin(prepared.url or "")
    if origin not in _API_ORIGINS:
        return  # the Stripe emulator, the SMTP sink's web view …: not our API
    check(
        _document_for(origin),
        RequestsOpenAPIRequest(prepared),
        RequestsOpenAPIResponse(response),
        method=prepared.method or "",
        path=urlsplit(prepared.url or "").path,
        status=response.status_code,
        body=lambda: response.content,
    )


def checked_send(send: Callable[..., requests.Response]) -> Callable[..., requests.Response]:
    """Wrap `requests.Session.send` so that every answer of our API is checked."""

    def send_and_check(
        session: requests.Session, request: requests.PreparedRequest, **kwargs: Any
    ) -> requests.Response:
        response = send(session, request, **kwargs)
        check_requests_response(response)
        return response

    return send_and_check

"""The check every test's answers go through (`tests/contract.py`) refuses what the
OpenAPI document does not allow, through both the Flask test client and `requests`."""

from __future__ import annotations

import json
from typing import Any

import pytest
import requests
from flask import Flask
from openapi_core.contrib.werkzeug import WerkzeugOpenAPIResponse
from werkzeug.test import EnvironBuilder
from werkzeug.wrappers import Request, Response

from services.api.openapi import openapi_json
from tests import contract

LEAVE = {
    "id": "6a3c6b9e-0000-4000-8000-000000000001",
    "artistId": "6a3c6b9e-0000-4000-8000-000000000002",
    "startTime": "2026-02-05T11:00:00.000Z",
    "endTime": "2026-02-05T12:00:00.000Z",
    "reason": None,
    "createdAt": "2026-02-01T09:30:00.000Z",
}
LEAVES_PATH = "/api/admin/artists/6a3c6b9e-0000-4000-8000-000000000002/leaves"


def check_flask(
    app: Flask,
    method: str,
    path: str,
    status: int,
    body: Any,
    headers: dict[str, str] | None = None,
) -> None:
    request = Request(EnvironBuilder(method=method, path=path).get_environ())
    response = Response(json.dumps(body), status=status, mimetype="application/json")
    # Every answer of the app carries X-Request-ID (services/api/telemetry.py).
    response.headers.update({"X-Request-ID": "contract-check", **(headers or {})})
    contract.check(
        openapi_json(app),
        contract._AnsweredRequest(request),
        WerkzeugOpenAPIResponse(response),
        method=method,
        path=path,
        status=status,
        body=response.get_data,
    )


@pytest.fixture(autouse=True)
def _forget_expected_findings():
    yield
    contract.FINDINGS.take()  # the mismatches provoked here are the point


def test_a_conforming_answer_passes(app):
    check_flask(app, "POST", LEAVES_PATH, 201, {**LEAVE, "conflicts": [], "cancelled": []})
    check_flask(app, "GET", LEAVES_PATH, 200, {"items": [LEAVE]})


@pytest.mark.parametrize(
    ("case", "body"),
    [
        ("a key removed", {k: v for k, v in LEAVE.items() if k != "createdAt"}),
        ("a key added", {**LEAVE, "color": "red"}),
        ("a number as a string", {**LEAVE, "id": 7}),
        ("a timestamp without milliseconds", {**LEAVE, "createdAt": "2026-02-01T09:30:00Z"}),
        ("a timestamp with an offset", {**LEAVE, "startTime": "2026-02-05T12:00:00.000+01:00"}),
        ("a bare list", [LEAVE]),
    ],
)
def test_a_body_that_drifted_fails(app, case, body):
    with pytest.raises(contract.ResponseMismatch):
        check_flask(app, "POST", LEAVES_PATH, 201, body)


def test_an_answer_without_its_request_id_fails(app):
    with pytest.raises(contract.ResponseMismatch, match="should be non-empty"):
        check_flask(
            app,
            "POST",
            LEAVES_PATH,
            201,
            {**LEAVE, "conflicts": [], "cancelled": []},
            headers={"X-Request-ID": ""},
        )


def test_an_undeclared_status_fails(app):
    with pytest.raises(contract.ResponseMismatch, match="418"):
        check_flask(app, "POST", LEAVES_PATH, 418, LEAVE)
    # 409 is a contract code, but not one this route declares.
    with pytest.raises(contract.ResponseMismatch):
        check_flask(app, "POST", LEAVES_PATH, 409, {"error": "SLOT_TAKEN", "message": "x"})


def test_an_error_code_must_match_its_status(app):
    check_flask(
        app, "POST", LEAVES_PATH, 404, {"error": "NOT_FOUND", "message": "Artist not found."}
    )
    with pytest.raises(contract.ResponseMismatch):
        check_flask(app, "POST", LEAVES_PATH, 404, {"error": "FORBIDDEN", "message": "x"})


def test_declared_headers_must_be_there(app):
    unauthorized = {"error": "UNAUTHORIZED", "message": "A valid token is required."}
    check_flask(app, "GET", LEAVES_PATH, 401, unauthorized, {"WWW-Authenticate": "Bearer"})
    with pytest.raises(contract.ResponseMismatch, match="WWW-Authenticate"):
        check_flask(app, "GET", LEAVES_PATH, 401, unauthorized)


def test_unserved_routes_and_methods_must_answer_the_routers_errors(app):
    check_flask(app, "GET", "/nothing", 404, {"error": "NOT_FOUND", "message": "Not found."})
    check_flask(app, "DELETE", "/healthz", 405, {"error": "VALIDATION_ERROR", "message": "x"})
    with pytest.raises(contract.ResponseMismatch):
        check_flask(app, "GET", "/nothing", 200, {"status": "ok"})
    with pytest.raises(contract.ResponseMismatch):
        check_flask(app, "DELETE", "/healthz", 405, {"status": "ok"})


def test_the_flask_test_client_checks_every_answer(client):
    assert isinstance(client, contract.CheckedClient)


def test_requests_answers_of_an_api_server_are_checked(app, monkeypatch):
    origin = "http://127.0.0.1:9"  # never contacted: the answers are built here
    contract.register_api_server(origin)
    document = openapi_json(app)
    monkeypatch.setattr(contract, "_document_for", lambda _origin: document)

    def answer(status: int, body: Any, url: str = f"{origin}/healthz") -> requests.Response:
        response = requests.Response()
        response.status_code = status
        response._content = json.dumps(body).encode()
        response.headers["Content-Type"] = "application/json"
        response.headers["X-Request-ID"] = "contract-check"
        response.request = requests.Request("GET", url).prepare()
        return response

    contract.check_requests_response(answer(200, {"status": "ok"}))
    with pytest.raises(contract.ResponseMismatch):
        contract.check_requests_response(answer(200, {"status": "fine"}))
    with pytest.raises(contract.ResponseMismatch):
        contract.check_requests_response(answer(201, {"status": "ok"}))
    # Other servers (the Stripe emulator …) are not ours to check.
    contract.check_requests_response(answer(200, {"any": 1}, "http://127.0.0.1:8/v1/charges"))


def test_requests_sessions_check_answers():
    assert requests.Session.send.__name__ == "send_and_check"

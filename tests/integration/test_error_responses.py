"""How errors leave the API: the contract's body, the status of each code, and the
headers some codes carry."""

from __future__ import annotations

import json

import pytest

from services.api.errors import HTTP_STATUS, WHEN, error_response
from shared.domain.errors import MESSAGES, DomainError, ErrorCode


def test_every_code_has_a_status_a_message_and_a_description():
    assert set(HTTP_STATUS) == set(ErrorCode) == set(MESSAGES) == set(WHEN)


@pytest.mark.parametrize(("details", "retry_after"), [(None, "2"), ({"retryAfterSeconds": 5}, "5")])
def test_service_unavailable_says_when_to_retry(app, details, retry_after):
    with app.app_context():
        response = error_response(DomainError(ErrorCode.SERVICE_UNAVAILABLE, details=details))
    assert response.status_code == 503
    assert response.headers["Retry-After"] == retry_after
    body = json.loads(response.get_data())
    assert body["error"] == "SERVICE_UNAVAILABLE"
    assert body["message"]
    assert body.get("details") == details


def test_extra_headers_ride_along(app):
    with app.app_context():
        response = error_response(DomainError(ErrorCode.RATE_LIMITED), headers={"X-A": "b"})
    assert (response.status_code, response.headers["X-A"]) == (429, "b")
    assert json.loads(response.get_data()) == {
        "error": "RATE_LIMITED",
        "message": MESSAGES[ErrorCode.RATE_LIMITED],
    }


def test_unauthorized_names_the_scheme(client):
    response = client.get("/api/admin/clients")
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert response.json["error"] == "UNAUTHORIZED"


def test_a_body_over_one_mib_is_payload_too_large(client, admin_headers):
    response = client.post(
        "/api/admin/clients",
        data=b"{" + b" " * (1024 * 1024) + b"}",
        headers={**admin_headers, "Content-Type": "application/json"},
    )
    assert response.status_code == 413
    assert response.json["error"] == "PAYLOAD_TOO_LARGE"


def test_a_method_the_route_does_not_serve_lists_those_it_does(client, admin_headers):
    response = client.delete("/api/admin/clients", headers=admin_headers)
    assert response.status_code == 405
    assert response.json["error"] == "VALIDATION_ERROR"
    assert set(response.headers["Allow"].replace(" ", "").split(",")) >= {"GET", "POST"}

"""GET /openapi.json: served publicly, documents exactly the app's routes, refs resolve."""

from __future__ import annotations

import re
from typing import Any

import pytest

from services.api.openapi import build_openapi
from shared.domain.errors import ErrorCode

HTTP_METHODS = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}
UNDOCUMENTED_RULES = {"/openapi.json"}  # the document itself need not be listed
CLIENT_PATHS = {"/api/availability", "/api/bookings/create", "/api/bookings/{booking_id}"}
FLASK_VARIABLE = re.compile(r"<(?:[^<>:]+:)?([^<>]+)>")
PATH_TEMPLATE = re.compile(r"{([^{}]+)}")


@pytest.fixture
def document(client) -> dict[str, Any]:
    response = client.get("/openapi.json")
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    return response.json


def operations(doc: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (path, method, op)
        for path, item in doc["paths"].items()
        for method, op in item.items()
        if method in HTTP_METHODS
    ]


def app_routes(app) -> set[tuple[str, str]]:
    routes = set()
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static" or rule.rule in UNDOCUMENTED_RULES:
            continue
        path = FLASK_VARIABLE.sub(r"{\1}", rule.rule)
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            routes.add((path, method.lower()))
    return routes


def resolve(doc: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), f"external or relative $ref {ref!r}"
    node: Any = doc
    for part in ref[2:].split("/"):
        part = part.replace("~1", "/").replace("~0", "~")
        assert isinstance(node, dict) and part in node, f"unresolved $ref {ref!r}"
        node = node[part]
    return node


def all_refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        own = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return own + [r for value in node.values() for r in all_refs(value)]
    if isinstance(node, list):
        return [r for value in node for r in all_refs(value)]
    return []


def test_served_publicly_with_a_valid_shape(document):
    assert document["openapi"] == "3.1.0"
    assert document["info"]["title"] and document["info"]["version"]
    assert isinstance(document["paths"], dict) and document["paths"]
    for path, item in document["paths"].items():
        assert path.startswith("/")
        assert set(item) <= HTTP_METHODS | {"parameters", "summary", "description"}
    # The served body is the cached document.
    assert document == build_openapi()
    assert build_openapi() is build_openapi()


def test_needs_no_token_even_with_client_jwts_on(make_app):
    response = make_app(auth_jwt_secret="x" * 40).test_client().get("/openapi.json")
    assert response.status_code == 200
    assert response.json["openapi"] == "3.1.0"


def test_every_route_is_documented_and_every_documented_path_exists(app, document):
    routes = app_routes(app)
    documented = {
        (path, method) for path, method, _ in operations(document) if path not in UNDOCUMENTED_RULES
    }
    assert routes - documented == set(), "routes missing from the OpenAPI document"
    assert documented - routes == set(), "documented operations the app does not serve"


def test_path_parameters_match_the_templates(document):
    for path, method, op in operations(document):
        declared = {p["name"] for p in op.get("parameters", []) if p["in"] == "path"}
        assert declared == set(PATH_TEMPLATE.findall(path)), (method, path)
        for param in op.get("parameters", []):
            if param["in"] == "path":
                assert param["required"] is True


def test_every_ref_resolves(document):
    refs = all_refs(document)
    assert refs
    for ref in refs:
        resolve(document, ref)
    # No pydantic-local refs survive the move into components.
    assert not [r for r in refs if not r.startswith("#/components/")]
    assert not [s for s in document["components"]["schemas"].values() if "$defs" in s]


def test_operations_are_complete(document):
    ids = [op["operationId"] for _, _, op in operations(document)]
    assert len(ids) == len(set(ids))
    for path, method, op in operations(document):
        assert op["responses"], (method, path)
        assert any(status.startswith("2") for status in op["responses"]), (method, path)
        assert "security" in op, (method, path)


def _error_codes(doc: dict[str, Any], response: dict[str, Any]) -> set[str]:
    if "$ref" in response:
        response = resolve(doc, response["$ref"])
    schema = response["content"]["application/json"]["schema"]
    variants = schema.get("oneOf", [schema])
    codes = set()
    for variant in variants:
        own = resolve(doc, variant["$ref"])["allOf"][1]
        codes.add(own["properties"]["error"]["const"])
    return codes


def test_error_table_of_the_contract(document):
    schemas = document["components"]["schemas"]
    assert set(schemas["ErrorCode"]["enum"]) == {c.value for c in ErrorCode}
    error = schemas["Error"]
    assert set(error["properties"]) == {"error", "message", "details"}
    assert set(error["required"]) == {"error", "message"}

    create = document["paths"]["/api/bookings/create"]["post"]["responses"]
    expected = {
        "400": {"VALIDATION_ERROR"},
        "401": {"UNAUTHORIZED"},
        "403": {"FORBIDDEN"},
        "404": {"NOT_FOUND"},
        "409": {"SLOT_UNAVAILABLE", "SLOT_TAKEN"},
        "422": {"STRIPE_NOT_CONFIGURED"},
        "429": {"RATE_LIMITED"},
        "500": {"INTERNAL_ERROR"},
        "502": {"PAYMENT_PROVIDER_ERROR"},
    }
    assert {status: _error_codes(document, create[status]) for status in expected} == expected
    reasons = resolve(document, "#/components/schemas/SlotUnavailableError")["allOf"][1]
    assert set(reasons["properties"]["details"]["properties"]["reason"]["enum"]) == {
        "OUTSIDE_WORKING_HOURS",
        "ON_LEAVE",
        "ALREADY_BOOKED",
        "IN_PAST",
        "TOO_SOON",
        "TOO_FAR",
    }

    webhook = document["paths"]["/api/webhooks/stripe"]["post"]["responses"]
    assert "INVALID_SIGNATURE" in _error_codes(document, webhook["400"])


def test_security_and_headers(document):
    schemes = document["components"]["securitySchemes"]
    for name in ("adminToken", "clientJwt"):
        assert (schemes[name]["type"], schemes[name]["scheme"]) == ("http", "bearer")
    assert "AUTH_JWT_SECRET" in schemes["clientJwt"]["description"]
    for path, method, op in operations(document):
        if path.startswith("/api/admin/"):
            assert op["security"] == [{"adminToken": []}], (method, path)
            assert "401" in op["responses"], (method, path)
        elif path in CLIENT_PATHS:
            # The JWT, or nothing when AUTH_JWT_SECRET is unset.
            assert op["security"] == [{"clientJwt": []}, {}], (method, path)
            assert "401" in op["responses"], (method, path)
        else:
            assert op["security"] == [], (method, path)

    create = document["paths"]["/api/bookings/create"]["post"]
    [key] = [p for p in create["parameters"] if p["name"] == "Idempotency-Key"]
    assert key["in"] == "header" and key["required"] is False
    webhook = document["paths"]["/api/webhooks/stripe"]["post"]
    [signature] = [p for p in webhook["parameters"] if p["name"] == "Stripe-Signature"]
    assert signature["in"] == "header" and signature["required"] is True


def test_request_bodies_come_from_the_pydantic_models(document):
    schemas = document["components"]["schemas"]
    create = document["paths"]["/api/bookings/create"]["post"]["requestBody"]
    body = resolve(document, create["content"]["application/json"]["schema"]["$ref"])
    assert body == schemas["CreateBookingRequest"]
    assert set(body["required"]) == {"clientId", "artistId", "serviceId", "startTime"}
    availability = schemas["AvailabilityRequest"]
    assert {"artistId", "startDate", "endDate", "serviceDurationMin", "serviceId"} <= set(
        availability["properties"]
    )
    hours = schemas["WorkingHoursBody"]
    assert hours["type"] == "array"
    assert hours["items"] == {"$ref": "#/components/schemas/WorkingHoursItem"}
    assert set(schemas["WorkingHoursItem"]["required"]) == {"dayOfWeek", "startTime", "endTime"}

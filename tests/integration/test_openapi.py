"""GET /openapi.json: served publicly, generated from the models and the route
declarations, documents exactly the app's routes, strict about responses, and equal to
the committed `docs/openapi.json`."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from flask import Blueprint, Flask
from openapi_spec_validator import validate as validate_spec

from services.api.errors import HTTP_STATUS
from services.api.openapi import (
    SNAPSHOT,
    access_rules,
    build_openapi,
    openapi_json,
    undocumented_prefixes,
)
from shared.domain.errors import ErrorCode
from shared.domain.transitions import BookingStatus

HTTP_METHODS = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}
CLIENT_PATHS = {
    "/api/availability",
    "/api/bookings/create",
    "/api/bookings/{booking_id}",
    "/api/bookings/{booking_id}/cancel",
    "/api/bookings/{booking_id}/reschedule",
    "/api/clients/{client_id}/bookings",
}
FLASK_VARIABLE = re.compile(r"<(?:[^<>:]+:)?([^<>]+)>")
PATH_TEMPLATE = re.compile(r"{([^{}]+)}")
# Error bodies: `details` is there only when there is something to say.
OPTIONAL_KEYS = {"details"}


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
        if rule.endpoint == "static" or rule.rule.startswith(undocumented_prefixes()):
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
        assert isinstance(node, dict), f"unresolved $ref {ref!r}"
        assert part in node, f"unresolved $ref {ref!r}"
        node = node[part]
    return node


def all_refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        own = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return own + [r for value in node.values() for r in all_refs(value)]
    if isinstance(node, list):
        return [r for value in node for r in all_refs(value)]
    return []


def test_served_publicly_as_a_valid_openapi_3_1_document(app, document):
    assert document["openapi"] == "3.1.0"
    assert document["info"]["title"]
    assert document["info"]["version"]
    validate_spec(document)
    # Built once per app, then served from memory.
    assert openapi_json(app) is openapi_json(app)
    assert document == json.loads(openapi_json(app))


def test_the_committed_document_is_the_generated_one(app):
    assert SNAPSHOT.read_bytes() == openapi_json(app), (
        "docs/openapi.json is not what the code generates: the wire format changed. Run "
        "`make openapi`, review the diff, and commit it with the change."
    )


def test_needs_no_token_even_with_client_jwts_on(make_app):
    response = make_app(auth_jwt_secret="x" * 40).test_client().get("/openapi.json")
    assert response.status_code == 200
    assert response.json["openapi"] == "3.1.0"


def test_every_route_is_documented_and_every_documented_path_exists(app, document):
    documented = {(path, method) for path, method, _ in operations(document)}
    assert app_routes(app) == documented


# The HTML pages' routes: in no OpenAPI document (they answer HTML, not the JSON API).
PAGE_ROUTES = [
    "/static/<path:filename>",
    "/book/<artist_id>",
    "/booking/<booking_id>",
    "/booking/<booking_id>/cancel",
    "/booking/<booking_id>/reschedule",
    "/booking/<booking_id>/status",
    # The dashboard's (services/api/pages/dashboard.py).
    "/dashboard",
    "/dashboard/artists/<artist_id>",
    "/dashboard/artists/<artist_id>/bookings/<booking_id>/cancel",
    "/dashboard/artists/<artist_id>/bookings/<booking_id>/complete",
    "/dashboard/artists/<artist_id>/bookings/<booking_id>/no-show",
    "/dashboard/artists/<artist_id>/calendar",
    "/dashboard/artists/<artist_id>/calendar/rotate",
    "/dashboard/artists/<artist_id>/hours",
    "/dashboard/artists/<artist_id>/leaves",
    "/dashboard/artists/<artist_id>/leaves/<leave_id>/delete",
    "/dashboard/artists/<artist_id>/payments",
    "/dashboard/artists/<artist_id>/payments/dashboard",
    "/dashboard/artists/<artist_id>/payments/onboarding",
    "/dashboard/artists/<artist_id>/policy",
    "/dashboard/artists/<artist_id>/services",
    "/dashboard/artists/<artist_id>/services/<service_id>",
    "/dashboard/artists/<artist_id>/services/<service_id>/remove",
    "/dashboard/signin",
    "/dashboard/signin/<token>",
    "/dashboard/signin/operator",
    "/dashboard/signout",
]


def test_only_the_html_reference_and_pages_are_left_out_on_purpose(app):
    left_out = sorted(
        rule.rule
        for rule in app.url_map.iter_rules()
        if rule.endpoint != "static" and rule.rule.startswith(undocumented_prefixes())
    )
    # The API reference, the web pages and their static files (services/api/pages).
    assert sorted(set(left_out)) == sorted(["/docs/", "/docs/<path:path>", *PAGE_ROUTES])


def test_the_reference_is_browsable_at_docs_without_a_cdn(client):
    assert client.get("/docs").status_code == 308
    page = client.get("/docs/")
    assert page.status_code == 200
    assert page.content_type.startswith("text/html")
    html = page.get_data(as_text=True)
    assert '"url": "/openapi.json"' in html
    sources = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert sources
    assert all(s.startswith("/docs/") for s in sources), sources  # nothing from elsewhere
    for source in sources:
        asset = client.get(source)
        try:
            assert asset.status_code == 200, source
            assert asset.get_data()
        finally:
            asset.close()  # a file sent from the package
    assert client.get("/docs/nope.js").status_code == 404


def test_a_route_without_a_declaration_cannot_be_documented():
    bp = Blueprint("stray", __name__)

    @bp.get("/stray")
    def stray() -> str:
        return "{}"

    app = Flask("stray", static_folder=None)
    app.register_blueprint(bp)
    with pytest.raises(RuntimeError, match="/stray"):
        build_openapi(app)
    # Nor served: the access rules are read from the same declarations.
    with pytest.raises(RuntimeError, match="/stray"):
        access_rules(app)


def test_flasks_static_route_is_a_route_too():
    """A Flask app serves /static/<path> unless told not to: inkflow's app has none, and
    one that had it would need a declaration like any other route."""
    with pytest.raises(RuntimeError, match="/static"):
        access_rules(Flask("with-static"))


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
        assert any(status.startswith("2") for status in op["responses"]), (method, path)
        # Anything unexpected is a 500 with the contract's error body.
        assert "500" in op["responses"], (method, path)
        assert "security" in op, (method, path)
        if "requestBody" in op:
            assert "413" in op["responses"], (method, path)


def _objects_of(doc: dict[str, Any], schema: dict[str, Any], seen: set[str]) -> list[Any]:
    """Every object schema reachable from `schema`, with the path that names it."""
    found = []
    if "$ref" in schema:
        if schema["$ref"] in seen:
            return []
        seen.add(schema["$ref"])
        found.append((schema["$ref"], resolve(doc, schema["$ref"])))
        schema = found[-1][1]
    for key in ("anyOf", "oneOf", "allOf"):
        for variant in schema.get(key, []):
            found += _objects_of(doc, variant, seen)
    if schema.get("type") == "array":
        found += _objects_of(doc, schema["items"], seen)
    for prop in schema.get("properties", {}).values():
        found += _objects_of(doc, prop, seen)
    return found


def test_responses_are_strict(document):
    """Unknown keys are refused and every key is always there (null when empty), so an
    added, removed or renamed field cannot go unnoticed."""
    checked = 0
    for path, method, op in operations(document):
        for status, response in op["responses"].items():
            if "content" not in response:
                # Only "no content" and "not modified" have no body.
                assert status in ("204", "304"), (method, path, status)
                continue
            if "application/json" not in response["content"]:
                # The bodies that are not JSON: the calendar feed, the Prometheus metrics.
                assert (path, status, list(response["content"])) in (
                    ("/api/calendar/{token}.ics", "200", ["text/calendar"]),
                    ("/metrics", "200", ["text/plain"]),
                )
                continue
            schema = response["content"]["application/json"]["schema"]
            for name, target in _objects_of(document, schema, set()):
                if target.get("type") != "object" or "properties" not in target:
                    continue
                if path == "/openapi.json":
                    continue
                assert target.get("additionalProperties") is False, (method, path, status, name)
                assert set(target["properties"]) - set(target.get("required", [])) <= (
                    OPTIONAL_KEYS
                ), (method, path, status, name)
                checked += 1
    assert checked > 50


def _error_codes(doc: dict[str, Any], response: dict[str, Any]) -> set[str]:
    schema = response["content"]["application/json"]["schema"]
    variants = schema.get("oneOf", [schema])
    return {resolve(doc, v["$ref"])["properties"]["error"]["const"] for v in variants}


def test_error_table_of_the_contract(document):
    assert {code.value: status for code, status in HTTP_STATUS.items()} == {
        "VALIDATION_ERROR": 400,
        "UNAUTHORIZED": 401,
        "FORBIDDEN": 403,
        "NOT_FOUND": 404,
        "SLOT_UNAVAILABLE": 409,
        "SLOT_TAKEN": 409,
        "STRIPE_NOT_CONFIGURED": 422,
        "PAYMENT_PROVIDER_ERROR": 502,
        "RATE_LIMITED": 429,
        "INVALID_SIGNATURE": 400,
        "INVALID_STATE": 409,
        "POLICY_VIOLATION": 409,
        "PAYLOAD_TOO_LARGE": 413,
        "SERVICE_UNAVAILABLE": 503,
        "INTERNAL_ERROR": 500,
    }
    schemas = document["components"]["schemas"]
    assert set(schemas["ErrorCode"]["enum"]) == {c.value for c in ErrorCode}
    error = schemas["ErrorBody"]
    assert set(error["properties"]) == {"error", "message", "details"}
    assert set(error["required"]) == {"error", "message"}

    create = document["paths"]["/api/bookings/create"]["post"]["responses"]
    expected = {
        "400": {"VALIDATION_ERROR"},
        "401": {"UNAUTHORIZED"},
        "403": {"FORBIDDEN"},
        "404": {"NOT_FOUND"},
        "409": {"SLOT_UNAVAILABLE", "SLOT_TAKEN", "POLICY_VIOLATION"},
        "413": {"PAYLOAD_TOO_LARGE"},
        "422": {"STRIPE_NOT_CONFIGURED"},
        "429": {"RATE_LIMITED"},
        "500": {"INTERNAL_ERROR"},
        "502": {"PAYMENT_PROVIDER_ERROR"},
        "503": {"SERVICE_UNAVAILABLE"},
    }
    assert {s: _error_codes(document, create[s]) for s in create if s != "201"} == expected
    assert create["503"]["headers"]["Retry-After"]["required"] is True
    unavailable = schemas["SlotUnavailableError"]
    assert "details" in unavailable["required"]
    reason = resolve(document, unavailable["properties"]["details"]["$ref"])["properties"]
    assert set(resolve(document, reason["reason"]["$ref"])["enum"]) == {
        "OUTSIDE_WORKING_HOURS",
        "ON_LEAVE",
        "ALREADY_BOOKED",
        "IN_PAST",
        "TOO_SOON",
        "TOO_FAR",
    }
    for code, details, key, values in (
        ("InvalidStateError", "InvalidStateDetails", "status", {s.value for s in BookingStatus}),
        (
            "PolicyViolationError",
            "PolicyViolationDetails",
            "reason",
            {
                "TOO_LATE_TO_RESCHEDULE",
                "RESCHEDULE_LIMIT",
                "NO_SHOW_LIMIT",
                "STARTED",
                "NOT_STARTED",
            },
        ),
    ):
        assert "details" in schemas[code]["required"]
        assert schemas[code]["properties"]["details"]["$ref"].endswith(details)
        prop = schemas[details]["properties"][key]
        assert set(resolve(document, prop["$ref"])["enum"]) == values
    webhook = document["paths"]["/api/webhooks/stripe"]["post"]["responses"]
    assert _error_codes(document, webhook["400"]) == {"INVALID_SIGNATURE", "VALIDATION_ERROR"}


# Management operations an artist's token may not use (the others: its own artist's).
OPERATOR_ONLY = {
    ("/api/admin/clients", "get"),
    ("/api/admin/clients", "post"),
    ("/api/admin/clients/{client_id}", "get"),
    ("/api/admin/clients/{client_id}", "patch"),
    ("/api/admin/artists", "get"),
    ("/api/admin/artists", "post"),
}


def test_security_and_headers(document):
    schemes = document["components"]["securitySchemes"]
    for name in ("operatorToken", "clientJwt", "artistJwt"):
        assert (schemes[name]["type"], schemes[name]["scheme"]) == ("http", "bearer")
    for name in ("clientJwt", "artistJwt"):
        assert schemes[name]["bearerFormat"] == "JWT"
        assert "AUTH_JWT_SECRET" in schemes[name]["description"]
    assert "ADMIN_API_TOKEN" in schemes["operatorToken"]["description"]
    for path, method, op in operations(document):
        if (path, method) in OPERATOR_ONLY:
            assert op["security"] == [{"operatorToken": []}], (method, path)
        elif path.startswith("/api/admin/"):
            assert op["security"] == [{"operatorToken": []}, {"artistJwt": []}], (method, path)
        elif path in CLIENT_PATHS:
            # The operator, the client's JWT, or nothing when AUTH_JWT_SECRET is unset.
            assert op["security"] == [{"operatorToken": []}, {"clientJwt": []}, {}], (method, path)
        else:
            assert op["security"] == [], (method, path)
        if op["security"]:
            unauthorized = op["responses"]["401"]
            assert unauthorized["headers"]["WWW-Authenticate"]["required"] is True
            assert "FORBIDDEN" in _error_codes(document, op["responses"]["403"])

    create = document["paths"]["/api/bookings/create"]["post"]
    [key] = [p for p in create["parameters"] if p["name"] == "Idempotency-Key"]
    assert key["in"] == "header"
    assert key["required"] is False
    webhook = document["paths"]["/api/webhooks/stripe"]["post"]
    [signature] = [p for p in webhook["parameters"] if p["name"] == "Stripe-Signature"]
    assert signature["in"] == "header"
    assert signature["required"] is True
    bookings = document["paths"]["/api/admin/artists/{artist_id}/bookings"]["get"]
    query = {p["name"]: p for p in bookings["parameters"] if p["in"] == "query"}
    assert set(query) == {"from", "to"}
    assert query["from"]["schema"] == {"type": "string", "format": "date-time"}


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


def test_response_conventions(document):
    schemas = document["components"]["schemas"]
    booking = schemas["Booking"]["properties"]
    assert booking["createdAt"]["pattern"] == r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$"
    assert booking["depositAmount"]["type"] == "string"
    assert set(schemas["BookingStatus"]["enum"]) == {
        "PENDING_PAYMENT",
        "CONFIRMED",
        "EXPIRED",
        "CANCELLED",
        "COMPLETED",
        "NO_SHOW",
    }
    for name in ("ClientList", "ArtistList", "ServiceList", "LeaveList", "BookingList"):
        assert set(schemas[name]["properties"]) == {"items"}, name

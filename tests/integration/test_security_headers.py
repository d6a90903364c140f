"""The browser-facing headers (services/api/security_headers.py) on real answers of the
app: every answer, error answers included, says nosniff / no-referrer / DENY; an answer
with a clientSecret or to a request with credentials is not stored by any cache; HTML pages
carry the CSP; with CORS_ORIGINS set every answer varies on Origin."""

from __future__ import annotations

import base64
import hashlib
import re
import shutil
import subprocess
import threading
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.serving import make_server

from services.api.auth import RULES_KEY
from services.api.security_headers import content_security_policy
from shared.config import Settings
from shared.domain.access import Access
from tests.factories import make_world

BASE = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}


def next_weekday(days: int = 3, hour: int = 10) -> datetime:
    day = datetime.now(UTC) + timedelta(days=days)
    start = day.replace(hour=hour, minute=0, second=0, microsecond=0)
    while start.weekday() > 4:
        start += timedelta(days=1)
    return start


def assert_base_headers(response: Any) -> None:
    for name, value in BASE.items():
        assert response.headers.get(name) == value, (name, response.status_code)


def test_every_answer_carries_the_base_headers(client, admin_headers) -> None:
    answers = [
        client.get("/healthz"),
        client.get("/openapi.json"),
        client.get("/api/nowhere"),  # 404 from the router
        client.delete("/api/availability"),  # 405
        client.post("/api/availability", data="{", content_type="application/json"),  # 400
        client.get("/api/admin/clients"),  # 401
        client.get("/api/admin/clients", headers=admin_headers),
    ]
    for response in answers:
        assert_base_headers(response)
    # A public answer for nobody in particular may be cached.
    assert "no-store" not in answers[0].headers.get("Cache-Control", "")


def test_the_405_says_which_methods_the_route_allows(client) -> None:
    response = client.delete("/api/availability")
    assert response.status_code == 405
    assert response.get_json()["error"] == "VALIDATION_ERROR"
    assert set(response.headers["Allow"].replace(" ", "").split(",")) >= {"POST"}


def test_answers_with_a_client_secret_are_not_stored(client, sessions) -> None:
    world = make_world(sessions)
    created = client.post(
        "/api/bookings/create",
        json=world.booking(next_weekday()),
    )
    assert created.status_code == 201, created.get_json()
    assert "_secret_" in created.get_json()["paymentIntent"]["clientSecret"]
    assert created.headers["Cache-Control"] == "no-store"
    assert_base_headers(created)
    booking_id = created.get_json()["booking"]["id"]
    read = client.get(f"/api/bookings/{booking_id}")  # no credentials (roles off)
    assert read.status_code == 200
    if "clientSecret" in read.get_data(as_text=True):
        assert read.headers["Cache-Control"] == "no-store"
    availability = client.post(
        "/api/availability",
        json={
            "artistId": world.artist_id,
            "startDate": next_weekday().isoformat(),
            "endDate": (next_weekday() + timedelta(days=1)).isoformat(),
            "serviceId": world.service_id,
        },
    )
    assert availability.status_code == 200
    assert "no-store" not in availability.headers.get("Cache-Control", "")


def test_authenticated_answers_are_not_stored(client, admin_headers) -> None:
    listed = client.get("/api/admin/clients", headers=admin_headers)
    assert listed.status_code == 200
    assert listed.headers["Cache-Control"] == "no-store"
    refused = client.get("/api/admin/clients", headers={"Authorization": "Bearer wrong"})
    assert refused.status_code == 401
    assert refused.headers["Cache-Control"] == "no-store"


def test_the_page_policy_is_a_function_of_the_settings(settings: Settings) -> None:
    production = content_security_policy(replace(settings, stripe_api_base=None))
    directives = dict(d.split(" ", 1) for d in production.split("; "))
    assert directives == {
        "default-src": "'self'",
        "script-src": "'self' https://js.stripe.com",
        "frame-src": "https://js.stripe.com https://hooks.stripe.com",
        "connect-src": "'self' https://api.stripe.com",
        "img-src": "'self' data:",
        "style-src": "'self'",
        "object-src": "'none'",
        "base-uri": "'none'",
        "form-action": "'self'",
        "frame-ancestors": "'none'",
    }
    emulated = content_security_policy(
        replace(settings, stripe_api_base="http://127.0.0.1:12111/some/path")
    )
    directives = dict(d.split(" ", 1) for d in emulated.split("; "))
    assert directives["connect-src"] == "'self' https://api.stripe.com http://127.0.0.1:12111"
    assert directives["form-action"] == "'self' http://127.0.0.1:12111"
    assert "unsafe" not in emulated


def test_html_answers_carry_a_csp_and_json_ones_none(
    make_app: Callable[..., Flask], settings: Settings
) -> None:
    app = make_app()

    @app.get("/__probe_page")  # an HTML page, as the pages to come serve them
    def _page() -> Any:
        return "<!doctype html><title>t</title>", 200, {"Content-Type": "text/html"}

    # The access layer wants a rule for every route: this probe is public. (A plain test
    # client: the probe is not in the OpenAPI document.)
    app.extensions[RULES_KEY]["_page"] = Access.PUBLIC
    client = FlaskClient(app)
    page = client.get("/__probe_page")
    assert page.headers["Content-Security-Policy"] == content_security_policy(settings)
    assert_base_headers(page)
    assert "Content-Security-Policy" not in client.get("/healthz").headers


def _inline_script_hashes(page: bytes) -> set[str]:
    return {
        "'sha256-" + base64.b64encode(hashlib.sha256(script).digest()).decode() + "'"
        for script in re.findall(rb"<script>(.*?)</script>", page, re.DOTALL)
    }


def test_the_docs_page_has_its_own_policy(client) -> None:
    page = client.get("/docs/")
    assert page.status_code == 200
    policy = page.headers["Content-Security-Policy"]
    directives = dict(d.split(" ", 1) for d in policy.split("; "))
    hashes = _inline_script_hashes(page.get_data())
    assert hashes  # Swagger UI's page has its inline bootstrap script …
    assert set(directives["script-src"].split()) == {"'self'", *hashes}  # … allowed by hash
    assert directives["frame-ancestors"] == "'none'"
    assert directives["connect-src"] == "'self'"
    assert "unsafe-eval" not in policy


@pytest.fixture
def served(app: Flask) -> Iterator[str]:
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join(5)


@pytest.mark.skipif(shutil.which("chromium") is None, reason="needs the OS's chromium package")
def test_swagger_ui_renders_under_its_policy_in_chromium(served: str, tmp_path) -> None:
    """The real check of a CSP: a browser that enforces it still renders every operation
    (a blocked inline script would leave the page empty)."""
    dom = subprocess.run(
        [
            "chromium", "--headless", "--no-sandbox", "--disable-gpu",
            f"--user-data-dir={tmp_path}", "--virtual-time-budget=10000", "--dump-dom",
            f"{served}/docs/",
        ],
        capture_output=True, text=True, timeout=90, check=False,
    )  # fmt: skip
    assert 'id="operations-client-createBooking"' in dom.stdout, dom.stderr[-2000:]
    assert "Content Security Policy" not in dom.stderr


def test_cors_answers_vary_on_origin(make_app: Callable[..., Flask]) -> None:
    client = make_app(cors_origins=("https://shop.example",)).test_client()
    for headers in ({}, {"Origin": "https://shop.example"}, {"Origin": "https://evil.example"}):
        response = client.get("/healthz", headers=headers)
        assert "Origin" in response.headers.get("Vary", ""), headers
        assert_base_headers(response)
    allowed = client.get("/healthz", headers={"Origin": "https://shop.example"})
    assert allowed.headers["Access-Control-Allow-Origin"] == "https://shop.example"
    # Without CORS_ORIGINS no answer is cross-origin, so none varies on it.
    plain = make_app().test_client().get("/healthz", headers={"Origin": "https://shop.example"})
    assert "Origin" not in plain.headers.get("Vary", "")
    assert "Access-Control-Allow-Origin" not in plain.headers

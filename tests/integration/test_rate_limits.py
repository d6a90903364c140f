"""RATE_LIMITS (services/api/ratelimits.py) against the real Redis: per client and per
address on booking creation and availability, 429 RATE_LIMITED with Retry-After, the
operator never limited, nothing limited when unset, and a Redis that is down never turns a
request into a 500. Each test uses addresses of its own (REMOTE_ADDR), so counters left by
another run or test never meet its own."""

from __future__ import annotations

import logging
import random
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from shared.adapters import tokens
from shared.config import Settings
from shared.domain.access import Role
from tests.factories import make_world

SECRET = "rate-limit-tests-jwt-secret-".ljust(48, "r")


def token(client_id: uuid.UUID) -> str:
    return tokens.mint(
        SECRET, Role.CLIENT, client_id, now=datetime.now(UTC), ttl=timedelta(minutes=5)
    )


def an_address() -> str:
    return f"10.{random.randint(0, 255)}.{random.randint(0, 255)}.{random.randint(1, 254)}"


def limited_app(make_app: Callable[..., Flask], raw: str, **changes: Any) -> Flask:
    parsed = Settings.from_env(
        {
            "DATABASE_URL": "postgresql://u@h/db",
            "REDIS_URL": "redis://h/0",
            "STRIPE_SECRET_KEY": "sk_x",
            "STRIPE_WEBHOOK_SECRET": "whsec_x",
            "ADMIN_API_TOKEN": "x" * 32,
            "RATE_LIMITS": raw,
        }
    ).rate_limits
    return make_app(rate_limits=parsed, **changes)


def availability(client: FlaskClient, artist_id: str, ip: str, **headers: str) -> Any:
    start = datetime.now(UTC) + timedelta(days=2)
    return client.post(
        "/api/availability",
        json={
            "artistId": artist_id,
            "startDate": start.isoformat(),
            "endDate": (start + timedelta(days=1)).isoformat(),
            "serviceDurationMin": 60,
        },
        headers=headers,
        environ_base={"REMOTE_ADDR": ip},
    )


def create(client: FlaskClient, client_id: str, ip: str, **headers: str) -> Any:
    # An unknown artist: 404 without touching Stripe, and counted all the same.
    return client.post(
        "/api/bookings/create",
        json={
            "clientId": client_id,
            "artistId": str(uuid.uuid4()),
            "serviceId": str(uuid.uuid4()),
            "startTime": (datetime.now(UTC) + timedelta(days=3)).isoformat(),
        },
        headers=headers,
        environ_base={"REMOTE_ADDR": ip},
    )


def assert_rate_limited(response: Any) -> None:
    assert response.status_code == 429, response.get_json()
    body = response.get_json()
    assert body["error"] == "RATE_LIMITED"
    seconds = int(response.headers["Retry-After"])
    assert 1 <= seconds <= 61  # a one-minute window, counted in whole seconds
    assert body["details"] == {"retryAfterSeconds": seconds}
    assert response.headers["X-Content-Type-Options"] == "nosniff"


def test_availability_is_limited_per_address(make_app, sessions) -> None:
    world = make_world(sessions)
    client = limited_app(make_app, "availability=3/minute").test_client()
    ip = an_address()
    for _ in range(3):
        assert availability(client, world.artist_id, ip).status_code == 200
    assert_rate_limited(availability(client, world.artist_id, ip))
    # Another address is counted apart.
    assert availability(client, world.artist_id, an_address()).status_code == 200


def test_booking_creation_is_limited_per_client_across_addresses(make_app) -> None:
    client = limited_app(make_app, "booking.client=2/minute").test_client()
    someone, other = str(uuid.uuid4()), str(uuid.uuid4())
    assert create(client, someone, an_address()).status_code == 404
    assert create(client, someone, an_address()).status_code == 404
    assert_rate_limited(create(client, someone, an_address()))
    assert create(client, other, an_address()).status_code == 404


def test_booking_creation_is_limited_per_address_across_clients(make_app) -> None:
    client = limited_app(make_app, "booking=50/minute;booking.ip=2/minute").test_client()
    ip = an_address()
    assert create(client, str(uuid.uuid4()), ip).status_code == 404
    assert create(client, str(uuid.uuid4()), ip).status_code == 404
    assert_rate_limited(create(client, str(uuid.uuid4()), ip))


def test_with_client_tokens_the_client_is_the_tokens_subject(make_app, sessions) -> None:
    world = make_world(sessions)
    app = limited_app(make_app, "availability.client=2/minute", auth_jwt_secret=SECRET)
    client = app.test_client()
    bearer = {"Authorization": f"Bearer {token(uuid.uuid4())}"}
    assert availability(client, world.artist_id, an_address(), **bearer).status_code == 200
    assert availability(client, world.artist_id, an_address(), **bearer).status_code == 200
    assert_rate_limited(availability(client, world.artist_id, an_address(), **bearer))
    theirs = {"Authorization": f"Bearer {token(uuid.uuid4())}"}
    assert availability(client, world.artist_id, an_address(), **theirs).status_code == 200


def test_the_operator_is_never_limited(make_app, sessions, admin_headers) -> None:
    world = make_world(sessions)
    client = limited_app(make_app, "availability=1/minute").test_client()
    ip = an_address()
    for _ in range(3):
        assert availability(client, world.artist_id, ip, **admin_headers).status_code == 200
    assert availability(client, world.artist_id, ip).status_code == 200
    assert_rate_limited(availability(client, world.artist_id, ip))


def test_nothing_is_limited_when_rate_limits_is_unset(client, sessions) -> None:
    world = make_world(sessions)
    ip = an_address()
    for _ in range(15):
        assert availability(client, world.artist_id, ip).status_code == 200
    for _ in range(15):
        assert create(client, "one-client", ip).status_code == 404


def test_a_redis_that_is_down_limits_nothing_into_a_500(make_app, sessions, caplog) -> None:
    """The limiter's Redis refuses connections: answers go on (counted in memory), and a
    warning says why."""
    world = make_world(sessions)
    dead = "redis://127.0.0.1:9/0"  # nothing listens on the discard port
    app = limited_app(make_app, "availability=100/minute", redis_url=dead)
    client = app.test_client()
    with caplog.at_level(logging.WARNING, logger="inkflow.api"):
        answers = [availability(client, world.artist_id, an_address()) for _ in range(3)]
    assert [a.status_code for a in answers] == [200, 200, 200]
    warned = [r for r in caplog.records if r.name.startswith("inkflow.api.ratelimit")]
    assert warned
    assert all(r.levelno == logging.WARNING for r in warned)
    assert "storage unreachable" in warned[0].getMessage()


@pytest.mark.parametrize("path", ["/api/availability", "/api/bookings/create"])
def test_the_document_declares_429_with_retry_after(client, path: str) -> None:
    document = client.get("/openapi.json").get_json()
    answer = document["paths"][path]["post"]["responses"]["429"]
    assert answer["headers"]["Retry-After"]["required"] is False
    assert "RATE_LIMITS" in answer["description"]

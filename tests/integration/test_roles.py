"""Roles end to end: an artist runs its own artist with its JWT (and nothing else), the
Stripe fields stay the operator's, and roles cost the hot paths no query.

The route × caller table is `test_route_access.py`; the decision itself,
`tests/unit/test_access.py`."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import jwt
import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import event

from shared.adapters.db import transaction
from shared.adapters.models import Artist, Booking
from tests import support
from tests.factories import make_world

SECRET = "roles-test-jwt-secret-".ljust(64, "s")
PARIS = ZoneInfo("Europe/Paris")
OPERATOR = {"Authorization": f"Bearer {support.ADMIN_TOKEN}"}


def token(sub: str, role: str) -> dict[str, str]:
    claims = {"sub": sub, "role": role, "exp": datetime.now(UTC) + timedelta(minutes=10)}
    return {"Authorization": f"Bearer {jwt.encode(claims, SECRET, algorithm='HS256')}"}


def local(days: int, hour: int) -> datetime:
    day = datetime.now(PARIS).date() + timedelta(days=days)
    return datetime(day.year, day.month, day.day, hour, tzinfo=PARIS)


@pytest.fixture
def http(make_app: Callable[..., Flask]) -> Any:
    return make_app(auth_jwt_secret=SECRET).test_client()


def book(http: Any, world: Any, start: datetime) -> str:
    answer = http.post(
        "/api/bookings/create",
        json=world.booking(start),
        headers=token(world.client_id, "client"),
    )
    assert answer.status_code == 201, answer.json
    return str(answer.json["booking"]["id"])


def test_an_artist_runs_its_own_artist_with_its_token(http: Any, sessions: Any) -> None:
    mine = make_world(sessions, deposit="0.00")
    other = make_world(sessions, deposit="0.00")
    me = token(mine.artist_id, "artist")
    base = f"/api/admin/artists/{mine.artist_id}"

    policy = http.patch(base, json={"refundWindowHours": 72, "bufferMin": 10}, headers=me)
    assert policy.status_code == 200, policy.json
    assert (policy.json["refundWindowHours"], policy.json["bufferMin"]) == (72, 10)
    hours = [{"dayOfWeek": d, "startTime": "09:00", "endTime": "17:00"} for d in range(7)]
    assert http.put(f"{base}/working-hours", json=hours, headers=me).status_code == 200
    service = http.post(
        f"{base}/services",
        json={
            "name": "Flash",
            "durationMin": 60,
            "price": "90.00",
            "depositAmount": "0.00",
            "currency": "eur",
        },
        headers=me,
    )
    assert service.status_code == 201, service.json
    leave = http.post(
        f"{base}/leaves",
        json={"startTime": local(20, 9).isoformat(), "endTime": local(20, 17).isoformat()},
        headers=me,
    )
    assert leave.status_code == 201, leave.json

    booking_id = book(http, mine, local(3, 11))
    theirs = book(http, other, local(3, 11))
    # Its bookings: the list defaults to its own artist; another artist's is FORBIDDEN.
    listed = http.get("/api/admin/bookings", headers=me)
    assert [b["id"] for b in listed.json["items"]] == [booking_id]
    refused = http.get(
        "/api/admin/bookings", query_string={"artistId": other.artist_id}, headers=me
    )
    assert (refused.status_code, refused.json["error"]) == (403, "FORBIDDEN")
    by_operator = http.get("/api/admin/bookings", headers=OPERATOR)
    assert {b["id"] for b in by_operator.json["items"]} == {booking_id, theirs}
    detail = http.get(f"/api/admin/bookings/{booking_id}", headers=me)
    assert detail.status_code == 200
    assert http.get(f"/api/admin/bookings/{theirs}", headers=me).status_code == 403

    # Cancelling its own booking is the artist's cancel; another's is refused untouched.
    assert http.post(f"/api/admin/bookings/{theirs}/cancel", json={}, headers=me).status_code == 403
    cancelled = http.post(
        f"/api/admin/bookings/{booking_id}/cancel", json={"reason": "ill"}, headers=me
    )
    assert cancelled.status_code == 200, cancelled.json
    assert cancelled.json["booking"]["cancelledBy"] == "ARTIST"
    with transaction(sessions) as session:
        row = session.get(Booking, uuid.UUID(theirs))
        assert row is not None
        assert (row.status, row.cancelled_by) == ("CONFIRMED", None)

    # Not the operator: no clients, no artist list, no new artist, no other artist.
    for method, path in (
        ("GET", "/api/admin/clients"),
        ("GET", "/api/admin/artists"),
        ("POST", "/api/admin/artists"),
        ("GET", f"/api/admin/artists/{other.artist_id}"),
        ("GET", f"/api/admin/clients/{mine.client_id}"),
    ):
        answer = http.open(path, method=method, json={} if method == "POST" else None, headers=me)
        assert (answer.status_code, answer.json["error"]) == (403, "FORBIDDEN"), (method, path)


def test_an_artist_may_not_touch_where_its_deposits_go(http: Any, sessions: Any) -> None:
    world = make_world(sessions)
    me = token(world.artist_id, "artist")
    path = f"/api/admin/artists/{world.artist_id}"
    for body in (
        {"stripeAccountId": "acct_1Elsewhere"},
        {"stripeAccountId": None},
        {"chargesEnabled": True},
        {"name": "Renamed", "chargesEnabled": False},
    ):
        answer = http.patch(path, json=body, headers=me)
        assert (answer.status_code, answer.json["error"]) == (403, "FORBIDDEN"), body
    with transaction(sessions) as session:
        artist = session.get(Artist, uuid.UUID(world.artist_id))
        assert artist is not None
        assert (artist.stripe_account_id, artist.charges_enabled) == (world.stripe_account_id, True)
        assert artist.name != "Renamed"
    # The operator may.
    answer = http.patch(path, json={"chargesEnabled": False}, headers=OPERATOR)
    assert (answer.status_code, answer.json["chargesEnabled"]) == (200, False)


def test_a_cors_preflight_needs_no_token(make_app: Callable[..., Flask], sessions: Any) -> None:
    """A browser asks before sending the Authorization header; refusing that question
    would lock every dashboard out. (A plain client: the document has no OPTIONS.)"""
    app = make_app(auth_jwt_secret=SECRET, cors_origins=("https://dashboard.example",))
    world = make_world(sessions)
    preflight = FlaskClient(app).options(
        f"/api/admin/artists/{world.artist_id}/services",
        headers={
            "Origin": "https://dashboard.example",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "Authorization, Content-Type",
        },
    )
    assert preflight.status_code == 200
    assert preflight.headers["Access-Control-Allow-Origin"] == "https://dashboard.example"


@pytest.fixture
def statements(make_app: Callable[..., Flask]) -> Iterator[Callable[[Flask], list[str]]]:
    """`statements(app)`: the SQL the app ran since the last call."""
    seen: dict[int, list[str]] = {}
    engines = []

    def recorded(app: Flask) -> list[str]:
        engine = app.extensions["inkflow"].resources.engine
        if id(app) not in seen:
            seen[id(app)] = []

            def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
                seen[id(app)].append(statement)

            event.listen(engine, "before_cursor_execute", record)
            engines.append((engine, record))
        taken, seen[id(app)] = seen[id(app)], []
        return taken

    yield recorded
    for engine, record in engines:
        event.remove(engine, "before_cursor_execute", record)


def test_roles_cost_the_hot_paths_no_query(
    make_app: Callable[..., Flask], sessions: Any, statements: Callable[[Flask], list[str]]
) -> None:
    """Availability and booking creation with a client's JWT run exactly the statements
    they run with client tokens off: the owner (the body's clientId) needs no lookup."""
    with_jwts, without = make_app(auth_jwt_secret=SECRET), make_app()
    ran = {}
    for name, app, start in ((True, with_jwts, local(4, 11)), (False, without, local(4, 14))):
        world = make_world(sessions)
        headers = token(world.client_id, "client") if name else {}
        http = app.test_client()
        statements(app)
        slots = http.post(
            "/api/availability",
            json={
                "artistId": world.artist_id,
                "serviceId": world.service_id,
                "startDate": local(4, 0).isoformat(),
                "endDate": local(5, 0).isoformat(),
            },
            headers=headers,
        )
        assert slots.status_code == 200
        availability = statements(app)
        created = http.post(
            "/api/bookings/create",
            json=world.booking(start),
            headers=headers,
        )
        assert created.status_code == 201, created.json
        ran[name] = (len(availability), len(statements(app)))
    assert ran[True] == ran[False], ran

"""Client JWTs (AUTH_JWT_SECRET): the client endpoints need an HS256 bearer token whose
`sub` is the clientId; admin endpoints keep ADMIN_API_TOKEN."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import jwt
import pytest
from sqlalchemy import func, select

from shared.adapters.models import Booking
from tests import support
from tests.factories import make_world

PARIS = ZoneInfo("Europe/Paris")
# 64 bytes: PyJWT warns about HMAC keys shorter than the hash (32 for HS256, 64 for the
# HS512 token below), and the test suite turns warnings into errors.
SECRET = "test-client-jwt-secret-".ljust(64, "s")
OTHER_SECRET = "another-client-jwt-secret-".ljust(64, "o")


def next_local(hour: int, days: int = 3) -> datetime:
    day = datetime.now(PARIS).date() + timedelta(days=days)
    return datetime(day.year, day.month, day.day, hour, tzinfo=PARIS)


def make_token(
    sub: str | None,
    *,
    secret: str = SECRET,
    expires_in: timedelta | None = timedelta(minutes=10),
    algorithm: str = "HS256",
    **claims: object,
) -> str:
    payload: dict[str, object] = dict(claims)
    if sub is not None:
        payload["sub"] = sub
    if expires_in is not None:
        payload["exp"] = datetime.now(UTC) + expires_in
    return jwt.encode(payload, secret, algorithm=algorithm)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def api(make_app):
    return make_app(auth_jwt_secret=SECRET).test_client()


@pytest.fixture
def world(sessions):
    return make_world(sessions)


def booking_body(world, start: datetime | None = None, client_id: str | None = None):
    return {
        "clientId": client_id or world.client_id,
        "artistId": world.artist_id,
        "serviceId": world.service_id,
        "startTime": (start or next_local(11)).isoformat(),
    }


def availability_body(world):
    day = next_local(0)
    return {
        "artistId": world.artist_id,
        "startDate": day.isoformat(),
        "endDate": (day + timedelta(days=1)).isoformat(),
        "serviceId": world.service_id,
    }


def bookings_of(sessions, client_id: str) -> int:
    with sessions() as session:
        return session.scalar(
            select(func.count())
            .select_from(Booking)
            .where(Booking.client_id == uuid.UUID(client_id))
        )


def create(api, world, token: str | None, **kwargs):
    headers = bearer(token) if token is not None else {}
    return api.post("/api/bookings/create", json=booking_body(world, **kwargs), headers=headers)


@pytest.fixture
def booking_id(api, world) -> str:
    response = create(api, world, make_token(world.client_id))
    assert response.status_code == 201, response.json
    return response.json["booking"]["id"]


def assert_unauthorized(response) -> None:
    assert response.status_code == 401, response.json
    assert response.json["error"] == "UNAUTHORIZED"
    assert set(response.json) <= {"error", "message", "details"}


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer"},
        {"Authorization": "Bearer   "},
        {"Authorization": "Basic dXNlcjpwYXNz"},
    ],
    ids=["none", "empty-bearer", "blank-bearer", "basic"],
)
def test_client_endpoints_need_a_token(api, world, sessions, booking_id, headers):
    assert_unauthorized(
        api.post("/api/availability", json=availability_body(world), headers=headers)
    )
    response = api.post(
        "/api/bookings/create",
        json=booking_body(world, start=next_local(14)),
        headers=headers,
    )
    assert_unauthorized(response)
    assert bookings_of(sessions, world.client_id) == 1  # only the fixture's booking
    assert_unauthorized(api.get(f"/api/bookings/{booking_id}", headers=headers))


def signed(payload: dict[str, object]) -> str:
    """Signed with the right secret, bypassing PyJWT's claim checks on encode."""
    return jwt.api_jws.encode(json.dumps(payload).encode(), SECRET, "HS256")


def _bad_tokens(client_id: str) -> dict[str, str]:
    in_five_minutes = int((datetime.now(UTC) + timedelta(minutes=5)).timestamp())
    return {
        "bad-signature": make_token(client_id, secret=OTHER_SECRET),
        "tampered": make_token(client_id)[:-4] + "AAAA",
        "expired": make_token(client_id, expires_in=timedelta(seconds=-30)),
        "missing-exp": make_token(client_id, expires_in=None),
        "missing-sub": make_token(None),
        "non-string-sub": signed({"sub": 12345, "exp": in_five_minutes}),
        "not-yet-valid": make_token(client_id, nbf=datetime.now(UTC) + timedelta(hours=1)),
        "other-algorithm": make_token(client_id, algorithm="HS512"),
        "alg-none": jwt.api_jws.encode(
            json.dumps({"sub": client_id, "exp": in_five_minutes}).encode(), None, "none"
        ),
        "garbage": "not-a-jwt",
        "non-uuid-sub": make_token("client-42"),
        "unknown-role": make_token(client_id, role="operator"),
        "non-string-role": signed({"sub": client_id, "role": ["artist"], "exp": in_five_minutes}),
    }


@pytest.mark.parametrize(
    "kind",
    [
        "bad-signature",
        "tampered",
        "expired",
        "missing-exp",
        "missing-sub",
        "non-string-sub",
        "not-yet-valid",
        "other-algorithm",
        "alg-none",
        "garbage",
        "non-uuid-sub",
        "unknown-role",
        "non-string-role",
    ],
)
def test_invalid_tokens_are_unauthorized(api, world, sessions, booking_id, kind):
    headers = bearer(_bad_tokens(world.client_id)[kind])
    assert_unauthorized(
        api.post("/api/availability", json=availability_body(world), headers=headers)
    )
    response = api.post(
        "/api/bookings/create",
        json=booking_body(world, start=next_local(14)),
        headers=headers,
    )
    assert_unauthorized(response)
    assert bookings_of(sessions, world.client_id) == 1
    assert_unauthorized(api.get(f"/api/bookings/{booking_id}", headers=headers))


def test_the_right_token_books_and_reads(api, world, sessions):
    token = make_token(world.client_id)
    slots = api.post("/api/availability", json=availability_body(world), headers=bearer(token))
    assert slots.status_code == 200, slots.json
    start = next_local(11)
    iso = start.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    assert {"startTime": iso, "available": True}.items() <= next(
        s for s in slots.json["slots"] if s["startTime"] == iso
    ).items()

    created = create(api, world, token, start=start)
    assert created.status_code == 201, created.json
    booking = created.json["booking"]
    assert booking["clientId"] == world.client_id
    assert booking["status"] == "PENDING_PAYMENT"
    assert created.json["paymentIntent"]["amount"] == 5000

    fetched = api.get(f"/api/bookings/{booking['id']}", headers=bearer(token))
    assert fetched.status_code == 200, fetched.json
    assert fetched.json == {"booking": booking}
    assert bookings_of(sessions, world.client_id) == 1


def test_a_token_for_another_client_cannot_book(api, world, sessions, stripe_emulator):
    other = make_world(sessions)  # another client (and artist)
    intents_before = len(stripe_emulator.requests_to("/v1/payment_intents", "POST"))
    response = create(api, world, make_token(other.client_id))
    assert response.status_code == 403, response.json
    assert response.json["error"] == "FORBIDDEN"
    assert bookings_of(sessions, world.client_id) == 0
    assert bookings_of(sessions, other.client_id) == 0
    assert len(stripe_emulator.requests_to("/v1/payment_intents", "POST")) == intents_before
    # The slot is still free for its rightful client.
    assert create(api, world, make_token(world.client_id)).status_code == 201


def test_another_clients_booking_is_forbidden(api, world, sessions, booking_id):
    other = make_world(sessions)
    response = api.get(f"/api/bookings/{booking_id}", headers=bearer(make_token(other.client_id)))
    assert response.status_code == 403, response.json
    assert response.json["error"] == "FORBIDDEN"
    assert "booking" not in response.json
    # A valid token and an unknown booking: NOT_FOUND, as without JWTs.
    unknown = api.get(f"/api/bookings/{uuid.uuid4()}", headers=bearer(make_token(world.client_id)))
    assert unknown.status_code == 404
    assert unknown.json["error"] == "NOT_FOUND"


def test_idempotency_keys_are_per_client(api, world, sessions):
    other = make_world(sessions)
    key = {"Idempotency-Key": "same-key-for-both"}
    first = api.post(
        "/api/bookings/create",
        json=booking_body(world),
        headers={**bearer(make_token(world.client_id)), **key},
    )
    assert first.status_code == 201, first.json
    # Another client reusing the key for its own booking is not a replay nor a conflict.
    second = api.post(
        "/api/bookings/create",
        json=booking_body(other),
        headers={**bearer(make_token(other.client_id)), **key},
    )
    assert second.status_code == 201, second.json
    assert second.json["booking"]["id"] != first.json["booking"]["id"]
    assert second.json["booking"]["clientId"] == other.client_id


def test_admin_endpoints_still_use_the_admin_token(api, world, admin_headers):
    client_token = bearer(make_token(world.client_id))
    # A valid client token that may not do this: FORBIDDEN (roles); no token: UNAUTHORIZED.
    refused = api.get("/api/admin/clients", headers=client_token)
    assert (refused.status_code, refused.json["error"]) == (403, "FORBIDDEN")
    assert_unauthorized(api.get("/api/admin/clients"))
    listed = api.get("/api/admin/clients", headers=admin_headers)
    assert listed.status_code == 200
    assert world.client_id in {c["id"] for c in listed.json["items"]}


def test_without_a_secret_client_endpoints_stay_public(client, world):
    # The default test settings have no AUTH_JWT_SECRET: no token needed, any is ignored.
    created = client.post("/api/bookings/create", json=booking_body(world))
    assert created.status_code == 201, created.json
    booking_id = created.json["booking"]["id"]
    assert client.get(f"/api/bookings/{booking_id}").status_code == 200
    ignored = client.get(f"/api/bookings/{booking_id}", headers=bearer("not-a-jwt"))
    assert ignored.status_code == 200


def test_the_operators_token_may_use_the_client_endpoints(api, world, sessions, admin_headers):
    """The operator does everything: availability, and booking or reading for any client."""
    slots = api.post("/api/availability", json=availability_body(world), headers=admin_headers)
    assert slots.status_code == 200, slots.json
    created = create(api, world, support.ADMIN_TOKEN)
    assert created.status_code == 201, created.json
    assert created.json["booking"]["clientId"] == world.client_id
    booking_id = created.json["booking"]["id"]
    assert api.get(f"/api/bookings/{booking_id}", headers=admin_headers).status_code == 200
    listed = api.get(f"/api/clients/{world.client_id}/bookings", headers=admin_headers)
    assert [b["id"] for b in listed.json["items"]] == [booking_id]

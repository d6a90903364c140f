"""Input PostgreSQL or Python's datetime cannot hold: refused as VALIDATION_ERROR naming the
field, before anything is written — never a 500, never a row that breaks later reads.

- NUL (`\\u0000`) in any string of any request (PostgreSQL text refuses it);
- timestamps outside the supported range, 2000-01-01T00:00:00Z (included) to
  2100-01-01T00:00:00Z (excluded): a leave at `0001-01-01T00:00:00+14:00` was committed as
  a BC date (which psycopg cannot read back) and answered 500, and from then on the
  artist's leaves and availability answered 500 for good.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

import jwt
import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from shared.adapters.db import transaction
from shared.adapters.models import Leave
from tests.factories import World, make_world

PARIS = ZoneInfo("Europe/Paris")
NUL = "\u0000"


def soon(days: int = 3, hour: int = 11) -> str:
    day = datetime.now(PARIS).date() + timedelta(days=days)
    return datetime(day.year, day.month, day.day, hour, tzinfo=PARIS).isoformat()


@pytest.fixture
def world(sessions: sessionmaker[Session]) -> World:
    return make_world(sessions, deposit="50.00")


@pytest.fixture
def pending(client: FlaskClient, world: World) -> dict[str, Any]:
    answer = client.post(
        "/api/bookings/create",
        json=world.booking(soon()),
    )
    assert answer.status_code == 201, answer.json
    booking: dict[str, Any] = answer.json["booking"]  # type: ignore[index]
    return booking


def _refused(response: Any, field: str) -> None:
    assert response.status_code == 400, (response.status_code, response.json)
    assert response.json["error"] == "VALIDATION_ERROR"
    assert field in response.json["details"]["fields"], response.json


# --------------------------------------------------------------------------- NUL


def _nul_cases(world: World, booking: dict[str, Any]) -> list[tuple[str, str, Any, str]]:
    artist = f"/api/admin/artists/{world.artist_id}"
    service = f"{artist}/services/{world.service_id}"
    artist_body = {"name": "A", "email": "a@example.com", "timezone": "UTC"}
    service_body = {
        "name": "S",
        "durationMin": 60,
        "price": "10.00",
        "depositAmount": "1.00",
        "currency": "eur",
    }
    leave = {"startTime": soon(30, 10), "endTime": soon(30, 12)}
    return [
        ("POST", "/api/admin/clients", {"email": f"a{NUL}@b.co", "name": "N"}, "email"),
        ("POST", "/api/admin/clients", {"email": "n@b.co", "name": f"N{NUL}"}, "name"),
        ("PATCH", f"/api/admin/clients/{world.client_id}", {"name": f"{NUL}"}, "name"),
        ("POST", "/api/admin/artists", {**artist_body, "name": f"A{NUL}"}, "name"),
        ("POST", "/api/admin/artists", {**artist_body, "timezone": f"UTC{NUL}"}, "timezone"),
        ("PATCH", artist, {"email": f"x{NUL}y@b.co"}, "email"),
        ("PATCH", artist, {"timezone": f"Europe/Paris{NUL}"}, "timezone"),
        ("POST", f"{artist}/services", {**service_body, "name": f"S{NUL}"}, "name"),
        ("POST", f"{artist}/services", {**service_body, "price": f"10{NUL}"}, "price"),
        ("PATCH", service, {"name": f"S{NUL}"}, "name"),
        ("POST", f"{artist}/leaves", {**leave, "reason": f"holiday{NUL}"}, "reason"),
        (
            "POST",
            f"/api/bookings/{booking['id']}/cancel",
            {"clientId": world.client_id, "reason": f"r{NUL}"},
            "reason",
        ),
        ("POST", f"/api/admin/bookings/{booking['id']}/cancel", {"reason": f"{NUL}"}, "reason"),
        (
            "POST",
            "/api/availability",
            {
                "artistId": f"{world.artist_id}{NUL}",
                "startDate": soon(1, 0),
                "endDate": soon(2, 0),
                "serviceDurationMin": 60,
            },
            "artistId",
        ),
        (
            "POST",
            "/api/bookings/create",
            {
                "clientId": world.client_id,
                "artistId": world.artist_id,
                "serviceId": f"{NUL}{world.service_id}",
                "startTime": soon(4),
            },
            "serviceId",
        ),
        (
            "PUT",
            f"{artist}/working-hours",
            [{"dayOfWeek": 0, "startTime": f"10:00{NUL}", "endTime": "18:00"}],
            "[0].startTime",
        ),
    ]


def test_nul_in_any_string_field_is_a_validation_error_naming_it(
    client: FlaskClient,
    admin_headers: dict[str, str],
    world: World,
    pending: dict[str, Any],
) -> None:
    for method, path, body, field in _nul_cases(world, pending):
        response = client.open(path, method=method, json=body, headers=admin_headers)
        assert response.status_code == 400, (method, path, field, response.json)
        _refused(response, field)


@pytest.mark.parametrize(
    ("query", "field"),
    [
        (f"from={quote(NUL)}", "from"),
        (f"cursor={quote(NUL)}", "cursor"),
        (f"status=CONFIRMED{quote(NUL)}", "status[0]"),
        (f"artistId={quote(NUL)}", "artistId"),
    ],
)
def test_nul_in_query_parameters_is_a_validation_error(
    client: FlaskClient, admin_headers: dict[str, str], query: str, field: str
) -> None:
    response = client.get(f"/api/admin/bookings?{query}", headers=admin_headers)
    _refused(response, field)


def test_nul_in_a_path_id_names_nothing(
    client: FlaskClient, admin_headers: dict[str, str], world: World
) -> None:
    for path in (
        f"/api/admin/artists/{world.artist_id}%00",
        f"/api/admin/clients/%00{world.client_id}",
        f"/api/bookings/{uuid.uuid4()}%00",
    ):
        response = client.get(path, headers=admin_headers)
        assert response.status_code == 404, (path, response.json)


def test_nul_in_the_idempotency_key_is_a_validation_error_naming_it(
    client: FlaskClient, world: World
) -> None:
    body = world.booking(soon(5))
    response = client.post(
        "/api/bookings/create", json=body, headers={"Idempotency-Key": f"key{NUL}"}
    )
    _refused(response, "Idempotency-Key")


# --------------------------------------------------------------------------- timestamps


def _leaves(sessions: sessionmaker[Session]) -> int:
    with transaction(sessions) as session:
        return session.scalar(select(func.count()).select_from(Leave)) or 0


@pytest.mark.parametrize(
    ("start", "end", "field"),
    [
        ("0001-01-01T00:00:00+14:00", "2030-01-01T00:00:00Z", "startTime"),
        ("0001-01-01T00:00:00Z", "0001-01-02T00:00:00Z", "startTime"),
        ("2030-01-01T00:00:00Z", "9999-12-31T23:59:59-14:00", "endTime"),
        ("1999-12-31T23:59:59.999Z", "2000-01-02T00:00:00Z", "startTime"),
        # 00:30 in Paris on 1 January 2000 is still 1999 in UTC.
        ("2000-01-01T00:30:00+01:00", "2000-01-02T00:00:00Z", "startTime"),
        ("2099-12-31T00:00:00Z", "2100-01-01T00:00:00Z", "endTime"),
    ],
)
def test_a_leave_outside_the_supported_range_is_refused_and_not_written(
    client: FlaskClient,
    admin_headers: dict[str, str],
    world: World,
    sessions: sessionmaker[Session],
    start: str,
    end: str,
    field: str,
) -> None:
    url = f"/api/admin/artists/{world.artist_id}/leaves"

    response = client.post(url, json={"startTime": start, "endTime": end}, headers=admin_headers)

    _refused(response, field)
    assert _leaves(sessions) == 0
    # The artist's leaves and availability still answer.
    assert client.get(url, headers=admin_headers).json == {"items": []}
    availability = client.post(
        "/api/availability",
        json={
            "artistId": world.artist_id,
            "startDate": soon(1, 0),
            "endDate": soon(2, 0),
            "serviceDurationMin": 60,
        },
    )
    assert availability.status_code == 200


def test_the_ends_of_the_supported_range_are_accepted(
    client: FlaskClient, admin_headers: dict[str, str], world: World
) -> None:
    url = f"/api/admin/artists/{world.artist_id}/leaves"
    for start, end in [
        ("2000-01-01T00:00:00Z", "2000-01-02T00:00:00+01:00"),
        ("2099-12-31T00:00:00Z", "2099-12-31T23:59:59.999999Z"),
    ]:
        body = {"startTime": start, "endTime": end}
        response = client.post(url, json=body, headers=admin_headers)
        assert response.status_code == 201, response.json
    listed: Any = client.get(url, headers=admin_headers).json
    assert [leave["startTime"] for leave in listed["items"]] == [
        "2000-01-01T00:00:00.000Z",
        "2099-12-31T00:00:00.000Z",
    ]


@pytest.mark.parametrize(
    ("start", "end", "field"),
    [
        ("0001-01-01T00:00:00Z", "0001-01-03T00:00:00Z", "startDate"),
        ("0001-01-01T10:00:00+14:00", "0001-01-03T00:00:00+14:00", "startDate"),
        ("9999-12-25T00:00:00Z", "9999-12-31T23:59:59Z", "startDate"),
        ("2099-12-30T00:00:00Z", "2100-01-02T00:00:00Z", "endDate"),
    ],
)
def test_availability_outside_the_supported_range_is_refused(
    client: FlaskClient, world: World, start: str, end: str, field: str
) -> None:
    response = client.post(
        "/api/availability",
        json={
            "artistId": world.artist_id,
            "startDate": start,
            "endDate": end,
            "serviceDurationMin": 60,
        },
    )
    _refused(response, field)


def test_availability_at_the_end_of_the_supported_range_answers(
    client: FlaskClient, world: World
) -> None:
    response = client.post(
        "/api/availability",
        json={
            "artistId": world.artist_id,
            "startDate": "2099-12-30T00:00:00Z",
            "endDate": "2099-12-31T23:59:59Z",
            "serviceDurationMin": 60,
        },
    )
    assert response.status_code == 200
    assert response.json is not None
    assert {slot["available"] for slot in response.json["slots"]} == {False}  # TOO_FAR


@pytest.mark.parametrize("start", ["9999-12-31T23:45:00Z", "0001-01-01T00:00:00+14:00"])
def test_a_booking_or_reschedule_outside_the_supported_range_is_refused(
    client: FlaskClient, world: World, pending: dict[str, Any], start: str
) -> None:
    created = client.post(
        "/api/bookings/create",
        json=world.booking(start),
    )
    _refused(created, "startTime")
    moved = client.post(
        f"/api/bookings/{pending['id']}/reschedule",
        json={"clientId": world.client_id, "startTime": start},
    )
    _refused(moved, "startTime")


@pytest.mark.parametrize("moment", ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59Z"])
def test_range_filters_outside_the_supported_range_are_refused(
    client: FlaskClient, admin_headers: dict[str, str], world: World, moment: str
) -> None:
    value = quote(moment)
    for path in (
        f"/api/admin/artists/{world.artist_id}/bookings?from={value}",
        f"/api/admin/bookings?to={value}",
        f"/api/clients/{world.client_id}/bookings?from={value}",
    ):
        response = client.get(path, headers=admin_headers)
        _refused(response, "to" if "to=" in path else "from")


# --------------------------------------------------------------------------- Idempotency-Key


def test_the_longest_idempotency_key_is_stored_under_a_client_token(
    make_app: Callable[..., Flask], world: World
) -> None:
    # Found by the fuzzer: a 255-character key, scoped by the client's id, is longer than
    # the column that keeps it (500, StringDataRightTruncation).
    secret = "test-input-jwt-secret-".ljust(64, "x")
    client = make_app(auth_jwt_secret=secret).test_client()
    token = jwt.encode(
        {"sub": world.client_id, "exp": int(time.time()) + 600}, secret, algorithm="HS256"
    )
    headers = {"Authorization": f"Bearer {token}", "Idempotency-Key": "k" * 255}
    body = world.booking(soon(6))

    first = client.post("/api/bookings/create", json=body, headers=headers)
    again = client.post("/api/bookings/create", json=body, headers=headers)

    assert first.status_code == 201, first.json
    assert again.status_code == 201
    assert again.json == first.json
    booking_id = first.json["booking"]["id"]  # type: ignore[index]
    moved = client.post(
        f"/api/bookings/{booking_id}/reschedule",
        json={"startTime": soon(7)},
        headers={**headers, "Idempotency-Key": "r" * 255},
    )
    assert moved.status_code == 409, moved.json  # PENDING_PAYMENT: INVALID_STATE, not a 500
    assert moved.json["error"] == "INVALID_STATE"  # type: ignore[index]


@pytest.mark.parametrize(
    ("path", "query", "field"),
    [
        ("/api/admin/bookings", "status=", "status[0]"),
        ("/api/admin/bookings", "status=CONFIRMED,,EXPIRED", "status[1]"),
        ("/api/admin/bookings", "depositStatus=PAID,", "depositStatus[1]"),
        ("/api/clients/{client}/bookings", "status=", "status[0]"),
    ],
)
def test_an_empty_value_in_a_list_filter_is_a_validation_error(
    client: FlaskClient,
    admin_headers: dict[str, str],
    world: World,
    path: str,
    query: str,
    field: str,
) -> None:
    # Found by the fuzzer: `status=` was read as no filter at all (200, every booking).
    url = path.format(client=world.client_id)
    _refused(client.get(f"{url}?{query}", headers=admin_headers), field)


# --------------------------------------------------------------------------- money


@pytest.mark.parametrize(
    ("field", "amount", "why"),
    [
        ("price", "1e30", "decimal.InvalidOperation when quantized"),
        ("price", "999999999999", "numeric field overflow: 12 digits before the point"),
        ("price", "-0", "rendered as -0.00, refused by the response schema after the commit"),
        ("price", "1E+11", "numeric field overflow: the first amount too large"),
    ],
)
def test_an_amount_the_database_cannot_hold_is_a_validation_error_and_not_written(
    client: FlaskClient,
    admin_headers: dict[str, str],
    world: World,
    field: str,
    amount: str,
    why: str,
) -> None:
    url = f"/api/admin/artists/{world.artist_id}/services"
    body = {"name": "S", "durationMin": 60, "price": "100.00", "depositAmount": "0"}
    body[field] = amount

    response = client.post(url, json={**body, "currency": "eur"}, headers=admin_headers)

    _refused(response, field)
    services: Any = client.get(url, headers=admin_headers).json
    assert [s["id"] for s in services["items"]] == [world.service_id], why


def test_the_largest_amount_the_database_holds_is_accepted(
    client: FlaskClient, admin_headers: dict[str, str], world: World
) -> None:
    url = f"/api/admin/artists/{world.artist_id}/services"
    body = {"name": "S", "durationMin": 60, "price": "99999999999.99", "depositAmount": "0"}
    response = client.post(url, json={**body, "currency": "eur"}, headers=admin_headers)
    assert response.status_code == 201, response.json

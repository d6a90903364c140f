"""The management API over the Flask test client, against the real database."""

from __future__ import annotations

import pytest


@pytest.fixture
def artist(client, admin_headers):
    response = client.post(
        "/api/admin/artists",
        json={
            "name": "Ink Wizard",
            "email": "Wizard@Example.com",
            "timezone": "Europe/Paris",
            "stripeAccountId": "acct_1Wizard",
            "chargesEnabled": True,
            "bufferMin": 15,
        },
        headers=admin_headers,
    )
    assert response.status_code == 201, response.json
    return response.json


def test_admin_requires_the_token(client):
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic x"}):
        response = client.get("/api/admin/artists", headers=headers)
        assert response.status_code == 401
        assert response.json["error"] == "UNAUTHORIZED"


def test_create_and_list_artist(client, admin_headers, artist):
    assert artist["email"] == "wizard@example.com"
    assert artist["chargesEnabled"] is True
    assert artist["bufferMin"] == 15
    assert artist["minNoticeMin"] == 0
    assert artist["maxAdvanceDays"] == 365
    listed = client.get("/api/admin/artists", headers=admin_headers).json
    assert [a["id"] for a in listed["items"]] == [artist["id"]]
    one = client.get(f"/api/admin/artists/{artist['id']}", headers=admin_headers).json
    assert one == artist


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "x", "email": "a@b.co", "timezone": "Mars/Olympus"}, "timezone"),
        ({"name": "x", "email": "not-an-email", "timezone": "UTC"}, "email"),
        ({"email": "a@b.co", "timezone": "UTC"}, "name"),
        ({"name": "x", "email": "a@b.co", "timezone": "UTC", "bufferMin": "15"}, "bufferMin"),
        ({"name": "x", "email": "a@b.co", "timezone": "UTC", "bufferMin": -1}, "bufferMin"),
    ],
)
def test_artist_validation(client, admin_headers, body, field):
    response = client.post("/api/admin/artists", json=body, headers=admin_headers)
    assert response.status_code == 400
    assert response.json["error"] == "VALIDATION_ERROR"
    assert field in response.json["details"]["fields"]


def test_duplicate_email_is_a_validation_error(client, admin_headers, artist):
    response = client.post(
        "/api/admin/artists",
        json={"name": "Other", "email": "wizard@example.com", "timezone": "UTC"},
        headers=admin_headers,
    )
    assert response.status_code == 400
    assert response.json["error"] == "VALIDATION_ERROR"


def test_services_money_is_exact(client, admin_headers, artist):
    url = f"/api/admin/artists/{artist['id']}/services"
    created = client.post(
        url,
        json={
            "name": "Sleeve",
            "durationMin": 180,
            "price": "400.00",
            "depositAmount": "99.99",
            "currency": "EUR",
        },
        headers=admin_headers,
    )
    assert created.status_code == 201
    assert created.json["depositAmount"] == "99.99"
    assert created.json["price"] == "400.00"
    assert created.json["currency"] == "eur"
    yen = client.post(
        url,
        json={
            "name": "Flash",
            "durationMin": 60,
            "price": "20000",
            "depositAmount": "5000",
            "currency": "jpy",
        },
        headers=admin_headers,
    )
    assert yen.json["depositAmount"] == "5000"
    bad = client.post(
        url,
        json={
            "name": "Flash",
            "durationMin": 60,
            "price": "20000",
            "depositAmount": "50.5",
            "currency": "jpy",
        },
        headers=admin_headers,
    )
    assert bad.status_code == 400
    assert "depositAmount" in bad.json["details"]["fields"]
    float_money = client.post(
        url,
        json={
            "name": "Flash",
            "durationMin": 60,
            "price": 100.0,
            "depositAmount": "5",
            "currency": "eur",
        },
        headers=admin_headers,
    )
    assert float_money.status_code == 400
    assert "price" in float_money.json["details"]["fields"]
    listed = client.get(url, headers=admin_headers).json["items"]
    assert len(listed) == 2


def test_working_hours_replace_all(client, admin_headers, artist):
    url = f"/api/admin/artists/{artist['id']}/working-hours"
    first = client.put(
        url,
        json=[
            {"dayOfWeek": 0, "startTime": "10:00", "endTime": "13:00"},
            {"dayOfWeek": 0, "startTime": "14:00", "endTime": "18:00"},
        ],
        headers=admin_headers,
    )
    assert first.status_code == 200
    assert len(first.json["items"]) == 2
    second = client.put(
        url,
        json=[{"dayOfWeek": 6, "startTime": "20:00", "endTime": "24:00"}],
        headers=admin_headers,
    )
    assert [(h["dayOfWeek"], h["startTime"], h["endTime"]) for h in second.json["items"]] == [
        (6, "20:00", "24:00")
    ]
    assert len(client.get(url, headers=admin_headers).json["items"]) == 1


@pytest.mark.parametrize(
    "body",
    [
        [{"dayOfWeek": 7, "startTime": "10:00", "endTime": "18:00"}],
        [{"dayOfWeek": 1, "startTime": "18:00", "endTime": "10:00"}],
        [{"dayOfWeek": 1, "startTime": "10h", "endTime": "18:00"}],
        [
            {"dayOfWeek": 1, "startTime": "10:00", "endTime": "14:00"},
            {"dayOfWeek": 1, "startTime": "13:00", "endTime": "18:00"},
        ],
        {"dayOfWeek": 1},
    ],
)
def test_working_hours_validation(client, admin_headers, artist, body):
    url = f"/api/admin/artists/{artist['id']}/working-hours"
    response = client.put(url, json=body, headers=admin_headers)
    assert response.status_code == 400
    assert response.json["error"] == "VALIDATION_ERROR"


def test_leaves(client, admin_headers, artist):
    url = f"/api/admin/artists/{artist['id']}/leaves"
    created = client.post(
        url,
        json={
            "startTime": "2030-08-01T00:00:00+02:00",
            "endTime": "2030-08-15T00:00:00+02:00",
            "reason": "holiday",
        },
        headers=admin_headers,
    )
    assert created.status_code == 201
    assert created.json["startTime"] == "2030-07-31T22:00:00.000Z"
    naive = client.post(
        url,
        json={"startTime": "2030-08-01T00:00:00", "endTime": "2030-08-15T00:00:00Z"},
        headers=admin_headers,
    )
    assert naive.status_code == 400
    assert "startTime" in naive.json["details"]["fields"]
    assert len(client.get(url, headers=admin_headers).json["items"]) == 1


@pytest.mark.parametrize(
    "path",
    [
        "/api/admin/artists/6a3c6b9e-0000-4000-8000-000000000000",
        "/api/admin/artists/not-a-uuid/services",
        "/api/admin/bookings/6a3c6b9e-0000-4000-8000-000000000000",
        "/api/admin/clients/nope",
    ],
)
def test_unknown_ids_are_404(client, admin_headers, path):
    response = client.get(path, headers=admin_headers)
    assert response.status_code == 404
    assert response.json["error"] == "NOT_FOUND"


def test_clients(client, admin_headers):
    created = client.post(
        "/api/admin/clients", json={"email": "c@example.com", "name": "C"}, headers=admin_headers
    )
    assert created.status_code == 201
    assert created.json["email"] == "c@example.com"
    listed = client.get("/api/admin/clients", headers=admin_headers).json["items"]
    assert [c["id"] for c in listed] == [created.json["id"]]


@pytest.mark.parametrize(
    "data", [b"{not json", b"", b"[1,2]", b"null", '{"name": "\u00e9"'.encode()]
)
def test_malformed_bodies(client, admin_headers, data):
    response = client.post(
        "/api/admin/clients",
        data=data,
        headers={**admin_headers, "Content-Type": "application/json"},
    )
    assert response.status_code == 400
    assert response.json["error"] == "VALIDATION_ERROR"


def test_unknown_route_and_method_are_json(client, admin_headers):
    missing = client.get("/api/nothing-here")
    assert missing.status_code == 404
    assert missing.json["error"] == "NOT_FOUND"
    wrong = client.delete("/api/admin/clients", headers=admin_headers)
    assert wrong.status_code == 405
    assert wrong.json["error"] == "VALIDATION_ERROR"

"""Catalogue edits over the management API: PATCH of artists, services and clients, DELETE
of leaves and services, inactive services, currencies. Flask test client, real database,
the Stripe emulator for bookings."""

from __future__ import annotations

import uuid
from concurrent.futures import Future, ThreadPoolExecutor, wait
from datetime import datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select, text

from shared.adapters.db import transaction
from shared.adapters.models import Artist, Booking, BookingStatus
from tests.factories import make_world

PARIS = ZoneInfo("Europe/Paris")
UNKNOWN = "6a3c6b9e-0000-4000-8000-000000000000"
POLICY = (
    "refundWindowHours",
    "rescheduleNoticeHours",
    "maxReschedules",
    "reminderHours",
    "noShowLimit",
)


def local(hour: int, days: int = 5, minute: int = 0) -> datetime:
    d = datetime.now(PARIS).date() + timedelta(days=days)
    return datetime(d.year, d.month, d.day, hour, minute, tzinfo=PARIS)


def fields_of(response) -> dict[str, str]:
    assert response.status_code == 400, response.json
    assert response.json["error"] == "VALIDATION_ERROR"
    return response.json["details"]["fields"]


def free_hours(client, artist_id, day_start, **extra) -> set[int]:
    body = {
        "artistId": artist_id,
        "startDate": day_start.isoformat(),
        "endDate": (day_start + timedelta(days=1)).isoformat(),
        "serviceDurationMin": 60,
        "slotIntervalMin": 60,
        **extra,
    }
    response = client.post("/api/availability", json=body)
    assert response.status_code == 200, response.json
    return {
        datetime.fromisoformat(s["startTime"]).astimezone(PARIS).hour
        for s in response.json["slots"]
        if s["available"]
    }


def book(client, world, start: datetime, service_id: str | None = None):
    return client.post(
        "/api/bookings/create",
        json={
            "clientId": world.client_id,
            "artistId": world.artist_id,
            "serviceId": service_id or world.service_id,
            "startTime": start.isoformat(),
        },
    )


# --------------------------------------------------------------------------- artists


@pytest.fixture
def artist(client, admin_headers):
    response = client.post(
        "/api/admin/artists",
        json={"name": "Ink Wizard", "email": "wizard@example.com", "timezone": "Europe/Paris"},
        headers=admin_headers,
    )
    assert response.status_code == 201, response.json
    return response.json


def patch_artist(client, admin_headers, artist_id, body):
    return client.patch(f"/api/admin/artists/{artist_id}", json=body, headers=admin_headers)


def test_artist_policy_defaults_and_creation(client, admin_headers, artist):
    assert {k: artist[k] for k in POLICY} == {
        "refundWindowHours": None,
        "rescheduleNoticeHours": 48,
        "maxReschedules": 1,
        "reminderHours": 24,
        "noShowLimit": 0,
    }
    created = client.post(
        "/api/admin/artists",
        json={
            "name": "Strict",
            "email": "strict@example.com",
            "timezone": "UTC",
            "refundWindowHours": 72,
            "rescheduleNoticeHours": 0,
            "maxReschedules": 3,
            "reminderHours": 0,
            "noShowLimit": 2,
        },
        headers=admin_headers,
    )
    assert created.status_code == 201, created.json
    assert {k: created.json[k] for k in POLICY} == {
        "refundWindowHours": 72,
        "rescheduleNoticeHours": 0,
        "maxReschedules": 3,
        "reminderHours": 0,
        "noShowLimit": 2,
    }


def test_patch_changes_only_the_fields_given(client, admin_headers, artist):
    response = patch_artist(
        client,
        admin_headers,
        artist["id"],
        {
            "name": "  Ink Sorcerer ",
            "email": "Sorcerer@Example.com",
            "refundWindowHours": 48,
            "maxReschedules": 2,
            "somethingNew": "ignored",
        },
    )
    assert response.status_code == 200, response.json
    changed = response.json
    assert changed["name"] == "Ink Sorcerer"
    assert changed["email"] == "sorcerer@example.com"
    assert changed["refundWindowHours"] == 48
    assert changed["maxReschedules"] == 2
    untouched = {k: v for k, v in artist.items() if k not in {"name", "email", *POLICY}}
    assert {k: changed[k] for k in untouched} == untouched
    assert client.get(f"/api/admin/artists/{artist['id']}", headers=admin_headers).json == changed
    # An empty PATCH changes nothing.
    same = patch_artist(client, admin_headers, artist["id"], {})
    assert same.status_code == 200
    assert same.json == changed
    # null clears a nullable field: deposits never refunded again.
    cleared = patch_artist(client, admin_headers, artist["id"], {"refundWindowHours": None})
    assert cleared.json["refundWindowHours"] is None
    assert cleared.json["maxReschedules"] == 2


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": None}, "name"),
        ({"name": ""}, "name"),
        ({"email": None}, "email"),
        ({"email": "nope"}, "email"),
        ({"timezone": "Mars/Olympus"}, "timezone"),
        ({"timezone": None}, "timezone"),
        ({"chargesEnabled": None}, "chargesEnabled"),
        ({"chargesEnabled": "yes"}, "chargesEnabled"),
        ({"stripeAccountId": "bank_1"}, "stripeAccountId"),
        ({"bufferMin": None}, "bufferMin"),
        ({"bufferMin": -1}, "bufferMin"),
        ({"bufferMin": 1441}, "bufferMin"),
        ({"minNoticeMin": "60"}, "minNoticeMin"),
        ({"maxAdvanceDays": 3651}, "maxAdvanceDays"),
        ({"refundWindowHours": -1}, "refundWindowHours"),
        ({"refundWindowHours": 8761}, "refundWindowHours"),
        ({"rescheduleNoticeHours": None}, "rescheduleNoticeHours"),
        ({"rescheduleNoticeHours": 8761}, "rescheduleNoticeHours"),
        ({"maxReschedules": -1}, "maxReschedules"),
        ({"maxReschedules": 1.5}, "maxReschedules"),
        ({"reminderHours": 9000}, "reminderHours"),
        ({"noShowLimit": None}, "noShowLimit"),
        ({"noShowLimit": 101}, "noShowLimit"),
    ],
)
def test_artist_patch_validation(client, admin_headers, artist, body, field):
    response = patch_artist(client, admin_headers, artist["id"], body)
    assert field in fields_of(response)
    # Nothing was written.
    assert client.get(f"/api/admin/artists/{artist['id']}", headers=admin_headers).json == artist


def test_artist_patch_bounds_are_inclusive(client, admin_headers, artist):
    body = {
        "bufferMin": 1440,
        "minNoticeMin": 525_600,
        "maxAdvanceDays": 3650,
        "refundWindowHours": 8760,
        "rescheduleNoticeHours": 8760,
        "maxReschedules": 100,
        "reminderHours": 8760,
        "noShowLimit": 100,
    }
    response = patch_artist(client, admin_headers, artist["id"], body)
    assert response.status_code == 200, response.json
    assert {k: response.json[k] for k in body} == body


def test_artist_unique_fields_name_themselves(client, admin_headers, artist):
    other = client.post(
        "/api/admin/artists",
        json={
            "name": "Other",
            "email": "other@example.com",
            "timezone": "UTC",
            "stripeAccountId": "acct_1Other",
        },
        headers=admin_headers,
    ).json
    taken_email = patch_artist(client, admin_headers, artist["id"], {"email": "OTHER@example.com"})
    assert fields_of(taken_email) == {"email": "already exists"}
    taken_account = patch_artist(
        client, admin_headers, artist["id"], {"stripeAccountId": "acct_1Other"}
    )
    assert fields_of(taken_account) == {"stripeAccountId": "already exists"}
    # Its own values are not a conflict.
    mine = patch_artist(client, admin_headers, other["id"], {"email": "other@example.com"})
    assert mine.status_code == 200


@pytest.mark.parametrize("ident", [UNKNOWN, "not-a-uuid"])
def test_patch_of_unknown_ids_is_404(client, admin_headers, ident):
    for path in (
        f"/api/admin/artists/{ident}",
        f"/api/admin/clients/{ident}",
        f"/api/admin/artists/{ident}/services/{UNKNOWN}",
    ):
        response = client.patch(path, json={"name": "x"}, headers=admin_headers)
        assert response.status_code == 404, path
        assert response.json["error"] == "NOT_FOUND"


@pytest.mark.parametrize("data", [b"", b"[]", b"null", b"{not json"])
def test_patch_bodies_must_be_json_objects(client, admin_headers, artist, data):
    response = client.patch(
        f"/api/admin/artists/{artist['id']}",
        data=data,
        headers={**admin_headers, "Content-Type": "application/json"},
    )
    assert response.status_code == 400
    assert response.json["error"] == "VALIDATION_ERROR"


def test_patch_needs_the_admin_token(client, artist):
    response = client.patch(f"/api/admin/artists/{artist['id']}", json={"name": "x"})
    assert response.status_code == 401


def test_an_artist_without_stripe_gets_an_account_later(client, admin_headers, sessions):
    world = make_world(sessions, stripe_account_id=None, charges_enabled=False)
    start = local(11)
    refused = book(client, world, start)
    assert refused.status_code == 422
    assert refused.json["error"] == "STRIPE_NOT_CONFIGURED"
    patched = patch_artist(
        client,
        admin_headers,
        world.artist_id,
        {"stripeAccountId": "acct_1Later", "chargesEnabled": True},
    )
    assert patched.status_code == 200, patched.json
    assert patched.json["stripeAccountId"] == "acct_1Later"
    booked = book(client, world, start)
    assert booked.status_code == 201, booked.json
    assert booked.json["paymentIntent"]["amount"] == 5000


def test_a_new_stripe_account_starts_without_charges(client, admin_headers, sessions):
    world = make_world(sessions)
    with transaction(sessions) as session:
        row = session.get_one(Artist, uuid.UUID(world.artist_id))
        row.stripe_account_synced_at = 1_900_000_000
    moved = patch_artist(client, admin_headers, world.artist_id, {"stripeAccountId": "acct_1New"})
    assert moved.json["chargesEnabled"] is False
    with transaction(sessions) as session:
        # Stripe's events about the new account apply whatever their age.
        assert session.get_one(Artist, uuid.UUID(world.artist_id)).stripe_account_synced_at is None
    assert book(client, world, local(11)).status_code == 422
    # Unchanged account id: chargesEnabled stays as the operator says.
    enabled = patch_artist(
        client,
        admin_headers,
        world.artist_id,
        {"stripeAccountId": "acct_1New", "chargesEnabled": True},
    )
    assert enabled.json["chargesEnabled"] is True
    again = patch_artist(client, admin_headers, world.artist_id, {"stripeAccountId": "acct_1New"})
    assert again.json["chargesEnabled"] is True
    removed = patch_artist(client, admin_headers, world.artist_id, {"stripeAccountId": None})
    assert removed.json["stripeAccountId"] is None
    assert removed.json["chargesEnabled"] is False


def test_availability_follows_artist_patches(client, admin_headers, sessions):
    """Answers are cached under the artist's schedule_version: each PATCH of a rule that
    decides availability must change the next answer of the same app."""
    world = make_world(sessions)
    day_start = local(0, days=3)
    all_day = set(range(10, 18))
    assert free_hours(client, world.artist_id, day_start) == all_day

    with transaction(sessions) as session:
        begin = local(12, days=3)
        session.add(
            Booking(
                client_id=uuid.UUID(world.client_id),
                artist_id=uuid.UUID(world.artist_id),
                service_id=uuid.UUID(world.service_id),
                start_time=begin,
                end_time=begin + timedelta(hours=1),
                status=BookingStatus.CONFIRMED,
                deposit_status="PAID",
                deposit_amount=Decimal("50"),
                currency="eur",
            )
        )
    assert free_hours(client, world.artist_id, day_start) == all_day - {12}

    def after(body):
        response = patch_artist(client, admin_headers, world.artist_id, body)
        assert response.status_code == 200, response.json
        return free_hours(client, world.artist_id, day_start)

    # A buffer of 30 min around 12:00-13:00 also takes the 11:00 and 13:00 slots.
    assert after({"bufferMin": 30}) == all_day - {11, 12, 13}
    assert after({"bufferMin": 0}) == all_day - {12}
    # The booking window ends before that day.
    assert after({"maxAdvanceDays": 1}) == set()
    assert after({"maxAdvanceDays": 365}) == all_day - {12}
    # Notice longer than the time left until the day's end.
    assert after({"minNoticeMin": 5 * 24 * 60}) == set()
    assert after({"minNoticeMin": 0}) == all_day - {12}
    # Working hours are 10:00-18:00 in the artist's zone: in New York they are other
    # instants, and the Paris day seen from there holds the New York morning.
    new_york = after({"timezone": "America/New_York"})
    assert new_york != all_day - {12}
    assert new_york
    assert after({"timezone": "Europe/Paris"}) == all_day - {12}


def test_policy_only_patch_keeps_the_schedule_version(client, admin_headers, sessions):
    """The deposit policy does not decide availability: it does not spoil the cache."""
    world = make_world(sessions)

    def version():
        with transaction(sessions) as session:
            return session.scalar(
                select(Artist.schedule_version).where(Artist.id == uuid.UUID(world.artist_id))
            )

    before = version()
    patch_artist(client, admin_headers, world.artist_id, {"reminderHours": 2, "name": "Renamed"})
    assert version() == before
    patch_artist(client, admin_headers, world.artist_id, {"bufferMin": 10})
    assert version() > before


# --------------------------------------------------------------------------- clients


def test_patch_client(client, admin_headers):
    first = client.post(
        "/api/admin/clients", json={"email": "a@example.com", "name": "A"}, headers=admin_headers
    ).json
    second = client.post(
        "/api/admin/clients", json={"email": "b@example.com", "name": "B"}, headers=admin_headers
    ).json
    url = f"/api/admin/clients/{first['id']}"
    renamed = client.patch(url, json={"name": " Alice "}, headers=admin_headers)
    assert renamed.status_code == 200
    assert renamed.json == {**first, "name": "Alice"}
    moved = client.patch(url, json={"email": "Alice@Example.com"}, headers=admin_headers)
    assert moved.json["email"] == "alice@example.com"
    assert moved.json["name"] == "Alice"
    taken = client.patch(url, json={"email": second["email"]}, headers=admin_headers)
    assert fields_of(taken) == {"email": "already exists"}
    assert "name" in fields_of(client.patch(url, json={"name": None}, headers=admin_headers))
    assert client.get(url, headers=admin_headers).json == moved.json


# --------------------------------------------------------------------------- services


def services_url(world_or_artist_id) -> str:
    artist_id = getattr(world_or_artist_id, "artist_id", world_or_artist_id)
    return f"/api/admin/artists/{artist_id}/services"


def patch_service(client, admin_headers, world, body, service_id=None):
    return client.patch(
        f"{services_url(world)}/{service_id or world.service_id}", json=body, headers=admin_headers
    )


def test_service_json_has_active(client, admin_headers, sessions):
    world = make_world(sessions)
    [service] = client.get(services_url(world), headers=admin_headers).json["items"]
    assert service["active"] is True


def test_patch_service(client, admin_headers, sessions):
    world = make_world(sessions)
    response = patch_service(
        client,
        admin_headers,
        world,
        {"name": "Big piece", "durationMin": 120, "price": "300", "depositAmount": "75.5"},
    )
    assert response.status_code == 200, response.json
    service = response.json
    assert service["name"] == "Big piece"
    assert service["durationMin"] == 120
    assert service["price"] == "300.00"
    assert service["depositAmount"] == "75.50"
    assert service["currency"] == "eur"
    assert service["active"] is True
    # To yen: the price is a whole number of yen, so it carries over.
    yen = patch_service(client, admin_headers, world, {"currency": "JPY", "depositAmount": "75"})
    assert yen.status_code == 200, yen.json
    assert (yen.json["price"], yen.json["depositAmount"], yen.json["currency"]) == (
        "300",
        "75",
        "jpy",
    )
    assert client.get(services_url(world), headers=admin_headers).json["items"] == [yen.json]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"currency": "xyz"}, "currency"),
        ({"currency": "XAU"}, "currency"),
        ({"currency": "xts"}, "currency"),
        ({"currency": "euro"}, "currency"),
        ({"currency": None}, "currency"),
        ({"depositAmount": "150.01"}, "depositAmount"),
        ({"price": "49.99"}, "depositAmount"),  # below the current deposit of 50.00
        ({"price": "100", "depositAmount": "100.001"}, "depositAmount"),
        ({"price": "-1"}, "price"),
        ({"price": 100}, "price"),
        ({"price": None}, "price"),
        ({"currency": "jpy", "price": "150.50"}, "price"),
        ({"currency": "kwd", "depositAmount": "1.2345"}, "depositAmount"),
        ({"durationMin": 4}, "durationMin"),
        ({"durationMin": None}, "durationMin"),
        ({"name": ""}, "name"),
        ({"active": "false"}, "active"),
        ({"active": None}, "active"),
    ],
)
def test_service_patch_validation(client, admin_headers, sessions, body, field):
    world = make_world(sessions)
    before = client.get(services_url(world), headers=admin_headers).json["items"]
    response = patch_service(client, admin_headers, world, body)
    assert field in fields_of(response)
    assert client.get(services_url(world), headers=admin_headers).json["items"] == before


def test_a_currency_change_must_keep_the_amounts_exact(client, admin_headers, sessions):
    world = make_world(sessions, price="150.00", deposit="49.99")
    response = patch_service(client, admin_headers, world, {"currency": "jpy"})
    assert fields_of(response) == {"depositAmount": "has more decimals than JPY allows"}
    fixed = patch_service(client, admin_headers, world, {"currency": "jpy", "depositAmount": "50"})
    assert fixed.status_code == 200


def test_service_of_another_artist_is_not_found(client, admin_headers, sessions):
    world, other = make_world(sessions), make_world(sessions)
    url = f"{services_url(world)}/{other.service_id}"
    assert client.patch(url, json={"name": "x"}, headers=admin_headers).status_code == 404
    assert client.delete(url, headers=admin_headers).status_code == 404


def test_existing_bookings_keep_their_terms(client, admin_headers, sessions):
    world = make_world(sessions)
    start = local(11)
    booked = book(client, world, start)
    assert booked.status_code == 201, booked.json
    before = client.get(
        f"/api/admin/bookings/{booked.json['booking']['id']}", headers=admin_headers
    )
    patched = patch_service(
        client,
        admin_headers,
        world,
        {"durationMin": 180, "price": "20000", "depositAmount": "9000", "currency": "jpy"},
    )
    assert patched.status_code == 200, patched.json
    after = client.get(f"/api/admin/bookings/{booked.json['booking']['id']}", headers=admin_headers)
    assert after.json["booking"] == before.json["booking"]
    assert after.json["booking"]["depositAmount"] == "50.00"
    assert after.json["booking"]["currency"] == "eur"
    # New bookings take the new terms.
    later = book(client, world, local(14))
    assert later.status_code == 201, later.json
    assert later.json["paymentIntent"]["amount"] == 9000
    assert later.json["paymentIntent"]["currency"] == "jpy"
    ends = datetime.fromisoformat(later.json["booking"]["endTime"])
    assert ends - datetime.fromisoformat(later.json["booking"]["startTime"]) == timedelta(hours=3)


def test_availability_by_service_follows_its_duration(client, admin_headers, sessions):
    world = make_world(sessions)
    day_start = local(0, days=3)
    by_service = {"serviceDurationMin": None, "serviceId": world.service_id}
    assert free_hours(client, world.artist_id, day_start, **by_service) == set(range(10, 18))
    patch_service(client, admin_headers, world, {"durationMin": 240})
    assert free_hours(client, world.artist_id, day_start, **by_service) == set(range(10, 15))


def test_an_unknown_currency_is_refused_at_creation(client, admin_headers, sessions):
    world = make_world(sessions)
    body = {"name": "Flash", "durationMin": 60, "price": "100", "depositAmount": "10"}
    for code in ("xyz", "XXX", "xag", "bov"):
        response = client.post(
            services_url(world), json={**body, "currency": code}, headers=admin_headers
        )
        assert fields_of(response) == {
            "currency": f"{code!r} is not an ISO 4217 currency Stripe can charge"
        }
    for code in ("usd", "XOF", "chf"):
        response = client.post(
            services_url(world), json={**body, "currency": code}, headers=admin_headers
        )
        assert response.status_code == 201, (code, response.json)


# --------------------------------------------------------------------------- deleting services


def test_a_service_without_bookings_is_deleted(client, admin_headers, sessions):
    world = make_world(sessions)
    url = f"{services_url(world)}/{world.service_id}"
    response = client.delete(url, headers=admin_headers)
    assert response.status_code == 204
    assert response.data == b""
    assert client.get(services_url(world), headers=admin_headers).json["items"] == []
    assert client.delete(url, headers=admin_headers).status_code == 404
    assert book(client, world, local(11)).status_code == 404


def test_a_service_with_bookings_is_deactivated_not_deleted(client, admin_headers, sessions):
    world = make_world(sessions)
    day_start = local(0, days=5)
    by_service = {"serviceDurationMin": None, "serviceId": world.service_id}
    booked = book(client, world, local(11))
    assert booked.status_code == 201
    # Primes the availability cache for the service.
    assert free_hours(client, world.artist_id, day_start, **by_service)

    url = f"{services_url(world)}/{world.service_id}"
    response = client.delete(url, headers=admin_headers)
    assert response.status_code == 200, response.json
    assert response.json["active"] is False
    assert response.json["id"] == world.service_id
    assert client.get(services_url(world), headers=admin_headers).json["items"] == [response.json]

    # Hidden from new bookings and from availability (cached answer or not) ...
    refused = book(client, world, local(14))
    assert refused.status_code == 404
    assert refused.json["error"] == "NOT_FOUND"
    assert refused.json["details"] == {"service": world.service_id}
    unavailable = client.post(
        "/api/availability",
        json={
            "artistId": world.artist_id,
            "startDate": day_start.isoformat(),
            "endDate": (day_start + timedelta(days=1)).isoformat(),
            **by_service,
        },
    )
    assert unavailable.status_code == 404
    # ... while its booking is untouched, and a second DELETE changes nothing.
    booking_id = booked.json["booking"]["id"]
    kept = client.get(f"/api/bookings/{booking_id}")
    assert kept.status_code == 200
    assert kept.json["booking"]["status"] == "PENDING_PAYMENT"
    assert client.delete(url, headers=admin_headers).json == response.json

    # Offered again, it takes bookings again.
    reactivated = patch_service(client, admin_headers, world, {"active": True})
    assert reactivated.json["active"] is True
    assert book(client, world, local(14)).status_code == 201


def test_any_booking_keeps_the_service(client, admin_headers, sessions):
    """Even a cancelled booking names its service: it is deactivated, never deleted."""
    world = make_world(sessions)
    begin = local(11)
    with transaction(sessions) as session:
        session.add(
            Booking(
                client_id=uuid.UUID(world.client_id),
                artist_id=uuid.UUID(world.artist_id),
                service_id=uuid.UUID(world.service_id),
                start_time=begin,
                end_time=begin + timedelta(hours=1),
                status=BookingStatus.CANCELLED,
                deposit_status="UNPAID",
                deposit_amount=Decimal("50"),
                currency="eur",
            )
        )
    response = client.delete(f"{services_url(world)}/{world.service_id}", headers=admin_headers)
    assert response.status_code == 200
    assert response.json["active"] is False


def test_a_deactivated_service_can_be_deactivated_by_patch(client, admin_headers, sessions):
    world = make_world(sessions)
    off = patch_service(client, admin_headers, world, {"active": False})
    assert off.json["active"] is False
    assert book(client, world, local(11)).status_code == 404
    # Without bookings it can then be deleted for good.
    url = f"{services_url(world)}/{world.service_id}"
    assert client.delete(url, headers=admin_headers).status_code == 204


# --------------------------------------------------------------------------- leaves


def test_delete_leave_frees_its_time(client, admin_headers, sessions):
    world, other = make_world(sessions), make_world(sessions)
    day_start = local(0, days=4)
    leaves = f"/api/admin/artists/{world.artist_id}/leaves"
    leave = client.post(
        leaves,
        json={
            "startTime": local(12, days=4).isoformat(),
            "endTime": local(15, days=4).isoformat(),
            "reason": "dentist",
        },
        headers=admin_headers,
    ).json
    assert free_hours(client, world.artist_id, day_start) == set(range(10, 18)) - {12, 13, 14}

    foreign = client.delete(
        f"/api/admin/artists/{other.artist_id}/leaves/{leave['id']}", headers=admin_headers
    )
    assert foreign.status_code == 404
    response = client.delete(f"{leaves}/{leave['id']}", headers=admin_headers)
    assert response.status_code == 204
    assert response.data == b""
    assert client.get(leaves, headers=admin_headers).json["items"] == []
    assert free_hours(client, world.artist_id, day_start) == set(range(10, 18))
    assert client.delete(f"{leaves}/{leave['id']}", headers=admin_headers).status_code == 404
    assert client.delete(f"{leaves}/not-a-uuid", headers=admin_headers).status_code == 404
    assert (
        client.delete(
            f"/api/admin/artists/{UNKNOWN}/leaves/{leave['id']}", headers=admin_headers
        ).status_code
        == 404
    )


# --------------------------------------------------------------------------- races


@pytest.fixture
def pool():
    with ThreadPoolExecutor(max_workers=1) as executor:
        yield executor


def blocked(future: Future[object]) -> bool:
    """Still waiting (on a row lock) half a second later."""
    done, _ = wait([future], timeout=0.5)
    return not done


def test_a_booking_in_flight_turns_a_delete_into_a_deactivation(app, admin_headers, sessions, pool):
    """Booking creation locks the service FOR SHARE: a DELETE waits for it, then sees the
    booking and deactivates the service (without the lock it would delete a service that
    the booking's insert still references)."""
    world = make_world(sessions)
    url = f"{services_url(world)}/{world.service_id}"
    with transaction(sessions) as session:
        session.execute(
            text("SELECT 1 FROM services WHERE id = :id FOR SHARE"), {"id": world.service_id}
        )
        begin = local(11)
        session.add(
            Booking(
                client_id=uuid.UUID(world.client_id),
                artist_id=uuid.UUID(world.artist_id),
                service_id=uuid.UUID(world.service_id),
                start_time=begin,
                end_time=begin + timedelta(hours=1),
                status=BookingStatus.PENDING_PAYMENT,
                deposit_status="UNPAID",
                deposit_amount=Decimal("50"),
                currency="eur",
                expires_at=begin,
            )
        )
        session.flush()
        future = pool.submit(app.test_client().delete, url, headers=admin_headers)
        assert blocked(future)
    response = future.result(timeout=10)
    assert response.status_code == 200, response.json
    assert response.json["active"] is False


def test_a_booking_waiting_for_a_delete_finds_no_service(app, sessions, pool):
    """A DELETE locks the service FOR UPDATE; a booking for it waits, then answers
    NOT_FOUND (not a foreign-key failure)."""
    world = make_world(sessions)
    with transaction(sessions) as session:
        session.execute(
            text("SELECT 1 FROM services WHERE id = :id FOR UPDATE"), {"id": world.service_id}
        )
        session.execute(text("DELETE FROM services WHERE id = :id"), {"id": world.service_id})
        future = pool.submit(book, app.test_client(), world, local(11))
        assert blocked(future)
    response = future.result(timeout=10)
    assert response.status_code == 404, response.json
    assert response.json["details"] == {"service": world.service_id}


def test_a_booking_waiting_for_a_deactivation_is_refused(app, sessions, pool):
    world = make_world(sessions)
    with transaction(sessions) as session:
        session.execute(
            text("UPDATE services SET active = false WHERE id = :id"), {"id": world.service_id}
        )
        future = pool.submit(book, app.test_client(), world, local(11))
        assert blocked(future)
    assert future.result(timeout=10).status_code == 404

"""POST /api/availability over the Flask app and the real database."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from shared.adapters.db import transaction
from shared.adapters.models import Booking, BookingStatus
from tests.factories import make_world

PARIS = ZoneInfo("Europe/Paris")


def day(days: int = 5) -> datetime:
    d = datetime.now(PARIS).date() + timedelta(days=days)
    return datetime(d.year, d.month, d.day, tzinfo=PARIS)


def ask(client, artist_id, start, end, **extra):
    body = {
        "artistId": artist_id,
        "startDate": start.isoformat(),
        "endDate": end.isoformat(),
        "serviceDurationMin": 60,
        **extra,
    }
    return client.post("/api/availability", json=body)


def test_day_grid_in_the_artist_zone(client, sessions):
    world = make_world(sessions)
    start = day()
    response = ask(client, world.artist_id, start, start + timedelta(days=1))
    assert response.status_code == 200
    body = response.json
    assert body["timezone"] == "Europe/Paris"
    slots = body["slots"]
    # 10:00-18:00, 60 min every 30 min: 10:00 ... 17:00 = 15 slots.
    assert len(slots) == 15
    first = datetime.fromisoformat(slots[0]["startTime"].replace("Z", "+00:00"))
    assert first.astimezone(PARIS).hour == 10
    assert slots[0]["startTime"].endswith(".000Z")
    assert all(s["available"] for s in slots)


def test_service_duration_and_interval(client, sessions):
    world = make_world(sessions, duration_min=120)
    start = day()
    response = ask(
        client,
        world.artist_id,
        start,
        start + timedelta(days=1),
        serviceDurationMin=None,
        serviceId=world.service_id,
        slotIntervalMin=60,
    )
    assert response.status_code == 200, response.json
    assert len(response.json["slots"]) == 7  # 10..16 starts, 2 h each, hourly


def test_live_bookings_block_and_expired_holds_do_not(client, sessions):
    world = make_world(sessions)
    start = day()
    eleven = start.replace(hour=11)
    rows = [
        (eleven, BookingStatus.CONFIRMED, None),
        (
            start.replace(hour=14),
            BookingStatus.PENDING_PAYMENT,
            datetime.now(UTC) + timedelta(minutes=10),
        ),
        (
            start.replace(hour=16),
            BookingStatus.PENDING_PAYMENT,
            datetime.now(UTC) - timedelta(minutes=1),
        ),
        (start.replace(hour=12), BookingStatus.CANCELLED, None),
    ]
    with transaction(sessions) as session:
        for begin, status, expires in rows:
            session.add(
                Booking(
                    client_id=uuid.UUID(world.client_id),
                    artist_id=uuid.UUID(world.artist_id),
                    service_id=uuid.UUID(world.service_id),
                    start_time=begin,
                    end_time=begin + timedelta(hours=1),
                    status=status,
                    deposit_amount=Decimal("50"),
                    deposit_status="UNPAID",
                    currency="eur",
                    expires_at=expires,
                )
            )
    slots = ask(client, world.artist_id, start, start + timedelta(days=1), slotIntervalMin=60).json[
        "slots"
    ]
    free = {
        datetime.fromisoformat(s["startTime"].replace("Z", "+00:00")).astimezone(PARIS).hour: s[
            "available"
        ]
        for s in slots
    }
    assert free == {
        10: True,
        11: False,
        12: True,
        13: True,
        14: False,
        15: True,
        16: True,
        17: True,
    }


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"startDate": "2030-01-01T00:00:00"}, "startDate"),
        ({"endDate": "2030-01-01"}, "endDate"),
        ({"serviceDurationMin": 4}, "serviceDurationMin"),
        ({"serviceDurationMin": 1441}, "serviceDurationMin"),
        ({"serviceDurationMin": "60"}, "serviceDurationMin"),
        ({"slotIntervalMin": 2}, "slotIntervalMin"),
        ({"serviceDurationMin": None}, "serviceDurationMin"),
    ],
)
def test_validation_errors_name_the_field(client, sessions, change, field):
    world = make_world(sessions)
    start = day()
    response = ask(client, world.artist_id, start, start + timedelta(days=1), **change)
    assert response.status_code == 400
    assert response.json["error"] == "VALIDATION_ERROR"
    assert field in response.json["details"]["fields"]


def test_range_limits(client, sessions):
    world = make_world(sessions)
    start = day()
    too_long = ask(client, world.artist_id, start, start + timedelta(days=62, minutes=1))
    assert too_long.status_code == 400
    assert "endDate" in too_long.json["details"]["fields"]
    backwards = ask(client, world.artist_id, start, start - timedelta(days=1))
    assert backwards.status_code == 400
    assert ask(client, world.artist_id, start, start + timedelta(days=62)).status_code == 200


def test_unknown_artist_or_service_is_404(client, sessions):
    world, other = make_world(sessions), make_world(sessions)
    start = day()
    missing = ask(client, str(uuid.uuid4()), start, start + timedelta(days=1))
    assert missing.status_code == 404
    assert missing.json["error"] == "NOT_FOUND"
    foreign = ask(
        client,
        world.artist_id,
        start,
        start + timedelta(days=1),
        serviceDurationMin=None,
        serviceId=other.service_id,
    )
    assert foreign.status_code == 404


def test_query_count_does_not_grow_with_slots(client, sessions):
    from sqlalchemy import event

    world = make_world(sessions)
    start = day()
    statements: list[str] = []

    def count(conn, cursor, statement, *args):
        statements.append(statement)

    app_engine = client.application.extensions["inkflow"].resources.engine
    event.listen(app_engine, "before_cursor_execute", count)
    try:
        ask(client, world.artist_id, start, start + timedelta(days=31), slotIntervalMin=30)
    finally:
        event.remove(app_engine, "before_cursor_execute", count)
    selects = [s for s in statements if s.lstrip().upper().startswith("SELECT")]
    # artist, working hours, leaves, bookings — never one per slot (31 days x 16 slots).
    assert len(selects) <= 5, selects


def _hours_free(client, world, start):
    slots = ask(client, world.artist_id, start, start + timedelta(days=1), slotIntervalMin=60)
    return {
        datetime.fromisoformat(s["startTime"].replace("Z", "+00:00")).astimezone(PARIS).hour
        for s in slots.json["slots"]
        if s["available"]
    }


def test_cached_answers_follow_every_change(client, sessions, admin_headers):
    world = make_world(sessions)
    start = day()
    assert _hours_free(client, world, start) == set(range(10, 18))
    assert _hours_free(client, world, start) == set(range(10, 18))  # served from the cache

    booked = client.post(
        "/api/bookings/create",
        json=world.booking(start.replace(hour=11)),
    )
    assert booked.status_code == 201
    assert _hours_free(client, world, start) == set(range(10, 18)) - {11}

    client.post(
        f"/api/admin/artists/{world.artist_id}/leaves",
        json={
            "startTime": start.replace(hour=15).isoformat(),
            "endTime": start.replace(hour=16).isoformat(),
        },
        headers=admin_headers,
    )
    assert _hours_free(client, world, start) == set(range(10, 18)) - {11, 15}

    client.put(
        f"/api/admin/artists/{world.artist_id}/working-hours",
        json=[{"dayOfWeek": d, "startTime": "09:00", "endTime": "13:00"} for d in range(7)],
        headers=admin_headers,
    )
    assert _hours_free(client, world, start) == {9, 10, 12}


def test_policy_change_bumps_the_schedule_version(sessions):
    from sqlalchemy import update

    from shared.adapters.models import Artist

    world = make_world(sessions)
    artist_id = uuid.UUID(world.artist_id)

    def version() -> int:
        with sessions() as session:
            return session.get(Artist, artist_id).schedule_version

    before = version()
    with transaction(sessions) as session:
        session.execute(update(Artist).where(Artist.id == artist_id).values(name="Renamed"))
    assert version() == before
    with transaction(sessions) as session:
        session.execute(update(Artist).where(Artist.id == artist_id).values(buffer_min=30))
    assert version() == before + 1


def test_cache_hit_is_one_query(client, sessions):
    from sqlalchemy import event

    world = make_world(sessions)
    start = day()
    ask(client, world.artist_id, start, start + timedelta(days=7))
    statements: list[str] = []
    app_engine = client.application.extensions["inkflow"].resources.engine

    def count(conn, cursor, statement, *args):
        statements.append(statement)

    event.listen(app_engine, "before_cursor_execute", count)
    try:
        ask(client, world.artist_id, start, start + timedelta(days=7))
    finally:
        event.remove(app_engine, "before_cursor_execute", count)
    assert len([s for s in statements if s.lstrip().upper().startswith("SELECT")]) == 1

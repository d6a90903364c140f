"""GET /api/admin/bookings: the operator's list — filters that combine, start-time order,
keyset pagination that lists each booking once while bookings are added."""

from __future__ import annotations

import random
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from shared.adapters.db import transaction
from shared.adapters.models import Booking, BookingStatus, DepositStatus
from tests.factories import World, make_world

URL = "/api/admin/bookings"
BASE = datetime(2031, 3, 3, 9, tzinfo=UTC)


def add_bookings(sessions, rows: Sequence[tuple[World, datetime, str, str]]) -> list[str]:
    """Bookings straight into the table (the list reads what is there); returns ids."""
    ids = []
    with transaction(sessions) as session:
        for world, start, status, deposit_status in rows:
            booking = Booking(
                id=uuid.uuid4(),
                client_id=uuid.UUID(world.client_id),
                artist_id=uuid.UUID(world.artist_id),
                service_id=uuid.UUID(world.service_id),
                start_time=start,
                end_time=start + timedelta(minutes=30),
                status=status,
                deposit_status=deposit_status,
                deposit_amount=Decimal("50"),
                currency="eur",
            )
            session.add(booking)
            ids.append(str(booking.id))
    return ids


def listed(client, admin_headers, **params):
    response = client.get(URL, query_string=params, headers=admin_headers)
    assert response.status_code == 200, response.json
    return response.json


def ids_of(page) -> list[str]:
    return [b["id"] for b in page["items"]]


@pytest.fixture
def two_worlds(sessions):
    return make_world(sessions), make_world(sessions)


def test_empty_list(client, admin_headers):
    assert listed(client, admin_headers) == {"items": [], "nextCursor": None}


def test_needs_the_admin_token(client):
    assert client.get(URL).status_code == 401


def test_filters_combine(client, admin_headers, sessions, two_worlds):
    a, b = two_worlds
    hour = timedelta(hours=1)
    rows = [
        (a, BASE, BookingStatus.CONFIRMED, DepositStatus.PAID),
        (a, BASE + hour, BookingStatus.CANCELLED, DepositStatus.REFUND_FAILED),
        (a, BASE + 2 * hour, BookingStatus.COMPLETED, DepositStatus.PAID),
        (b, BASE, BookingStatus.CONFIRMED, DepositStatus.PAID),
        (b, BASE + hour, BookingStatus.CANCELLED, DepositStatus.REFUNDED),
        (b, BASE + 3 * hour, BookingStatus.EXPIRED, DepositStatus.UNPAID),
    ]
    ids = add_bookings(sessions, rows)
    a1, a2, a3, b1, b2, b3 = ids

    everything = listed(client, admin_headers)
    assert set(ids_of(everything)) == set(ids)
    assert everything["nextCursor"] is None
    starts = [b["startTime"] for b in everything["items"]]
    assert starts == sorted(starts)

    assert ids_of(listed(client, admin_headers, artistId=a.artist_id)) == [a1, a2, a3]
    assert ids_of(listed(client, admin_headers, clientId=b.client_id)) == [b1, b2, b3]
    assert ids_of(listed(client, admin_headers, depositStatus="REFUND_FAILED")) == [a2]
    assert ids_of(listed(client, admin_headers, status="CANCELLED", artistId=b.artist_id)) == [b2]
    # Repeated or comma-separated: any of the values.
    repeated = client.get(
        f"{URL}?status=CANCELLED&status=EXPIRED&artistId={b.artist_id}", headers=admin_headers
    ).json
    assert ids_of(repeated) == [b2, b3]
    comma = listed(client, admin_headers, status="CANCELLED,EXPIRED", artistId=b.artist_id)
    assert ids_of(comma) == [b2, b3]
    assert set(ids_of(listed(client, admin_headers, depositStatus="PAID,UNPAID"))) == {
        a1,
        a3,
        b1,
        b3,
    }
    # from <= start < to.
    window = listed(
        client,
        admin_headers,
        **{"from": (BASE + hour).isoformat(), "to": (BASE + 3 * hour).isoformat()},
    )
    assert set(ids_of(window)) == {a2, a3, b2}
    assert ids_of(
        listed(
            client,
            admin_headers,
            artistId=a.artist_id,
            status="CONFIRMED,COMPLETED",
            depositStatus="PAID",
            **{"from": (BASE + hour).isoformat()},
        )
    ) == [a3]
    # A filter that names nothing matches nothing.
    assert listed(client, admin_headers, artistId=str(uuid.uuid4()))["items"] == []


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"limit": "0"}, "limit"),
        ({"limit": "201"}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"status": "DONE"}, "status[0]"),
        ({"status": "CONFIRMED,done"}, "status[1]"),
        ({"depositStatus": "LOST"}, "depositStatus[0]"),
        ({"artistId": "not-a-uuid"}, "artistId"),
        ({"clientId": "42"}, "clientId"),
        ({"from": "2031-03-03T09:00:00"}, "from"),
        ({"to": "tomorrow"}, "to"),
        ({"cursor": "garbage"}, "cursor"),
        ({"cursor": "MjAzMS0wMy0wM1QwOTowMDowMHxub3QtYS11dWlk"}, "cursor"),
    ],
)
def test_bad_parameters_are_validation_errors(client, admin_headers, params, field):
    response = client.get(URL, query_string=params, headers=admin_headers)
    assert response.status_code == 400
    assert response.json["error"] == "VALIDATION_ERROR"
    assert field in response.json["details"]["fields"]


def test_limit_defaults_to_50_and_may_reach_200(client, admin_headers, sessions):
    world = make_world(sessions)
    add_bookings(
        sessions,
        [
            (world, BASE + timedelta(minutes=30 * i), BookingStatus.CONFIRMED, "PAID")
            for i in range(201)
        ],
    )
    first = listed(client, admin_headers)
    assert len(first["items"]) == 50
    assert first["nextCursor"] is not None
    biggest = listed(client, admin_headers, limit=200)
    assert len(biggest["items"]) == 200
    rest = listed(client, admin_headers, limit=200, cursor=biggest["nextCursor"])
    assert len(rest["items"]) == 1
    assert rest["nextCursor"] is None


def walk(client, admin_headers, limit, between_pages=None, **filters):
    """All pages from the first; `between_pages(page_number, last_item)` runs after each
    page but the last. Returns the bookings in the order listed."""
    seen, cursor, number = [], None, 0
    while True:
        params = {"limit": limit, **filters}
        if cursor is not None:
            params["cursor"] = cursor
        page = listed(client, admin_headers, **params)
        assert len(page["items"]) <= limit
        seen += page["items"]
        cursor = page["nextCursor"]
        if cursor is None:
            return seen
        assert len(page["items"]) == limit
        number += 1
        if between_pages is not None:
            between_pages(number, page["items"][-1])


def key(booking) -> tuple[str, str]:
    # Timestamps are all `...Z` with milliseconds: text order is time order.
    return booking["startTime"], booking["id"]


def test_walking_all_pages_lists_each_booking_once_in_order(client, admin_headers, sessions):
    """Three artists × 100 bookings, the three at each start time equal (ties broken by
    id), walked in pages of 7 while bookings are added between pages — some before the
    walk's position (never listed: the walk is past them), some after it (listed when the
    walk gets there). Every booking present from the start is listed exactly once, and
    everything listed is in (start, id) order."""
    worlds = [make_world(sessions) for _ in range(3)]
    rng = random.Random(9)
    statuses = list(BookingStatus)
    rows = [
        (world, BASE + timedelta(hours=i), rng.choice(statuses), "PAID")
        for i in range(100)
        for world in worlds
    ]
    original = add_bookings(sessions, rows)
    added_ahead: list[str] = []
    added_behind: list[str] = []
    late = BASE + timedelta(days=30)

    def insert(number, last):
        last_start = datetime.fromisoformat(last["startTime"])
        # Same start as the last row listed: before or after it depending on the id, so
        # it may belong to either side; we check by key below.
        same = add_bookings(
            sessions, [(worlds[number % 3], last_start, BookingStatus.CANCELLED, "UNPAID")]
        )
        earlier = add_bookings(
            sessions, [(worlds[0], BASE - timedelta(minutes=number), "EXPIRED", "UNPAID")]
        )
        ahead = add_bookings(
            sessions,
            [(worlds[1], late + timedelta(hours=number), BookingStatus.CONFIRMED, "PAID")],
        )
        added_behind.extend(earlier)
        added_ahead.extend(ahead)
        if uuid.UUID(same[0]) > uuid.UUID(last["id"]):
            added_ahead.extend(same)
        else:
            added_behind.extend(same)

    seen = walk(client, admin_headers, limit=7, between_pages=insert)
    seen_ids = [b["id"] for b in seen]
    assert len(seen_ids) == len(set(seen_ids)), "a booking was listed twice"
    assert [key(b) for b in seen] == sorted(key(b) for b in seen)
    assert set(original) <= set(seen_ids)
    assert set(added_ahead) <= set(seen_ids)
    assert not set(added_behind) & set(seen_ids)
    assert set(seen_ids) == set(original) | set(added_ahead)
    # Equal start times really were split across pages and artists.
    starts = [b["startTime"] for b in seen]
    assert len(starts) - len(set(starts)) >= 200

    # A quiet walk with filters gives exactly the filtered rows, in order.
    confirmed = walk(client, admin_headers, limit=11, status="CONFIRMED")
    assert [b["status"] for b in confirmed] == ["CONFIRMED"] * len(confirmed)
    assert [key(b) for b in confirmed] == sorted(key(b) for b in confirmed)
    status_of = {b["id"]: b["status"] for b in seen}
    assert {b["id"] for b in confirmed} == {i for i, s in status_of.items() if s == "CONFIRMED"}
    assert len(confirmed) > 20


def test_a_page_boundary_inside_equal_start_times(client, admin_headers, sessions):
    """Five bookings at the same instant (five artists), pages of two: the id breaks the
    tie, nothing is skipped or repeated."""
    worlds = [make_world(sessions) for _ in range(5)]
    ids = add_bookings(sessions, [(w, BASE, BookingStatus.CONFIRMED, "PAID") for w in worlds])
    seen = walk(client, admin_headers, limit=2)
    assert [b["id"] for b in seen] == sorted(ids, key=uuid.UUID)

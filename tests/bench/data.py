"""What the stages need in the database, inserted directly (SQLAlchemy Core on the
project's models), and the request bodies the load generator sends.

- availability: one artist (Europe/Paris, 10:00–18:00 every day, no buffer) with 300
  CONFIRMED 30 min bookings spread over the 31 days asked for (9–10 a day) and 20
  leaves
  (two of them whole days);
- booking create: 50 artists (10:00–18:00 every day, a 60 min service with a 30.00 EUR
  deposit, a Stripe account) and 50 clients; each request targets a distinct free slot,
  consecutive requests different artists;
- contention: one more artist, one slot, 500 requests from different clients;
- webhooks: signed events built here with the endpoint secret the API was given.
"""

from __future__ import annotations

import json
import random
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from datetime import time as clock_time
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import stripe
from sqlalchemy import insert
from sqlalchemy.engine import Engine

from shared.adapters.models import (
    Artist,
    Booking,
    BookingStatus,
    Client,
    Leave,
    Service,
    WorkingHours,
)

TZ_NAME = "Europe/Paris"
TZ = ZoneInfo(TZ_NAME)
AVAILABILITY_DAYS = 31
AVAILABILITY_BOOKINGS = 300
AVAILABILITY_LEAVES = 20
AVAILABILITY_HOURS = (10, 18)
SLOT_INTERVAL_MIN = 30
SERVICE_DURATION_MIN = 60
BOOKING_ARTISTS = 50
BOOKING_HOURS = range(10, 18)  # slot starts 10:00 … 17:00, 60 min each
FIRST_BOOKING_DAY = 2  # days after today: clear of any notice rule
MAX_BOOKING_DAYS = 360  # within max_advance_days (365)
JSON = dict[str, Any]


def local(day: date, hour: int, minute: int = 0) -> datetime:
    return datetime.combine(day, clock_time(hour, minute), TZ)


def iso(moment: datetime) -> str:
    return moment.isoformat()


def _artist_row(run_id: str, name: str, **extra: Any) -> JSON:
    return {
        "id": uuid.uuid4(),
        "name": name,
        "email": f"{name.lower().replace(' ', '.')}.{run_id}@bench.inkflow.test",
        "timezone": TZ_NAME,
        "buffer_min": 0,
        "min_notice_min": 60,
        "max_advance_days": 365,
        **extra,
    }


def _every_day(artist_id: uuid.UUID, start_hour: int, end_hour: int) -> list[JSON]:
    return [
        {
            "id": uuid.uuid4(),
            "artist_id": artist_id,
            "day_of_week": dow,
            "start_minute": start_hour * 60,
            "end_minute": end_hour * 60,
        }
        for dow in range(7)
    ]


def _service_row(artist_id: uuid.UUID) -> JSON:
    return {
        "id": uuid.uuid4(),
        "artist_id": artist_id,
        "name": "Bench session",
        "duration_min": SERVICE_DURATION_MIN,
        "price": Decimal("120.00"),
        "deposit_amount": Decimal("30.00"),
        "currency": "eur",
    }


@dataclass(frozen=True)
class AvailabilityFixture:
    artist_id: str
    start: datetime
    end: datetime
    duration_min: int
    step_min: int
    bookings: int
    leaves: int

    def body(self) -> str:
        return json.dumps(
            {
                "artistId": self.artist_id,
                "startDate": iso(self.start),
                "endDate": iso(self.end),
                "serviceDurationMin": self.duration_min,
                "slotIntervalMin": self.step_min,
            }
        )


def seed_availability(engine: Engine, run_id: str, rng: random.Random) -> AvailabilityFixture:
    artist = _artist_row(run_id, "Availability artist")
    client = {"id": uuid.uuid4(), "email": f"avail.{run_id}@bench.inkflow.test", "name": "A"}
    service = _service_row(artist["id"])
    first_day = datetime.now(TZ).date() + timedelta(days=1)
    days = [first_day + timedelta(days=i) for i in range(AVAILABILITY_DAYS)]
    bookings: list[JSON] = []
    per_day = [AVAILABILITY_BOOKINGS // len(days)] * len(days)
    for i in range(AVAILABILITY_BOOKINGS - sum(per_day)):
        per_day[i] += 1
    opens, closes = AVAILABILITY_HOURS
    cells = (closes - opens) * 2  # half-hour cells of a working day
    for day, wanted in zip(days, per_day, strict=True):
        for cell in sorted(rng.sample(range(cells), wanted)):
            start = local(day, opens) + timedelta(minutes=30 * cell)
            bookings.append(
                {
                    "id": uuid.uuid4(),
                    "client_id": client["id"],
                    "artist_id": artist["id"],
                    "service_id": service["id"],
                    "start_time": start,
                    "end_time": start + timedelta(minutes=30),
                    "status": BookingStatus.CONFIRMED.value,
                    "deposit_amount": Decimal("30.00"),
                    "deposit_status": "PAID",
                    "currency": "eur",
                    "confirmed_at": datetime.now(UTC),
                }
            )
    leaves: list[JSON] = []
    for i, day in enumerate(rng.sample(days, AVAILABILITY_LEAVES)):
        if i < 2:  # whole days off
            start, end = local(day, 0), local(day + timedelta(days=1), 0)
        else:
            start = local(day, rng.randint(9, 17), rng.choice((0, 15, 30, 45)))
            end = start + timedelta(minutes=rng.choice((60, 90, 120, 180, 240)))
        leaves.append(
            {
                "id": uuid.uuid4(),
                "artist_id": artist["id"],
                "start_time": start,
                "end_time": end,
                "reason": "bench",
            }
        )
    with engine.begin() as conn:
        conn.execute(insert(Artist), [artist])
        conn.execute(insert(Client), [client])
        conn.execute(insert(Service), [service])
        conn.execute(insert(WorkingHours), _every_day(artist["id"], *AVAILABILITY_HOURS))
        conn.execute(insert(Booking), bookings)
        conn.execute(insert(Leave), leaves)
    return AvailabilityFixture(
        artist_id=str(artist["id"]),
        start=local(first_day, 0),
        end=local(first_day + timedelta(days=AVAILABILITY_DAYS), 0),
        duration_min=SERVICE_DURATION_MIN,
        step_min=SLOT_INTERVAL_MIN,
        bookings=len(bookings),
        leaves=len(leaves),
    )


@dataclass(frozen=True)
class BookingFixture:
    artists: list[tuple[str, str]]  # (artist id, service id) of the create stage
    clients: list[str]
    contention_artist: tuple[str, str]

    @property
    def artist_ids(self) -> list[str]:
        return [a for a, _ in self.artists] + [self.contention_artist[0]]


def seed_booking_artists(engine: Engine, run_id: str) -> BookingFixture:
    artists, services, hours = [], [], []
    for i in range(BOOKING_ARTISTS + 1):
        row = _artist_row(
            run_id,
            f"Bench artist {i}",
            stripe_account_id=f"acct_bench{run_id}{i:03d}",
            charges_enabled=True,
        )
        artists.append(row)
        services.append(_service_row(row["id"]))
        hours += _every_day(row["id"], 10, 18)
    clients = [
        {"id": uuid.uuid4(), "email": f"client{i}.{run_id}@bench.inkflow.test", "name": f"C{i}"}
        for i in range(BOOKING_ARTISTS)
    ]
    with engine.begin() as conn:
        conn.execute(insert(Artist), artists)
        conn.execute(insert(Service), services)
        conn.execute(insert(WorkingHours), hours)
        conn.execute(insert(Client), clients)
    pairs = [(str(a["id"]), str(s["id"])) for a, s in zip(artists, services, strict=True)]
    return BookingFixture(
        artists=pairs[:-1], clients=[str(c["id"]) for c in clients], contention_artist=pairs[-1]
    )


def booking_bodies(fixture: BookingFixture, count: int) -> list[JSON]:
    """`count` requests, each for a distinct free slot (day, hour, artist), artists
    changing fastest so that concurrent requests rarely share an artist."""
    capacity = len(fixture.artists) * len(BOOKING_HOURS) * MAX_BOOKING_DAYS
    if count > capacity:
        raise RuntimeError(f"{count} distinct slots asked for, {capacity} available")
    today = datetime.now(TZ).date()
    bodies: list[JSON] = []
    for d in range(MAX_BOOKING_DAYS):
        day = today + timedelta(days=FIRST_BOOKING_DAY + d)
        for hour in BOOKING_HOURS:
            for artist_id, service_id in fixture.artists:
                if len(bodies) == count:
                    return bodies
                body = {
                    "clientId": fixture.clients[len(bodies) % len(fixture.clients)],
                    "artistId": artist_id,
                    "serviceId": service_id,
                    "startTime": iso(local(day, hour)),
                }
                bodies.append({"body": json.dumps(body)})
    return bodies


def contention_bodies(fixture: BookingFixture, count: int) -> tuple[list[JSON], datetime]:
    artist_id, service_id = fixture.contention_artist
    start = local(datetime.now(TZ).date() + timedelta(days=3), 12)
    bodies = [
        {
            "body": json.dumps(
                {
                    "clientId": fixture.clients[i % len(fixture.clients)],
                    "artistId": artist_id,
                    "serviceId": service_id,
                    "startTime": iso(start),
                }
            )
        }
        for i in range(count)
    ]
    return bodies, start


def signed(event: JSON, secret: str) -> JSON:
    payload = json.dumps(event, separators=(",", ":"))
    header = stripe.WebhookSignature.generate_signature_header(
        payload, secret, timestamp=int(time.time())
    )
    return {"body": payload, "headers": {"Stripe-Signature": header}}


def ignorable_events(run_id: str, secret: str, count: int, offset: int = 0) -> list[JSON]:
    """Distinct signed events of a type the worker stores as IGNORED (`customer.updated`):
    the receiver does the same work for every type."""
    now = int(time.time())
    return [
        signed(
            {
                "id": f"evt_bench_{run_id}_{offset + i:07d}",
                "object": "event",
                "api_version": stripe.api_version,
                "created": now,
                "type": "customer.updated",
                "livemode": False,
                "pending_webhooks": 1,
                "data": {"object": {"id": f"cus_bench{offset + i:07d}", "object": "customer"}},
            },
            secret,
        )
        for i in range(count)
    ]

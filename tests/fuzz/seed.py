"""The fuzzer's own data, made through the API it fuzzes: artists with working hours and
services (a Stripe deposit, a free one, another currency, one without a Stripe account),
clients, leaves, and bookings in several states. Their ids go to schemathesis as
dictionaries (`config.py`) so that generated requests name rows that exist and reach the
code behind the 404."""

from __future__ import annotations

import json
import uuid
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import requests

from shared.adapters import tokens
from shared.domain.access import Role

PARIS = ZoneInfo("Europe/Paris")
JSON = dict[str, Any]


@dataclass
class Seed:
    base_url: str
    operator_token: str
    artist_ids: list[str] = field(default_factory=list)
    service_ids: list[str] = field(default_factory=list)
    client_ids: list[str] = field(default_factory=list)
    booking_ids: list[str] = field(default_factory=list)
    leave_ids: list[str] = field(default_factory=list)
    # The artists' private calendar feed tokens (`/api/calendar/{token}.ics`).
    calendar_tokens: list[str] = field(default_factory=list)
    # clientId → the client's JWT; artistId → the artist's (HS256 with AUTH_JWT_SECRET).
    client_tokens: dict[str, str] = field(default_factory=dict)
    artist_tokens: dict[str, str] = field(default_factory=dict)

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=2))

    @classmethod
    def load(cls, path: Path) -> Seed:
        return cls(**json.loads(path.read_text()))


def token(secret: str, role: Role, subject: str) -> str:
    """A JWT as `inkflow token` mints it, valid for a day."""
    now = datetime.now(UTC)
    return tokens.mint(secret, role, uuid.UUID(subject), now=now, ttl=timedelta(days=1))


def _local(days: int, hour: int) -> str:
    day = datetime.now(PARIS).date() + timedelta(days=days)
    return datetime(day.year, day.month, day.day, hour, tzinfo=PARIS).isoformat()


class _Api:
    def __init__(self, base_url: str, operator_token: str) -> None:
        self.base_url = base_url
        self.http = requests.Session()
        self.operator = {"Authorization": f"Bearer {operator_token}"}

    def call(self, method: str, path: str, body: Any, headers: dict[str, str]) -> JSON:
        response = self.http.request(
            method, self.base_url + path, json=body, headers=headers, timeout=30
        )
        if response.status_code >= 300:
            raise RuntimeError(f"seeding: {method} {path} answered {response.status_code}")
        found: JSON = response.json()
        return found

    def admin(self, method: str, path: str, body: Any) -> JSON:
        return self.call(method, f"/api/admin{path}", body, self.operator)


def seed(base_url: str, operator_token: str, jwt_secret: str) -> Seed:
    api = _Api(base_url, operator_token)
    made = Seed(base_url=base_url, operator_token=operator_token)
    every_day = [{"dayOfWeek": d, "startTime": "08:00", "endTime": "20:00"} for d in range(7)]
    artists = [
        {"name": "Ink Paris", "timezone": "Europe/Paris", "stripeAccountId": "acct_1FuzzParis"},
        {"name": "Ink Tokyo", "timezone": "Asia/Tokyo", "stripeAccountId": "acct_1FuzzTokyo"},
        {"name": "Ink Offline", "timezone": "America/New_York"},  # no Stripe account
    ]
    services = [
        ("Flash", 60, "150.00", "50.00", "eur"),
        ("Consultation", 30, "0.00", "0.00", "eur"),  # confirmed at once, no Stripe
        ("Sleeve", 240, "60000", "10000", "jpy"),
    ]
    for number, artist in enumerate(artists):
        created = api.admin(
            "POST",
            "/artists",
            {
                **artist,
                "email": f"artist{number}@fuzz.example",
                "chargesEnabled": "stripeAccountId" in artist,
                "bufferMin": 10 * number,
                "refundWindowHours": 48,
            },
        )
        artist_id = created["id"]
        made.artist_ids.append(artist_id)
        made.artist_tokens[artist_id] = token(jwt_secret, Role.ARTIST, artist_id)
        feed = created["calendarUrl"].rsplit("/", 1)[1]
        made.calendar_tokens.append(feed.removesuffix(".ics"))
        api.admin("PUT", f"/artists/{artist_id}/working-hours", every_day)
        for name, minutes, price, deposit, currency in services:
            service = api.admin(
                "POST",
                f"/artists/{artist_id}/services",
                {
                    "name": name,
                    "durationMin": minutes,
                    "price": price,
                    "depositAmount": deposit,
                    "currency": currency,
                },
            )
            made.service_ids.append(service["id"])
        leave = api.admin(
            "POST",
            f"/artists/{artist_id}/leaves",
            {"startTime": _local(20, 8), "endTime": _local(22, 20), "reason": "Holidays"},
        )
        made.leave_ids.append(leave["id"])
    for number in range(3):
        client = api.admin(
            "POST", "/clients", {"email": f"client{number}@fuzz.example", "name": f"C {number}"}
        )
        made.client_ids.append(client["id"])
        made.client_tokens[client["id"]] = token(jwt_secret, Role.CLIENT, client["id"])
    _book(api, made)
    return made


def _book(api: _Api, made: Seed) -> None:
    """Bookings of the first artist: holds (Stripe deposits), confirmed ones (free
    consultations), one cancelled."""
    flash, consultation = made.service_ids[0], made.service_ids[1]
    plans = [
        (0, flash, 2, 10),
        (1, flash, 2, 12),
        (0, consultation, 3, 10),
        (1, consultation, 3, 11),
        (2, consultation, 4, 15),
        (2, consultation, 5, 9),
    ]
    for client_number, service_id, days, hour in plans:
        client_id = made.client_ids[client_number]
        headers = {"Authorization": f"Bearer {made.client_tokens[client_id]}"}
        created = api.call(
            "POST",
            "/api/bookings/create",
            {
                "clientId": client_id,
                "artistId": made.artist_ids[0],
                "serviceId": service_id,
                "startTime": _local(days, hour),
            },
            headers,
        )
        made.booking_ids.append(created["booking"]["id"])
    cancelled = made.booking_ids[-1]
    owner = made.client_ids[2]
    api.call(
        "POST",
        f"/api/bookings/{cancelled}/cancel",
        {"reason": "Seeded"},
        {"Authorization": f"Bearer {made.client_tokens[owner]}"},
    )

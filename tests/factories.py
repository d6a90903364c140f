"""Catalogue rows for tests, created through the same service functions as the API."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from shared.adapters.db import transaction
from shared.usecases import catalog


@dataclass(frozen=True)
class World:
    artist_id: str
    service_id: str
    client_id: str
    stripe_account_id: str | None

    def booking(self, start: datetime | str) -> dict[str, str]:
        """The body of `POST /api/bookings/create` for this world's client, artist and
        service at `start` (an ISO 8601 string as is)."""
        return {
            "clientId": self.client_id,
            "artistId": self.artist_id,
            "serviceId": self.service_id,
            "startTime": start if isinstance(start, str) else start.isoformat(),
        }


def make_world(
    sessions: sessionmaker[Session],
    *,
    timezone: str = "Europe/Paris",
    hours: list[tuple[int, int, int]] | None = None,
    duration_min: int = 60,
    deposit: str = "50.00",
    price: str = "150.00",
    currency: str = "eur",
    stripe_account_id: str | None = "acct_1TestArtist",
    charges_enabled: bool = True,
    **artist: Any,
) -> World:
    """An artist working every day 10:00–18:00 local (unless `hours`), a service, a client."""
    import uuid

    tag = uuid.uuid4().hex[:8]
    with transaction(sessions) as session:
        a = catalog.create_artist(
            session,
            catalog.ArtistInput(
                name=f"Artist {tag}",
                email=f"artist-{tag}@example.com",
                timezone=timezone,
                stripe_account_id=f"{stripe_account_id}{tag}" if stripe_account_id else None,
                charges_enabled=charges_enabled,
                **artist,
            ),
        )
        catalog.replace_working_hours(
            session,
            str(a.id),
            [
                catalog.HoursInput(d, s, e)
                for d, s, e in (hours or [(d, 600, 1080) for d in range(7)])
            ],
        )
        s = catalog.create_service(
            session,
            str(a.id),
            name="Session",
            duration_min=duration_min,
            price=price,
            deposit_amount=deposit,
            currency=currency,
        )
        c = catalog.create_client(session, email=f"client-{tag}@example.com", name="Client")
        return World(str(a.id), str(s.id), str(c.id), a.stripe_account_id)

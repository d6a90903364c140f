"""Demo data for `make run` and the README: one artist, one service, a week of hours,
one client. Idempotent: re-running returns the existing rows."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from shared.adapters.models import Artist, Client, Service
from shared.usecases import catalog

ARTIST_EMAIL = "demo-artist@inkflow.local"
CLIENT_EMAIL = "demo-client@inkflow.local"


def seed_demo(session: Session) -> dict[str, Any]:
    artist = session.scalar(select(Artist).where(Artist.email == ARTIST_EMAIL))
    if artist is None:
        artist = catalog.create_artist(
            session,
            catalog.ArtistInput(
                name="Demo Artist",
                email=ARTIST_EMAIL,
                timezone="Europe/Paris",
                stripe_account_id="acct_1DemoInkflowArtist",
                charges_enabled=True,
                buffer_min=15,
                min_notice_min=60,
                max_advance_days=90,
            ),
        )
        # Tuesday to Saturday, with a lunch break.
        catalog.replace_working_hours(
            session,
            str(artist.id),
            [
                catalog.HoursInput(day, start, end)
                for day in range(1, 6)
                for start, end in ((10 * 60, 13 * 60), (14 * 60, 19 * 60))
            ],
        )
    service = session.scalar(select(Service).where(Service.artist_id == artist.id))
    if service is None:
        service = catalog.create_service(
            session,
            str(artist.id),
            name="Small flash tattoo",
            duration_min=60,
            price="150.00",
            deposit_amount="50.00",
            currency="eur",
        )
    client = session.scalar(select(Client).where(Client.email == CLIENT_EMAIL))
    if client is None:
        client = catalog.create_client(session, email=CLIENT_EMAIL, name="Demo Client")
    return {
        "artistId": str(artist.id),
        "serviceId": str(service.id),
        "clientId": str(client.id),
        "timezone": artist.timezone,
    }

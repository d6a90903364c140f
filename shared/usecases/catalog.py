"""Management use cases: clients, artists, services, working hours, leaves."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from itertools import pairwise
from typing import TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from shared.adapters.models import Artist, Booking, Client, Leave, Service, WorkingHours
from shared.domain.errors import DomainError, ErrorCode, not_found
from shared.domain.money import MoneyError, parse_amount

Row = TypeVar("Row", Artist, Client, Service, Booking)


def invalid(field: str, message: str) -> DomainError:
    return DomainError(ErrorCode.VALIDATION_ERROR, details={"fields": {field: message}})


def parse_id(value: str | uuid.UUID, kind: str) -> uuid.UUID:
    """An id that is not a UUID cannot name an existing row: NOT_FOUND, not a 400."""
    if isinstance(value, uuid.UUID):
        return value
    try:
        return uuid.UUID(value)
    except ValueError:
        raise not_found(kind, value) from None


def get_or_404(session: Session, model: type[Row], ident: str | uuid.UUID) -> Row:
    kind = model.__name__
    row = session.get(model, parse_id(ident, kind))
    if row is None:
        raise not_found(kind, ident)
    return row


def service_of_artist(session: Session, artist: Artist, service_id: str) -> Service:
    """A service that is not the artist's is NOT_FOUND, like an unknown one."""
    service = get_or_404(session, Service, service_id)
    if service.artist_id != artist.id:
        raise DomainError(
            ErrorCode.NOT_FOUND, "Service not found for this artist.", {"service": service_id}
        )
    return service


def check_timezone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise invalid("timezone", f"unknown IANA time zone {name!r}") from None


def _flush_unique(session: Session, field: str) -> None:
    """Turn a unique-constraint violation into a 400 naming the field."""
    try:
        with session.begin_nested():
            session.flush()
    except IntegrityError as exc:
        if getattr(exc.orig, "sqlstate", None) == "23505":
            raise invalid(field, "already exists") from None
        raise


def create_client(session: Session, *, email: str, name: str) -> Client:
    client = Client(email=email.strip().lower(), name=name.strip())
    session.add(client)
    _flush_unique(session, "email")
    return client


@dataclass(frozen=True, slots=True)
class ArtistInput:
    name: str
    email: str
    timezone: str
    stripe_account_id: str | None = None
    charges_enabled: bool = False
    buffer_min: int = 0
    min_notice_min: int = 0
    max_advance_days: int = 365
    # The deposit policy (shared.domain.policy.DepositPolicy's defaults).
    refund_window_hours: int | None = None
    reschedule_notice_hours: int = 48
    max_reschedules: int = 1
    reminder_hours: int = 24
    no_show_limit: int = 0


def create_artist(session: Session, data: ArtistInput) -> Artist:
    check_timezone(data.timezone)
    artist = Artist(
        name=data.name.strip(),
        email=data.email.strip().lower(),
        timezone=data.timezone,
        stripe_account_id=data.stripe_account_id,
        charges_enabled=data.charges_enabled,
        buffer_min=data.buffer_min,
        min_notice_min=data.min_notice_min,
        max_advance_days=data.max_advance_days,
        refund_window_hours=data.refund_window_hours,
        reschedule_notice_hours=data.reschedule_notice_hours,
        max_reschedules=data.max_reschedules,
        reminder_hours=data.reminder_hours,
        no_show_limit=data.no_show_limit,
    )
    session.add(artist)
    _flush_unique(session, "email or stripeAccountId")
    return artist


def create_service(
    session: Session,
    artist_id: str,
    *,
    name: str,
    duration_min: int,
    price: str,
    deposit_amount: str,
    currency: str,
) -> Service:
    artist = get_or_404(session, Artist, artist_id)
    code = currency.lower()
    amounts: dict[str, Decimal] = {}
    for field, raw in (("price", price), ("depositAmount", deposit_amount)):
        try:
            amounts[field] = parse_amount(raw, code)
        except MoneyError as exc:
            raise invalid(field, str(exc)) from None
    if amounts["depositAmount"] > amounts["price"]:
        raise invalid("depositAmount", "must not exceed price")
    service = Service(
        artist_id=artist.id,
        name=name.strip(),
        duration_min=duration_min,
        price=amounts["price"],
        deposit_amount=amounts["depositAmount"],
        currency=code,
    )
    session.add(service)
    session.flush()
    return service


@dataclass(frozen=True, slots=True)
class HoursInput:
    day_of_week: int
    start_minute: int
    end_minute: int


def replace_working_hours(
    session: Session, artist_id: str, hours: Sequence[HoursInput]
) -> list[WorkingHours]:
    artist = get_or_404(session, Artist, artist_id)
    for index, item in enumerate(hours):
        if item.end_minute <= item.start_minute:
            raise invalid(f"[{index}].endTime", "must be after startTime")
    by_day = sorted(hours, key=lambda h: (h.day_of_week, h.start_minute))
    for previous, current in pairwise(by_day):
        if (
            previous.day_of_week == current.day_of_week
            and current.start_minute < previous.end_minute
        ):
            raise invalid("workingHours", f"intervals overlap on dayOfWeek {current.day_of_week}")
    # Lock the artist row so two concurrent replacements cannot interleave.
    session.execute(select(Artist.id).where(Artist.id == artist.id).with_for_update())
    session.execute(delete(WorkingHours).where(WorkingHours.artist_id == artist.id))
    rows = [
        WorkingHours(
            artist_id=artist.id,
            day_of_week=h.day_of_week,
            start_minute=h.start_minute,
            end_minute=h.end_minute,
        )
        for h in by_day
    ]
    session.add_all(rows)
    session.flush()
    return rows


def list_working_hours(session: Session, artist_id: str) -> list[WorkingHours]:
    artist = get_or_404(session, Artist, artist_id)
    return list(
        session.scalars(
            select(WorkingHours)
            .where(WorkingHours.artist_id == artist.id)
            .order_by(WorkingHours.day_of_week, WorkingHours.start_minute)
        )
    )


def add_leave(
    session: Session, artist_id: str, *, start: datetime, end: datetime, reason: str | None
) -> Leave:
    artist = get_or_404(session, Artist, artist_id)
    if end <= start:
        raise invalid("endTime", "must be after startTime")
    leave = Leave(artist_id=artist.id, start_time=start, end_time=end, reason=reason)
    session.add(leave)
    session.flush()
    return leave


def list_leaves(session: Session, artist_id: str) -> list[Leave]:
    artist = get_or_404(session, Artist, artist_id)
    return list(
        session.scalars(
            select(Leave).where(Leave.artist_id == artist.id).order_by(Leave.start_time)
        )
    )


def list_services(session: Session, artist_id: str) -> list[Service]:
    artist = get_or_404(session, Artist, artist_id)
    return list(
        session.scalars(
            select(Service).where(Service.artist_id == artist.id).order_by(Service.created_at)
        )
    )


def list_artists(session: Session) -> list[Artist]:
    return list(session.scalars(select(Artist).order_by(Artist.created_at, Artist.id)))


def list_clients(session: Session) -> list[Client]:
    return list(session.scalars(select(Client).order_by(Client.created_at, Client.id)))


def list_artist_bookings(
    session: Session, artist_id: str, *, start: datetime | None, end: datetime | None
) -> list[Booking]:
    artist = get_or_404(session, Artist, artist_id)
    query = select(Booking).where(Booking.artist_id == artist.id)
    if start is not None:
        query = query.where(Booking.end_time > start)
    if end is not None:
        query = query.where(Booking.start_time < end)
    return list(session.scalars(query.order_by(Booking.start_time)))

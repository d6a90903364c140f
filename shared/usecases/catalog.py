"""Management use cases: clients, artists, services, working hours, leaves."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from decimal import Decimal
from enum import Enum
from itertools import pairwise
from typing import TYPE_CHECKING, Any, Final, Literal, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import delete, exists, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from shared.adapters.models import Artist, Booking, Client, Leave, Service, WorkingHours
from shared.domain.currencies import is_supported
from shared.domain.errors import DomainError, ErrorCode, not_found
from shared.domain.money import MoneyError, parse_amount
from shared.domain.policy import DEFAULT_POLICY

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

Row = TypeVar("Row", Artist, Client, Service, Booking, Leave)
Lock = Literal["share", "update"]


class Unset(Enum):
    """A field a PATCH did not give (unlike None, which clears a nullable one)."""

    UNSET = "UNSET"


UNSET: Final = Unset.UNSET


def _given(changes: DataclassInstance) -> dict[str, Any]:
    """The fields of a changes dataclass that were given, by column name."""
    return {
        f.name: value for f in fields(changes) if (value := getattr(changes, f.name)) is not UNSET
    }


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


def get_or_404(
    session: Session, model: type[Row], ident: str | uuid.UUID, *, lock: Lock | None = None
) -> Row:
    """The row, or NOT_FOUND; `lock` takes a row lock (FOR SHARE / FOR UPDATE) until commit."""
    kind = model.__name__
    with_for_update = None if lock is None else {"read": lock == "share"}
    row = session.get(model, parse_id(ident, kind), with_for_update=with_for_update)
    if row is None:
        raise not_found(kind, ident)
    return row


def service_of_artist(
    session: Session, artist: Artist, service_id: str | uuid.UUID, *, lock: Lock | None = None
) -> Service:
    """A service that is not the artist's is NOT_FOUND, like an unknown one."""
    service = get_or_404(session, Service, service_id, lock=lock)
    if service.artist_id != artist.id:
        raise DomainError(
            ErrorCode.NOT_FOUND, "Service not found for this artist.", {"service": str(service_id)}
        )
    return service


def check_offered(service: Service) -> Service:
    """An inactive service takes no new booking and has no availability: to a client it is
    gone (NOT_FOUND), while its existing bookings keep it."""
    if not service.active:
        raise DomainError(
            ErrorCode.NOT_FOUND, "This service is no longer offered.", {"service": str(service.id)}
        )
    return service


def check_timezone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise invalid("timezone", f"unknown IANA time zone {name!r}") from None


# Unique constraints (by their conventional names) and the API field each one is about.
CLIENT_UNIQUE: Final = {"uq_clients_email": "email"}
ARTIST_UNIQUE: Final = {
    "uq_artists_email": "email",
    "uq_artists_stripe_account_id": "stripeAccountId",
}


def _flush_unique(session: Session, fields_by_constraint: Mapping[str, str]) -> None:
    """Turn a unique-constraint violation into a 400 naming the field."""
    try:
        with session.begin_nested():
            session.flush()
    except IntegrityError as exc:
        if getattr(exc.orig, "sqlstate", None) != "23505":
            raise
        diag = getattr(exc.orig, "diag", None)
        constraint = getattr(diag, "constraint_name", None)
        field = fields_by_constraint.get(
            constraint or "", " or ".join(fields_by_constraint.values())
        )
        raise invalid(field, "already exists") from None


def _email(value: str) -> str:
    return value.strip().lower()


def _name(value: str) -> str:
    return value.strip()


def create_client(session: Session, *, email: str, name: str) -> Client:
    client = Client(email=_email(email), name=_name(name))
    session.add(client)
    _flush_unique(session, CLIENT_UNIQUE)
    return client


def find_or_create_client(session: Session, *, email: str, name: str) -> Client:
    """The client with this e-mail (as the booking page knows a client: no account), or
    a new one. Two first bookings with one new e-mail at once both end with the same row
    (INSERT … ON CONFLICT DO NOTHING, then read). A known client's name is left as it is:
    whoever types an e-mail address may not rename its owner."""
    address = _email(email)
    session.execute(
        pg_insert(Client)
        .values(id=uuid.uuid4(), email=address, name=_name(name))
        .on_conflict_do_nothing(index_elements=[Client.email])
    )
    return session.scalars(select(Client).where(Client.email == address)).one()


@dataclass(frozen=True, slots=True, kw_only=True)
class ClientChanges:
    email: str | Unset = UNSET
    name: str | Unset = UNSET


def update_client(session: Session, client_id: str, changes: ClientChanges) -> Client:
    client = get_or_404(session, Client, client_id, lock="update")
    given = _given(changes)
    if "email" in given:
        client.email = _email(given["email"])
    if "name" in given:
        client.name = _name(given["name"])
    _flush_unique(session, CLIENT_UNIQUE)
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
    refund_window_hours: int | None = DEFAULT_POLICY.refund_window_hours
    reschedule_notice_hours: int = DEFAULT_POLICY.reschedule_notice_hours
    max_reschedules: int = DEFAULT_POLICY.max_reschedules
    reminder_hours: int = DEFAULT_POLICY.reminder_hours
    no_show_limit: int = DEFAULT_POLICY.no_show_limit


def create_artist(session: Session, data: ArtistInput) -> Artist:
    check_timezone(data.timezone)
    artist = Artist(
        name=_name(data.name),
        email=_email(data.email),
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
    _flush_unique(session, ARTIST_UNIQUE)
    return artist


@dataclass(frozen=True, slots=True, kw_only=True)
class ArtistChanges:
    """A PATCH of an artist: UNSET fields stay as they are. The names are the columns'."""

    name: str | Unset = UNSET
    email: str | Unset = UNSET
    timezone: str | Unset = UNSET
    stripe_account_id: str | Unset | None = UNSET
    charges_enabled: bool | Unset = UNSET
    buffer_min: int | Unset = UNSET
    min_notice_min: int | Unset = UNSET
    max_advance_days: int | Unset = UNSET
    refund_window_hours: int | Unset | None = UNSET
    reschedule_notice_hours: int | Unset = UNSET
    max_reschedules: int | Unset = UNSET
    reminder_hours: int | Unset = UNSET
    no_show_limit: int | Unset = UNSET


def update_artist(session: Session, artist_id: str, changes: ArtistChanges) -> Artist:
    """Availability follows by itself: a change of time zone, buffer, notice or window
    bumps the artist's schedule_version (database trigger), the cache key."""
    artist = get_or_404(session, Artist, artist_id, lock="update")
    values = _given(changes)
    if "timezone" in values:
        check_timezone(values["timezone"])
    if "name" in values:
        values["name"] = _name(values["name"])
    if "email" in values:
        values["email"] = _email(values["email"])
    if values.get("stripe_account_id", artist.stripe_account_id) != artist.stripe_account_id:
        # What Stripe said about the old account says nothing about the new one: its
        # account.updated events (whatever their age) apply, and until one says so (or
        # the operator does) it takes no charges.
        values.setdefault("charges_enabled", False)
        artist.payouts_enabled = False
        artist.requirements_due = []
        artist.stripe_account_synced_at = None
    for column, value in values.items():
        setattr(artist, column, value)
    _flush_unique(session, ARTIST_UNIQUE)
    return artist


@dataclass(frozen=True, slots=True)
class ServiceTerms:
    price: Decimal
    deposit_amount: Decimal
    currency: str


def service_terms(*, price: str, deposit_amount: str, currency: str) -> ServiceTerms:
    """A price and deposit exact in a currency Stripe can charge, the deposit within the
    price; VALIDATION_ERROR naming the field otherwise."""
    code = currency.lower()
    if not is_supported(code):
        raise invalid("currency", f"{currency!r} is not an ISO 4217 currency Stripe can charge")
    amounts: dict[str, Decimal] = {}
    for field, raw in (("price", price), ("depositAmount", deposit_amount)):
        try:
            amounts[field] = parse_amount(raw, code)
        except MoneyError as exc:
            raise invalid(field, str(exc)) from None
    if amounts["depositAmount"] > amounts["price"]:
        raise invalid("depositAmount", "must not exceed price")
    return ServiceTerms(amounts["price"], amounts["depositAmount"], code)


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
    terms = service_terms(price=price, deposit_amount=deposit_amount, currency=currency)
    service = Service(
        artist_id=artist.id,
        name=_name(name),
        duration_min=duration_min,
        price=terms.price,
        deposit_amount=terms.deposit_amount,
        currency=terms.currency,
        active=True,
    )
    session.add(service)
    session.flush()
    return service


@dataclass(frozen=True, slots=True, kw_only=True)
class ServiceChanges:
    """A PATCH of a service. Bookings already made keep their own deposit, currency and
    times: they copied them when they were created."""

    name: str | Unset = UNSET
    duration_min: int | Unset = UNSET
    price: str | Unset = UNSET
    deposit_amount: str | Unset = UNSET
    currency: str | Unset = UNSET
    active: bool | Unset = UNSET


def _text(amount: Decimal) -> str:
    return format(amount, "f")


def update_service(
    session: Session, artist_id: str, service_id: str, changes: ServiceChanges
) -> Service:
    artist = get_or_404(session, Artist, artist_id)
    # Locked: two PATCHes (one of the price, one of the deposit) cannot each pass the
    # deposit <= price check on what the other has not written yet.
    service = service_of_artist(session, artist, service_id, lock="update")
    given = _given(changes)
    if given.keys() & {"price", "deposit_amount", "currency"}:
        terms = service_terms(
            price=given.get("price", _text(service.price)),
            deposit_amount=given.get("deposit_amount", _text(service.deposit_amount)),
            currency=given.get("currency", service.currency),
        )
        service.price = terms.price
        service.deposit_amount = terms.deposit_amount
        service.currency = terms.currency
    if "name" in given:
        service.name = _name(given["name"])
    if "duration_min" in given:
        service.duration_min = given["duration_min"]
    if "active" in given:
        service.active = given["active"]
    session.flush()
    return service


def remove_service(session: Session, artist_id: str, service_id: str) -> Service | None:
    """Delete a service that never had a booking (None); deactivate one that has any, so
    that no booking ever loses its service (the deactivated service is returned).

    The row lock makes a booking being created for it either finish first (then it is
    seen here and the service is deactivated) or wait and find the service gone or
    inactive (booking creation locks the service FOR SHARE and checks it)."""
    artist = get_or_404(session, Artist, artist_id)
    service = service_of_artist(session, artist, service_id, lock="update")
    if session.scalar(select(exists().where(Booking.service_id == service.id))):
        service.active = False
        session.flush()
        return service
    session.delete(service)
    session.flush()
    return None


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


def delete_leave(session: Session, artist_id: str, leave_id: str) -> None:
    """Availability follows: deleting a leave bumps the artist's schedule_version."""
    artist = get_or_404(session, Artist, artist_id)
    leave = get_or_404(session, Leave, leave_id)
    if leave.artist_id != artist.id:
        raise DomainError(
            ErrorCode.NOT_FOUND, "Leave not found for this artist.", {"leave": leave_id}
        )
    session.delete(leave)
    session.flush()


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

"""Loads what the booking rules need (one query per kind of data) and calls them."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from functools import cache
from zoneinfo import ZoneInfo

from sqlalchemy import BindParameter, Select, bindparam, select
from sqlalchemy.orm import Session

from shared.adapters.models import (
    Artist,
    Booking,
    Ident,
    Leave,
    Service,
    When,
    WorkingHours,
)
from shared.domain import availability as rules
from shared.domain.errors import DomainError, ErrorCode
from shared.domain.policy import DepositPolicy
from shared.usecases.catalog import (
    check_offered,
    get_or_404,
    invalid,
    parse_id,
    service_of_artist,
)

MAX_RANGE = timedelta(days=62)
MIN_STEP_MIN, MAX_STEP_MIN = 5, 1440


@dataclass(frozen=True, slots=True)
class Schedule:
    tz: ZoneInfo
    hours: list[rules.WorkingHours]
    leaves: list[rules.Interval]
    bookings: list[rules.Interval]
    policy: rules.BookingPolicy
    # When the unpaid holds among `bookings` stop blocking.
    hold_expiries: list[datetime]


def policy_of(artist: Artist) -> rules.BookingPolicy:
    return rules.BookingPolicy(
        buffer_min=artist.buffer_min,
        min_notice_min=artist.min_notice_min,
        max_advance_days=artist.max_advance_days,
    )


def deposit_policy_of(artist: Artist) -> DepositPolicy:
    return DepositPolicy(
        refund_window_hours=artist.refund_window_hours,
        reschedule_notice_hours=artist.reschedule_notice_hours,
        max_reschedules=artist.max_reschedules,
        reminder_hours=artist.reminder_hours,
        no_show_limit=artist.no_show_limit,
    )


def _clock(minute: int) -> time:
    # 24:00 is stored as 1440 and handed to the rules as midnight (end of day).
    return time(0, 0) if minute == 1440 else time(minute // 60, minute % 60)


def leaves_in_window(artist_id: Ident, start: When, end: When) -> Select[datetime, datetime]:
    """The artist's leaves meeting [start, end) (ix_leaves_artist_period)."""
    return select(Leave.start_time, Leave.end_time).where(
        Leave.artist_id == artist_id, Leave.overlapping(start, end)
    )


def bookings_in_window(
    artist_id: Ident, start: When, end: When, now: When
) -> Select[datetime, datetime, datetime | None]:
    """The artist's bookings that block time in [start, end) at `now`, read through the
    exclusion constraint's GiST index (both window bounds reach it: see
    `Booking.live_overlapping`)."""
    return select(Booking.start_time, Booking.end_time, Booking.expires_at).where(
        Booking.artist_id == artist_id,
        Booking.live_overlapping(start, end),
        # An unpaid hold stops blocking the slot the moment it expires, before the sweeper
        # gets to it.
        Booking.blocks_slot(now),
    )


def load_schedule(
    session: Session,
    artist: Artist,
    start: datetime,
    end: datetime,
    *,
    now: datetime,
    exclude_booking: uuid.UUID | None = None,
) -> Schedule:
    """Everything that can make a slot in [start, end) unavailable, in three queries."""
    policy = policy_of(artist)
    window = rules.busy_window(start, end, policy)
    statements = _schedule_statements()
    params = {"artist_id": artist.id, "lo": window.start, "hi": window.end, "now": now}
    hours = session.execute(statements.hours, params).all()
    leaves = session.execute(statements.leaves, params).all()
    if exclude_booking is None:
        bookings = session.execute(statements.bookings, params).all()
    else:
        params["exclude"] = exclude_booking
        bookings = session.execute(statements.bookings_but_one, params).all()
    return Schedule(
        tz=ZoneInfo(artist.timezone),
        hours=[rules.WorkingHours(d, _clock(s), _clock(e)) for d, s, e in hours],
        leaves=[rules.Interval(s, e) for s, e in leaves],
        bookings=[rules.Interval(s, e) for s, e, _ in bookings],
        policy=policy,
        hold_expiries=[x for _, _, x in bookings if x is not None],
    )


@dataclass(frozen=True, slots=True)
class _ScheduleStatements:
    hours: Select[int, int, int]
    leaves: Select[datetime, datetime]
    bookings: Select[datetime, datetime, datetime | None]
    bookings_but_one: Select[datetime, datetime, datetime | None]


@cache
def _schedule_statements() -> _ScheduleStatements:
    """`load_schedule`'s statements, built once (see `shared.adapters.models.When`);
    parameters artist_id, lo and hi (the busy window), now, and exclude."""
    artist_id: BindParameter[uuid.UUID] = bindparam("artist_id")
    lo: BindParameter[datetime] = bindparam("lo")
    hi: BindParameter[datetime] = bindparam("hi")
    now: BindParameter[datetime] = bindparam("now")
    bookings = bookings_in_window(artist_id, lo, hi, now)
    return _ScheduleStatements(
        hours=select(
            WorkingHours.day_of_week, WorkingHours.start_minute, WorkingHours.end_minute
        ).where(WorkingHours.artist_id == artist_id),
        leaves=leaves_in_window(artist_id, lo, hi),
        bookings=bookings,
        bookings_but_one=bookings.where(Booking.id != bindparam("exclude")),
    )


@dataclass(frozen=True, slots=True)
class AvailabilityQuery:
    artist_id: str
    start: datetime
    end: datetime
    duration_min: int | None
    service_id: str | None
    step_min: int = 30


def _check_query(query: AvailabilityQuery) -> None:
    if query.end <= query.start:
        raise invalid("endDate", "must be after startDate")
    if query.end - query.start > MAX_RANGE:
        raise invalid("endDate", "the range may cover at most 62 days")
    if not MIN_STEP_MIN <= query.step_min <= MAX_STEP_MIN:
        raise invalid("slotIntervalMin", "must be between 5 and 1440")
    if query.service_id is None:
        if query.duration_min is None:
            raise DomainError(
                ErrorCode.VALIDATION_ERROR,
                "Give serviceDurationMin or serviceId.",
                {"fields": {"serviceDurationMin": "required without serviceId"}},
            )
        if not MIN_STEP_MIN <= query.duration_min <= MAX_STEP_MIN:
            raise invalid("serviceDurationMin", "must be between 5 and 1440")


@dataclass(frozen=True, slots=True)
class ResolvedQuery:
    """A checked availability query: what its answer depends on besides `now`."""

    artist: Artist
    duration_min: int
    start: datetime
    end: datetime
    step_min: int

    @property
    def cache_key(self) -> tuple[object, ...]:
        # schedule_version changes with every booking, leave, working-hours or policy
        # change of the artist (database triggers), so a key names one exact answer.
        return (
            self.artist.id,
            self.artist.schedule_version,
            self.start,
            self.end,
            self.duration_min,
            self.step_min,
        )


@dataclass(frozen=True, slots=True)
class Availability:
    slots: list[rules.Slot]
    timezone: str
    valid_until: datetime


def peek_cache_key(session: Session, query: AvailabilityQuery) -> tuple[object, ...] | None:
    """The cache key of `query`'s answer in one light read (columns, no ORM objects), or
    None when the ids name no rows (the full path then answers NOT_FOUND)."""
    _check_query(query)
    artist_id = parse_id(query.artist_id, "Artist")
    service_id = parse_id(query.service_id, "Service") if query.service_id is not None else None
    row = session.execute(
        _cache_key_statement(), {"artist_id": artist_id, "service_id": service_id}
    ).first()
    if row is None:
        return None
    version, service_duration = row
    duration_min = service_duration if service_id is not None else query.duration_min
    if duration_min is None:
        return None
    return (artist_id, version, query.start, query.end, duration_min, query.step_min)


@cache
def _cache_key_statement() -> Select[int, int | None]:
    """`peek_cache_key`'s read, built once: the artist's schedule version and the
    service's duration (NULL without a service_id, or for a service that is not the
    artist's or is inactive: no key then, and `resolve` says NOT_FOUND)."""
    service_id = bindparam("service_id", type_=Service.id.type)
    return (
        select(Artist.schedule_version, Service.duration_min)
        .select_from(Artist)
        .outerjoin(
            Service,
            (Service.id == service_id) & (Service.artist_id == Artist.id) & Service.active,
        )
        .where(Artist.id == bindparam("artist_id"))
    )


def resolve(session: Session, query: AvailabilityQuery) -> ResolvedQuery:
    """Validate and load the artist (and service): one or two primary-key reads."""
    _check_query(query)
    artist = get_or_404(session, Artist, query.artist_id)
    duration_min = query.duration_min
    if query.service_id is not None:
        service = check_offered(service_of_artist(session, artist, query.service_id))
        duration_min = service.duration_min
    assert duration_min is not None
    return ResolvedQuery(artist, duration_min, query.start, query.end, query.step_min)


def compute(session: Session, resolved: ResolvedQuery, *, now: datetime) -> Availability:
    # A slot starting just before `end` runs past it: load busy data up to its end.
    duration = timedelta(minutes=resolved.duration_min)
    schedule = load_schedule(
        session, resolved.artist, resolved.start, resolved.end + duration, now=now
    )
    slots = rules.list_slots(
        tz=schedule.tz,
        hours=schedule.hours,
        leaves=schedule.leaves,
        bookings=schedule.bookings,
        policy=schedule.policy,
        duration=duration,
        step=timedelta(minutes=resolved.step_min),
        range_start=resolved.start,
        range_end=resolved.end,
        now=now,
    )
    valid_until = rules.stable_until(
        slots, policy=schedule.policy, now=now, hold_expiries=schedule.hold_expiries
    )
    return Availability(slots, resolved.artist.timezone, valid_until)

"""The operator's booking list: filters that combine, in start-time order, one page at a
time (keyset pagination on (start_time, id), served by ix_bookings_start_time_id)."""

from __future__ import annotations

import uuid
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, tuple_
from sqlalchemy.orm import Session

from shared.adapters.models import Booking
from shared.domain.deposits import DepositStatus
from shared.domain.pagination import Keyset
from shared.domain.transitions import BookingStatus


@dataclass(frozen=True, slots=True)
class BookingFilter:
    """Every given condition must hold; an empty collection does not filter."""

    artist_id: uuid.UUID | None = None
    client_id: uuid.UUID | None = None
    statuses: Collection[BookingStatus] = ()
    deposit_statuses: Collection[DepositStatus] = ()
    # On the start time: start_from <= start_time < start_before.
    start_from: datetime | None = None
    start_before: datetime | None = None


@dataclass(frozen=True, slots=True)
class Page:
    items: list[Booking]
    # Where the next page starts; None on the last page.
    next_after: Keyset | None


def search_bookings(
    session: Session, where: BookingFilter, *, after: Keyset | None, limit: int
) -> Page:
    query = select(Booking)
    if where.artist_id is not None:
        query = query.where(Booking.artist_id == where.artist_id)
    if where.client_id is not None:
        query = query.where(Booking.client_id == where.client_id)
    if where.statuses:
        query = query.where(Booking.status.in_([str(s) for s in where.statuses]))
    if where.deposit_statuses:
        query = query.where(Booking.deposit_status.in_([str(s) for s in where.deposit_statuses]))
    if where.start_from is not None:
        query = query.where(Booking.start_time >= where.start_from)
    if where.start_before is not None:
        query = query.where(Booking.start_time < where.start_before)
    if after is not None:
        # A row comparison: PostgreSQL walks the (start_time, id) index from the key on.
        query = query.where(tuple_(Booking.start_time, Booking.id) > tuple_(after.start, after.id))
    # One row more than asked says whether there is a next page.
    rows = list(session.scalars(query.order_by(Booking.start_time, Booking.id).limit(limit + 1)))
    items = rows[:limit]
    more = len(rows) > limit
    return Page(items, Keyset(items[-1].start_time, items[-1].id) if more else None)

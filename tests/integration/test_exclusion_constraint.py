"""The database itself refuses two live overlapping bookings of one artist."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import psycopg
import pytest
from sqlalchemy.exc import IntegrityError

from shared.adapters.db import transaction
from shared.adapters.models import BOOKINGS_NO_OVERLAP, Booking, BookingStatus
from tests.factories import make_world

T0 = datetime(2030, 5, 6, 10, 0, tzinfo=UTC)


def _insert(sessions, world, start: datetime, minutes: int, status=BookingStatus.CONFIRMED):
    with transaction(sessions) as session:
        booking = Booking(
            client_id=uuid.UUID(world.client_id),
            artist_id=uuid.UUID(world.artist_id),
            service_id=uuid.UUID(world.service_id),
            start_time=start,
            end_time=start + timedelta(minutes=minutes),
            status=status,
            deposit_amount=Decimal("50.00"),
            deposit_status="UNPAID",
            currency="eur",
            expires_at=start,
        )
        session.add(booking)
    return booking


def test_overlapping_live_booking_is_refused_with_23p01(sessions):
    world = make_world(sessions)
    _insert(sessions, world, T0, 60)
    with pytest.raises(IntegrityError) as caught:
        _insert(sessions, world, T0 + timedelta(minutes=30), 60, BookingStatus.PENDING_PAYMENT)
    error = caught.value.orig
    assert isinstance(error, psycopg.errors.ExclusionViolation)
    assert error.sqlstate == "23P01"
    assert error.diag.constraint_name == BOOKINGS_NO_OVERLAP


def test_back_to_back_bookings_are_accepted(sessions):
    world = make_world(sessions)
    _insert(sessions, world, T0, 60)
    _insert(sessions, world, T0 + timedelta(minutes=60), 60)
    _insert(sessions, world, T0 - timedelta(minutes=60), 60)


@pytest.mark.parametrize("dead", [BookingStatus.EXPIRED, BookingStatus.CANCELLED])
def test_expired_and_cancelled_bookings_do_not_block(sessions, dead):
    world = make_world(sessions)
    _insert(sessions, world, T0, 60, dead)
    _insert(sessions, world, T0, 60, BookingStatus.PENDING_PAYMENT)


def test_other_artists_may_overlap(sessions):
    first, second = make_world(sessions), make_world(sessions)
    _insert(sessions, first, T0, 60)
    _insert(sessions, second, T0, 60)

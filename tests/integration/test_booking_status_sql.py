"""The SQL forms of the status conditions and of a transition agree with the pure rules
(shared.domain.transitions) on every status and hold expiry, in real PostgreSQL."""

from __future__ import annotations

import itertools
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from shared.adapters.db import transaction
from shared.adapters.models import Booking
from shared.domain.transitions import (
    Action,
    BookingStatus,
    Facts,
    blocks_slot,
    decide,
    hold_over,
    is_live,
)
from shared.usecases.transitions import conditional_update, single_rule
from tests.factories import make_world

NOW = datetime(2030, 5, 6, 9, 0, tzinfo=UTC)
EXPIRIES = (None, NOW - timedelta(seconds=1), NOW, NOW + timedelta(seconds=1))


def _every_kind(sessions: sessionmaker[Session]) -> dict[uuid.UUID, tuple[str, datetime | None]]:
    """One booking per (status, expiry), each in its own hour (live ones never overlap)."""
    world = make_world(sessions)
    rows: dict[uuid.UUID, tuple[str, datetime | None]] = {}
    with transaction(sessions) as session:
        for n, (status, expires_at) in enumerate(itertools.product(BookingStatus, EXPIRIES)):
            start = NOW + timedelta(days=1, hours=n)
            booking = Booking(
                id=uuid.uuid4(),
                client_id=uuid.UUID(world.client_id),
                artist_id=uuid.UUID(world.artist_id),
                service_id=uuid.UUID(world.service_id),
                start_time=start,
                end_time=start + timedelta(hours=1),
                status=status,
                deposit_amount=Decimal("50.00"),
                deposit_status="UNPAID",
                currency="eur",
                expires_at=expires_at,
            )
            session.add(booking)
            rows[booking.id] = (status, expires_at)
    return rows


def _ids(sessions: sessionmaker[Session], condition: object) -> set[uuid.UUID]:
    with transaction(sessions) as session:
        return set(session.scalars(select(Booking.id).where(condition)))  # type: ignore[arg-type]


def test_sql_conditions_match_the_pure_ones(sessions: sessionmaker[Session]) -> None:
    rows = _every_kind(sessions)
    assert _ids(sessions, Booking.live()) == {i for i, (s, _) in rows.items() if is_live(s)}
    assert _ids(sessions, Booking.blocks_slot(NOW)) == {
        i for i, (s, x) in rows.items() if blocks_slot(s, x, NOW)
    }
    pending = BookingStatus.PENDING_PAYMENT
    assert _ids(sessions, Booking.stale_hold(NOW)) == {
        i for i, (s, x) in rows.items() if s == pending and hold_over(x, NOW)
    }
    assert _ids(sessions, Booking.open_hold(NOW)) == {
        i for i, (s, x) in rows.items() if s == pending and blocks_slot(s, x, NOW)
    }


def test_a_conditional_transition_changes_exactly_the_rows_the_table_allows(
    sessions: sessionmaker[Session],
) -> None:
    rows = _every_kind(sessions)
    rule = single_rule(Action.HOLD_EXPIRED, BookingStatus.PENDING_PAYMENT)
    with transaction(sessions) as session:
        changed = set(
            session.scalars(
                conditional_update(rule, Booking.id.in_(list(rows)), NOW).returning(Booking.id)
            )
        )
    allowed = {
        i
        for i, (s, x) in rows.items()
        if decide(Action.HOLD_EXPIRED, Facts(BookingStatus(s), NOW, expires_at=x)) is not None
    }
    assert changed == allowed
    assert allowed
    with transaction(sessions) as session:
        for booking in session.scalars(select(Booking).where(Booking.id.in_(list(changed)))):
            assert booking.status == BookingStatus.EXPIRED
            assert booking.expired_at == NOW

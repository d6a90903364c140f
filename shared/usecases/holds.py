"""Unpaid holds expire: after `expiresAt` a PENDING_PAYMENT booking stops blocking its
slot (availability and booking ignore it at once) and is marked EXPIRED, either by the
periodic sweeper or by a new booking that needs the slot."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import cache

from sqlalchemy import BindParameter, ColumnElement, Select, bindparam, select
from sqlalchemy.orm import Session
from sqlalchemy.sql.dml import ReturningUpdate

from shared.adapters import metrics
from shared.adapters.db import transaction
from shared.adapters.models import Booking, Ident, When
from shared.adapters.runtime import Resources
from shared.domain.transitions import Action, BookingStatus
from shared.usecases.effects import NONE, EffectRunner, Effects
from shared.usecases.transitions import carry_out, conditional_update, single_rule

_EXPIRE = single_rule(Action.HOLD_EXPIRED, BookingStatus.PENDING_PAYMENT)


def _expire(session: Session, which: ColumnElement[bool], now: datetime) -> Effects:
    # Conditional update: a booking confirmed meanwhile stays confirmed.
    expired = session.scalars(conditional_update(_EXPIRE, which, now).returning(Booking)).all()
    return _carry_out(session, expired, now)


def _carry_out(session: Session, expired: Sequence[Booking], now: datetime) -> Effects:
    effects = NONE
    for booking in expired:
        effects += carry_out(session, booking, _EXPIRE, now)
    return effects


def expire_overlapping_holds(
    session: Session, artist_id: uuid.UUID, start: datetime, end: datetime, now: datetime
) -> Effects:
    """Inside a booking transaction: stale holds overlapping [start, end) would still
    trip the exclusion constraint, so they are expired first (one statement, built once;
    usually it matches nothing)."""
    params = {"artist": artist_id, "lo": start, "hi": end, "now": now}
    return _carry_out(session, session.scalars(_overlapping_expiry(), params).all(), now)


@cache
def _overlapping_expiry() -> ReturningUpdate[Booking]:
    """`expire_overlapping_holds`'s statement, built once (`shared.adapters.models.When`).
    The objects of the session are kept in step by the rows the statement returns
    ("fetch"): the ORM's in-Python evaluation of the WHERE would not see the values."""
    now: BindParameter[datetime] = bindparam("now")
    # (No parameter may be named after a column of an UPDATE: "artist", not "artist_id".)
    which = overlapping_holds(bindparam("artist"), bindparam("lo"), bindparam("hi"))
    return (
        conditional_update(_EXPIRE, which, now)
        .returning(Booking)
        .execution_options(synchronize_session="fetch")
    )


def overlapping_holds(artist_id: Ident, start: When, end: When) -> ColumnElement[bool]:
    """Live bookings of the artist meeting [start, end) (the rule adds PENDING_PAYMENT
    and the expiry): the exclusion constraint's GiST index, bounded on both sides."""
    return (Booking.artist_id == artist_id) & Booking.live_overlapping(start, end)


@dataclass
class SweepResult:
    expired: int = 0
    intents_cancelled: list[str] = field(default_factory=list)


def stale_holds(now: datetime, batch: int) -> Select[uuid.UUID]:
    """The sweeper's batch: ix_bookings_pending_expires_at holds only PENDING_PAYMENT rows."""
    return (
        select(Booking.id)
        .where(Booking.stale_hold(now))
        .order_by(Booking.expires_at)
        .limit(batch)
        .with_for_update(skip_locked=True)
    )


def expire_holds(
    resources: Resources, effects: EffectRunner, *, now: datetime, batch: int = 200
) -> SweepResult:
    """The periodic sweep, one commit per batch, each batch's effects run after its
    commit. SKIP LOCKED lets two sweepers run without waiting on each other; cancelling
    an intent twice is harmless (idempotent on Stripe's side)."""
    result = SweepResult()
    while True:
        with transaction(resources.sessions) as session:
            ids = list(session.scalars(stale_holds(now, batch)))
            decided = _expire(session, Booking.id.in_(ids), now) if ids else NONE
        result.expired += len(ids)
        metrics.HOLDS_EXPIRED.inc(len(ids))
        result.intents_cancelled += effects.run(decided).intents_cancelled
        if len(ids) < batch:
            return result

"""Booking creation: validate → Redis slot lock → slot already booked? → one constrained
transaction (artist's lock, rules, insert) → release → Stripe deposit intent → store its
id.

Why this order: the lock makes losers answer at once, and a slot someone already holds
is refused with one statement (SLOT_UNAVAILABLE ALREADY_BOOKED, before the other rules);
the transaction is the guarantee: the per-artist advisory lock first, then the rules
(with their precise reasons, buffers included) checked under it, then the insert that
the exclusion constraint checks; Stripe is called after commit so no database transaction
ever waits on the network, and its idempotency key comes from the booking id so a retry
cannot create a second intent.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache

from sqlalchemy import BindParameter, Select, Update, bindparam, exists, func, select, update
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm import Session

from shared.adapters import metrics
from shared.adapters.db import advisory_xact_lock, transaction
from shared.adapters.locks import SlotLocks, SlotTaken
from shared.adapters.models import BOOKINGS_NO_OVERLAP, Artist, Booking, Client, Leave, Service
from shared.adapters.payments import DepositRequest, Intent, PaymentProviderError, StripeGateway
from shared.adapters.runtime import Resources
from shared.domain import availability as rules
from shared.domain.deposits import initial_deposit_status
from shared.domain.errors import DomainError, ErrorCode
from shared.domain.money import to_minor_units
from shared.domain.notifications import NotificationKind
from shared.domain.policy import new_booking_refusal
from shared.domain.transitions import Action, BookingStatus, initial_status
from shared.usecases import reminders
from shared.usecases.catalog import check_offered, get_or_404, parse_id, service_of_artist
from shared.usecases.effects import EffectRunner, Effects
from shared.usecases.holds import expire_overlapping_holds
from shared.usecases.notifications import notify_booking
from shared.usecases.schedule import deposit_policy_of, load_schedule
from shared.usecases.transitions import conditional_update, single_rule

log = logging.getLogger("inkflow.booking")


@dataclass(frozen=True, slots=True)
class BookingRequest:
    client_id: str
    artist_id: str
    service_id: str
    start_time: datetime


@dataclass(frozen=True, slots=True)
class Created:
    booking: Booking
    intent: Intent | None


def _slot_taken(message: str | None = None) -> DomainError:
    return DomainError(ErrorCode.SLOT_TAKEN, message)


def is_overlap_violation(exc: IntegrityError) -> bool:
    """SQLSTATE 23P01 on the bookings exclusion constraint."""
    diag = getattr(exc.orig, "diag", None)
    return getattr(exc.orig, "sqlstate", None) == "23P01" and (
        diag is None or diag.constraint_name == BOOKINGS_NO_OVERLAP
    )


def _load_catalogue(session: Session, request: BookingRequest) -> tuple[Client, Artist, Service]:
    """Client, artist and the artist's offered service in one round trip; the error path
    finds out which one is missing.

    The service row is locked FOR SHARE until commit (the foreign key check of the insert
    takes a weaker lock on it anyway): deleting or deactivating it waits for this booking,
    and a booking that waited for them sees the service gone or inactive (NOT_FOUND)."""
    client_id = parse_id(request.client_id, "Client")
    artist_id = parse_id(request.artist_id, "Artist")
    service_id = parse_id(request.service_id, "Service")
    row = session.execute(
        _statements().catalogue,
        {"client_id": client_id, "artist_id": artist_id, "service_id": service_id},
    ).first()
    if row is not None:
        client, artist, service = row
        return client, artist, check_offered(service)
    client = get_or_404(session, Client, client_id)
    artist = get_or_404(session, Artist, artist_id)
    return (
        client,
        artist,
        check_offered(service_of_artist(session, artist, service_id, lock="share")),
    )


def _check_payments_possible(artist: Artist, service: Service) -> None:
    if service.deposit_amount > 0 and not (artist.stripe_account_id and artist.charges_enabled):
        raise DomainError(ErrorCode.STRIPE_NOT_CONFIGURED)


def _check_open_holds(session: Session, client: Client, limit: int, now: datetime) -> None:
    if limit <= 0:
        return
    open_holds = session.scalar(_statements().open_holds, {"client_id": client.id, "now": now})
    if (open_holds or 0) >= limit:
        raise DomainError(
            ErrorCode.RATE_LIMITED,
            "Too many unpaid bookings for this client.",
            {"openHolds": open_holds, "limit": limit},
        )


def _check_no_show_limit(session: Session, client: Client, artist: Artist) -> None:
    policy = deposit_policy_of(artist)
    if policy.no_show_limit <= 0:  # off: no query on the hot path
        return
    no_shows = session.scalar(
        select(func.count())
        .select_from(Booking)
        .where(
            Booking.client_id == client.id,
            Booking.artist_id == artist.id,
            Booking.status == BookingStatus.NO_SHOW,
        )
    )
    reason = new_booking_refusal(policy, no_shows=no_shows or 0)
    if reason is not None:
        raise DomainError(
            ErrorCode.POLICY_VIOLATION,
            "This artist takes no more bookings from this client after missed appointments.",
            {"reason": str(reason)},
        )


def check_rules(
    session: Session,
    artist: Artist,
    start: datetime,
    duration: timedelta,
    now: datetime,
    *,
    exclude: uuid.UUID | None = None,
) -> None:
    """The slot rules with their reasons (SLOT_UNAVAILABLE), `exclude` not counted (a
    booking that moves does not block its own new slot)."""
    schedule = load_schedule(
        session, artist, start, start + duration, now=now, exclude_booking=exclude
    )
    reason = rules.check_slot(
        tz=schedule.tz,
        hours=schedule.hours,
        leaves=schedule.leaves,
        bookings=schedule.bookings,
        policy=schedule.policy,
        start=start,
        duration=duration,
        now=now,
    )
    if reason is not None:
        raise DomainError(ErrorCode.SLOT_UNAVAILABLE, details={"reason": str(reason)})


def lock_artist_schedule(session: Session, artist_id: uuid.UUID) -> None:
    """Serialise writers of one artist's schedule inside PostgreSQL (until commit), so a
    re-check also covers buffers, which the exclusion constraint (raw times) cannot."""
    advisory_xact_lock(session, f"booking:{artist_id}")


@dataclass(frozen=True, slots=True)
class SlotClaim:
    """What making a slot live again found: whether another live booking still holds it,
    and the effects of the stale holds it expired (intents to cancel, mails to send)."""

    taken: bool
    effects: Effects


def claim_slot(
    session: Session,
    artist: Artist,
    start: datetime,
    end: datetime,
    now: datetime,
    *,
    exclude: uuid.UUID | None = None,
) -> SlotClaim:
    """Inside a transaction, before a booking whose rules were checked elsewhere (a hold
    paid after it ran out) becomes live on [start, end): serialise the artist's writers,
    expire the stale holds, then re-check for a live booking or a leave (a leave added
    meanwhile took the artist's lock too: see `lifecycle.add_leave`)."""
    lock_artist_schedule(session, artist.id)
    expired = claim_checked_slot(session, artist, start, end, now)
    taken = slot_taken(session, artist, start, end, exclude=exclude)
    return SlotClaim(taken, expired)


def claim_checked_slot(
    session: Session, artist: Artist, start: datetime, end: datetime, now: datetime
) -> Effects:
    """Before a booking becomes live on [start, end), when `check_rules` accepted the slot
    in this transaction under the artist's lock (creation, reschedule): every writer of
    the schedule takes that lock, so nothing can have taken the slot since and no re-check
    is needed. What remains are the unpaid holds past their expiry within the buffer: the
    rules ignore them, the exclusion constraint still counts them, so they are expired
    here (one statement, which usually matches nothing). The constraint stays the last
    word on the insert or the move."""
    buffer = timedelta(minutes=artist.buffer_min)
    return expire_overlapping_holds(session, artist.id, start - buffer, end + buffer, now)


def slot_taken(
    session: Session,
    artist: Artist,
    start: datetime,
    end: datetime,
    *,
    exclude: uuid.UUID | None = None,
) -> bool:
    """A PENDING_PAYMENT or CONFIRMED booking within the buffer of [start, end), or a leave
    overlapping it? (One round trip.) Expired holds must have been marked EXPIRED first
    (see expire_overlapping_holds)."""
    return bool(session.scalar(slot_taken_query(artist, start, end, exclude=exclude)))


def slot_taken_query(
    artist: Artist, start: datetime, end: datetime, *, exclude: uuid.UUID | None = None
) -> Select[bool]:
    """`slot_taken`'s statement: both EXISTS read GiST indexes bounded on both sides (the
    exclusion constraint's and ix_leaves_artist_period)."""
    buffer = timedelta(minutes=artist.buffer_min)
    booked = select(Booking.id).where(
        Booking.artist_id == artist.id, Booking.live_overlapping(start - buffer, end + buffer)
    )
    if exclude is not None:
        booked = booked.where(Booking.id != exclude)
    on_leave = select(Leave.id).where(Leave.artist_id == artist.id, Leave.overlapping(start, end))
    return select(exists(booked) | exists(on_leave))


def _insert_booking(
    session: Session,
    *,
    client: Client,
    artist: Artist,
    service: Service,
    start: datetime,
    now: datetime,
    hold_seconds: int,
) -> tuple[Booking, Effects]:
    """The constrained part, under the artist's lock with the rules checked. Returns the
    booking and the effects of its transaction (stale holds it expired, the confirmation
    of a booking without deposit)."""
    end = start + timedelta(minutes=service.duration_min)
    effects = claim_checked_slot(session, artist, start, end, now)
    free = service.deposit_amount == 0
    booking = Booking(
        id=uuid.uuid4(),
        client_id=client.id,
        artist_id=artist.id,
        service_id=service.id,
        start_time=start,
        end_time=end,
        status=initial_status(deposit_required=not free),
        deposit_status=initial_deposit_status(deposit_required=not free),
        deposit_amount=service.deposit_amount,
        currency=service.currency,
        expires_at=None if free else now + timedelta(seconds=hold_seconds),
        confirmed_at=now if free else None,
        created_at=now,
        updated_at=now,
    )
    if free:  # confirmed at once: its reminder is set now
        reminders.schedule(booking, artist, now)
    session.add(booking)
    try:
        session.flush()
    except IntegrityError as exc:
        if is_overlap_violation(exc):
            raise _slot_taken() from None
        raise
    if free:
        mails = notify_booking(session, booking, NotificationKind.BOOKING_CONFIRMED)
        effects += Effects(mails=tuple(mails))
    return booking, effects


def booked_already(session: Session, request: BookingRequest, now: datetime) -> bool:
    """The cheap refusal of a lost race that is over: a future slot that a confirmed
    booking or an open hold of this artist starts at, asked by an existing client for a
    service the artist offers. One statement, no transaction, so that the many losers of
    a popular slot that arrive after the winner committed cost what a loser on the Redis
    lock costs, instead of the whole rule check. A read of committed rows: the database
    stays the only judge (anything else goes through the full check)."""
    artist_id = parse_id(request.artist_id, "Artist")
    if request.start_time <= now:
        return False
    params = {
        "artist_id": artist_id,
        "start": request.start_time,
        "now": now,
        "client_id": parse_id(request.client_id, "Client"),
        "service_id": parse_id(request.service_id, "Service"),
    }
    return bool(session.scalar(_statements().booked_already, params))


@dataclass(frozen=True, slots=True)
class _Statements:
    catalogue: Select[Client, Artist, Service]
    open_holds: Select[int]
    booked_already: Select[bool]
    attach_intent: Update


@cache
def _statements() -> _Statements:
    """Creation's statements, built once (see `shared.adapters.models.When`)."""
    artist_id: BindParameter[uuid.UUID] = bindparam("artist_id")
    client_id: BindParameter[uuid.UUID] = bindparam("client_id")
    service_id: BindParameter[uuid.UUID] = bindparam("service_id")
    now: BindParameter[datetime] = bindparam("now")
    booked = select(Booking.id).where(
        Booking.artist_id == artist_id,
        Booking.start_time == bindparam("start"),
        (Booking.status == BookingStatus.CONFIRMED) | Booking.open_hold(now),
    )
    client = select(Client.id).where(Client.id == client_id)
    offered = select(Service.id).where(
        Service.id == service_id, Service.artist_id == artist_id, Service.active
    )
    return _Statements(
        catalogue=select(Client, Artist, Service)
        .select_from(Client)
        .join(Artist, Artist.id == artist_id)
        .join(Service, (Service.artist_id == Artist.id) & (Service.id == service_id))
        .where(Client.id == client_id)
        .with_for_update(read=True, of=Service),
        open_holds=select(func.count())
        .select_from(Booking)
        .where(Booking.client_id == client_id, Booking.open_hold(now)),
        booked_already=select(exists(booked) & exists(client) & exists(offered)),
        # Run in a session of its own: no object there to keep in step (and the ORM's
        # in-Python evaluation of the WHERE would not see the parameters' values).
        attach_intent=update(Booking)
        .where(Booking.id == bindparam("booking_id"))
        .values(payment_intent_id=bindparam("intent_id"))
        .execution_options(synchronize_session=False),
    )


def deposit_request(booking: Booking, destination: str) -> DepositRequest:
    """The deposit intent a booking asks Stripe for: written once, since asking again with
    the same idempotency key needs the very same parameters (shared/usecases/intents.py)."""
    return DepositRequest(
        booking_id=booking.id,
        artist_id=booking.artist_id,
        client_id=booking.client_id,
        service_id=booking.service_id,
        amount_minor=to_minor_units(booking.deposit_amount, booking.currency),
        currency=booking.currency,
        destination=destination,
    )


class BookingService:
    def __init__(
        self,
        resources: Resources,
        gateway: StripeGateway,
        locks: SlotLocks,
        effects: EffectRunner,
    ) -> None:
        self._resources = resources
        self._gateway = gateway
        self._locks = locks
        self._effects = effects

    def create(self, request: BookingRequest, *, now: datetime) -> Created:
        """Hold the slot, then ask Stripe for the deposit intent (see the module
        docstring); each outcome is counted by its code (201 or the error's)."""
        try:
            created = self._create(request, now=now)
        except DomainError as error:
            metrics.booking_outcome(error.code.value, (error.details or {}).get("reason"))
            raise
        metrics.booking_outcome("201")
        return created

    def _create(self, request: BookingRequest, *, now: datetime) -> Created:
        start = request.start_time
        try:
            # The lock comes first so that losers of a race cost one Redis round trip, and
            # those who come after the winner committed one more statement.
            with self._locks.hold(parse_id(request.artist_id, "Artist"), start):
                with self._resources.autocommit_sessions() as session:
                    if booked_already(session, request, now):
                        raise DomainError(
                            ErrorCode.SLOT_UNAVAILABLE,
                            details={"reason": str(rules.SlotReason.ALREADY_BOOKED)},
                        )
                created = self._insert(request, now)
        except SlotTaken:
            raise _slot_taken() from None
        booking, artist, decided = created
        log.info(
            "booking %s created: artist %s, %s, %s", booking.id, booking.artist_id,
            booking.start_time.isoformat(), booking.status,
        )  # fmt: skip
        # Before Stripe is asked for the deposit intent, which may fail.
        self._effects.run(decided)
        if booking.status == BookingStatus.CONFIRMED:
            return Created(booking, None)
        return Created(booking, self._attach_intent(booking, artist, now))

    def _insert(self, request: BookingRequest, now: datetime) -> tuple[Booking, Artist, Effects]:
        """The rules and the constrained transaction (under the slot's lock)."""
        settings = self._resources.settings
        start = request.start_time
        with transaction(self._resources.sessions) as session:
            # The artist's lock first, in the order of every writer of the schedule (a
            # reschedule, a leave): the rules below are then checked under it and stay
            # true until the commit, so the slot needs no second look before the insert.
            lock_artist_schedule(session, parse_id(request.artist_id, "Artist"))
            client, artist, service = _load_catalogue(session, request)
            # Before any hold is taken: an artist who cannot be paid gets no booking.
            _check_payments_possible(artist, service)
            _check_open_holds(session, client, settings.max_open_holds_per_client, now)
            _check_no_show_limit(session, client, artist)
            check_rules(session, artist, start, timedelta(minutes=service.duration_min), now)
            booking, decided = _insert_booking(
                session,
                client=client,
                artist=artist,
                service=service,
                start=start,
                now=now,
                hold_seconds=settings.booking_hold_seconds,
            )
        return booking, artist, decided

    def _attach_intent(self, booking: Booking, artist: Artist, now: datetime) -> Intent:
        assert artist.stripe_account_id is not None
        deposit = deposit_request(booking, artist.stripe_account_id)
        try:
            intent = self._gateway.create_deposit_intent(deposit)
        except PaymentProviderError:
            self._cancel(booking.id, now)
            raise DomainError(ErrorCode.PAYMENT_PROVIDER_ERROR) from None
        try:
            with self._resources.autocommit_sessions() as session:
                session.execute(
                    _statements().attach_intent, {"booking_id": booking.id, "intent_id": intent.id}
                )
        except DBAPIError:
            # The hold stays and runs out; the intent is found again by its idempotency
            # key and attached or cancelled (shared/usecases/intents.py).
            log.warning("booking %s: deposit intent %s made but not stored", booking.id, intent.id)
            raise
        booking.payment_intent_id = intent.id
        return intent

    def _cancel(self, booking_id: uuid.UUID, now: datetime) -> None:
        """The slot is free again at once (one autocommit statement; the rule has no
        intents to carry out)."""
        rule = single_rule(Action.PROVIDER_FAILED, BookingStatus.PENDING_PAYMENT)
        with self._resources.autocommit_sessions() as session:
            session.execute(conditional_update(rule, Booking.id == booking_id, now))
        log.warning("booking %s cancelled: the payment provider failed", booking_id)

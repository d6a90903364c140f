"""Database rows. PostgreSQL is the source of truth; constraints here are the last line
of defence (the exclusion constraint on bookings is what makes double-booking impossible)."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    ColumnElement,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    Numeric,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
    column,
    func,
    or_,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID, ExcludeConstraint
from sqlalchemy.orm import Mapped, mapped_column

from shared.adapters.db import Base
from shared.domain.access import Owner

# The status enums live with the rules; re-exported for the rest of the code.
from shared.domain.deposits import CancelledBy as CancelledBy
from shared.domain.deposits import DepositStatus as DepositStatus
from shared.domain.event_bodies import EVENT_ID_MAX_LENGTH, EVENT_TYPE_MAX_LENGTH
from shared.domain.notifications import NotificationKind as NotificationKind
from shared.domain.refunds import RefundReason as RefundReason
from shared.domain.refunds import RefundStatus as RefundStatus
from shared.domain.transitions import LIVE_STATUSES as LIVE_STATUSES
from shared.domain.transitions import BookingStatus as BookingStatus

Money = Numeric(14, 3)

# A value, or the bound parameter (`bindparam`) of a statement built once per process
# and executed with values: building a statement costs more CPU than running it
# (~0.2 ms in SQLAlchemy against ~0.15 ms for the round trip), so the hot paths build
# theirs once (`functools.cache`) from the same conditions.
When = datetime | ColumnElement[datetime]
Ident = uuid.UUID | ColumnElement[uuid.UUID]


def _uuid_pk() -> Mapped[uuid.UUID]:
    return mapped_column(UUID(as_uuid=True), primary_key=True, default=uuid.uuid4)


def _created_at() -> Mapped[datetime]:
    return mapped_column(DateTime(timezone=True), server_default=func.now(), nullable=False)


class EventStatus(StrEnum):
    RECEIVED = "RECEIVED"
    PROCESSED = "PROCESSED"
    IGNORED = "IGNORED"
    FAILED = "FAILED"


class TransactionKind(StrEnum):
    PAYMENT = "PAYMENT"
    REFUND = "REFUND"


class TransactionStatus(StrEnum):
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"


class NotificationStatus(StrEnum):
    PENDING = "PENDING"
    SENT = "SENT"
    FAILED = "FAILED"


def _in(values: Iterable[StrEnum]) -> str:
    return ", ".join(f"'{v.value}'" for v in values)


def period(start: Any, end: Any) -> ColumnElement[Any]:
    """The half-open range [start, end), as the GiST indexes below hold it."""
    return func.tstzrange(start, end, text("'[)'"))


def period_overlaps(start_col: Any, end_col: Any, start: When, end: When) -> ColumnElement[bool]:
    """[start_col, end_col) meets [start, end) (the same test as `start_col < end AND
    end_col > start` for non-empty rows), written as a range overlap so that a GiST index
    on (artist_id, period) reads only the rows near the window, bounded on both sides.
    The two comparisons reach a btree (artist_id, start_time) on the upper bound only:
    the scan then reads the artist's whole past and throws it away row by row."""
    return period(start_col, end_col).bool_op("&&")(period(start, end))


class Client(Base):
    __tablename__ = "clients"

    id: Mapped[uuid.UUID] = _uuid_pk()
    email: Mapped[str] = mapped_column(String(320), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = _created_at()


class Artist(Base):
    __tablename__ = "artists"
    __table_args__ = (
        CheckConstraint("buffer_min >= 0", name="buffer_min_non_negative"),
        CheckConstraint("min_notice_min >= 0", name="min_notice_non_negative"),
        CheckConstraint("max_advance_days >= 0", name="max_advance_non_negative"),
        CheckConstraint(
            "(refund_window_hours IS NULL OR refund_window_hours >= 0) "
            "AND reschedule_notice_hours >= 0 AND max_reschedules >= 0 "
            "AND reminder_hours >= 0 AND no_show_limit >= 0",
            name="policy_non_negative",
        ),
    )

    id: Mapped[uuid.UUID] = _uuid_pk()
    name: Mapped[str] = mapped_column(String(200))
    email: Mapped[str] = mapped_column(String(320), unique=True)
    timezone: Mapped[str] = mapped_column(String(64))
    stripe_account_id: Mapped[str | None] = mapped_column(String(255), unique=True)
    charges_enabled: Mapped[bool] = mapped_column(Boolean, default=False)
    # `created` of the newest account.updated event applied: older ones arriving late
    # must not overwrite chargesEnabled.
    stripe_account_synced_at: Mapped[int | None] = mapped_column(BigInteger)
    # Bumped by database triggers whenever anything that decides availability changes
    # (bookings, leaves, working hours, booking policy): the availability cache key.
    schedule_version: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))
    buffer_min: Mapped[int] = mapped_column(Integer, default=0)
    min_notice_min: Mapped[int] = mapped_column(Integer, default=0)
    max_advance_days: Mapped[int] = mapped_column(Integer, default=365)
    # The deposit policy (shared.domain.policy.DepositPolicy; the defaults are its own).
    refund_window_hours: Mapped[int | None] = mapped_column(Integer)
    reschedule_notice_hours: Mapped[int] = mapped_column(Integer, server_default=text("48"))
    max_reschedules: Mapped[int] = mapped_column(Integer, server_default=text("1"))
    reminder_hours: Mapped[int] = mapped_column(Integer, server_default=text("24"))
    no_show_limit: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    # Stripe Connect, as the newest `account.updated` says (see stripe_account_synced_at).
    payouts_enabled: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    requirements_due: Mapped[list[str]] = mapped_column(JSONB, server_default=text("'[]'"))
    # The private calendar feed: the token is derived (HMAC) from a server secret and this
    # version, which rotation bumps; only its SHA-256 is stored, to find the artist.
    calendar_token_version: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    calendar_token_hash: Mapped[str | None] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = _created_at()


class Service(Base):
    __tablename__ = "services"
    __table_args__ = (
        CheckConstraint("duration_min > 0", name="duration_positive"),
        CheckConstraint("price >= 0", name="price_non_negative"),
        CheckConstraint(
            "deposit_amount >= 0 AND deposit_amount <= price", name="deposit_within_price"
        ),
    )

    id: Mapped[uuid.UUID] = _uuid_pk()
    artist_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("artists.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(200))
    duration_min: Mapped[int] = mapped_column(Integer)
    price: Mapped[Decimal] = mapped_column(Money)
    deposit_amount: Mapped[Decimal] = mapped_column(Money)
    currency: Mapped[str] = mapped_column(String(3))
    # A service with bookings is never deleted: inactive, it takes no new bookings.
    active: Mapped[bool] = mapped_column(Boolean, server_default=text("true"))
    created_at: Mapped[datetime] = _created_at()


class WorkingHours(Base):
    """A wall-clock interval in the artist's zone; minutes since local midnight so that
    24:00 (end of day) is representable."""

    __tablename__ = "working_hours"
    __table_args__ = (
        CheckConstraint("day_of_week BETWEEN 0 AND 6", name="day_of_week_range"),
        CheckConstraint(
            "start_minute >= 0 AND end_minute <= 1440 AND start_minute < end_minute",
            name="minutes_order",
        ),
    )

    id: Mapped[uuid.UUID] = _uuid_pk()
    artist_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("artists.id", ondelete="CASCADE"), index=True
    )
    day_of_week: Mapped[int] = mapped_column(SmallInteger)
    start_minute: Mapped[int] = mapped_column(SmallInteger)
    end_minute: Mapped[int] = mapped_column(SmallInteger)


class Leave(Base):
    __tablename__ = "leaves"
    __table_args__ = (
        CheckConstraint("end_time > start_time", name="end_after_start"),
        Index("ix_leaves_artist_id_start_time", "artist_id", "start_time"),
        # Leaves meeting a window (availability, the booking re-check): both bounds reach
        # the index (`Leave.overlapping`).
        Index(
            "ix_leaves_artist_period",
            "artist_id",
            period(column("start_time"), column("end_time")),
            postgresql_using="gist",
        ),
    )

    id: Mapped[uuid.UUID] = _uuid_pk()
    artist_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("artists.id", ondelete="CASCADE"))
    start_time: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    end_time: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    reason: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[datetime] = _created_at()

    @classmethod
    def overlapping(cls, start: When, end: When) -> ColumnElement[bool]:
        """Meets [start, end): through ix_leaves_artist_period with the artist's id."""
        return period_overlaps(cls.start_time, cls.end_time, start, end)


BOOKINGS_NO_OVERLAP = "ex_bookings_no_overlap"


class Booking(Base):
    __tablename__ = "bookings"
    __table_args__ = (
        CheckConstraint("end_time > start_time", name="end_after_start"),
        CheckConstraint(f"status IN ({_in(BookingStatus)})", name="status_known"),
        CheckConstraint("deposit_amount >= 0", name="deposit_non_negative"),
        CheckConstraint(f"deposit_status IN ({_in(DepositStatus)})", name="deposit_status_known"),
        CheckConstraint(
            f"cancelled_by IS NULL OR cancelled_by IN ({_in(CancelledBy)})",
            name="cancelled_by_known",
        ),
        CheckConstraint("reschedule_count >= 0", name="reschedule_count_non_negative"),
        CheckConstraint("amount_refunded_minor >= 0", name="amount_refunded_non_negative"),
        # Two live bookings of one artist can never overlap: the database is the fence
        # that the Redis lock is not (a lock can expire under a paused holder).
        ExcludeConstraint(
            (column("artist_id"), "="),
            (
                func.tstzrange(column("start_time"), column("end_time"), text("'[)'")),
                "&&",
            ),
            using="gist",
            where=text(f"status IN ({_in(LIVE_STATUSES)})"),
            name=BOOKINGS_NO_OVERLAP,
        ),
        Index("ix_bookings_artist_id_start_time", "artist_id", "start_time"),
        # The operator's list in start order, keyset-paginated on (start_time, id).
        Index("ix_bookings_start_time_id", "start_time", "id"),
        # Due reminders: only bookings that still have one are in the index.
        Index(
            "ix_bookings_remind_at",
            "remind_at",
            postgresql_where=text("remind_at IS NOT NULL"),
        ),
        Index(
            "ix_bookings_pending_expires_at",
            "expires_at",
            postgresql_where=text("status = 'PENDING_PAYMENT'"),
        ),
        # Deposits whose intent no booking names yet (shared/usecases/intents.py): a few
        # rows, however large the table.
        Index(
            "ix_bookings_without_intent_created_at",
            "created_at",
            postgresql_where=text("payment_intent_id IS NULL AND deposit_amount > 0"),
        ),
    )

    id: Mapped[uuid.UUID] = _uuid_pk()
    client_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("clients.id"), index=True)
    artist_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("artists.id"))
    service_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("services.id"))
    start_time: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    end_time: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    status: Mapped[str] = mapped_column(String(20))
    deposit_amount: Mapped[Decimal] = mapped_column(Money)
    currency: Mapped[str] = mapped_column(String(3))
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    payment_intent_id: Mapped[str | None] = mapped_column(String(255), unique=True)
    created_at: Mapped[datetime] = _created_at()
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), onupdate=func.now()
    )
    confirmed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    cancelled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    expired_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    completed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    no_show_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    cancelled_by: Mapped[str | None] = mapped_column(String(10))
    cancellation_reason: Mapped[str | None] = mapped_column(String(500))
    reschedule_count: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    deposit_status: Mapped[str] = mapped_column(String(20))
    # What Stripe reports refunded on the deposit, in the currency's minor unit.
    amount_refunded_minor: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))
    # When the client is to be reminded (NULL: no reminder due); the reminder sweep reads
    # it through the partial index below.
    remind_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # iCalendar SEQUENCE of the booking's event: grows with each change sent to calendars.
    calendar_sequence: Mapped[int] = mapped_column(Integer, server_default=text("0"))

    @property
    def owner(self) -> Owner:
        """Whose booking it is, for `shared.domain.access.authorize`."""
        return Owner(artist_id=self.artist_id, client_id=self.client_id)

    # The conditions on a status that queries filter on, written once (they mirror the
    # pure `shared.domain.transitions.is_live`, `hold_over` and `blocks_slot`).
    @classmethod
    def live(cls) -> ColumnElement[bool]:
        """Holds its slot for the exclusion constraint: PENDING_PAYMENT or CONFIRMED."""
        return cls.status.in_(LIVE_STATUSES)

    @classmethod
    def live_overlapping(cls, start: When, end: When) -> ColumnElement[bool]:
        """A live booking meeting [start, end): the exclusion constraint's own GiST index
        (artist_id, period) WHERE live answers it with the artist's id, reading only the
        bookings near the window however long the artist's history."""
        return cls.live() & period_overlaps(cls.start_time, cls.end_time, start, end)

    @classmethod
    def hold_over(cls, now: When) -> ColumnElement[bool]:
        return cls.expires_at <= now

    @classmethod
    def open_hold(cls, now: When) -> ColumnElement[bool]:
        """An unpaid hold that still blocks its slot."""
        return (cls.status == BookingStatus.PENDING_PAYMENT) & (cls.expires_at > now)

    @classmethod
    def stale_hold(cls, now: When) -> ColumnElement[bool]:
        """An unpaid hold past its expiry that nobody has marked EXPIRED yet: it blocks
        nothing but is still live for the exclusion constraint."""
        return (cls.status == BookingStatus.PENDING_PAYMENT) & cls.hold_over(now)

    @classmethod
    def without_intent(cls) -> ColumnElement[bool]:
        """A deposit to pay and no PaymentIntent named (the partial index above)."""
        return cls.payment_intent_id.is_(None) & (cls.deposit_amount > 0)

    @classmethod
    def blocks_slot(cls, now: When) -> ColumnElement[bool]:
        """Keeps its slot from others at `now`: CONFIRMED, or a hold not yet run out."""
        return or_(cls.status == BookingStatus.CONFIRMED, cls.open_hold(now))


class IdempotencyKey(Base):
    """`Idempotency-Key` of booking creation: the first response, replayed for 24 h."""

    __tablename__ = "idempotency_keys"

    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    request_hash: Mapped[str] = mapped_column(String(64))
    booking_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("bookings.id", ondelete="SET NULL")
    )
    response_status: Mapped[int | None] = mapped_column(SmallInteger)
    response_body: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    created_at: Mapped[datetime] = _created_at()
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)


class StripeEvent(Base):
    """The webhook inbox: every verified event, stored before Stripe gets its 200."""

    __tablename__ = "stripe_events"
    __table_args__ = (
        CheckConstraint(f"status IN ({_in(EventStatus)})", name="status_known"),
        Index(
            "ix_stripe_events_unprocessed",
            "received_at",
            postgresql_where=text("status IN ('RECEIVED', 'FAILED')"),
        ),
        # The inbox sweeper's query: events it may still re-enqueue. An event FAILED with
        # its automatic attempts used up (10: stripe_events.MAX_AUTOMATIC_ATTEMPTS) waits
        # for an operator and stays out, so such events piling up never slow the sweep.
        Index(
            "ix_stripe_events_redeliverable",
            "received_at",
            postgresql_where=text("status IN ('RECEIVED', 'FAILED') AND attempts < 10"),
        ),
        # The retention purge (shared/usecases/retention.py): applied events, oldest first.
        Index(
            "ix_stripe_events_applied_processed_at",
            "processed_at",
            postgresql_where=text("status IN ('PROCESSED', 'IGNORED')"),
        ),
    )

    # The receiver refuses longer ones (shared.domain.event_bodies).
    id: Mapped[str] = mapped_column(String(EVENT_ID_MAX_LENGTH), primary_key=True)
    type: Mapped[str] = mapped_column(String(EVENT_TYPE_MAX_LENGTH))
    payload: Mapped[dict[str, Any]] = mapped_column(JSONB)
    status: Mapped[str] = mapped_column(String(20), default=EventStatus.RECEIVED)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    stripe_created: Mapped[int | None] = mapped_column(BigInteger)
    received_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )
    processed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class StripeTransaction(Base):
    """The money ledger. One row per Stripe object and kind for successes; one per event
    for failed attempts (a client may fail several times before paying)."""

    __tablename__ = "stripe_transactions"
    __table_args__ = (
        CheckConstraint(f"kind IN ({_in(TransactionKind)})", name="kind_known"),
        CheckConstraint(f"status IN ({_in(TransactionStatus)})", name="status_known"),
        Index(
            "uq_stripe_transactions_object_kind_succeeded",
            "stripe_object_id",
            "kind",
            unique=True,
            postgresql_where=text("status = 'SUCCEEDED'"),
        ),
        Index(
            "uq_stripe_transactions_event_kind_failed",
            "stripe_event_id",
            "kind",
            unique=True,
            postgresql_where=text("status = 'FAILED'"),
        ),
    )

    id: Mapped[uuid.UUID] = _uuid_pk()
    booking_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("bookings.id"), index=True)
    kind: Mapped[str] = mapped_column(String(20))
    status: Mapped[str] = mapped_column(String(20))
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    stripe_object_id: Mapped[str] = mapped_column(String(255))
    payment_intent_id: Mapped[str | None] = mapped_column(String(255))
    stripe_event_id: Mapped[str | None] = mapped_column(String(255))
    failure_code: Mapped[str | None] = mapped_column(String(100))
    failure_message: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = _created_at()


class Notification(Base):
    """The outbox: written in the same transaction as the state change it reports."""

    __tablename__ = "notifications"
    __table_args__ = (
        CheckConstraint(f"kind IN ({_in(NotificationKind)})", name="kind_known"),
        CheckConstraint(f"status IN ({_in(NotificationStatus)})", name="status_known"),
        # At most one email per booking, kind, recipient and occasion (a second
        # reschedule, another refund, a reminder for a new start time is a new occasion).
        UniqueConstraint("booking_id", "kind", "recipient", "occasion"),
        # The outbox sweeper's query (PENDING rows, oldest first): only the rows still to
        # send are in it, so a sweep reads a few entries however many mails were sent.
        Index(
            "ix_notifications_pending_created_at",
            "created_at",
            postgresql_where=text("status = 'PENDING'"),
        ),
        # The retention purge: sent mails, oldest first.
        Index(
            "ix_notifications_sent_at",
            "sent_at",
            postgresql_where=text("status = 'SENT'"),
        ),
    )

    id: Mapped[uuid.UUID] = _uuid_pk()
    booking_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("bookings.id"), index=True)
    kind: Mapped[str] = mapped_column(String(30))
    channel: Mapped[str] = mapped_column(String(20), default="email")
    recipient: Mapped[str] = mapped_column(String(320))
    occasion: Mapped[str] = mapped_column(String(100), server_default=text("''"))
    # BOOKING_RESCHEDULED: the start the booking moved from (the email shows both times).
    previous_start_time: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    status: Mapped[str] = mapped_column(String(20), default=NotificationStatus.PENDING)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = _created_at()
    sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Refund(Base):
    """A refund we owe, written in the transaction that decided it; Stripe is asked after
    the commit (never inside a transaction), with the idempotency key stored here, so a
    retry or a second task can never refund twice. The ledger's REFUND rows record what
    Stripe reports; this row tracks our request."""

    __tablename__ = "refunds"
    __table_args__ = (
        CheckConstraint(f"status IN ({_in(RefundStatus)})", name="status_known"),
        CheckConstraint(f"reason IN ({_in(RefundReason)})", name="reason_known"),
        CheckConstraint("amount_minor > 0", name="amount_positive"),
        # The sweeper's query: owed refunds not touched for a while.
        Index(
            "ix_refunds_pending_updated_at",
            "updated_at",
            postgresql_where=text("status = 'PENDING'"),
        ),
    )

    id: Mapped[uuid.UUID] = _uuid_pk()
    booking_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("bookings.id"), index=True)
    payment_intent_id: Mapped[str] = mapped_column(String(255))
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    reason: Mapped[str] = mapped_column(String(30))
    # Derived from the booking and the reason: one refund per booking action.
    idempotency_key: Mapped[str] = mapped_column(String(255), unique=True)
    status: Mapped[str] = mapped_column(String(20), default=RefundStatus.PENDING)
    stripe_refund_id: Mapped[str | None] = mapped_column(String(255), unique=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = _created_at()
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    settled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class SigninLink(Base):
    """A magic link sent to an artist (`shared.usecases.signin`): the link carries this
    id, signed. `used_at` is set once, by the conditional UPDATE that redeems it."""

    __tablename__ = "signin_links"
    __table_args__ = (
        CheckConstraint("expires_at > created_at", name="expires_after"),
        Index("ix_signin_links_artist_id_created_at", "artist_id", "created_at"),
    )

    id: Mapped[uuid.UUID] = _uuid_pk()
    artist_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("artists.id", ondelete="CASCADE"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

"""Response bodies: each JSON shape the API answers, written once as a pydantic model.

Each model is built from the rows or domain values in one place (its `of` classmethod),
serialises itself (camelCase, UTC timestamps with milliseconds and `Z`, money as decimal
strings in the currency's decimals) and is the source of its OpenAPI schema, so the
document cannot describe something the handlers do not send.

Response models are strict (a `str` where an `int` belongs is an error, not a silent
coercion) and forbid unknown keys; their schemas say `additionalProperties: false` and
list every key as required, so a client may rely on each key being present.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Annotated, Any, Generic, Literal, Self, TypeVar

from flask import Response
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, PlainSerializer, WithJsonSchema
from pydantic.alias_generators import to_camel

from shared.adapters import models
from shared.adapters.models import (
    BookingStatus,
    CancelledBy,
    DepositStatus,
    NotificationKind,
    NotificationStatus,
    RefundStatus,
    TransactionKind,
    TransactionStatus,
)
from shared.adapters.payments import Intent
from shared.domain.money import format_amount, from_minor_units
from shared.domain.timeutil import iso_utc
from shared.usecases.booking import Created
from shared.usecases.booking_search import Page
from shared.usecases.connect import Onboarding
from shared.usecases.lifecycle import Done, LeaveAdded
from shared.usecases.schedule import Availability

JSON = "application/json"
# What `iso_utc` writes; the schema holds every timestamp to it.
TIMESTAMP_PATTERN = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$"


def _iso(moment: datetime) -> str:
    text = iso_utc(moment)
    assert text is not None
    return text


Timestamp = Annotated[
    AwareDatetime,
    PlainSerializer(_iso, return_type=str),
    WithJsonSchema(
        {
            "type": "string",
            "format": "date-time",
            "pattern": TIMESTAMP_PATTERN,
            "description": "UTC with milliseconds and `Z`.",
            "examples": ["2026-02-05T11:00:00.000Z"],
        }
    ),
]
Money = Annotated[
    str,
    Field(
        pattern=r"^\d+(\.\d+)?$",
        description="A decimal string in major units with the currency's decimals.",
        examples=["50.00", "5000"],
    ),
]
Currency = Annotated[str, Field(pattern=r"^[a-z]{3}$", examples=["eur"])]
HourMinute = Annotated[str, Field(pattern=r"^([01]\d|2[0-3]):[0-5]\d$|^24:00$")]


class ResponseModel(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel,
        serialize_by_alias=True,
        validate_by_name=True,
        validate_by_alias=True,
        strict=True,
        frozen=True,
        extra="forbid",
        json_schema_serialization_defaults_required=True,
    )


def reply(body: BaseModel, status: int = 200) -> Response:
    return Response(body.model_dump_json(), status=status, mimetype=JSON)


Item = TypeVar("Item", bound=ResponseModel)


class Items(ResponseModel, Generic[Item]):
    """A collection: `{"items": [...]}`."""

    items: list[Item]

    @classmethod
    def model_parametrized_name(cls, params: tuple[Any, ...]) -> str:
        return f"{params[0].__name__}List"


# --------------------------------------------------------------------------- catalogue


class Client(ResponseModel):
    id: uuid.UUID
    email: str
    name: str
    created_at: Timestamp

    @classmethod
    def of(cls, client: models.Client) -> Self:
        return cls(id=client.id, email=client.email, name=client.name, created_at=client.created_at)


class Artist(ResponseModel):
    id: uuid.UUID
    name: str
    email: str
    timezone: str = Field(examples=["Europe/Paris"])
    stripe_account_id: str | None
    charges_enabled: bool = Field(
        description="The Stripe account can take charges: deposits can be asked for."
    )
    payouts_enabled: bool = Field(description="Stripe can pay the artist out.")
    requirements_due: list[str] = Field(
        description=(
            "What Stripe needs from the artist now (`requirements.currently_due`), e.g. "
            "`external_account`; empty when nothing is due."
        ),
        examples=[["external_account", "tos_acceptance.date"]],
    )
    buffer_min: int
    min_notice_min: int
    max_advance_days: int
    refund_window_hours: int | None = Field(
        description=(
            "A client who cancels at least this many hours before the start gets the deposit "
            "back; null: never."
        )
    )
    reschedule_notice_hours: int
    max_reschedules: int
    reminder_hours: int = Field(description="0: no reminder.")
    no_show_limit: int = Field(description="0: no limit.")
    calendar_url: str = Field(
        description=(
            "The artist's private iCalendar feed (their confirmed, completed and no-show "
            "bookings, 30 days back to 365 ahead) to subscribe to in Google, Apple or "
            "Outlook calendars. The URL is the credential: share it with the artist only; "
            "`POST /api/admin/artists/{id}/calendar-token` replaces it."
        ),
        examples=[
            "https://inkflow.example/api/calendar/3q2-7wEAbM0K7-Zg0WnE6l6dL9r8W9q3Yf1oQ1xT2aU.ics"
        ],
    )
    created_at: Timestamp

    @classmethod
    def of(cls, artist: models.Artist, *, calendar_url: str) -> Self:
        """`calendar_url`: from `shared.usecases.calendars.calendar_url`."""
        return cls(
            id=artist.id,
            name=artist.name,
            email=artist.email,
            timezone=artist.timezone,
            stripe_account_id=artist.stripe_account_id,
            charges_enabled=artist.charges_enabled,
            payouts_enabled=artist.payouts_enabled,
            requirements_due=list(artist.requirements_due),
            buffer_min=artist.buffer_min,
            min_notice_min=artist.min_notice_min,
            max_advance_days=artist.max_advance_days,
            refund_window_hours=artist.refund_window_hours,
            reschedule_notice_hours=artist.reschedule_notice_hours,
            max_reschedules=artist.max_reschedules,
            reminder_hours=artist.reminder_hours,
            no_show_limit=artist.no_show_limit,
            calendar_url=calendar_url,
            created_at=artist.created_at,
        )


class CalendarLink(ResponseModel):
    calendar_url: str = Field(
        description="The artist's new feed URL; the previous one answers 404 from now on."
    )


class StripeOnboarding(ResponseModel):
    url: str = Field(description="Stripe's hosted onboarding: send the artist there now.")
    expires_at: Timestamp = Field(description="The link works once, until then (minutes).")
    stripe_account_id: str = Field(description="The artist's connected account.")

    @classmethod
    def of(cls, onboarding: Onboarding) -> Self:
        return cls(
            url=onboarding.url,
            expires_at=onboarding.expires_at,
            stripe_account_id=onboarding.stripe_account_id,
        )


class StripeDashboardLink(ResponseModel):
    url: str = Field(description="A single-use login link to the artist's Express Dashboard.")


class Service(ResponseModel):
    id: uuid.UUID
    artist_id: uuid.UUID
    name: str
    duration_min: int
    price: Money
    deposit_amount: Money
    currency: Currency
    active: bool = Field(
        description=(
            "false: no new bookings and no availability (NOT_FOUND for clients); existing "
            "bookings keep it."
        )
    )
    created_at: Timestamp

    @classmethod
    def of(cls, service: models.Service) -> Self:
        return cls(
            id=service.id,
            artist_id=service.artist_id,
            name=service.name,
            duration_min=service.duration_min,
            price=format_amount(service.price, service.currency),
            deposit_amount=format_amount(service.deposit_amount, service.currency),
            currency=service.currency,
            active=service.active,
            created_at=service.created_at,
        )


def _hhmm(minute: int) -> str:
    return f"{minute // 60:02d}:{minute % 60:02d}"


class WorkingHours(ResponseModel):
    """A wall-clock interval in the artist's time zone (follows DST)."""

    id: uuid.UUID
    day_of_week: int = Field(ge=0, le=6, description="0 = Monday … 6 = Sunday.")
    start_time: HourMinute = Field(examples=["10:00"])
    end_time: HourMinute = Field(examples=["18:00", "24:00"])

    @classmethod
    def of(cls, hours: models.WorkingHours) -> Self:
        return cls(
            id=hours.id,
            day_of_week=hours.day_of_week,
            start_time=_hhmm(hours.start_minute),
            end_time=_hhmm(hours.end_minute),
        )


class Leave(ResponseModel):
    id: uuid.UUID
    artist_id: uuid.UUID
    start_time: Timestamp
    end_time: Timestamp
    reason: str | None
    created_at: Timestamp

    @classmethod
    def of(cls, leave: models.Leave) -> Self:
        return cls(
            id=leave.id,
            artist_id=leave.artist_id,
            start_time=leave.start_time,
            end_time=leave.end_time,
            reason=leave.reason,
            created_at=leave.created_at,
        )


class LeaveCreated(Leave):
    conflicts: list[uuid.UUID] = Field(
        description=(
            "The bookings the leave overlaps (those holding the slot: confirmed, or unpaid "
            "and still held), by start."
        )
    )
    cancelled: list[uuid.UUID] = Field(
        description="Those of them cancelled for the leave (with `cancelConflicting`)."
    )

    @classmethod
    def added(cls, added: LeaveAdded) -> Self:
        leave = Leave.of(added.leave)
        return cls(**dict(leave), conflicts=added.conflicts, cancelled=added.cancelled)


# --------------------------------------------------------------------------- bookings


class Booking(ResponseModel):
    id: uuid.UUID
    client_id: uuid.UUID
    artist_id: uuid.UUID
    service_id: uuid.UUID
    start_time: Timestamp
    end_time: Timestamp
    status: BookingStatus
    deposit_amount: Money
    currency: Currency
    expires_at: Timestamp | None = Field(
        description=(
            "End of the unpaid hold: after it the booking no longer blocks the slot and the "
            "worker marks it EXPIRED. null when nothing is held (a deposit of 0)."
        )
    )
    created_at: Timestamp
    confirmed_at: Timestamp | None
    payment_intent_id: str | None = Field(
        description="The deposit's PaymentIntent; null for a deposit of 0."
    )
    reschedule_count: int = Field(ge=0, description="How many times the client moved it.")
    cancelled_at: Timestamp | None
    cancelled_by: CancelledBy | None = Field(
        description="SYSTEM: the platform itself (the payment provider failed, ...)."
    )
    cancellation_reason: str | None
    deposit_status: DepositStatus = Field(
        description=(
            "Where the deposit is: NOT_REQUIRED (none asked), UNPAID, PAID, REFUND_PENDING "
            "(owed back, on its way), REFUNDED, PARTIALLY_REFUNDED, FORFEITED (kept: a late "
            "cancellation or a no-show), REFUND_FAILED (an operator must act)."
        )
    )
    amount_refunded: Money = Field(description="What Stripe reports refunded on the deposit.")

    @classmethod
    def of(cls, booking: models.Booking) -> Self:
        return cls(
            id=booking.id,
            client_id=booking.client_id,
            artist_id=booking.artist_id,
            service_id=booking.service_id,
            start_time=booking.start_time,
            end_time=booking.end_time,
            status=BookingStatus(booking.status),
            deposit_amount=format_amount(booking.deposit_amount, booking.currency),
            currency=booking.currency,
            expires_at=booking.expires_at,
            created_at=booking.created_at,
            confirmed_at=booking.confirmed_at,
            payment_intent_id=booking.payment_intent_id,
            reschedule_count=booking.reschedule_count,
            cancelled_at=booking.cancelled_at,
            cancelled_by=CancelledBy(booking.cancelled_by) if booking.cancelled_by else None,
            cancellation_reason=booking.cancellation_reason,
            deposit_status=DepositStatus(booking.deposit_status),
            amount_refunded=format_amount(
                from_minor_units(booking.amount_refunded_minor, booking.currency),
                booking.currency,
            ),
        )


class BookingPage(ResponseModel):
    """One page of a list in start-time order."""

    items: list[Booking]
    next_cursor: str | None = Field(
        description="Pass it as `cursor` for the next page; null on the last page."
    )

    @classmethod
    def of(cls, page: Page) -> Self:
        after = page.next_after
        return cls(
            items=[Booking.of(b) for b in page.items],
            next_cursor=None if after is None else after.encode(),
        )


class PaymentIntent(ResponseModel):
    id: str = Field(examples=["pi_123"])
    client_secret: str | None = Field(
        description="For Stripe.js `confirmPayment` on the frontend (Stripe always sets it)."
    )
    amount: int = Field(ge=0, description="In the currency's minor unit (5000 = 50.00 EUR).")
    currency: Currency

    @classmethod
    def of(cls, intent: Intent) -> Self:
        return cls(
            id=intent.id,
            client_secret=intent.client_secret,
            amount=intent.amount,
            currency=intent.currency,
        )


class BookingCreated(ResponseModel):
    booking: Booking
    payment_intent: PaymentIntent | None = Field(
        description="null when the deposit is 0 (the booking is CONFIRMED at once)."
    )

    @classmethod
    def of(cls, created: Created) -> Self:
        intent = None if created.intent is None else PaymentIntent.of(created.intent)
        return cls(booking=Booking.of(created.booking), payment_intent=intent)


class BookingEnvelope(ResponseModel):
    booking: Booking

    @classmethod
    def of(cls, booking: models.Booking) -> Self:
        return cls(booking=Booking.of(booking))


class RefundAnswer(ResponseModel):
    """The refund an action owes the client."""

    amount: Money
    currency: Currency
    status: Literal["PENDING", "SUCCEEDED"] = Field(
        description=(
            "SUCCEEDED: Stripe made it. PENDING: on its way (Stripe has not finished, or was "
            "momentarily unavailable and the refund is retried in the background); one that "
            "Stripe refuses is left to an operator (the booking's depositStatus says so)."
        )
    )

    @classmethod
    def of(cls, refund: models.Refund) -> Self:
        return cls(
            amount=format_amount(
                from_minor_units(refund.amount_minor, refund.currency), refund.currency
            ),
            currency=refund.currency,
            status="SUCCEEDED" if refund.status == RefundStatus.SUCCEEDED else "PENDING",
        )


class BookingCancelled(ResponseModel):
    booking: Booking
    refund: RefundAnswer | None = Field(
        description="null when no refund is owed (nothing paid, or the deposit is kept)."
    )

    @classmethod
    def of(cls, done: Done) -> Self:
        refund = RefundAnswer.of(done.refund) if done.refund is not None else None
        return cls(booking=Booking.of(done.booking), refund=refund)


class Transaction(ResponseModel):
    """A ledger row. A payment whose amount, currency, intent or destination does not
    match its booking is recorded here but never confirms the booking."""

    id: uuid.UUID
    kind: TransactionKind
    status: TransactionStatus
    amount: Money
    amount_minor: int = Field(description="Stripe's integer amount, in the minor unit.")
    currency: Currency
    payment_intent_id: str | None
    stripe_object_id: str
    stripe_event_id: str | None
    failure_code: str | None
    failure_message: str | None
    created_at: Timestamp

    @classmethod
    def of(cls, tx: models.StripeTransaction) -> Self:
        return cls(
            id=tx.id,
            kind=TransactionKind(tx.kind),
            status=TransactionStatus(tx.status),
            amount=format_amount(from_minor_units(tx.amount_minor, tx.currency), tx.currency),
            amount_minor=tx.amount_minor,
            currency=tx.currency,
            payment_intent_id=tx.payment_intent_id,
            stripe_object_id=tx.stripe_object_id,
            stripe_event_id=tx.stripe_event_id,
            failure_code=tx.failure_code,
            failure_message=tx.failure_message,
            created_at=tx.created_at,
        )


class Notification(ResponseModel):
    id: uuid.UUID
    kind: NotificationKind
    channel: Literal["email"]
    recipient: str
    status: NotificationStatus
    sent_at: Timestamp | None

    @classmethod
    def of(cls, note: models.Notification) -> Self:
        return cls(
            id=note.id,
            kind=NotificationKind(note.kind),
            channel="email",
            recipient=note.recipient,
            status=NotificationStatus(note.status),
            sent_at=note.sent_at,
        )


class BookingDetail(ResponseModel):
    booking: Booking
    transactions: list[Transaction]
    notifications: list[Notification]

    @classmethod
    def of(
        cls,
        booking: models.Booking,
        transactions: Sequence[models.StripeTransaction],
        notifications: Sequence[models.Notification],
    ) -> Self:
        return cls(
            booking=Booking.of(booking),
            transactions=[Transaction.of(t) for t in transactions],
            notifications=[Notification.of(n) for n in notifications],
        )


# --------------------------------------------------------------------------- availability


class Slot(ResponseModel):
    start_time: Timestamp
    end_time: Timestamp
    available: bool


class AvailabilityAnswer(ResponseModel):
    slots: list[Slot] = Field(description="In time order.")
    timezone: str = Field(examples=["Europe/Paris"])

    @classmethod
    def of(cls, answer: Availability) -> Self:
        return cls(
            slots=[
                Slot(start_time=s.start, end_time=s.end, available=s.available)
                for s in answer.slots
            ],
            timezone=answer.timezone,
        )


# --------------------------------------------------------------------------- webhooks, probes


class WebhookAck(ResponseModel):
    received: Literal[True]


class Health(ResponseModel):
    status: Literal["ok"]


Probe = Literal["database", "redis", "broker"]


class Ready(ResponseModel):
    status: Literal["ok"]
    checks: dict[Probe, Literal["ok"]]


class NotReady(ResponseModel):
    status: Literal["unavailable"]
    failed: list[Probe] = Field(description="The probes that failed, sorted.")
    checks: dict[Probe, str] = Field(
        description='"ok", or "unreachable: <exception type>".',
        examples=[{"database": "ok", "redis": "unreachable: ConnectionError"}],
    )

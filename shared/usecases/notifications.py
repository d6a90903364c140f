"""Notifications: an outbox of e-mails, rendered from templates and sent over SMTP.

The outbox pattern
------------------
A state change and the e-mail that reports it must not drift apart: a booking confirmed
without its confirmation mail, or a mail about a confirmation that was rolled back. So the
use case that changes a booking calls `notify_booking()` *inside its own transaction*: it
inserts one `notifications` row per recipient (status PENDING), committed atomically with the
change. Sending happens later and elsewhere: after the commit the caller enqueues one send
task per returned id (`shared.tasks.SEND_NOTIFICATION`, the id as argument), and the worker
calls `send_notification()`. If that task is lost (broker down, worker killed), the row stays
PENDING and the outbox sweeper re-enqueues it (`redeliver_pending()`). Rows are unique per
(booking, kind, recipient), so re-applying the same event (a webhook delivered twice) adds
nothing: `add_notification()` uses ``INSERT ... ON CONFLICT DO NOTHING``.

At most once per row
--------------------
`send_notification()` locks the row (``SELECT ... FOR UPDATE``) and keeps the lock while it
talks SMTP, then marks the row SENT in the same transaction. A second sender of the same id
(a duplicated task, the sweeper racing a slow task) waits for the lock and then sees SENT, so
concurrent and repeated calls send one e-mail per row. The lock is held for one SMTP exchange
(socket timeout `SMTP_TIMEOUT_SECONDS`); a waiter that exceeds the connection's
``lock_timeout`` gets `TransientMailError` and its retry finds the row SENT.

What no database lock can cover is the gap between the SMTP server accepting the message
and our commit: if the process dies or the database fails right there (or the server's
final "250" reply is lost), the row is still PENDING and a retry sends the mail again. That
duplicate carries the same deterministic ``Message-ID`` (derived from the row id), so mail
systems and clients that de-duplicate by Message-ID can drop it. Failures are classified:
transient ones (connection errors, timeouts, 4xx replies) count an attempt, keep the row
PENDING and raise `TransientMailError` for the task to retry with backoff; permanent ones
(5xx refusal of the recipient, the sender or the data) mark the row FAILED and are not retried.

Who gets which e-mail is a rule (`shared.domain.notifications.RECIPIENT_ROLES`); the
content is rendered by `shared.adapters.email_templates` and delivered by a backend of
`shared.adapters.mail`.
"""

from __future__ import annotations

import logging
import smtplib
import uuid
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Literal

from psycopg.errors import LockNotAvailable
from sqlalchemy import Select, func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session
from sqlalchemy.sql.dml import ReturningInsert

from shared.adapters import booking_links, metrics
from shared.adapters.claims import claim_each
from shared.adapters.db import transaction
from shared.adapters.email_templates import EmailContext, make_context, render
from shared.adapters.mail import (
    MailBackend,
    build_message,
    describe_failure,
    is_permanent_failure,
    mail_backend,
)
from shared.adapters.models import (
    Artist,
    Booking,
    Client,
    Notification,
    NotificationStatus,
    Refund,
    Service,
    StripeTransaction,
    TransactionKind,
)
from shared.adapters.runtime import Resources
from shared.domain import reminders
from shared.domain.deposits import CancelledBy, DepositStatus
from shared.domain.money import from_minor_units
from shared.domain.notifications import RECIPIENT_ROLES, NotificationKind, RecipientRole
from shared.domain.timeutil import utcnow
from shared.domain.transitions import BookingStatus
from shared.usecases import calendars
from shared.usecases.effects import Effects

log = logging.getLogger("inkflow.notifications")

# A PENDING row older than this is re-enqueued by the outbox sweeper (its task was lost, or
# ran out of retries); then at most once per this period per row.
REDELIVERY_AFTER = timedelta(minutes=5)
CHANNEL_EMAIL = "email"

SendOutcome = Literal["sent", "already-sent", "failed", "missing", "withdrawn"]


class TransientMailError(Exception):
    """Sending failed in a way worth retrying later (the row stays PENDING).

    The send task retries on this with backoff; the outbox sweeper picks the row up again
    if the retries run out.
    """

    def __init__(self, notification_id: uuid.UUID, reason: str) -> None:
        # Both values go to Exception.args so that the error pickles (Celery).
        super().__init__(notification_id, reason)
        self.notification_id = notification_id
        self.reason = reason

    def __str__(self) -> str:
        return f"notification {self.notification_id}: {self.reason}"


# -- outbox rows -------------------------------------------------------------------------------


def _outbox_insert(
    booking_id: uuid.UUID,
    kind: NotificationKind,
    recipients: list[str],
    occasion: str,
    previous_start: datetime | None,
) -> ReturningInsert[uuid.UUID, str]:
    """INSERT … ON CONFLICT DO NOTHING RETURNING id: one row per recipient, one round trip."""
    return (
        pg_insert(Notification)
        .values(
            [
                {
                    "id": uuid.uuid4(),
                    "booking_id": booking_id,
                    "kind": kind.value,
                    "channel": CHANNEL_EMAIL,
                    "recipient": recipient,
                    "occasion": occasion,
                    "previous_start_time": previous_start,
                    "status": NotificationStatus.PENDING.value,
                    "attempts": 0,
                }
                for recipient in recipients
            ]
        )
        .on_conflict_do_nothing(index_elements=["booking_id", "kind", "recipient", "occasion"])
        .returning(Notification.id, Notification.recipient)
    )


def add_notification(
    session: Session,
    booking: Booking,
    kind: NotificationKind,
    recipient: str,
    occasion: str = "",
    *,
    previous_start: datetime | None = None,
) -> uuid.UUID | None:
    """Add one PENDING e-mail to the outbox in the caller's transaction (no commit).

    Returns the new row's id, or None when (booking, kind, recipient, occasion) already
    has a row. `occasion` tells apart the emails of one kind that a booking may get more
    than once (each refund, each reschedule, each reminded start time). `previous_start`:
    the start a rescheduled booking moved from (its email shows both).
    """
    if booking.id is None:  # a new Booking gets its id when it is flushed
        session.flush()
    stmt = _outbox_insert(booking.id, kind, [recipient], occasion, previous_start)
    row = session.execute(stmt).first()
    return None if row is None else row[0]


def notify_booking(
    session: Session,
    booking: Booking,
    kind: NotificationKind,
    occasion: str = "",
    *,
    previous_start: datetime | None = None,
) -> list[uuid.UUID]:
    """Add the outbox rows `kind` calls for (see `RECIPIENT_ROLES`) in the caller's
    transaction, in one statement. Returns the ids of the rows that are new, in the
    order of the roles: after commit, enqueue one send task for each. An empty list
    means everything was already in the outbox."""
    client = session.get(Client, booking.client_id)
    artist = session.get(Artist, booking.artist_id)
    if client is None or artist is None:
        raise LookupError(f"booking {booking.id}: client or artist row is missing")
    if booking.id is None:  # a new Booking gets its id when it is flushed
        session.flush()
    emails: dict[RecipientRole, str] = {"client": client.email, "artist": artist.email}
    # One row per address (client and artist may share one: the client's mail).
    recipients = list(dict.fromkeys(emails[role] for role in RECIPIENT_ROLES[kind]))
    stmt = _outbox_insert(booking.id, kind, recipients, occasion, previous_start)
    added = {recipient: row_id for row_id, recipient in session.execute(stmt)}
    return [added[r] for r in recipients if r in added]


def pending_notification_ids(
    session: Session, older_than: timedelta, limit: int = 100
) -> list[uuid.UUID]:
    """PENDING rows created more than `older_than` ago, oldest first: the sweeper enqueues
    a send task for each (their first task may have been lost). Sending twice is safe."""
    return list(session.scalars(pending_query(older_than, limit)))


def pending_query(older_than: timedelta, limit: int) -> Select[uuid.UUID]:
    """The outbox sweeper's statement: ix_notifications_pending_created_at holds exactly
    the PENDING rows, so it reads a few entries however many mails were ever sent."""
    return (
        select(Notification.id)
        .where(
            Notification.status == NotificationStatus.PENDING.value,
            Notification.created_at < func.now() - older_than,
        )
        .order_by(Notification.created_at)
        .limit(limit)
    )


def redeliver_pending(
    resources: Resources,
    *,
    older_than: timedelta = REDELIVERY_AFTER,
    limit: int = 100,
) -> Effects:
    """The outbox sweeper: a send task for each PENDING row older than `older_than` (as
    Effects, which the caller runs).

    A row whose task is still retrying (SMTP down) is PENDING too; a Redis key per row
    (expiring after `older_than`) keeps the sweeper from piling up a new task for it on
    every run. Without Redis the row is enqueued anyway: a duplicate task is harmless.
    """
    with transaction(resources.sessions) as session:
        ids = pending_notification_ids(session, older_than, limit)
    due = claim_each(
        resources.redis, "inkflow:outbox:redelivered:", ids, int(older_than.total_seconds())
    )
    if due:
        log.info("re-enqueuing %d pending notifications", len(due))
    return Effects(mails=tuple(due))


# -- loading the context from the database -----------------------------------------------------


def context_from_rows(
    booking: Booking,
    client: Client,
    artist: Artist,
    service: Service,
    *,
    refunded_minor: int | None = None,
    previous_start_time: datetime | None = None,
) -> EmailContext:
    waiting = booking.status == BookingStatus.PENDING_PAYMENT
    return make_context(
        booking_id=booking.id,
        client_name=client.name,
        artist_name=artist.name,
        service_name=service.name,
        start_time=booking.start_time,
        end_time=booking.end_time,
        timezone=artist.timezone,
        deposit_amount=booking.deposit_amount,
        currency=booking.currency,
        hold_expires_at=booking.expires_at if waiting else None,
        refunded_amount=(
            None if refunded_minor is None else from_minor_units(refunded_minor, booking.currency)
        ),
        previous_start_time=previous_start_time,
        deposit_status=DepositStatus(booking.deposit_status),
        cancelled_by=CancelledBy(booking.cancelled_by) if booking.cancelled_by else None,
    )


@dataclass(frozen=True, slots=True)
class _Rows:
    booking: Booking
    client: Client
    artist: Artist
    service: Service


def _load_rows(session: Session, booking_id: uuid.UUID) -> _Rows:
    """The booking with its client, artist and service: one round trip."""
    row = session.execute(
        select(Booking, Client, Artist, Service)
        .join(Client, Client.id == Booking.client_id)
        .join(Artist, Artist.id == Booking.artist_id)
        .join(Service, Service.id == Booking.service_id)
        .where(Booking.id == booking_id)
    ).first()
    if row is None:
        if session.get(Booking, booking_id) is None:
            raise LookupError(f"booking {booking_id} not found")
        raise LookupError(f"booking {booking_id}: client, artist or service row is missing")
    booking, client, artist, service = row
    return _Rows(booking, client, artist, service)


def _refunded_minor(session: Session, note: Notification) -> int | None:
    """For a PAYMENT_REFUNDED e-mail: the amount of its refund (the occasion is the Stripe
    refund id) as the ledger records it, or as we asked for it while Stripe's answer is
    pending."""
    if note.kind != NotificationKind.PAYMENT_REFUNDED or not note.occasion:
        return None
    recorded = session.scalar(
        select(StripeTransaction.amount_minor).where(
            StripeTransaction.stripe_object_id == note.occasion,
            StripeTransaction.kind == TransactionKind.REFUND,
        )
    )
    if recorded is not None:
        return recorded
    return session.scalar(
        select(Refund.amount_minor).where(Refund.stripe_refund_id == note.occasion)
    )


def _role_of(kind: NotificationKind, recipient: str, rows: _Rows) -> RecipientRole:
    # The row stores the address, not the role (see RECIPIENT_ROLES for who gets which);
    # if client and artist share an address there is one row, and it gets the client's mail.
    address = recipient.casefold()
    if (
        "artist" in RECIPIENT_ROLES[kind]
        and address == rows.artist.email.casefold()
        and address != rows.client.email.casefold()
    ):
        return "artist"
    return "client"


# -- sending -----------------------------------------------------------------------------------


def _lock(session: Session, notification_id: uuid.UUID) -> Notification | None:
    stmt = select(Notification).where(Notification.id == notification_id).with_for_update()
    try:
        return session.execute(stmt).scalar_one_or_none()
    except OperationalError as error:
        if isinstance(error.orig, LockNotAvailable):
            # Another sender holds the row longer than our lock_timeout (a slow SMTP
            # server): retry later; by then the row is SENT or free again.
            raise TransientMailError(notification_id, "row locked by another sender") from error
        raise


def send_notification(
    resources: Resources,
    notification_id: uuid.UUID,
    backend: MailBackend | None = None,
    *,
    now: datetime | None = None,
) -> SendOutcome:
    """Send one outbox row, at most once (see the module docstring). Confirmation,
    reschedule, cancellation and reminder e-mails carry the booking's event as an
    iCalendar invitation (`shared.usecases.calendars`).

    Returns "sent", "already-sent" (SENT before: nothing sent), "failed" (refused for good
    now or earlier: row FAILED, not retried), "missing" (no such row) or "withdrawn" (a
    reminder about a start the booking no longer has, or of a booking no longer confirmed:
    the row is deleted, unsent). Raises `TransientMailError` when sending should be
    retried (row still PENDING, attempt counted).
    """
    now = now or utcnow()
    mailer = backend if backend is not None else mail_backend(resources.settings)
    transient: TransientMailError | None = None
    cause: BaseException | None = None
    with transaction(resources.sessions) as session:
        note = _lock(session, notification_id)
        if note is None:
            log.warning("notification %s not found; nothing to send", notification_id)
            return "missing"
        if note.status == NotificationStatus.SENT:
            return "already-sent"
        if note.status == NotificationStatus.FAILED:
            return "failed"
        kind = NotificationKind(note.kind)
        rows = _load_rows(session, note.booking_id)
        if kind == NotificationKind.REMINDER and not reminders.still_applies(
            rows.booking.status, rows.booking.start_time, note.occasion, now
        ):
            # Cancelled or moved since the reminder was queued (the new start has its own).
            # Deleted rather than kept as FAILED: nothing failed, and should the booking
            # come back to this start, its reminder is due again.
            session.delete(note)
            log.info("notification %s (reminder) withdrawn: %s", note.id, note.occasion)
            return "withdrawn"
        role = _role_of(kind, note.recipient, rows)
        context = context_from_rows(
            rows.booking,
            rows.client,
            rows.artist,
            rows.service,
            refunded_minor=_refunded_minor(session, note),
            previous_start_time=note.previous_start_time,
        )
        if role == "client":
            # Only the client's own e-mails carry the link that opens their booking.
            context = replace(
                context, booking_url=booking_links.url(resources.settings, rows.booking.id)
            )
        rendered = render(kind, role, context)
        invitation = calendars.invitation_for(
            kind, rows.booking, rows.client, rows.artist, rows.service, stamp=note.created_at
        )
        message = build_message(
            note.id, resources.settings.mail_from, note.recipient, rendered, invitation
        )
        note.attempts += 1
        try:
            mailer.send(message)
        except (smtplib.SMTPException, OSError) as error:
            # Recorded in this transaction (we still hold the lock), committed on exit.
            note.last_error = describe_failure(error)
            if is_permanent_failure(error):
                metrics.EMAILS.labels(kind.value, "failed").inc()
                note.status = NotificationStatus.FAILED.value
                log.warning(
                    "notification %s (%s) refused for good: %s",
                    note.id,
                    kind.value,
                    note.last_error,
                )
                return "failed"
            metrics.EMAILS.labels(kind.value, "retry").inc()
            transient, cause = TransientMailError(note.id, note.last_error), error
        else:
            metrics.EMAILS.labels(kind.value, "sent").inc()
            note.status = NotificationStatus.SENT.value
            note.sent_at = utcnow()
            log.info("notification %s (%s) sent", note.id, kind.value)
            return "sent"
    # Only the transient path gets here, after the attempt was committed.
    assert transient is not None
    log.warning("notification %s: transient failure: %s", notification_id, transient.reason)
    raise transient from cause

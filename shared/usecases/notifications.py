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

Rendering is pure (`render()`): Jinja2 templates in ``shared/templates/email`` produce a
subject, a plain-text body and an HTML body (autoescaped). Times are shown in the artist's
time zone, amounts in the booking's currency.
"""

from __future__ import annotations

import functools
import logging
import smtplib
import ssl
import uuid
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from email.message import EmailMessage
from email.utils import formatdate, parseaddr
from pathlib import Path
from typing import Literal, Protocol
from urllib.parse import parse_qs, unquote, urlsplit
from zoneinfo import ZoneInfo

import jinja2
import redis
from psycopg.errors import LockNotAvailable
from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from shared.adapters.db import transaction
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
from shared.config import Settings
from shared.domain.money import format_amount, from_minor_units
from shared.domain.notifications import NotificationKind
from shared.domain.timeutil import utcnow
from shared.domain.transitions import BookingStatus
from shared.usecases.effects import Effects

__all__ = [
    "RECIPIENT_ROLES",
    "REDELIVERY_AFTER",
    "SMTP_TIMEOUT_SECONDS",
    "TEMPLATE_DIR",
    "ConsoleBackend",
    "EmailContext",
    "MailBackend",
    "RecipientRole",
    "RenderedEmail",
    "SendOutcome",
    "SmtpBackend",
    "TransientMailError",
    "add_notification",
    "build_message",
    "context_from_rows",
    "format_deposit",
    "format_local_time",
    "is_permanent_failure",
    "mail_backend",
    "make_context",
    "message_id_for",
    "notify_booking",
    "pending_notification_ids",
    "redeliver_pending",
    "render",
    "send_notification",
    "template_name",
]

log = logging.getLogger("inkflow.notifications")
mail_log = logging.getLogger("inkflow.mail")

TEMPLATE_DIR = Path(__file__).resolve().parents[1] / "templates" / "email"
SMTP_TIMEOUT_SECONDS = 10.0
# A PENDING row older than this is re-enqueued by the outbox sweeper (its task was lost, or
# ran out of retries); then at most once per this period per row.
REDELIVERY_AFTER = timedelta(minutes=5)
CHANNEL_EMAIL = "email"
_LAST_ERROR_MAX = 1000

RecipientRole = Literal["client", "artist"]
SendOutcome = Literal["sent", "already-sent", "failed", "missing"]

# Who hears about what. Order is the order rows are added (and ids returned).
RECIPIENT_ROLES: dict[NotificationKind, tuple[RecipientRole, ...]] = {
    NotificationKind.BOOKING_CONFIRMED: ("client", "artist"),
    NotificationKind.PAYMENT_FAILED: ("client",),
    NotificationKind.HOLD_EXPIRED: ("client",),
    NotificationKind.PAYMENT_REFUNDED: ("client",),
    NotificationKind.BOOKING_CANCELLED: ("client", "artist"),
    NotificationKind.BOOKING_RESCHEDULED: ("client", "artist"),
    NotificationKind.REMINDER: ("client",),
    NotificationKind.NO_SHOW_RECORDED: ("client",),
}

# Template base names: NAME.subject.txt, NAME.txt and NAME.html in TEMPLATE_DIR.
_TEMPLATES: dict[tuple[NotificationKind, RecipientRole], str] = {
    (NotificationKind.BOOKING_CONFIRMED, "client"): "booking_confirmed_client",
    (NotificationKind.BOOKING_CONFIRMED, "artist"): "booking_confirmed_artist",
    (NotificationKind.PAYMENT_FAILED, "client"): "payment_failed",
    (NotificationKind.HOLD_EXPIRED, "client"): "hold_expired",
    (NotificationKind.PAYMENT_REFUNDED, "client"): "payment_refunded",
    (NotificationKind.BOOKING_CANCELLED, "client"): "booking_cancelled_client",
    (NotificationKind.BOOKING_CANCELLED, "artist"): "booking_cancelled_artist",
    (NotificationKind.BOOKING_RESCHEDULED, "client"): "booking_rescheduled_client",
    (NotificationKind.BOOKING_RESCHEDULED, "artist"): "booking_rescheduled_artist",
    (NotificationKind.REMINDER, "client"): "reminder",
    (NotificationKind.NO_SHOW_RECORDED, "client"): "no_show_recorded",
}


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


def add_notification(
    session: Session,
    booking: Booking,
    kind: NotificationKind,
    recipient: str,
    occasion: str = "",
) -> uuid.UUID | None:
    """Add one PENDING e-mail to the outbox in the caller's transaction (no commit).

    Returns the new row's id, or None when (booking, kind, recipient, occasion) already
    has a row. `occasion` tells apart the emails of one kind that a booking may get more
    than once (each refund, each reschedule, each reminded start time).
    """
    if booking.id is None:  # a new Booking gets its id when it is flushed
        session.flush()
    stmt = (
        pg_insert(Notification)
        .values(
            id=uuid.uuid4(),
            booking_id=booking.id,
            kind=kind.value,
            channel=CHANNEL_EMAIL,
            recipient=recipient,
            occasion=occasion,
            status=NotificationStatus.PENDING.value,
            attempts=0,
        )
        .on_conflict_do_nothing(index_elements=["booking_id", "kind", "recipient", "occasion"])
        .returning(Notification.id)
    )
    return session.execute(stmt).scalar_one_or_none()


def notify_booking(
    session: Session, booking: Booking, kind: NotificationKind, occasion: str = ""
) -> list[uuid.UUID]:
    """Add the outbox rows `kind` calls for (see `RECIPIENT_ROLES`) in the caller's
    transaction. Returns the ids of the rows that are new: after commit, enqueue one send
    task for each. An empty list means everything was already in the outbox."""
    client = session.get(Client, booking.client_id)
    artist = session.get(Artist, booking.artist_id)
    if client is None or artist is None:
        raise LookupError(f"booking {booking.id}: client or artist row is missing")
    emails: dict[RecipientRole, str] = {"client": client.email, "artist": artist.email}
    added: list[uuid.UUID] = []
    for role in RECIPIENT_ROLES[kind]:
        new_id = add_notification(session, booking, kind, emails[role], occasion)
        if new_id is not None:
            added.append(new_id)
    return added


def pending_notification_ids(
    session: Session, older_than: timedelta, limit: int = 100
) -> list[uuid.UUID]:
    """PENDING rows created more than `older_than` ago, oldest first: the sweeper enqueues
    a send task for each (their first task may have been lost). Sending twice is safe."""
    stmt = (
        select(Notification.id)
        .where(
            Notification.status == NotificationStatus.PENDING.value,
            Notification.created_at < func.now() - older_than,
        )
        .order_by(Notification.created_at)
        .limit(limit)
    )
    return list(session.scalars(stmt))


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
    ttl = max(1, int(older_than.total_seconds()))
    due: list[uuid.UUID] = []
    for note_id in ids:
        try:
            fresh = resources.redis.set(f"inkflow:outbox:redelivered:{note_id}", 1, nx=True, ex=ttl)
        except redis.RedisError:
            fresh = True
        if fresh:
            due.append(note_id)
    if due:
        log.info("re-enqueuing %d pending notifications", len(due))
    return Effects(mails=tuple(due))


# -- rendering (pure) --------------------------------------------------------------------------

_DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_MONTHS = (
    "January", "February", "March", "April", "May", "June",
    "July", "August", "September", "October", "November", "December",
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class EmailContext:
    """What the templates see: display strings only, already formatted."""

    booking_id: str
    client_name: str
    artist_name: str
    service_name: str
    start: str  # "Tuesday 5 May 2026, 14:00 (Europe/Paris)"
    deposit: str  # "50.00 EUR"
    hold_expires: str | None = None  # while the booking waits for its deposit
    # PAYMENT_REFUNDED: the refund's amount, when it is not the whole deposit ("15.00 EUR").
    refunded: str | None = None


@dataclass(frozen=True, slots=True)
class RenderedEmail:
    subject: str
    text: str
    html: str


def format_local_time(moment: datetime, timezone: str) -> str:
    """Wall-clock time in `timezone`, spelled out in English (independent of the locale):
    "Tuesday 5 May 2026, 14:00 (Europe/Paris)"."""
    if moment.tzinfo is None:
        raise ValueError("naive datetime")
    local = moment.astimezone(ZoneInfo(timezone))
    return (
        f"{_DAYS[local.weekday()]} {local.day} {_MONTHS[local.month - 1]} {local.year}, "
        f"{local:%H:%M} ({timezone})"
    )


def format_deposit(amount: Decimal, currency: str) -> str:
    """ "50.00 EUR", "5000 JPY": the currency's own number of decimals."""
    return f"{format_amount(amount, currency)} {currency.upper()}"


def make_context(
    *,
    booking_id: uuid.UUID | str,
    client_name: str,
    artist_name: str,
    service_name: str,
    start_time: datetime,
    timezone: str,
    deposit_amount: Decimal,
    currency: str,
    hold_expires_at: datetime | None = None,
    refunded_amount: Decimal | None = None,
) -> EmailContext:
    """Format plain values for the templates (times in the artist's `timezone`)."""
    partial = refunded_amount is not None and refunded_amount != deposit_amount
    return EmailContext(
        booking_id=str(booking_id),
        client_name=client_name,
        artist_name=artist_name,
        service_name=service_name,
        start=format_local_time(start_time, timezone),
        deposit=format_deposit(deposit_amount, currency),
        hold_expires=(
            format_local_time(hold_expires_at, timezone) if hold_expires_at is not None else None
        ),
        refunded=format_deposit(refunded_amount, currency) if refunded_amount and partial else None,
    )


@functools.cache
def _environment() -> jinja2.Environment:
    # Built on first use, not at import. Autoescape for .html only: subjects and text
    # bodies are plain text and must not contain HTML entities.
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATE_DIR),
        autoescape=jinja2.select_autoescape(
            enabled_extensions=("html",), default_for_string=False, default=False
        ),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def template_name(kind: NotificationKind, role: RecipientRole) -> str:
    try:
        return _TEMPLATES[(kind, role)]
    except KeyError:
        raise ValueError(f"no {role} e-mail for {kind.value}") from None


def render(
    kind: NotificationKind, recipient_role: RecipientRole, context: EmailContext
) -> RenderedEmail:
    """Subject, plain-text and HTML body for one recipient. Pure: no database, no clock."""
    name = template_name(kind, recipient_role)
    env = _environment()
    values: dict[str, object] = asdict(context)
    # One line, whatever the template's whitespace: a header cannot hold newlines.
    subject = " ".join(env.get_template(f"{name}.subject.txt").render(values).split())
    values["subject"] = subject
    text = env.get_template(f"{name}.txt").render(values).strip() + "\n"
    html = env.get_template(f"{name}.html").render(values).strip() + "\n"
    return RenderedEmail(subject=subject, text=text, html=html)


# -- loading the context from the database -----------------------------------------------------


def context_from_rows(
    booking: Booking,
    client: Client,
    artist: Artist,
    service: Service,
    *,
    refunded_minor: int | None = None,
) -> EmailContext:
    waiting = booking.status == BookingStatus.PENDING_PAYMENT
    return make_context(
        booking_id=booking.id,
        client_name=client.name,
        artist_name=artist.name,
        service_name=service.name,
        start_time=booking.start_time,
        timezone=artist.timezone,
        deposit_amount=booking.deposit_amount,
        currency=booking.currency,
        hold_expires_at=booking.expires_at if waiting else None,
        refunded_amount=(
            None if refunded_minor is None else from_minor_units(refunded_minor, booking.currency)
        ),
    )


@dataclass(frozen=True, slots=True)
class _Rows:
    booking: Booking
    client: Client
    artist: Artist
    service: Service


def _load_rows(session: Session, booking_id: uuid.UUID) -> _Rows:
    booking = session.get(Booking, booking_id)
    if booking is None:
        raise LookupError(f"booking {booking_id} not found")
    client = session.get(Client, booking.client_id)
    artist = session.get(Artist, booking.artist_id)
    service = session.get(Service, booking.service_id)
    if client is None or artist is None or service is None:
        raise LookupError(f"booking {booking_id}: client, artist or service row is missing")
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


# -- messages and backends ---------------------------------------------------------------------


def message_id_for(notification_id: uuid.UUID, sender: str) -> str:
    """Deterministic Message-ID: a resent row carries the same one, so receivers that
    de-duplicate by Message-ID drop the copy. The domain is the sender's."""
    address = parseaddr(sender)[1]
    domain = address.rpartition("@")[2] if "@" in address else ""
    return f"<notification-{notification_id}@{domain or 'inkflow.local'}>"


def build_message(
    notification_id: uuid.UUID, sender: str, recipient: str, rendered: RenderedEmail
) -> EmailMessage:
    """multipart/alternative: text/plain first, text/html preferred by capable clients."""
    message = EmailMessage()
    message["Subject"] = rendered.subject
    message["From"] = sender
    message["To"] = recipient
    message["Date"] = formatdate(usegmt=True)
    message["Message-ID"] = message_id_for(notification_id, sender)
    message["Auto-Submitted"] = "auto-generated"  # RFC 3834: no auto-replies, please
    message["X-Inkflow-Notification-Id"] = str(notification_id)
    message.set_content(rendered.text)
    message.add_alternative(rendered.html, subtype="html")
    return message


class MailBackend(Protocol):
    def send(self, message: EmailMessage) -> None:
        """Deliver `message` or raise (smtplib.SMTPException / OSError)."""


class ConsoleBackend:
    """Development backend (no SMTP_URL): logs the message on "inkflow.mail" at INFO."""

    def send(self, message: EmailMessage) -> None:
        body = message.get_body(preferencelist=("plain",))
        text = str(body.get_content()) if body is not None else ""
        mail_log.info("mail to %s: %s\n%s", message.get("To", ""), message.get("Subject", ""), text)


_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


class SmtpBackend:
    """SMTP through the standard library. URL forms::

        smtp://host:port                   plain SMTP (port 25 by default)
        smtp://user:pass@host:port         with AUTH (user and password percent-decoded)
        smtp://host:587?starttls=true      upgraded with STARTTLS (port 587 by default)
        smtps://user:pass@host:465         implicit TLS (port 465 by default)

    One connection per message, `timeout` seconds per socket operation.
    """

    def __init__(self, url: str, *, timeout: float = SMTP_TIMEOUT_SECONDS) -> None:
        # Error messages never repeat the URL: it may hold a password.
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in ("smtp", "smtps"):
            raise ValueError("SMTP_URL must start with smtp:// or smtps://")
        if not parts.hostname:
            raise ValueError("SMTP_URL has no host")
        query = parse_qs(parts.query, keep_blank_values=True)
        unknown = sorted(set(query) - {"starttls"})
        if unknown:
            raise ValueError(f"SMTP_URL has unknown parameter(s): {', '.join(unknown)}")
        starttls = False
        if "starttls" in query:
            flag = query["starttls"][-1].lower()
            if flag not in _TRUE | _FALSE:
                raise ValueError("SMTP_URL starttls must be true or false")
            starttls = flag in _TRUE
        if scheme == "smtps" and starttls:
            raise ValueError("SMTP_URL: smtps:// already uses TLS; drop starttls")
        try:
            port = parts.port
        except ValueError:
            raise ValueError("SMTP_URL has an invalid port") from None
        self.host: str = parts.hostname
        self.implicit_tls = scheme == "smtps"
        self.starttls = starttls
        self.port: int = port or (465 if self.implicit_tls else 587 if starttls else 25)
        self.username = unquote(parts.username) if parts.username else None
        self._password = unquote(parts.password) if parts.password else ""
        self.timeout = timeout

    def __repr__(self) -> str:
        mode = "smtps" if self.implicit_tls else "smtp+starttls" if self.starttls else "smtp"
        auth = f"{self.username}:***@" if self.username else ""
        return f"SmtpBackend({mode}://{auth}{self.host}:{self.port})"

    def _connect(self) -> smtplib.SMTP:
        if self.implicit_tls:
            return smtplib.SMTP_SSL(
                self.host, self.port, timeout=self.timeout, context=ssl.create_default_context()
            )
        return smtplib.SMTP(self.host, self.port, timeout=self.timeout)

    def send(self, message: EmailMessage) -> None:
        with self._connect() as smtp:
            if self.starttls:
                smtp.starttls(context=ssl.create_default_context())
            if self.username:
                smtp.login(self.username, self._password)
            refused = smtp.send_message(message)
            if refused:  # some recipients refused, others accepted: report as a refusal
                raise smtplib.SMTPRecipientsRefused(refused)


def mail_backend(settings: Settings) -> MailBackend:
    """SMTP when SMTP_URL is set, else the console. Raises ValueError on a malformed URL:
    call it at start-up to fail early."""
    if settings.smtp_url:
        return SmtpBackend(settings.smtp_url)
    return ConsoleBackend()


# -- sending -----------------------------------------------------------------------------------


def is_permanent_failure(error: BaseException) -> bool:
    """True for a 5xx refusal of the recipient(s), of the sender or of the message: sending
    the same message again would fail again. Everything else (4xx replies, AUTH and TLS
    problems, connection errors, timeouts) is transient."""
    if isinstance(error, smtplib.SMTPRecipientsRefused):
        codes = [code for code, _ in error.recipients.values()]
        return bool(codes) and all(code >= 500 for code in codes)
    if isinstance(error, smtplib.SMTPSenderRefused | smtplib.SMTPDataError):
        return error.smtp_code >= 500
    return False


def _describe(error: BaseException) -> str:
    if isinstance(error, smtplib.SMTPRecipientsRefused):
        text = "; ".join(
            f"{address}: {code} {reply.decode(errors='replace')}"
            for address, (code, reply) in error.recipients.items()
        )
        return f"recipient refused: {text}"[:_LAST_ERROR_MAX]
    if isinstance(error, smtplib.SMTPResponseException):
        reply = error.smtp_error
        message = reply.decode(errors="replace") if isinstance(reply, bytes) else str(reply)
        return f"{type(error).__name__}: {error.smtp_code} {message}"[:_LAST_ERROR_MAX]
    return f"{type(error).__name__}: {error}"[:_LAST_ERROR_MAX]


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
    resources: Resources, notification_id: uuid.UUID, backend: MailBackend | None = None
) -> SendOutcome:
    """Send one outbox row, at most once (see the module docstring).

    Returns "sent", "already-sent" (SENT before: nothing sent), "failed" (refused for good
    now or earlier: row FAILED, not retried) or "missing" (no such row). Raises
    `TransientMailError` when sending should be retried (row still PENDING, attempt counted).
    """
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
        rendered = render(
            kind,
            _role_of(kind, note.recipient, rows),
            context_from_rows(
                rows.booking,
                rows.client,
                rows.artist,
                rows.service,
                refunded_minor=_refunded_minor(session, note),
            ),
        )
        message = build_message(note.id, resources.settings.mail_from, note.recipient, rendered)
        note.attempts += 1
        try:
            mailer.send(message)
        except (smtplib.SMTPException, OSError) as error:
            # Recorded in this transaction (we still hold the lock), committed on exit.
            note.last_error = _describe(error)
            if is_permanent_failure(error):
                note.status = NotificationStatus.FAILED.value
                log.warning(
                    "notification %s (%s) refused for good: %s",
                    note.id,
                    kind.value,
                    note.last_error,
                )
                return "failed"
            transient, cause = TransientMailError(note.id, note.last_error), error
        else:
            note.status = NotificationStatus.SENT.value
            note.sent_at = utcnow()
            log.info("notification %s (%s) sent", note.id, kind.value)
            return "sent"
    # Only the transient path gets here, after the attempt was committed.
    assert transient is not None
    log.warning("notification %s: transient failure: %s", notification_id, transient.reason)
    raise transient from cause

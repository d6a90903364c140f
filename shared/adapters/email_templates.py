"""E-mail content: Jinja2 templates in ``shared/templates/email`` render a subject, a
plain-text body and an HTML body (autoescaped) from display strings. Times are shown in
the artist's time zone, amounts in the booking's currency. No database, no clock: the
outbox (`shared.usecases.notifications`) loads the values and calls `render()`."""

from __future__ import annotations

import functools
import uuid
from dataclasses import asdict, dataclass
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo

import jinja2

from shared.domain.deposits import CancelledBy, DepositStatus
from shared.domain.money import format_amount
from shared.domain.notifications import NotificationKind, RecipientRole

TEMPLATE_DIR = Path(__file__).resolve().parents[1] / "templates" / "email"

DepositOutcome = Literal["refunded", "kept"]
CancelledByRole = Literal["client", "artist", "platform"]

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
    # Start and end, when the end is known: "Tuesday 5 May 2026, 14:00–15:30 (Europe/Paris)".
    when: str | None = None
    deposit_paid: bool = False  # the client paid the deposit and it is kept toward the price
    hold_expires: str | None = None  # while the booking waits for its deposit
    # PAYMENT_REFUNDED: the refund's amount, when it is not the whole deposit ("15.00 EUR").
    refunded: str | None = None
    previous_start: str | None = None  # a rescheduled booking's former start
    # What became of the deposit of a cancelled booking: "refunded", "kept" or None (no
    # deposit was paid).
    deposit_outcome: DepositOutcome | None = None
    # A cancelled booking: "client", "artist" (the artist or the operator for them) or
    # "platform"; None otherwise.
    cancelled_by: CancelledByRole | None = None
    # The client's signed link to the booking's page (follow, cancel, move); None in the
    # artist's e-mails and while the web pages are off.
    booking_url: str | None = None


@dataclass(frozen=True, slots=True)
class RenderedEmail:
    subject: str
    text: str
    html: str


def _local(moment: datetime, timezone: str) -> datetime:
    if moment.tzinfo is None:
        raise ValueError("naive datetime")
    return moment.astimezone(ZoneInfo(timezone))


def _day(local: datetime) -> str:
    return f"{_DAYS[local.weekday()]} {local.day} {_MONTHS[local.month - 1]} {local.year}"


def format_local_time(moment: datetime, timezone: str) -> str:
    """Wall-clock time in `timezone`, spelled out in English (independent of the locale):
    "Tuesday 5 May 2026, 14:00 (Europe/Paris)"."""
    local = _local(moment, timezone)
    return f"{_day(local)}, {local:%H:%M} ({timezone})"


def format_local_span(start: datetime, end: datetime, timezone: str) -> str:
    """ "Tuesday 5 May 2026, 14:00–15:30 (Europe/Paris)" (the start's day)."""
    local_start, local_end = _local(start, timezone), _local(end, timezone)
    return f"{_day(local_start)}, {local_start:%H:%M}–{local_end:%H:%M} ({timezone})"


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
    end_time: datetime | None = None,
    hold_expires_at: datetime | None = None,
    refunded_amount: Decimal | None = None,
    previous_start_time: datetime | None = None,
    deposit_status: DepositStatus | None = None,
    cancelled_by: CancelledBy | None = None,
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
        when=format_local_span(start_time, end_time, timezone) if end_time is not None else None,
        deposit_paid=deposit_status == DepositStatus.PAID,
        hold_expires=(
            format_local_time(hold_expires_at, timezone) if hold_expires_at is not None else None
        ),
        refunded=format_deposit(refunded_amount, currency) if refunded_amount and partial else None,
        previous_start=(
            format_local_time(previous_start_time, timezone)
            if previous_start_time is not None
            else None
        ),
        deposit_outcome=_DEPOSIT_OUTCOMES.get(deposit_status) if deposit_status else None,
        cancelled_by=_CANCELLED_BY_ROLES[cancelled_by] if cancelled_by else None,
    )


# What a client is told of their deposit: a refund owed is a refund promised (an operator
# sees to one that failed).
_DEPOSIT_OUTCOMES: dict[DepositStatus, DepositOutcome] = {
    DepositStatus.REFUND_PENDING: "refunded",
    DepositStatus.REFUNDED: "refunded",
    DepositStatus.PARTIALLY_REFUNDED: "refunded",
    DepositStatus.REFUND_FAILED: "refunded",
    DepositStatus.FORFEITED: "kept",
}
_CANCELLED_BY_ROLES: dict[CancelledBy, CancelledByRole] = {
    CancelledBy.CLIENT: "client",
    CancelledBy.ARTIST: "artist",
    CancelledBy.OPERATOR: "artist",
    CancelledBy.SYSTEM: "platform",
}


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
    return _render(template_name(kind, recipient_role), asdict(context))


@dataclass(frozen=True, slots=True)
class SigninContext:
    """The dashboard's sign-in e-mail (`shared.usecases.signin`)."""

    artist_name: str
    link: str  # PUBLIC_BASE_URL/dashboard/signin/<token>
    expires: str  # "Tuesday 5 May 2026, 14:15 (Europe/Paris)"


SIGNIN_TEMPLATE = "signin_link"


def render_signin(context: SigninContext) -> RenderedEmail:
    return _render(SIGNIN_TEMPLATE, asdict(context))


def _render(name: str, values: dict[str, object]) -> RenderedEmail:
    env = _environment()
    # One line, whatever the template's whitespace: a header cannot hold newlines.
    subject = " ".join(env.get_template(f"{name}.subject.txt").render(values).split())
    values["subject"] = subject
    text = env.get_template(f"{name}.txt").render(values).strip() + "\n"
    html = env.get_template(f"{name}.html").render(values).strip() + "\n"
    return RenderedEmail(subject=subject, text=text, html=html)

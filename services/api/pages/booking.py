"""The client's pages: `/book/{artistId}` (service → day → free slot → name and e-mail →
deposit) and `/booking/{id}` (follow it to CONFIRMED, the policy in words, cancel and
reschedule).

Every step is a plain form or link answered on the server, so booking works without
JavaScript; the script (static/inkflow.js) adds the payment form's call to Stripe (or
the local emulator) and polling. Handlers are thin: availability, booking creation,
cancel and reschedule are the JSON API's use cases.

Who may open `/booking/{id}`: the browser that booked it (its id is put in the signed
session cookie) or the holder of the signed link sent by e-mail
(shared/adapters/booking_links.py), which puts it in the session too. Anyone else gets
403, whatever bearer token they show.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from flask import flash, redirect, request, session, url_for
from sqlalchemy import select
from werkzeug.wrappers import Response as BaseResponse

from services.api.errors import HTTP_STATUS
from services.api.pages import web
from services.api.state import state, unit_of_work
from shared.adapters import booking_links
from shared.adapters.email_templates import format_deposit
from shared.adapters.models import Artist, Booking, Refund, Service
from shared.adapters.payments import PaymentProviderError
from shared.config import Settings
from shared.domain import policy as rules
from shared.domain.access import Access, Guard, Principal, guard
from shared.domain.errors import DomainError, ErrorCode
from shared.domain.money import from_minor_units
from shared.domain.transitions import BookingStatus
from shared.usecases import catalog
from shared.usecases.booking import BookingRequest
from shared.usecases.catalog import get_or_404
from shared.usecases.lifecycle import RescheduleRequest
from shared.usecases.schedule import AvailabilityQuery, compute, deposit_policy_of, resolve

bp = web.page_blueprint("booking_pages", __name__, prefixes=("/book/", "/booking/"))

DAYS_SHOWN = 14
# The bookings this browser may open: {booking id: its client id}. Bounded, newest last.
SESSION_KEY = "bookings"
SESSION_MAX = 20
MAX_NAME = 200
MAX_EMAIL = 320
# Errors a booking form answers on the page itself, keeping what was typed.
FORM_ERRORS = frozenset(
    {
        ErrorCode.SLOT_TAKEN,
        ErrorCode.SLOT_UNAVAILABLE,
        ErrorCode.STRIPE_NOT_CONFIGURED,
        ErrorCode.PAYMENT_PROVIDER_ERROR,
        ErrorCode.RATE_LIMITED,
        ErrorCode.POLICY_VIOLATION,
        ErrorCode.VALIDATION_ERROR,
        ErrorCode.INVALID_STATE,
    }
)
# Card numbers the emulator's test card form lists as hints.
TEST_CARDS = (
    ("4242 4242 4242 4242", "pays"),
    ("4000 0000 0000 0002", "is declined"),
    ("4000 0000 0000 9995", "is declined: insufficient funds"),
)
EMULATOR_PUBLISHABLE_KEY = "pk_test_inkflow_emulator"


# --------------------------------------------------------------------------- presenting


@dataclass(frozen=True, slots=True)
class DayChoice:
    day: date
    free: int

    @property
    def iso(self) -> str:
        return self.day.isoformat()

    @property
    def label(self) -> str:
        return f"{self.day:%a %-d %b}"


@dataclass(frozen=True, slots=True)
class SlotChoice:
    start: datetime
    end: datetime
    tz: ZoneInfo

    @property
    def value(self) -> str:
        return self.start.isoformat()

    @property
    def label(self) -> str:
        return f"{self.start.astimezone(self.tz):%H:%M}–{self.end.astimezone(self.tz):%H:%M}"


def local_time(moment: datetime, tz: ZoneInfo) -> str:
    return f"{moment.astimezone(tz):%A %-d %B %Y, %H:%M}"


def _hours(n: int) -> str:
    return f"{n} hour" if n == 1 else f"{n} hours"


def policy_in_words(policy: rules.DepositPolicy) -> list[str]:
    """The artist's deposit policy as a client reads it (docs/policy.md)."""
    said = []
    if policy.refund_window_hours is None:
        said.append("The deposit is not refunded if you cancel.")
    else:
        said.append(
            "Cancel at least "
            f"{_hours(policy.refund_window_hours)} before the start and your deposit is "
            "refunded in full; later, the artist keeps it."
        )
    if policy.max_reschedules == 0:
        said.append("Bookings cannot be moved.")
    else:
        times = "once" if policy.max_reschedules == 1 else f"{policy.max_reschedules} times"
        said.append(
            f"You may move the booking {times}, at least "
            f"{_hours(policy.reschedule_notice_hours)} before it starts; the deposit moves "
            "with it."
        )
    said.append("The deposit counts toward the price of the tattoo.")
    if policy.no_show_limit:
        said.append(
            f"After {policy.no_show_limit} missed appointment(s) the artist takes no more "
            "bookings from you."
        )
    return said


def payment_mode(settings: Settings) -> str:
    """How the page takes the deposit: "emulator" (the local Stripe emulator: a test card
    form), "stripe" (Stripe.js's Payment Element) or "none" (no publishable key)."""
    if settings.stripe_api_base:
        return "emulator"
    if (settings.stripe_publishable_key or "").startswith("pk_"):
        return "stripe"
    return "none"


# --------------------------------------------------------------------------- the session


def _allowed() -> dict[str, str]:
    found = session.get(SESSION_KEY)
    return dict(found) if isinstance(found, dict) else {}


def _remember(booking_id: uuid.UUID, client_id: uuid.UUID) -> None:
    allowed = _allowed()
    allowed.pop(str(booking_id), None)
    allowed[str(booking_id)] = str(client_id)
    session[SESSION_KEY] = dict(list(allowed.items())[-SESSION_MAX:])


def _client_allowed(booking_id: str) -> uuid.UUID:
    """The client this browser acts as for this booking; 403 when it may not open it."""
    client_id = _allowed().get(booking_id)
    if client_id is None:
        raise DomainError(ErrorCode.FORBIDDEN)
    return uuid.UUID(client_id)


def _as_client(booking_id: str) -> Guard:
    """The lifecycle's guard for this booking's client (the JSON API's CLIENT rule)."""
    return guard(Principal.client(_client_allowed(booking_id)), Access.CLIENT)


# --------------------------------------------------------------------------- /book


@dataclass(frozen=True, slots=True)
class Choices:
    artist: Artist
    tz: ZoneInfo
    services: list[Service]
    service: Service | None
    days: list[DayChoice]
    day: date | None
    slots: list[SlotChoice]


def _parse_start(raw: str | None) -> datetime | None:
    """A slot's start as the forms send it (ISO 8601 with an offset)."""
    try:
        moment = datetime.fromisoformat(raw or "")
    except ValueError:
        return None
    return moment if moment.utcoffset() is not None else None


def _parse_day(raw: str | None) -> date | None:
    try:
        return date.fromisoformat(raw) if raw else None
    except ValueError:
        return None


def _free_slots(
    artist: Artist, service: Service, now: datetime, first: date, days: int
) -> tuple[list[DayChoice], dict[date, list[SlotChoice]]]:
    """The free slots of `days` local days from `first`, by day: the availability use
    case, as POST /api/availability answers it."""
    tz = ZoneInfo(artist.timezone)
    start = datetime.combine(first, time(0), tz)
    end = datetime.combine(first + timedelta(days=days), time(0), tz)
    with unit_of_work() as db:
        query = AvailabilityQuery(
            artist_id=str(artist.id),
            start=start,
            end=end,
            duration_min=None,
            service_id=str(service.id),
        )
        answer = compute(db, resolve(db, query), now=now)
    by_day: dict[date, list[SlotChoice]] = {}
    for slot in answer.slots:
        if slot.available:
            local_day = slot.start.astimezone(tz).date()
            by_day.setdefault(local_day, []).append(SlotChoice(slot.start, slot.end, tz))
    choices = [
        DayChoice(first + timedelta(days=n), len(by_day.get(first + timedelta(days=n), [])))
        for n in range(days)
    ]
    return choices, by_day


def _choices(artist_id: str, service_id: str | None, day: str | None) -> Choices:
    now = state().clock()
    with unit_of_work() as db:
        artist = get_or_404(db, Artist, artist_id)
        services = [s for s in catalog.list_services(db, str(artist.id)) if s.active]
    tz = ZoneInfo(artist.timezone)
    service = next((s for s in services if str(s.id) == service_id), None)
    if service is None and len(services) == 1:
        service = services[0]
    days: list[DayChoice] = []
    slots: list[SlotChoice] = []
    chosen = _parse_day(day)
    if service is not None:
        days, by_day = _free_slots(artist, service, now, now.astimezone(tz).date(), DAYS_SHOWN)
        if chosen is not None and chosen not in {d.day for d in days}:
            chosen = None
        slots = by_day.get(chosen, []) if chosen else []
    return Choices(artist, tz, services, service, days, chosen, slots)


def _book_page(
    artist_id: str,
    service_id: str | None,
    day: str | None,
    *,
    values: Mapping[str, str] | None = None,
    errors: Mapping[str, str] | None = None,
    problem: str | None = None,
    status: int = 200,
) -> BaseResponse:
    choices = _choices(artist_id, service_id, day)
    return web.render(
        "pages/book.html",
        status,
        c=choices,
        values=values or {},
        errors=errors or {},
        problem=problem,
        deposit=(
            format_deposit(choices.service.deposit_amount, choices.service.currency)
            if choices.service
            else None
        ),
        format_deposit=format_deposit,
    )


@bp.get("/book/<artist_id>")
def book(artist_id: str) -> BaseResponse:
    return _book_page(artist_id, request.args.get("service"), request.args.get("day"))


def _check_details(form: Mapping[str, str]) -> dict[str, str]:
    errors = {}
    name = form.get("name", "").strip()
    email = form.get("email", "").strip()
    if not name:
        errors["name"] = "Enter your name."
    elif len(name) > MAX_NAME:
        errors["name"] = f"Use at most {MAX_NAME} characters."
    local, at, domain = email.rpartition("@")
    if not (at and local and "." in domain.strip(".")) or len(email) > MAX_EMAIL:
        errors["email"] = "Enter an e-mail address like name@example.com."
    if not form.get("start"):
        errors["start"] = "Choose a time."
    return errors


@bp.post("/book/<artist_id>")
def hold(artist_id: str) -> BaseResponse:
    current = state()
    form = {k: request.form.get(k, "") for k in ("service", "day", "start", "name", "email")}
    errors = _check_details(form)
    start = _parse_start(form["start"])
    if start is None and "start" not in errors:
        errors["start"] = "Choose a time."
    if errors or start is None:
        return _book_page(
            artist_id, form["service"], form["day"], values=form, errors=errors, status=400
        )
    with unit_of_work() as db:
        artist = get_or_404(db, Artist, artist_id)
        client = catalog.find_or_create_client(db, email=form["email"], name=form["name"])
        client_id = client.id
    try:
        created = current.bookings.create(
            BookingRequest(
                client_id=str(client_id),
                artist_id=str(artist.id),
                service_id=form["service"],
                start_time=start,
            ),
            now=current.clock(),
        )
    except DomainError as refused:
        if refused.code not in FORM_ERRORS:
            raise
        return _book_page(
            artist_id,
            form["service"],
            form["day"],
            values=form,
            problem=web.message_for(refused),
            status=HTTP_STATUS[refused.code],
        )
    _remember(created.booking.id, client_id)
    return redirect(url_for(".booking", booking_id=created.booking.id), 303)


# --------------------------------------------------------------------------- /booking


@dataclass(frozen=True, slots=True)
class Seen:
    """A booking as its page shows it."""

    booking: Booking
    artist: Artist
    service: Service
    refunds: list[Refund]
    tz: ZoneInfo
    policy: rules.DepositPolicy


def _load(booking_id: str) -> Seen:
    with unit_of_work() as db:
        booking = get_or_404(db, Booking, booking_id)
        artist = get_or_404(db, Artist, booking.artist_id)
        service = get_or_404(db, Service, booking.service_id)
        refunds = list(
            db.scalars(
                select(Refund).where(Refund.booking_id == booking.id).order_by(Refund.created_at)
            )
        )
    return Seen(
        booking, artist, service, refunds, ZoneInfo(artist.timezone), deposit_policy_of(artist)
    )


def _opened_by_link(booking_id: str) -> BaseResponse | None:
    """A signed link from an e-mail: remember the booking, then show the page without
    the token in the address bar (nor in a Referer)."""
    token = request.args.get(booking_links.QUERY_PARAMETER)
    if token is None:
        return None
    secret = state().resources.settings.web_secret_key
    opened = booking_links.booking_of(secret, token) if secret else None
    if opened is None or str(opened) != booking_id:
        raise DomainError(ErrorCode.FORBIDDEN)
    with unit_of_work() as db:
        booking = get_or_404(db, Booking, opened)
        _remember(booking.id, booking.client_id)
    return redirect(url_for(".booking", booking_id=booking_id), 303)


def _client_secret(booking: Booking) -> tuple[str | None, str | None]:
    """The deposit intent's client secret for Stripe.js, read back from Stripe (no
    database transaction is open here); or the problem to show instead."""
    if booking.payment_intent_id is None:
        return None, "The payment is being prepared. Reload this page in a moment."
    try:
        intent = state().gateway.retrieve_intent(booking.payment_intent_id)
    except PaymentProviderError:
        return None, web.message_for(DomainError(ErrorCode.PAYMENT_PROVIDER_ERROR))
    return intent.client_secret, None


@bp.get("/booking/<booking_id>")
def booking(booking_id: str) -> BaseResponse:
    via_link = _opened_by_link(booking_id)
    if via_link is not None:
        return via_link
    _client_allowed(booking_id)
    seen = _load(booking_id)
    settings = state().resources.settings
    now = state().clock()
    status = BookingStatus(seen.booking.status)
    pay: dict[str, Any] = {"mode": payment_mode(settings)}
    if status == BookingStatus.PENDING_PAYMENT and seen.booking.deposit_amount > 0:
        secret, problem = _client_secret(seen.booking)
        pay.update(client_secret=secret, problem=problem)
        if pay["mode"] == "emulator":
            pay.update(
                endpoint=(
                    f"{(settings.stripe_api_base or '').rstrip('/')}/v1/payment_intents/"
                    f"{seen.booking.payment_intent_id}/confirm"
                ),
                key=settings.stripe_publishable_key or EMULATOR_PUBLISHABLE_KEY,
                cards=TEST_CARDS,
            )
        elif pay["mode"] == "stripe":
            pay.update(
                key=settings.stripe_publishable_key,
                return_url=f"{settings.public_base_url}/booking/{booking_id}",
            )
    start = seen.booking.start_time
    can_cancel = (
        status == BookingStatus.CONFIRMED and rules.cancel_refusal(start=start, now=now) is None
    )
    reschedule_refused = rules.reschedule_refusal(
        seen.policy, start=start, now=now, reschedule_count=seen.booking.reschedule_count
    )
    can_move = status == BookingStatus.CONFIRMED and reschedule_refused is None
    move_days: list[DayChoice] = []
    move_slots: list[SlotChoice] = []
    move_day = _parse_day(request.args.get("move_day"))
    if can_move:
        first = now.astimezone(seen.tz).date()
        move_days, by_day = _free_slots(seen.artist, seen.service, now, first, DAYS_SHOWN)
        move_slots = by_day.get(move_day, []) if move_day else []
    return web.render(
        "pages/booking.html",
        s=seen,
        status=status,
        pay=pay,
        when=local_time(start, seen.tz),
        ends=f"{seen.booking.end_time.astimezone(seen.tz):%H:%M}",
        hold_until=(
            local_time(seen.booking.expires_at, seen.tz) if seen.booking.expires_at else None
        ),
        deposit=format_deposit(seen.booking.deposit_amount, seen.booking.currency),
        policy=policy_in_words(seen.policy),
        refund_if_cancelled=rules.refund_on_client_cancel(seen.policy, start=start, now=now),
        can_cancel=can_cancel,
        can_move=can_move,
        move_refused=reschedule_refused,
        move_days=move_days,
        move_day=move_day,
        move_slots=move_slots,
        refunds=[
            (format_deposit(from_minor_units(r.amount_minor, r.currency), r.currency), r.status)
            for r in seen.refunds
        ],
    )


@bp.get("/booking/<booking_id>/status")
def booking_status(booking_id: str) -> BaseResponse:
    """The status alone, for the page's script to poll until the webhook confirms."""
    _client_allowed(booking_id)
    seen = _load(booking_id)
    return web.render("pages/_status.html", status=BookingStatus(seen.booking.status))


@bp.post("/booking/<booking_id>/cancel")
def cancel(booking_id: str) -> BaseResponse:
    current = state()
    try:
        done = current.lifecycle.cancel_by_client(
            booking_id, allowed=_as_client(booking_id), reason=None, now=current.clock()
        )
    except DomainError as refused:
        if refused.code not in FORM_ERRORS:
            raise
        flash(web.message_for(refused), "error")
    else:
        if done.refund is not None:
            amount = from_minor_units(done.refund.amount_minor, done.refund.currency)
            flash(
                f"Your booking is cancelled. Your deposit of "
                f"{format_deposit(amount, done.refund.currency)} is being refunded.",
                "ok",
            )
        else:
            flash("Your booking is cancelled.", "ok")
    return redirect(url_for(".booking", booking_id=booking_id), 303)


@bp.post("/booking/<booking_id>/reschedule")
def reschedule(booking_id: str) -> BaseResponse:
    current = state()
    guard_ = _as_client(booking_id)
    start = _parse_start(request.form.get("start"))
    if start is None:
        flash("Choose a new time.", "error")
        return redirect(url_for(".booking", booking_id=booking_id), 303)
    try:
        current.lifecycle.reschedule(
            RescheduleRequest(booking_id=booking_id, start_time=start),
            allowed=guard_,
            now=current.clock(),
        )
    except DomainError as refused:
        if refused.code not in FORM_ERRORS:
            raise
        flash(web.message_for(refused), "error")
    else:
        flash("Your booking has moved.", "ok")
    return redirect(url_for(".booking", booking_id=booking_id), 303)

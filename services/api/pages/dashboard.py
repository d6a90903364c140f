"""`/dashboard`: the artist's and the operator's pages.

Sign-in: an artist asks for a magic link by e-mail (`shared.usecases.signin`; the page
answers the same for any address), opens it, and presses "Continue" — a POST, so a mail
scanner that fetches the link does not use it up; the operator signs in with the
operator token. Either way the signed session cookie holds who it is (`_who`), for
SESSION_HOURS at most; an operator session also holds an HMAC of the operator token,
so rotating ADMIN_API_TOKEN signs operators out.

Every page about an artist is under `/dashboard/artists/<artist_id>/`, and one
`before_request` applies the API's rule to it (`authorize(principal, ARTIST, owner)`): an
artist's session opens its own artist's pages only, the operator's any. Actions on a
booking hand the lifecycle the same `Guard` the API does, so the booking's artist is
checked under the row lock. Handlers are thin: the request models of the JSON API
validate the forms (`services/api/schemas.py`) and the use cases do the work.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable, Mapping
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from flask import (
    Response,
    flash,
    g,
    get_flashed_messages,
    request,
    session,
    url_for,
)
from pydantic import BaseModel, ValidationError

from services.api.auth import parse_id
from services.api.errors import HTTP_STATUS
from services.api.pages import web
from services.api.schemas import (
    ArtistPatch,
    LeaveRequest,
    ServicePatch,
    ServiceRequest,
    WorkingHoursBody,
    validation_error,
)
from services.api.state import state, unit_of_work
from shared.adapters.models import Artist
from shared.domain.access import OPERATOR, Access, Owner, Principal, Role, authorize, guard
from shared.domain.deposits import CancelledBy
from shared.domain.errors import DomainError, ErrorCode
from shared.domain.money import format_amount
from shared.domain.signin import is_operator_token
from shared.usecases import calendars, catalog, dashboard, signin

bp = web.page_blueprint("dashboard", __name__, prefixes=("/dashboard",))

SESSION_KEY = "dashboard"
SESSION_HOURS = 12
# Endpoints a visitor reaches without a session.
_OPEN = frozenset(
    {
        "dashboard.signin_form",
        "dashboard.request_link",
        "dashboard.operator_signin",
        "dashboard.open_link",
        "dashboard.redeem_link",
    }
)
DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
# Two intervals per weekday in the hours editor (a split day: morning and evening).
INTERVALS_PER_DAY = 2
POLICY_FIELDS = (
    ("bufferMin", "Buffer between bookings (minutes)"),
    ("minNoticeMin", "Minimum notice for a booking (minutes)"),
    ("maxAdvanceDays", "How far ahead clients may book (days)"),
    ("refundWindowHours", "Refund window: cancel at least this many hours before (empty: never)"),
    ("rescheduleNoticeHours", "Reschedule notice (hours)"),
    ("maxReschedules", "Reschedules allowed per booking"),
    ("reminderHours", "Reminder before the booking (hours; 0: none)"),
    ("noShowLimit", "Refuse clients after this many no-shows (0: never)"),
)


# --------------------------------------------------------------------------- the session


def _operator_mark() -> str:
    """Ties an operator session to the current operator token (never the token itself:
    the cookie is signed, not encrypted)."""
    settings = state().resources.settings
    key = (settings.web_secret_key or "").encode()
    return hmac.new(key, settings.admin_api_token.encode(), hashlib.sha256).hexdigest()


def _start_session(who: Principal) -> None:
    session.clear()  # nothing of a previous visitor's session carries over
    data: dict[str, Any] = {"role": who.role.value, "at": int(time.time())}
    if who.role is Role.ARTIST:
        data["id"] = str(who.id)
    else:
        data["mark"] = _operator_mark()
    session[SESSION_KEY] = data


def _who() -> Principal | None:
    data = session.get(SESSION_KEY)
    if not isinstance(data, dict) or not isinstance(data.get("at"), int):
        return None
    if time.time() - data["at"] > SESSION_HOURS * 3600:
        return None
    if data.get("role") == Role.OPERATOR.value:
        mark = data.get("mark")
        if isinstance(mark, str) and hmac.compare_digest(mark, _operator_mark()):
            return OPERATOR
        return None
    if data.get("role") == Role.ARTIST.value:
        artist_id = parse_id(data.get("id"))
        return Principal.artist(artist_id) if artist_id else None
    return None


@bp.before_request
def _require_signin() -> Response | None:
    if request.endpoint in _OPEN:
        return None
    who = _who()
    if who is None:
        return _see_other(url_for("dashboard.signin_form"))
    g.dashboard_principal = who
    artist_id = (request.view_args or {}).get("artist_id")
    if artist_id is not None:
        authorize(who, Access.ARTIST, Owner(artist_id=parse_id(artist_id)))
    return None


def _see_other(location: str) -> Response:
    """303: after a POST the browser GETs the next page (a reload does not post again)."""
    return Response(status=303, headers={"Location": location})


def _principal() -> Principal:
    found: Principal = g.dashboard_principal
    return found


def _problem(error: DomainError) -> str:
    """The contract's code and message, and its reason where it has one."""
    reason = (error.details or {}).get("reason")
    code = f"{error.code.value} ({reason})" if reason else error.code.value
    return f"{code}: {error.message}"


def _field_errors(error: DomainError) -> dict[str, str]:
    fields = (error.details or {}).get("fields")
    return dict(fields) if isinstance(fields, Mapping) else {}


def _validate(model: type[BaseModel], data: Any) -> Any:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise validation_error(exc) from None


def _page(template: str, artist: Artist | None, status: int = 200, **context: Any) -> Response:
    return web.render(
        f"dashboard/{template}",
        status,
        artist=artist,
        who=_principal(),
        notices=get_flashed_messages(with_categories=True),
        **context,
    )


def _artist(artist_id: str) -> Artist:
    with unit_of_work() as db:
        return dashboard.artist_of(db, artist_id)


# --------------------------------------------------------------------------- sign-in


@bp.get("/dashboard/signin")
def signin_form() -> Response:
    return web.render("dashboard/signin.html", notices=get_flashed_messages(with_categories=True))


@bp.post("/dashboard/signin")
def request_link() -> Response:
    email = request.form.get("email", "").strip()
    if not email or "@" not in email or len(email) > 320:
        return web.render(
            "dashboard/signin.html",
            400,
            email=email,
            errors={"email": "Enter your e-mail address."},
        )
    current = state()
    with unit_of_work() as db:
        effects = signin.request_link(db, email, now=current.clock())
    current.effects.run(effects)
    # The same page whether or not the address is an artist's (no account enumeration).
    return web.render("dashboard/signin_sent.html", email=email)


@bp.post("/dashboard/signin/operator")
def operator_signin() -> Response:
    token = request.form.get("token", "")
    if not is_operator_token(state().resources.settings.admin_api_token, token):
        return web.render(
            "dashboard/signin.html", 401, errors={"token": "That is not the operator token."}
        )
    _start_session(OPERATOR)
    return _see_other(url_for("dashboard.home"))


@bp.get("/dashboard/signin/<token>")
def open_link(token: str) -> Response:
    # Nothing is used up by a GET: link checkers in mail systems fetch links.
    return web.render("dashboard/signin_link.html", token=token)


@bp.post("/dashboard/signin/<token>")
def redeem_link(token: str) -> Response:
    current = state()
    secret = current.resources.settings.web_secret_key or ""
    try:
        with unit_of_work() as db:
            artist_id = signin.redeem(db, secret, token, now=current.clock())
    except signin.LinkRefused:
        return web.render("dashboard/signin.html", 400, link_refused=True)
    _start_session(Principal.artist(artist_id))
    return _see_other(url_for("dashboard.home"))


@bp.post("/dashboard/signout")
def signout() -> Response:
    session.clear()
    flash("You are signed out.", "ok")
    return _see_other(url_for("dashboard.signin_form"))


# --------------------------------------------------------------------------- the week


@bp.get("/dashboard")
def home() -> Response:
    who = _principal()
    if who.role is Role.ARTIST:
        return _see_other(url_for("dashboard.week", artist_id=who.id))
    with unit_of_work() as db:
        choices = dashboard.artist_choices(db)
    return _page("pick.html", None, choices=choices)


def _week_page(artist_id: str, status: int = 200, error: str | None = None) -> Response:
    raw = request.values.get("week")
    day = None
    if raw:
        try:
            day = date.fromisoformat(raw)
        except ValueError:
            day = None  # a hand-edited URL: this week
    with unit_of_work() as db:
        view = dashboard.week_view(db, artist_id, day, now=state().clock())
        artist = dashboard.artist_of(db, artist_id)
    return _page("week.html", artist, status, view=view, days=DAYS, error=error)


@bp.get("/dashboard/artists/<artist_id>")
def week(artist_id: str) -> Response:
    return _week_page(artist_id)


def _booking_action(artist_id: str, act: Callable[[], object], done: str) -> Response:
    try:
        act()
    except DomainError as error:
        if error.code in (ErrorCode.FORBIDDEN, ErrorCode.NOT_FOUND):
            raise
        return _week_page(artist_id, HTTP_STATUS[error.code], _problem(error))
    flash(done, "ok")
    return _see_other(url_for("dashboard.week", artist_id=artist_id, week=request.form.get("week")))


@bp.post("/dashboard/artists/<artist_id>/bookings/<booking_id>/complete")
def complete(artist_id: str, booking_id: str) -> Response:
    current = state()
    allowed = guard(_principal(), Access.ARTIST)
    return _booking_action(
        artist_id,
        lambda: current.lifecycle.complete(booking_id, allowed=allowed, now=current.clock()),
        "The booking is marked completed.",
    )


@bp.post("/dashboard/artists/<artist_id>/bookings/<booking_id>/no-show")
def no_show(artist_id: str, booking_id: str) -> Response:
    current = state()
    allowed = guard(_principal(), Access.ARTIST)
    return _booking_action(
        artist_id,
        lambda: current.lifecycle.no_show(booking_id, allowed=allowed, now=current.clock()),
        "The no-show is recorded; the deposit is kept.",
    )


@bp.post("/dashboard/artists/<artist_id>/bookings/<booking_id>/cancel")
def cancel(artist_id: str, booking_id: str) -> Response:
    current = state()
    who = _principal()
    refund = request.form.get("refund", "FULL") != "NONE"
    by = CancelledBy.ARTIST if who.role is Role.ARTIST else CancelledBy.OPERATOR
    reason = request.form.get("reason", "").strip()[:500] or None
    return _booking_action(
        artist_id,
        lambda: current.lifecycle.cancel_by_staff(
            booking_id,
            allowed=guard(who, Access.ARTIST),
            by=by,
            refund=refund,
            reason=reason,
            now=current.clock(),
        ),
        "The booking is cancelled"
        + (" and a paid deposit refunded in full." if refund else "; a paid deposit is kept."),
    )


# --------------------------------------------------------------------------- working hours


def _hours_rows(artist_id: str) -> dict[int, list[tuple[str, str]]]:
    with unit_of_work() as db:
        rows = catalog.list_working_hours(db, artist_id)
    by_day: dict[int, list[tuple[str, str]]] = {d: [] for d in range(7)}
    for row in rows:
        by_day[row.day_of_week].append((_hhmm(row.start_minute), _hhmm(row.end_minute)))
    return by_day


def _hhmm(minute: int) -> str:
    return f"{minute // 60:02d}:{minute % 60:02d}"


@bp.get("/dashboard/artists/<artist_id>/hours")
def hours(artist_id: str) -> Response:
    artist = _artist(artist_id)
    return _page(
        "hours.html", artist, days=DAYS, hours=_hours_rows(artist_id), slots=INTERVALS_PER_DAY
    )


@bp.post("/dashboard/artists/<artist_id>/hours")
def save_hours(artist_id: str) -> Response:
    artist = _artist(artist_id)
    items: list[dict[str, Any]] = []
    typed: dict[int, list[tuple[str, str]]] = {d: [] for d in range(7)}
    for day in range(7):
        for slot in range(INTERVALS_PER_DAY):
            start = request.form.get(f"d{day}s{slot}-start", "").strip()
            end = request.form.get(f"d{day}s{slot}-end", "").strip()
            typed[day].append((start, end))
            if start or end:
                items.append({"dayOfWeek": day, "startTime": start, "endTime": end})
    try:
        body = _validate(WorkingHoursBody, items)
        hours_in = [catalog.HoursInput(*interval) for interval in body.intervals()]
        with unit_of_work() as db:
            catalog.replace_working_hours(db, artist_id, hours_in)
    except DomainError as error:
        if error.code is not ErrorCode.VALIDATION_ERROR:
            raise
        return _page(
            "hours.html",
            artist,
            400,
            days=DAYS,
            hours=typed,
            slots=INTERVALS_PER_DAY,
            error=_hours_problem(error, items),
        )
    flash("Working hours saved.", "ok")
    return _see_other(url_for("dashboard.hours", artist_id=artist_id))


def _hours_problem(error: DomainError, items: list[dict[str, Any]]) -> str:
    """Name the day: "[2].endTime" means the third interval typed."""
    parts = []
    for field, message in _field_errors(error).items():
        where = field
        if field.startswith("[") and "]" in field:
            index = int(field[1 : field.index("]")])
            if 0 <= index < len(items):
                where = f"{DAYS[items[index]['dayOfWeek']]}, {field[field.index(']') + 2 :]}"
        parts.append(f"{where}: {message}")
    return "VALIDATION_ERROR: " + ("; ".join(parts) or error.message)


# --------------------------------------------------------------------------- leaves


def _local_instant(value: str, timezone: str) -> datetime | str:
    """A `datetime-local` value read in the artist's zone (what the API's LeaveRequest
    takes, with an offset); the text itself when it is not a date-time (the model then
    refuses it, naming the field)."""
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return value
    return moment if moment.tzinfo else moment.replace(tzinfo=ZoneInfo(timezone))


def _leaves_page(artist: Artist, status: int = 200, **context: Any) -> Response:
    with unit_of_work() as db:
        rows = catalog.list_leaves(db, str(artist.id))
    return _page(
        "leaves.html", artist, status, leaves=rows, zone=ZoneInfo(artist.timezone), **context
    )


@bp.get("/dashboard/artists/<artist_id>/leaves")
def leaves(artist_id: str) -> Response:
    return _leaves_page(_artist(artist_id))


@bp.post("/dashboard/artists/<artist_id>/leaves")
def add_leave(artist_id: str) -> Response:
    artist = _artist(artist_id)
    form = request.form
    data = {
        "startTime": _local_instant(form.get("start", ""), artist.timezone),
        "endTime": _local_instant(form.get("end", ""), artist.timezone),
        "reason": form.get("reason", "").strip() or None,
        "cancelConflicting": form.get("cancelConflicting") == "on",
    }
    current = state()
    try:
        body = _validate(LeaveRequest, data)
        added = current.lifecycle.add_leave(
            artist_id,
            start=body.start_time,
            end=body.end_time,
            reason=body.reason,
            cancel_conflicting=body.cancel_conflicting,
            now=current.clock(),
        )
    except DomainError as error:
        if error.code is not ErrorCode.VALIDATION_ERROR:
            raise
        return _leaves_page(artist, 400, errors=_field_errors(error), form=form)
    with unit_of_work() as db:
        zone = ZoneInfo(artist.timezone)
        conflicts = dashboard.bookings_by_id(db, added.conflicts, zone)
    return _leaves_page(
        artist, 201, added=added, conflicts=conflicts, cancelled=set(added.cancelled)
    )


@bp.post("/dashboard/artists/<artist_id>/leaves/<leave_id>/delete")
def delete_leave(artist_id: str, leave_id: str) -> Response:
    with unit_of_work() as db:
        catalog.delete_leave(db, artist_id, leave_id)
    flash("The leave is deleted; its time is bookable again.", "ok")
    return _see_other(url_for("dashboard.leaves", artist_id=artist_id))


# --------------------------------------------------------------------------- services


def _services_page(artist: Artist, status: int = 200, **context: Any) -> Response:
    with unit_of_work() as db:
        rows = catalog.list_services(db, str(artist.id))
    current = {
        s.id: {
            "name": s.name,
            "durationMin": s.duration_min,
            "currency": s.currency.upper(),
            "price": format_amount(s.price, s.currency),
            "depositAmount": format_amount(s.deposit_amount, s.currency),
            "active": s.active,
        }
        for s in rows
    }
    context.setdefault("editing", None)
    return _page("services.html", artist, status, services=rows, current=current, **context)


def _int_or_raw(value: str) -> int | str:
    """A number typed in a form, as the API's strict models want it (a non-number stays
    text and is refused by the model, naming the field)."""
    try:
        return int(value)
    except ValueError:
        return value


@bp.get("/dashboard/artists/<artist_id>/services")
def services(artist_id: str) -> Response:
    return _services_page(_artist(artist_id))


@bp.post("/dashboard/artists/<artist_id>/services")
def create_service(artist_id: str) -> Response:
    artist = _artist(artist_id)
    form = request.form
    data = {
        "name": form.get("name", "").strip(),
        "durationMin": _int_or_raw(form.get("durationMin", "")),
        "price": form.get("price", "").strip(),
        "depositAmount": form.get("depositAmount", "").strip(),
        "currency": form.get("currency", "").strip(),
    }
    try:
        body = _validate(ServiceRequest, data)
        with unit_of_work() as db:
            catalog.create_service(
                db,
                artist_id,
                name=body.name,
                duration_min=body.duration_min,
                price=body.price,
                deposit_amount=body.deposit_amount,
                currency=body.currency,
            )
    except DomainError as error:
        if error.code is not ErrorCode.VALIDATION_ERROR:
            raise
        return _services_page(artist, 400, errors=_field_errors(error), form=form)
    flash(f"Service “{data['name']}” added.", "ok")
    return _see_other(url_for("dashboard.services", artist_id=artist_id))


@bp.post("/dashboard/artists/<artist_id>/services/<service_id>")
def update_service(artist_id: str, service_id: str) -> Response:
    artist = _artist(artist_id)
    form = request.form
    data: dict[str, Any] = {
        "name": form.get("name", "").strip(),
        "durationMin": _int_or_raw(form.get("durationMin", "")),
        "price": form.get("price", "").strip(),
        "depositAmount": form.get("depositAmount", "").strip(),
        "currency": form.get("currency", "").strip(),
        "active": form.get("active") == "on",
    }
    try:
        body = _validate(ServicePatch, data)
        with unit_of_work() as db:
            catalog.update_service(
                db, artist_id, service_id, catalog.ServiceChanges(**body.changes())
            )
    except DomainError as error:
        if error.code is not ErrorCode.VALIDATION_ERROR:
            raise
        return _services_page(
            artist, 400, errors=_field_errors(error), form=form, editing=service_id
        )
    flash(f"Service “{data['name']}” saved.", "ok")
    return _see_other(url_for("dashboard.services", artist_id=artist_id))


@bp.post("/dashboard/artists/<artist_id>/services/<service_id>/remove")
def remove_service(artist_id: str, service_id: str) -> Response:
    with unit_of_work() as db:
        kept = catalog.remove_service(db, artist_id, service_id)
    flash(
        "The service had bookings: it is deactivated (no new bookings) and its bookings keep it."
        if kept is not None
        else "The service is deleted.",
        "ok",
    )
    return _see_other(url_for("dashboard.services", artist_id=artist_id))


# --------------------------------------------------------------------------- policy


def _policy_values(artist: Artist) -> dict[str, str]:
    values = {
        "bufferMin": artist.buffer_min,
        "minNoticeMin": artist.min_notice_min,
        "maxAdvanceDays": artist.max_advance_days,
        "refundWindowHours": artist.refund_window_hours,
        "rescheduleNoticeHours": artist.reschedule_notice_hours,
        "maxReschedules": artist.max_reschedules,
        "reminderHours": artist.reminder_hours,
        "noShowLimit": artist.no_show_limit,
    }
    return {name: "" if value is None else str(value) for name, value in values.items()}


@bp.get("/dashboard/artists/<artist_id>/policy")
def policy(artist_id: str) -> Response:
    artist = _artist(artist_id)
    return _page("policy.html", artist, fields=POLICY_FIELDS, values=_policy_values(artist))


@bp.post("/dashboard/artists/<artist_id>/policy")
def save_policy(artist_id: str) -> Response:
    artist = _artist(artist_id)
    typed = {name: request.form.get(name, "").strip() for name, _ in POLICY_FIELDS}
    # An empty refund window clears it (no refund on a client's cancel); others are needed.
    data = {
        name: (None if value == "" and name == "refundWindowHours" else _int_or_raw(value))
        for name, value in typed.items()
    }
    try:
        body = _validate(ArtistPatch, data)
        with unit_of_work() as db:
            catalog.update_artist(db, artist_id, catalog.ArtistChanges(**body.changes()))
    except DomainError as error:
        if error.code is not ErrorCode.VALIDATION_ERROR:
            raise
        return _page(
            "policy.html",
            artist,
            400,
            fields=POLICY_FIELDS,
            values=typed,
            errors=_field_errors(error),
        )
    flash("Policy saved. It applies to what clients do from now on.", "ok")
    return _see_other(url_for("dashboard.policy", artist_id=artist_id))


# --------------------------------------------------------------------------- Stripe


@bp.get("/dashboard/artists/<artist_id>/payments")
def payments(artist_id: str) -> Response:
    return _page("payments.html", _artist(artist_id))


def _payments_error(artist_id: str, error: DomainError) -> Response:
    if error.code in (ErrorCode.FORBIDDEN, ErrorCode.NOT_FOUND):
        raise error
    return _page(
        "payments.html", _artist(artist_id), HTTP_STATUS[error.code], error=_problem(error)
    )


@bp.post("/dashboard/artists/<artist_id>/payments/onboarding")
def start_onboarding(artist_id: str) -> Response:
    back = url_for("dashboard.payments", artist_id=artist_id, _external=False)
    base = state().resources.settings.public_base_url
    try:
        onboarding = state().connect.start(
            artist_id, return_url=base + back, refresh_url=base + back
        )
    except DomainError as error:
        return _payments_error(artist_id, error)
    return _see_other(onboarding.url)


@bp.post("/dashboard/artists/<artist_id>/payments/dashboard")
def stripe_dashboard(artist_id: str) -> Response:
    try:
        url = state().connect.dashboard(artist_id)
    except DomainError as error:
        return _payments_error(artist_id, error)
    return _see_other(url)


# --------------------------------------------------------------------------- calendar


@bp.get("/dashboard/artists/<artist_id>/calendar")
def calendar(artist_id: str) -> Response:
    settings = state().resources.settings
    with unit_of_work() as db:
        artist = dashboard.artist_of(db, artist_id)
        url = calendars.calendar_url(db, artist, settings)  # stores its hash on first use
    return _page("calendar.html", artist, calendar_url=url)


@bp.post("/dashboard/artists/<artist_id>/calendar/rotate")
def rotate_calendar(artist_id: str) -> Response:
    with unit_of_work() as db:
        calendars.rotate_token(db, artist_id, state().resources.settings)
    flash("The calendar link is replaced; the previous one no longer works.", "ok")
    return _see_other(url_for("dashboard.calendar", artist_id=artist_id))

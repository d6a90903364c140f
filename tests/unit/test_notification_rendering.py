"""E-mail rendering and message building: pure, no database, no network."""

from __future__ import annotations

import logging
import smtplib
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from shared.adapters.email_templates import (
    EmailContext,
    format_deposit,
    format_local_time,
    make_context,
    render,
)
from shared.adapters.mail import (
    ConsoleBackend,
    SmtpBackend,
    build_message,
    is_permanent_failure,
    message_id_for,
)
from shared.adapters.models import NotificationKind
from shared.domain.deposits import DepositStatus
from shared.domain.notifications import RECIPIENT_ROLES, RecipientRole

BOOKING_ID = uuid.UUID("00000000-0000-4000-8000-000000000001")
# 12:00 UTC on Tuesday 5 May 2026 is 14:00 in Paris (CEST, UTC+2).
START = datetime(2026, 5, 5, 12, 0, tzinfo=UTC)


def _context(**changes: object) -> EmailContext:
    values: dict[str, object] = {
        "booking_id": BOOKING_ID,
        "client_name": "Camille Client",
        "artist_name": "Ari Artist",
        "service_name": "Fine-line session",
        "start_time": START,
        "timezone": "Europe/Paris",
        "deposit_amount": Decimal("50.00"),
        "currency": "eur",
    }
    values.update(changes)
    return make_context(**values)  # type: ignore[arg-type]


ALL_PAIRS: list[tuple[NotificationKind, RecipientRole]] = [
    (kind, role) for kind, roles in RECIPIENT_ROLES.items() for role in roles
]


def test_every_kind_has_recipients():
    assert set(RECIPIENT_ROLES) == set(NotificationKind)
    assert RECIPIENT_ROLES[NotificationKind.BOOKING_CONFIRMED] == ("client", "artist")
    for kind in (
        NotificationKind.PAYMENT_FAILED,
        NotificationKind.HOLD_EXPIRED,
        NotificationKind.PAYMENT_REFUNDED,
    ):
        assert RECIPIENT_ROLES[kind] == ("client",)


@pytest.mark.parametrize(("kind", "role"), ALL_PAIRS, ids=lambda v: str(v))
def test_each_kind_renders_subject_text_and_html(kind, role):
    email = render(kind, role, _context())
    assert email.subject
    assert "\n" not in email.subject
    for body in (email.text, email.html):
        assert "Ari Artist" in body
        assert "Camille Client" in body
        assert "Fine-line session" in body
        assert "Tuesday 5 May 2026, 14:00 (Europe/Paris)" in body
        assert "50.00 EUR" in body
        assert str(BOOKING_ID) in body
    assert email.html.lstrip().startswith("<!DOCTYPE html>")
    assert f"<title>{email.subject}</title>" in email.html
    assert "<" not in email.text  # the text part is plain text, no markup leaks in
    assert "{{" not in email.text + email.html + email.subject


def test_subjects_differ_per_kind_and_role():
    subjects = {render(k, r, _context()).subject for k, r in ALL_PAIRS}
    assert len(subjects) == len(ALL_PAIRS)


def test_confirmation_subjects_name_the_other_party():
    client = render(NotificationKind.BOOKING_CONFIRMED, "client", _context())
    artist = render(NotificationKind.BOOKING_CONFIRMED, "artist", _context())
    assert "Ari Artist" in client.subject
    assert "confirmed" in client.subject
    assert "Camille Client" in artist.subject


def test_artist_mail_only_exists_for_confirmations():
    with pytest.raises(ValueError, match="no artist e-mail"):
        render(NotificationKind.PAYMENT_FAILED, "artist", _context())


def test_html_escapes_names_text_keeps_them_verbatim():
    hostile = '<script>alert("x")</script> & Co'
    ctx = _context(client_name=hostile, service_name="<b>Big</b>")
    email = render(NotificationKind.BOOKING_CONFIRMED, "artist", ctx)
    assert "<script>" not in email.html
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt; &amp; Co" in email.html
    assert "&lt;b&gt;Big&lt;/b&gt;" in email.html
    # Plain text and subject are not HTML: no entities there.
    assert hostile in email.text
    assert hostile in email.subject


def test_start_time_is_shown_in_the_artists_zone():
    assert format_local_time(START, "Europe/Paris") == "Tuesday 5 May 2026, 14:00 (Europe/Paris)"
    assert format_local_time(START, "Asia/Tokyo") == "Tuesday 5 May 2026, 21:00 (Asia/Tokyo)"
    assert (
        format_local_time(START, "America/Los_Angeles")
        == "Tuesday 5 May 2026, 05:00 (America/Los_Angeles)"
    )
    email = render(
        NotificationKind.BOOKING_CONFIRMED, "client", _context(timezone="America/New_York")
    )
    assert "Tuesday 5 May 2026, 08:00 (America/New_York)" in email.text


def test_winter_time_and_date_change():
    # 23:30 UTC on 31 Dec is already 1 January (00:30 CET) in Paris.
    moment = datetime(2026, 12, 31, 23, 30, tzinfo=UTC)
    assert (
        format_local_time(moment, "Europe/Paris") == "Friday 1 January 2027, 00:30 (Europe/Paris)"
    )


def test_naive_datetime_is_refused():
    with pytest.raises(ValueError, match="naive"):
        format_local_time(datetime(2026, 5, 5, 12, 0), "Europe/Paris")


def test_amounts_use_the_currency_decimals():
    assert format_deposit(Decimal("50"), "eur") == "50.00 EUR"
    assert format_deposit(Decimal("5000"), "jpy") == "5000 JPY"
    assert format_deposit(Decimal("1.5"), "kwd") == "1.500 KWD"
    email = render(
        NotificationKind.PAYMENT_REFUNDED,
        "client",
        _context(deposit_amount=Decimal("5000"), currency="jpy", timezone="Asia/Tokyo"),
    )
    assert "5000 JPY" in email.subject
    assert "5000 JPY" in email.text
    assert "5000 JPY" in email.html
    assert "5000.00" not in email.text + email.html


def test_a_partial_refund_says_how_much_of_the_deposit_came_back():
    part = render(
        NotificationKind.PAYMENT_REFUNDED, "client", _context(refunded_amount=Decimal("15"))
    )
    assert part.subject == "15.00 EUR of your deposit has been refunded"
    assert "15.00 EUR of your deposit of 50.00 EUR for Fine-line session" in part.text
    assert "<strong>15.00 EUR</strong> of your deposit of 50.00 EUR" in part.html
    whole = render(
        NotificationKind.PAYMENT_REFUNDED, "client", _context(refunded_amount=Decimal("50"))
    )
    assert whole.subject == "Your deposit of 50.00 EUR has been refunded"
    assert whole == render(NotificationKind.PAYMENT_REFUNDED, "client", _context())


def test_payment_failed_mentions_the_hold_while_there_is_one():
    held = render(
        NotificationKind.PAYMENT_FAILED,
        "client",
        _context(hold_expires_at=datetime(2026, 5, 1, 9, 15, tzinfo=UTC)),
    )
    assert "until Friday 1 May 2026, 11:15 (Europe/Paris)" in held.text
    assert "until <strong>Friday 1 May 2026, 11:15 (Europe/Paris)</strong>" in held.html
    without = render(NotificationKind.PAYMENT_FAILED, "client", _context())
    assert "until" not in without.text
    assert "try again" in without.text


def test_message_has_text_and_html_alternatives_and_a_stable_id():
    note_id = uuid.UUID("11111111-2222-4333-8444-555555555555")
    email = render(NotificationKind.BOOKING_CONFIRMED, "client", _context())
    message = build_message(note_id, "inkflow <no-reply@mail.example>", "c@example.com", email)
    assert message["From"] == "inkflow <no-reply@mail.example>"
    assert message["To"] == "c@example.com"
    assert message["Subject"] == email.subject
    assert message["Message-ID"] == f"<notification-{note_id}@mail.example>"
    assert message.get_content_type() == "multipart/alternative"
    parts = [p.get_content_type() for p in message.iter_parts()]
    assert parts == ["text/plain", "text/html"]
    again = build_message(note_id, "inkflow <no-reply@mail.example>", "c@example.com", email)
    assert again["Message-ID"] == message["Message-ID"]
    assert message_id_for(note_id, "no address") == f"<notification-{note_id}@inkflow.local>"


def test_console_backend_logs_subject_recipient_and_text(caplog):
    email = render(NotificationKind.HOLD_EXPIRED, "client", _context())
    message = build_message(uuid.uuid4(), "inkflow <no-reply@x.test>", "c@example.com", email)
    with caplog.at_level(logging.INFO, logger="inkflow.mail"):
        ConsoleBackend().send(message)
    (record,) = [r for r in caplog.records if r.name == "inkflow.mail"]
    assert record.levelno == logging.INFO
    logged = record.getMessage()
    assert "c@example.com" in logged
    assert email.subject in logged
    assert "has been released" in logged


@pytest.mark.parametrize(
    ("url", "host", "port", "tls", "starttls", "user"),
    [
        ("smtp://mail.local:2525", "mail.local", 2525, False, False, None),
        ("smtp://mail.local", "mail.local", 25, False, False, None),
        ("smtp://bob:s%40cret@mail.local:587", "mail.local", 587, False, False, "bob"),
        ("smtp://mail.local?starttls=true", "mail.local", 587, False, True, None),
        ("smtp://mail.local:2587?starttls=1", "mail.local", 2587, False, True, None),
        ("smtp://mail.local:25?starttls=false", "mail.local", 25, False, False, None),
        ("smtps://u:p@smtp.example.com", "smtp.example.com", 465, True, False, "u"),
        ("SMTPS://smtp.example.com:2465", "smtp.example.com", 2465, True, False, None),
    ],
)
def test_smtp_url_forms(url, host, port, tls, starttls, user):
    backend = SmtpBackend(url)
    assert (backend.host, backend.port, backend.implicit_tls, backend.starttls) == (
        host,
        port,
        tls,
        starttls,
    )
    assert backend.username == user


def test_smtp_url_password_is_decoded_and_never_shown():
    backend = SmtpBackend("smtp://bob:s%40cret@mail.local:587")
    assert backend._password == "s@cret"
    assert "cret" not in repr(backend)


@pytest.mark.parametrize(
    "url",
    [
        "http://mail.local",
        "smtp://",
        "smtp://mail.local:notaport",
        "smtp://mail.local?tls=yes",
        "smtp://mail.local?starttls=maybe",
        "smtps://mail.local?starttls=true",
    ],
)
def test_bad_smtp_urls_are_refused_without_echoing_secrets(url):
    with pytest.raises(ValueError, match="SMTP_URL") as caught:
        SmtpBackend(url.replace("://", "://user:hunter2@", 1) if "@" not in url else url)
    assert "hunter2" not in str(caught.value)


@pytest.mark.parametrize(
    ("error", "permanent"),
    [
        (smtplib.SMTPRecipientsRefused({"a@x": (550, b"no such user")}), True),
        (smtplib.SMTPRecipientsRefused({"a@x": (450, b"mailbox busy")}), False),
        (smtplib.SMTPDataError(554, b"rejected"), True),
        (smtplib.SMTPDataError(451, b"try later"), False),
        (smtplib.SMTPSenderRefused(553, b"not allowed", "f@x"), True),
        (smtplib.SMTPSenderRefused(451, b"later", "f@x"), False),
        (smtplib.SMTPAuthenticationError(535, b"bad credentials"), False),
        (smtplib.SMTPServerDisconnected("gone"), False),
        (ConnectionRefusedError(), False),
        (TimeoutError(), False),
    ],
)
def test_failure_classification(error, permanent):
    assert is_permanent_failure(error) is permanent


def test_a_reminder_shows_the_whole_appointment_and_the_deposit_kept_toward_the_price():
    paid = render(
        NotificationKind.REMINDER,
        "client",
        _context(end_time=START + timedelta(minutes=90), deposit_status=DepositStatus.PAID),
    )
    assert paid.subject == (
        "Reminder: Fine-line session with Ari Artist, Tuesday 5 May 2026, 14:00 (Europe/Paris)"
    )
    for body in (paid.text, paid.html):
        assert "Tuesday 5 May 2026, 14:00–15:30 (Europe/Paris)" in body
        assert "50.00 EUR is kept toward the price" in body
        assert "invitation" in body
    free = render(
        NotificationKind.REMINDER,
        "client",
        _context(deposit_amount=Decimal("0"), deposit_status=DepositStatus.NOT_REQUIRED),
    )
    assert "toward the price" not in free.text
    assert "Tuesday 5 May 2026, 14:00 (Europe/Paris)" in free.text  # no end given: the start

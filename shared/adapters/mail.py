"""Sending e-mail: the message we build for an outbox row, and the backends that deliver
it (SMTP through the standard library; the console in development). How failures are
classified (a 5xx refusal is permanent, anything else transient) lives here too."""

from __future__ import annotations

import logging
import smtplib
import ssl
import uuid
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate, parseaddr
from typing import Protocol
from urllib.parse import parse_qs, unquote, urlsplit

from shared.adapters.email_templates import RenderedEmail
from shared.config import Settings
from shared.domain.calendar import Method

mail_log = logging.getLogger("inkflow.mail")

SMTP_TIMEOUT_SECONDS = 10.0
_LAST_ERROR_MAX = 1000


def message_id_for(notification_id: uuid.UUID, sender: str) -> str:
    """Deterministic Message-ID: a resent row carries the same one, so receivers that
    de-duplicate by Message-ID drop the copy. The domain is the sender's."""
    address = parseaddr(sender)[1]
    domain = address.rpartition("@")[2] if "@" in address else ""
    return f"<notification-{notification_id}@{domain or 'inkflow.local'}>"


@dataclass(frozen=True, slots=True)
class Invitation:
    """The booking's event an e-mail carries (`shared.adapters.ics.invitation`)."""

    ics: bytes
    method: Method


INVITATION_FILENAME = "invite.ics"


def build_message(
    notification_id: uuid.UUID,
    sender: str,
    recipient: str,
    rendered: RenderedEmail,
    invitation: Invitation | None = None,
) -> EmailMessage:
    """multipart/alternative: text/plain first, text/html preferred by capable clients.

    With an invitation, the structure Google Calendar's own invitations have, which Gmail,
    Outlook and Apple Mail all turn into an event::

        multipart/mixed
          multipart/alternative
            text/plain
            text/html
            text/calendar; method=REQUEST|CANCEL   (what Outlook and Gmail act on)
          text/calendar; method=...; invite.ics    (an attachment, for clients that
                                                   only look at attachments)

    The iTIP method is both the part's `method` parameter and the calendar's METHOD, as
    RFC 6047 asks: Outlook ignores a text/calendar part without it.
    """
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
    if invitation is not None:
        # As bytes (base64 on the wire): RFC 5545 wants CRLF line ends, which a text
        # part would have rewritten.
        params = {"method": invitation.method.value, "charset": "utf-8"}
        message.add_alternative(invitation.ics, "text", "calendar", params=params)
        message.add_attachment(
            invitation.ics, "text", "calendar", filename=INVITATION_FILENAME, params=params
        )
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


def describe_failure(error: BaseException) -> str:
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

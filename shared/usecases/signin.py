"""The dashboard's sign-in: magic links for artists, the operator's token for operators.

A magic link, step by step:

1. `request_link(email)` (the public form). Whatever the address, the page answers the
   same: nobody learns from it whether an address belongs to an artist. For an artist's
   address, under the rate limit (`shared.domain.signin`), it inserts a `signin_links`
   row (id, artist, expiry in 15 minutes) and returns one task to enqueue, with the row's
   id only. The API does no more for a known address than for an unknown one but that
   insert and one enqueue; the e-mail itself is built and sent by the worker.
2. `send_link(link_id)` (the worker): signs the id (itsdangerous, keyed with the web
   secret), builds `PUBLIC_BASE_URL/dashboard/signin/<token>` and mails it to the artist.
   Nothing secret crosses the broker: the token exists only in the e-mail.
3. `redeem(token)`: a token that does not verify (tampered, another key) is refused
   before the database is asked. Then one conditional UPDATE sets `used_at` only where it
   is NULL and the link has not expired, RETURNING the artist: two clicks racing each
   other (a mail scanner and the artist, a double click) are serialised by the row lock,
   and the second one finds `used_at` set. One link, one session — even if Redis is lost,
   since this lives in PostgreSQL.

The signature is not what makes a link single-use or short-lived (the row does); it makes
a link unforgeable by anyone who can read the table (a backup, a replica) but not the key.
"""

from __future__ import annotations

import logging
import smtplib
import uuid
from dataclasses import dataclass
from datetime import datetime

from itsdangerous import BadData, URLSafeSerializer
from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from shared.adapters.db import advisory_xact_lock, transaction
from shared.adapters.email_templates import SigninContext, format_local_time, render_signin
from shared.adapters.mail import MailBackend, build_message, describe_failure, mail_backend
from shared.adapters.models import Artist, SigninLink
from shared.adapters.runtime import Resources
from shared.domain import signin as rules
from shared.tasks import SEND_SIGNIN_LINK
from shared.usecases.effects import NONE, Effects
from shared.usecases.notifications import TransientMailError

log = logging.getLogger("inkflow.signin")

SIGNIN_PATH = "/dashboard/signin/"
# Tells these signatures apart from anything else signed with the same key.
_SALT = "inkflow.dashboard.signin-link"


class LinkRefused(Exception):
    """The link does not open a session: not ours, tampered, used, or expired. One kind of
    refusal for all: the page says the same to each (ask for a new link)."""


def _signer(secret: str) -> URLSafeSerializer:
    return URLSafeSerializer(secret, salt=_SALT)


def sign(secret: str, link_id: uuid.UUID) -> str:
    return _signer(secret).dumps(link_id.hex)


def _unsign(secret: str, token: str) -> uuid.UUID:
    try:
        value = _signer(secret).loads(token)
        return uuid.UUID(hex=value)
    except (BadData, TypeError, ValueError, AttributeError):
        raise LinkRefused("not a link of ours") from None


def link_url(base_url: str, token: str) -> str:
    return f"{base_url}{SIGNIN_PATH}{token}"


def _normalise(email: str) -> str:
    return email.strip().lower()  # as addresses are stored (catalog._email)


def request_link(session: Session, email: str, *, now: datetime) -> Effects:
    """Issue a link for the artist at `email`, if there is one and it is under the rate
    limit; the effects: the task that mails it. Nothing for any other address (and the
    caller answers the same)."""
    artist_id = session.scalar(select(Artist.id).where(Artist.email == _normalise(email)))
    if artist_id is None:
        return NONE
    # Two requests for one artist at once must not both pass the count below.
    advisory_xact_lock(session, f"signin-link:{artist_id}")
    session.execute(
        delete(SigninLink).where(
            SigninLink.artist_id == artist_id, SigninLink.created_at < now - rules.KEEP_LINKS
        )
    )
    recent = session.scalar(
        select(func.count())
        .select_from(SigninLink)
        .where(
            SigninLink.artist_id == artist_id,
            SigninLink.created_at > now - rules.RATE_WINDOW,
        )
    )
    if not rules.may_send_link(recent or 0):
        log.info("artist %s: sign-in link not sent (rate limit)", artist_id)
        return NONE
    link = SigninLink(
        id=uuid.uuid4(),
        artist_id=artist_id,
        created_at=now,
        expires_at=now + rules.LINK_LIFETIME,
    )
    session.add(link)
    session.flush()
    return Effects(tasks=((SEND_SIGNIN_LINK, (str(link.id),)),))


@dataclass(frozen=True, slots=True)
class _Mail:
    artist_email: str
    context: SigninContext


def send_link(
    resources: Resources,
    secret: str,
    link_id: uuid.UUID,
    backend: MailBackend | None = None,
    *,
    now: datetime,
) -> str:
    """Mail the link (the worker's task). Returns "sent", or "skipped" for a link that is
    gone, used or expired (a task run late has nothing to send). Raises TransientMailError
    when sending should be retried."""
    settings = resources.settings
    with transaction(resources.sessions) as session:
        row = session.execute(
            select(SigninLink, Artist)
            .join(Artist, Artist.id == SigninLink.artist_id)
            .where(SigninLink.id == link_id)
        ).one_or_none()
        if row is None:
            return "skipped"
        link, artist = row[0], row[1]
        if link.used_at is not None or link.expires_at <= now:
            return "skipped"
        mail = _Mail(
            artist.email,
            SigninContext(
                artist_name=artist.name,
                link=link_url(settings.public_base_url, sign(secret, link.id)),
                expires=format_local_time(link.expires_at, artist.timezone),
            ),
        )
    # SMTP after the commit: never a network call inside a transaction.
    rendered = render_signin(mail.context)
    message = build_message(link_id, settings.mail_from, mail.artist_email, rendered)
    try:
        (backend or mail_backend(settings)).send(message)
    except (smtplib.SMTPException, OSError) as error:
        raise TransientMailError(link_id, describe_failure(error)) from error
    log.info("sign-in link %s sent", link_id)
    if backend is None and settings.smtp_url is None and settings.development:
        # make run has no mailbox: its console is where the developer reads the link (a
        # credential, so never outside development; the console mailer logs no bodies).
        log.info("development, no SMTP_URL: sign in at %s", mail.context.link)
    return "sent"


def redeem(session: Session, secret: str, token: str, *, now: datetime) -> uuid.UUID:
    """The artist a link signs in, the link used up in the caller's transaction; raises
    LinkRefused for a link that is not ours, tampered, used or expired."""
    link_id = _unsign(secret, token)
    artist_id: uuid.UUID | None = session.scalar(
        update(SigninLink)
        .where(
            SigninLink.id == link_id,
            SigninLink.used_at.is_(None),
            SigninLink.expires_at > now,
        )
        .values(used_at=now)
        .returning(SigninLink.artist_id)
    )
    if artist_id is None:
        raise LinkRefused("used or expired")
    return artist_id

"""The signed link that opens a booking's page for its client: `PUBLIC_BASE_URL/booking/
{id}?t=<token>`, sent in the client's e-mails.

The token is the booking id signed with WEB_SECRET_KEY (itsdangerous, HMAC-SHA1 over a
salt of its own, so no other token signed with that key passes as one). It does not
expire: a booking can be months away and its page must open until then. Changing
WEB_SECRET_KEY retires every link already sent.
"""

from __future__ import annotations

import uuid

from itsdangerous import BadSignature, URLSafeSerializer

from shared.config import Settings

SALT = "inkflow.booking-page"
QUERY_PARAMETER = "t"


def _serializer(secret: str) -> URLSafeSerializer:
    return URLSafeSerializer(secret, salt=SALT)


def sign(secret: str, booking_id: uuid.UUID) -> str:
    return str(_serializer(secret).dumps(str(booking_id)))


def booking_of(secret: str, token: str) -> uuid.UUID | None:
    """The booking a token opens; None for a token that is not one of ours."""
    try:
        value = _serializer(secret).loads(token)
    except BadSignature:
        return None
    try:
        return uuid.UUID(str(value))
    except ValueError:
        return None


def url(settings: Settings, booking_id: uuid.UUID) -> str | None:
    """The booking page's link for its client; None while the pages are off."""
    if settings.web_secret_key is None:
        return None
    token = sign(settings.web_secret_key, booking_id)
    return f"{settings.public_base_url}/booking/{booking_id}?{QUERY_PARAMETER}={token}"

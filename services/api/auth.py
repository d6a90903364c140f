"""Bearer tokens: the operator's admin token and, when configured, client JWTs."""

from __future__ import annotations

import hmac
import uuid

import jwt
from flask import request

from shared.config import Settings
from shared.domain.errors import DomainError, ErrorCode


def _bearer() -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def require_admin(settings: Settings) -> None:
    token = _bearer()
    # Constant-time compare: the token is a shared secret.
    if token is None or not hmac.compare_digest(token.encode(), settings.admin_api_token.encode()):
        raise DomainError(ErrorCode.UNAUTHORIZED)


def client_subject(settings: Settings) -> str | None:
    """The authenticated clientId, or None when client auth is not configured."""
    if settings.auth_jwt_secret is None:
        return None
    token = _bearer()
    if token is None:
        raise DomainError(ErrorCode.UNAUTHORIZED)
    try:
        claims = jwt.decode(
            token,
            settings.auth_jwt_secret,
            algorithms=["HS256"],
            options={"require": ["sub", "exp"]},
            leeway=30,  # clock skew between the issuer and us
        )
    except jwt.PyJWTError:
        raise DomainError(ErrorCode.UNAUTHORIZED, "The token is invalid or expired.") from None
    return str(claims["sub"])


def same_id(a: str, b: str) -> bool:
    """UUIDs compare by value: upper- and lower-case spellings name the same client."""
    try:
        return uuid.UUID(a) == uuid.UUID(b)
    except ValueError:
        return a == b


def require_same_client(subject: str | None, client_id: str) -> None:
    """A token (when client auth is on) may only act for its own client."""
    if subject is not None and not same_id(subject, client_id):
        raise DomainError(ErrorCode.FORBIDDEN, "This token may not act for that client.")

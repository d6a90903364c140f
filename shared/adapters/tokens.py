"""The bearer JWTs of artists and clients, written once for the API (which verifies
them) and the `inkflow token` command (which mints development ones).

HS256 with AUTH_JWT_SECRET (at least 32 bytes, see `shared.config`); `exp` and `sub`
required; `role` is "client" (also when absent: tokens issued before roles stay client
tokens) or "artist"; `sub` is the client's or artist's id, a UUID. Anything else — a
bad signature, another algorithm, an expired or not yet valid token, a role this API
does not know — is not a token of ours: UNAUTHORIZED, never a guess. The operator is
never a JWT: only ADMIN_API_TOKEN names it.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

import jwt

from shared.config import check_jwt_secret
from shared.domain.access import Principal, Role

ALGORITHM = "HS256"
LEEWAY_SECONDS = 30  # clock skew between the issuer and us
ROLE_CLAIM = "role"
DEFAULT_ROLE = Role.CLIENT
# The roles a JWT may carry, by claim value.
JWT_ROLES: dict[str, Role] = {Role.CLIENT.value: Role.CLIENT, Role.ARTIST.value: Role.ARTIST}


class InvalidToken(Exception):
    """Not a valid token of ours; the message says why (safe to show)."""


def mint(secret: str, role: Role, subject: uuid.UUID, *, now: datetime, ttl: timedelta) -> str:
    """A token for the artist or client `subject`, valid from `now` for `ttl`."""
    check_jwt_secret(secret)
    if role not in JWT_ROLES.values():
        raise ValueError(f"a JWT cannot carry the role {role}")
    claims = {
        "sub": str(subject),
        ROLE_CLAIM: role.value,
        "iat": int(now.timestamp()),
        "exp": int((now + ttl).timestamp()),
    }
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


def verify(secret: str, token: str) -> Principal:
    """The artist or client a token names; InvalidToken if it is not a valid one."""
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=[ALGORITHM],
            options={"require": ["sub", "exp"]},
            leeway=LEEWAY_SECONDS,
        )
    except jwt.PyJWTError:
        raise InvalidToken("The token is invalid or expired.") from None
    claimed = claims.get(ROLE_CLAIM, DEFAULT_ROLE.value)
    role = JWT_ROLES.get(claimed) if isinstance(claimed, str) else None
    if role is None:
        raise InvalidToken("The token's role is not one this API knows.")
    sub = claims["sub"]
    try:
        subject = uuid.UUID(sub) if isinstance(sub, str) else None
    except ValueError:
        subject = None
    if subject is None:
        raise InvalidToken("The token's subject is not an id.")
    return Principal(role, subject)

"""Who may do what: the principals, the four access rules a route declares, and the one
function that decides, `authorize(principal, access, owner)`.

It lives in the domain, not in the API, because who may act on a booking is a rule of
the business (the contract's "Roles"), and because the use cases that lock a booking
apply it in the transaction they already open: the owner of a booking (its artist, its
client) is known only once the row is read, and reading it a second time just to check
would cost a round trip. The API authenticates (tokens → `Principal`) and hands the use
case a `Guard`; the decision itself is made here, by a pure function over plain values.

The rules:

| access   | who passes                                                               |
|----------|--------------------------------------------------------------------------|
| PUBLIC   | anyone; no token is read                                                 |
| CLIENT   | the operator; the resource's client; a guest while client tokens are off |
| ARTIST   | the operator; the resource's artist                                      |
| OPERATOR | the operator                                                             |

Anyone else gets UNAUTHORIZED when they showed no valid token (a token would help),
FORBIDDEN when their valid token may not do this.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from functools import partial

from shared.domain.errors import DomainError, ErrorCode


class Role(StrEnum):
    OPERATOR = "operator"  # the ADMIN_API_TOKEN bearer
    ARTIST = "artist"  # a JWT with role "artist", `sub` the artist
    CLIENT = "client"  # a JWT with role "client" (the default), `sub` the client
    ANONYMOUS = "anonymous"  # no valid token, client tokens on: only PUBLIC
    # No token while client tokens are off (AUTH_JWT_SECRET unset): the client endpoints
    # are open to anyone, as the contract says; management still needs the operator.
    GUEST = "guest"


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is asking. `id`: the artist or client (None for the others, and for a client
    that a request without tokens does not name)."""

    role: Role
    id: uuid.UUID | None = None

    @classmethod
    def artist(cls, artist_id: uuid.UUID) -> Principal:
        return cls(Role.ARTIST, artist_id)

    @classmethod
    def client(cls, client_id: uuid.UUID | None) -> Principal:
        return cls(Role.CLIENT, client_id)


OPERATOR = Principal(Role.OPERATOR)
ANONYMOUS = Principal(Role.ANONYMOUS)
GUEST = Principal(Role.GUEST)


class Access(StrEnum):
    """The rule a route declares (see the module docstring)."""

    PUBLIC = "public"
    CLIENT = "client"
    ARTIST = "artist"
    OPERATOR = "operator"


@dataclass(frozen=True, slots=True)
class Owner:
    """Whose a resource is: the artist in a path, a booking's artist and client, the
    client a request books for. None where it has none of that kind."""

    artist_id: uuid.UUID | None = None
    client_id: uuid.UUID | None = None


# Per rule, the roles it admits and what they must own (None: nothing, any resource).
_ADMITS: dict[Access, dict[Role, Role | None]] = {
    Access.PUBLIC: dict.fromkeys(Role),
    Access.CLIENT: {Role.OPERATOR: None, Role.GUEST: None, Role.CLIENT: Role.CLIENT},
    Access.ARTIST: {Role.OPERATOR: None, Role.ARTIST: Role.ARTIST},
    Access.OPERATOR: {Role.OPERATOR: None},
}
# Roles without a token: refused, they are told to authenticate (401), not forbidden.
_UNAUTHENTICATED = frozenset({Role.ANONYMOUS, Role.GUEST})

_REFUSALS: dict[Access, str] = {
    Access.CLIENT: "This token may not act for that client.",
    Access.ARTIST: "This token may not act for that artist.",
    Access.OPERATOR: "Only the operator may do this.",
}


def authorize(principal: Principal, access: Access, owner: Owner | None) -> None:
    """Return if `principal` may pass `access` for a resource of `owner`; raise
    UNAUTHORIZED or FORBIDDEN otherwise.

    `owner` None: the route names no owner, or not yet (its resource is still to be
    read): the role alone decides, and a route whose resource has an owner calls again
    once it is known (the route × role test holds every route to it)."""
    admitted = _ADMITS[access]
    if principal.role not in admitted:
        if principal.role in _UNAUTHENTICATED:
            raise DomainError(ErrorCode.UNAUTHORIZED)
        raise DomainError(ErrorCode.FORBIDDEN, _REFUSALS[access])
    must_own = admitted[principal.role]
    if must_own is None or owner is None:
        return
    owned = owner.artist_id if must_own is Role.ARTIST else owner.client_id
    if principal.id is None or owned != principal.id:
        raise DomainError(ErrorCode.FORBIDDEN, _REFUSALS[access])


# What a use case that reads the resource calls with its owner (raises if refused).
Guard = Callable[[Owner], None]


def guard(principal: Principal, access: Access) -> Guard:
    """`authorize` for this principal and rule, waiting for the owner."""
    return partial(authorize, principal, access)

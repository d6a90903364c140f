"""Who is asking, and whether the route lets them: authentication here, the decision in
`shared.domain.access.authorize`.

Every route declares its rule beside itself (`@operation(..., security=ARTIST)`, see
`services/api/openapi.py`). `install(app)` reads those rules once, when the app is
built — a route without one stops the app from starting — and checks each request
before its handler runs: the bearer token becomes a `Principal` (401 for a token that
is not valid), then `authorize` decides with the owner the path names (`artist_id`,
`client_id`), so most routes need nothing in their handler. A route whose resource's
owner is known only later — a booking's artist or client, the client a booking is made
for — is checked on the role alone first, then calls `check(owner)` (or hands
`guard()` to the use case that reads the row, so the check costs no extra query).

Tokens (only PUBLIC routes read none):
- `Authorization: Bearer <ADMIN_API_TOKEN>`: the operator, always.
- With AUTH_JWT_SECRET set: an artist's or client's JWT (`shared/adapters/tokens.py`); no
  token is ANONYMOUS, an invalid one UNAUTHORIZED.
- Without it the client endpoints stay open: any other token is ignored, as before roles,
  and the caller is a GUEST (who may use the client endpoints, not the management ones).
"""

from __future__ import annotations

import hmac
import uuid
from collections.abc import Mapping

from flask import Flask, current_app, g, request

from services.api.openapi import access_rules
from services.api.state import state
from shared.adapters import tokens
from shared.config import Settings
from shared.domain.access import (
    ANONYMOUS,
    GUEST,
    OPERATOR,
    Access,
    Guard,
    Owner,
    Principal,
    Role,
    authorize,
    guard,
)
from shared.domain.errors import DomainError, ErrorCode

RULES_KEY = "inkflow.access"
# Path variables that name the owner of what the route acts on.
_OWNER_VARIABLES = ("artist_id", "client_id")


def install(app: Flask) -> None:
    """Check every request against its route's rule. Call after the blueprints."""
    app.extensions[RULES_KEY] = access_rules(app)  # raises for a route without a rule
    app.before_request(_enforce)


def _bearer() -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def authenticate(settings: Settings, token: str | None) -> Principal:
    if token is not None and hmac.compare_digest(
        # Constant-time: the operator's token is a shared secret.
        token.encode(),
        settings.admin_api_token.encode(),
    ):
        return OPERATOR
    if settings.auth_jwt_secret is None:
        return GUEST
    if token is None:
        return ANONYMOUS
    try:
        return tokens.verify(settings.auth_jwt_secret, token)
    except tokens.InvalidToken as invalid:
        raise DomainError(ErrorCode.UNAUTHORIZED, str(invalid)) from None


def parse_id(value: object) -> uuid.UUID | None:
    """An id as the owner of something; None when it cannot name a row."""
    if not isinstance(value, str):
        return None
    try:
        return uuid.UUID(value)
    except ValueError:
        return None


def _path_owner(variables: Mapping[str, object] | None) -> Owner | None:
    named = {name: variables[name] for name in _OWNER_VARIABLES if variables and name in variables}
    if not named:
        return None
    return Owner(
        artist_id=parse_id(named.get("artist_id")), client_id=parse_id(named.get("client_id"))
    )


def _enforce() -> None:
    if request.routing_exception is not None or request.endpoint is None:
        return  # 404 / 405: Flask answers them
    if request.method == "OPTIONS":
        return  # Flask's automatic answer (CORS preflights carry no token)
    access: Access = current_app.extensions[RULES_KEY][request.endpoint]
    if access is Access.PUBLIC:
        return
    principal = authenticate(state().resources.settings, _bearer())
    g.principal, g.access = principal, access
    authorize(principal, access, _path_owner(request.view_args))


def principal() -> Principal:
    """Who is asking (for a route that is not PUBLIC)."""
    found: Principal = g.principal
    return found


def check(owner: Owner) -> None:
    """The route's rule, now that the owner of its resource is known."""
    authorize(g.principal, g.access, owner)


def require(access: Access) -> None:
    """A stricter rule for part of a request (a field only the operator may set)."""
    authorize(g.principal, access, None)


def guard_for(actor: Principal | None = None) -> Guard:
    """`check` for a use case to call once it has read the resource (no extra query);
    `actor`: who acts, when not the token's principal (see `acting_client`)."""
    return guard(actor or g.principal, g.access)


def acting_client(named: str | None) -> Principal:
    """Who acts in a client's action on a booking: the token's principal — the body may
    name the same client, not another — or, while client tokens are off, the client the
    body names (the contract: it must be the booking's; a body naming none acts for
    nobody)."""
    asking = principal()
    if asking.role is Role.GUEST:
        return Principal.client(parse_id(named))
    if named is not None:
        check(Owner(client_id=parse_id(named)))
    return asking


def idempotency_scope() -> str:
    """Whose Idempotency-Keys a request's are: a client's own, the operator's, or
    (without client tokens) everybody's."""
    asking = principal()
    if asking.role is Role.CLIENT:
        return str(asking.id)
    return "*" if asking.role is Role.GUEST else asking.role.value

"""Account Links: a single-use URL to Stripe's hosted onboarding of a connected account.

``account_links.create`` answers ``{object: "account_link", created, expires_at, url}``;
the link is kept by the token at the end of its URL, which opens the emulator's
onboarding page (``pages``). As at Stripe, a link expires a few minutes after it is made
(``TTL_SECONDS``) and serves one visit: opening it again, or once expired or completed,
sends the browser to its ``refresh_url`` (where the platform makes a new one). Completing
it (the page's button, or ``StripeEmulator.complete_onboarding``) completes the account's
onboarding (``accounts.complete_onboarding``) and sends the browser to ``return_url``.
"""

from __future__ import annotations

import copy

from stripe import params as sp

from devtools.stripe_emulator import accounts
from devtools.stripe_emulator.errors import ApiError, invalid
from devtools.stripe_emulator.params import parse_enum, refuse_unmodelled
from devtools.stripe_emulator.routing import route
from devtools.stripe_emulator.store import JSON, Store, new_id, now
from devtools.stripe_emulator.wire import RecordedRequest

TTL_SECONDS = 300
PATH = "/connect/setup/"  # the onboarding page: PATH + token


def token_of(link: str) -> str:
    """The token of a link given as its URL or as the token itself."""
    return link.rstrip("/").rsplit("/", 1)[-1]


def stored(store: Store, link: str) -> JSON:
    token = token_of(link)
    if token not in store.account_links:
        raise ApiError(404, f"No such account link: '{token}'", "resource_missing", "url")
    return store.account_links[token]


def usable(link: JSON) -> bool:
    """Not expired and not completed: its onboarding can still be completed."""
    return not link["used"] and now() < link["expires_at"]


def visit(store: Store, link: str) -> JSON:
    """A browser opens the link: the first visit of a usable link is shown the form
    (``visited`` becomes true); any other is sent to ``refresh_url`` (``shown`` false)."""
    found = stored(store, link)
    shown = usable(found) and not found.get("visited")
    found["visited"] = True
    return copy.deepcopy(found) | {"shown": shown}


def expire(store: Store, link: str) -> JSON:
    """Time passes: the link is past its ``expires_at``."""
    found = stored(store, link)
    found["expires_at"] = min(found["expires_at"], now() - 1)
    return copy.deepcopy(found)


def complete(store: Store, link: str) -> JSON:
    """The user filled the onboarding form in: the account is onboarded and the link
    used. Returns the account; 400 for a link that is expired or was used."""
    found = stored(store, link)
    if not usable(found):
        state = "was used" if found["used"] else "has expired"
        raise ApiError(400, f"This account link {state}.", "account_link_expired", "url")
    found["used"] = True
    return accounts.complete_onboarding(store, found["account"])


def _http_url(params: JSON, key: str) -> str:
    value = params.get(key)
    if not isinstance(value, str) or not value.startswith(("http://", "https://")):
        raise invalid(f"Not a valid URL: {key}", key, "url_invalid")
    return value


def create(store: Store, req: RecordedRequest, _: str) -> JSON:
    params = req.params
    refuse_unmodelled(params, ("account", "refresh_url", "return_url", "type"))
    kind = parse_enum(params, "type", ("account_onboarding", "account_update"))
    acct = accounts.account(store, str(params["account"]))
    if kind == "account_update" and accounts.uses_express_dashboard(acct):
        msg = "You cannot create `account_update` type Account Links for this account."
        raise invalid(msg, "type")
    refresh_url, return_url = _http_url(params, "refresh_url"), _http_url(params, "return_url")
    token, created = new_id("", 32), now()
    store.account_links[token] = {
        "account": acct["id"], "type": kind, "refresh_url": refresh_url,
        "return_url": return_url, "created": created, "expires_at": created + TTL_SECONDS,
        "visited": False, "used": False,
    }  # fmt: skip
    return {
        "object": "account_link", "created": created, "expires_at": created + TTL_SECONDS,
        "url": f"{req.base_url}{PATH}{token}",
    }  # fmt: skip


ROUTES = [
    route("POST", r"/v1/account_links", create, sp.AccountLinkCreateParams),
]

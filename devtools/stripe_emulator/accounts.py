"""Connected accounts: retrieve; unknown ``acct_`` ids are created on first use, enabled;
changes made out of band (``set_account``) emit ``account.updated``."""

from __future__ import annotations

import copy

from stripe import params as sp

from devtools.stripe_emulator import events
from devtools.stripe_emulator.errors import ApiError
from devtools.stripe_emulator.routing import route
from devtools.stripe_emulator.store import JSON, Store, now
from devtools.stripe_emulator.wire import RecordedRequest


def account(store: Store, acct_id: str) -> JSON:
    """The stored account (created, enabled, when first named)."""
    # fmt: off
    return store.accounts.setdefault(acct_id, {
        "id": acct_id, "object": "account", "type": "express", "country": "DE",
        "default_currency": "eur", "charges_enabled": True, "payouts_enabled": True,
        "details_submitted": True, "email": None, "metadata": {}, "created": now(),
        "capabilities": {"card_payments": "active", "transfers": "active"},
        "requirements": {"currently_due": [], "eventually_due": [], "past_due": [],
                         "disabled_reason": None},
    })
    # fmt: on


def set_account(
    store: Store, acct_id: str, charges_enabled: bool = True, payouts_enabled: bool | None = None
) -> JSON:
    """Create or change a connected account (``details_submitted`` follows charges)."""
    state = "active" if charges_enabled else "inactive"
    acct = account(store, acct_id)
    acct.update(
        charges_enabled=charges_enabled,
        payouts_enabled=charges_enabled if payouts_enabled is None else payouts_enabled,
        details_submitted=charges_enabled,
        capabilities={"card_payments": state, "transfers": state},
    )
    acct["requirements"].update(
        currently_due=[] if charges_enabled else ["external_account"],
        disabled_reason=None if charges_enabled else "requirements.past_due",
    )
    events.emit(store, "account.updated", acct)
    return copy.deepcopy(acct)


def retrieve(store: Store, req: RecordedRequest, acct_id: str) -> JSON:
    if not acct_id.startswith("acct_"):
        msg = f"The provided key does not have access to account '{acct_id}'."
        raise ApiError(403, msg, "account_invalid", type="invalid_request_error")
    return copy.deepcopy(account(store, acct_id))


ROUTES = [
    route("GET", r"/v1/accounts/([^/]+)", retrieve, sp.AccountRetrieveParams),
]

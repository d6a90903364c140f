"""Connected accounts: create (``type`` or ``controller`` properties), retrieve, Express
login links; what Stripe does on its own: onboarding completed (``complete_onboarding``),
an account changed (``set_account``), each emitting ``account.updated`` from the account.

- ``accounts.create`` makes an account that cannot take charges yet: its requested
  capabilities ``inactive``, ``requirements.currently_due`` listing what onboarding asks
  for. ``complete_onboarding`` (an Account Link's page, see ``account_links``) turns it
  into what Stripe shows once the user has filled the form in: charges and payouts
  enabled, requested capabilities ``active``, nothing due.
- Unknown ``acct_`` ids named elsewhere (a PaymentIntent's destination, a retrieve) are
  created on first use, enabled and onboarded: tests name accounts without making them.
- Events about a connected account carry its id as the event's ``account``: Stripe sends
  them to Connect webhook endpoints (``delivery``).
- Login links (``accounts.create_login_link``) exist for accounts that use the Express
  Dashboard and have finished onboarding, as at Stripe; the URL opens a small page
  (``pages``).
"""

from __future__ import annotations

import copy
import re
from typing import Any

from stripe import params as sp

from devtools.stripe_emulator import events
from devtools.stripe_emulator.errors import ApiError, invalid, missing
from devtools.stripe_emulator.params import (
    parse_bool,
    parse_enum,
    parse_metadata,
    refuse_unmodelled,
)
from devtools.stripe_emulator.routing import route
from devtools.stripe_emulator.store import JSON, Store, new_id, now
from devtools.stripe_emulator.wire import RecordedRequest

# The emulated platform's country: Stripe's default for an account created without one.
PLATFORM_COUNTRY = "DE"
_CURRENCIES = {"US": "usd", "GB": "gbp", "CH": "chf", "JP": "jpy", "CA": "cad", "AU": "aud",
               "SE": "sek", "DK": "dkk", "NO": "nok", "PL": "pln"}  # fmt: skip
# What Stripe's onboarding asks an individual's new Express account for.
ONBOARDING_DUE = ["business_profile.url", "business_type", "external_account",
                  "individual.first_name", "individual.last_name", "tos_acceptance.date",
                  "tos_acceptance.ip"]  # fmt: skip
# ``type`` (deprecated by Stripe) as ``controller`` properties, and back.
_CONTROLLERS: dict[str, JSON] = {
    "express": {"fees": {"payer": "application"}, "losses": {"payments": "application"},
                "requirement_collection": "stripe", "stripe_dashboard": {"type": "express"}},
    "standard": {"fees": {"payer": "account"}, "losses": {"payments": "stripe"},
                 "requirement_collection": "stripe", "stripe_dashboard": {"type": "full"}},
    "custom": {"fees": {"payer": "application"}, "losses": {"payments": "application"},
               "requirement_collection": "application", "stripe_dashboard": {"type": "none"}},
}  # fmt: skip
_TYPE_OF_DASHBOARD = {"express": "express", "full": "standard", "none": "custom"}
NOT_EXPRESS = (
    "You can only create login links for accounts that use the Express Dashboard and are "
    "connected to your platform."
)
NOT_ONBOARDED = "Cannot create a login link for an account that has not completed onboarding."


def _controller(kind: str) -> JSON:
    return {"type": "application", "is_controller": True, **copy.deepcopy(_CONTROLLERS[kind])}


def account(store: Store, acct_id: str) -> JSON:
    """The stored account (created, enabled, when first named)."""
    # fmt: off
    return store.accounts.setdefault(acct_id, {
        "id": acct_id, "object": "account", "type": "express", "country": PLATFORM_COUNTRY,
        "default_currency": "eur", "charges_enabled": True, "payouts_enabled": True,
        "details_submitted": True, "email": None, "metadata": {}, "created": now(),
        "business_type": None, "controller": _controller("express"),
        "capabilities": {"card_payments": "active", "transfers": "active"},
        "requirements": {"currently_due": [], "eventually_due": [], "past_due": [],
                         "disabled_reason": None},
    })
    # fmt: on


def stored(store: Store, acct_id: str) -> JSON:
    """An account that exists (404 otherwise; not created on first use)."""
    if acct_id not in store.accounts:
        raise missing("account", acct_id, "account")
    return store.accounts[acct_id]


_TRACKED = ("charges_enabled", "payouts_enabled", "details_submitted", "capabilities",
            "requirements")  # fmt: skip


def _changed(store: Store, acct: JSON, before: JSON) -> None:
    """Emit ``account.updated`` when a tracked field changed (with their former values)."""
    previous = {k: before[k] for k in _TRACKED if before[k] != acct[k]}
    if previous:
        events.emit(
            store, "account.updated", acct, previous_attributes=previous, account=acct["id"]
        )


def set_account(
    store: Store, acct_id: str, charges_enabled: bool = True, payouts_enabled: bool | None = None
) -> JSON:
    """Create or change a connected account (``details_submitted`` follows charges);
    emits ``account.updated`` whether or not anything changed (a Dashboard action)."""
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
    events.emit(store, "account.updated", acct, account=acct_id)
    return copy.deepcopy(acct)


def complete_onboarding(store: Store, acct_id: str) -> JSON:
    """The account holder finished Stripe's onboarding form: charges and payouts enabled,
    requested capabilities active, nothing due. ``account.updated`` only if that changed
    something (completing twice sends one event)."""
    acct = stored(store, acct_id)
    before = copy.deepcopy(acct)
    acct.update(charges_enabled=True, payouts_enabled=True, details_submitted=True)
    acct["capabilities"] = {name: "active" for name in acct["capabilities"]}
    acct["requirements"].update(
        currently_due=[], eventually_due=[], past_due=[], disabled_reason=None
    )
    _changed(store, acct, before)
    return copy.deepcopy(acct)


# --- the API ---------------------------------------------------------------------------------


def _kind(params: JSON) -> str:
    """The account type from ``type`` or ``controller`` (the dashboard decides, as at
    Stripe); neither: a Standard account."""
    if "type" in params and "controller" in params:
        raise invalid("You cannot specify both `type` and `controller`.", "type")
    kind = parse_enum(params, "type", tuple(_CONTROLLERS))
    if kind is not None:
        return kind
    controller = params.get("controller") or {}
    dashboard = (controller.get("stripe_dashboard") or {}).get("type", "full")
    if dashboard not in _TYPE_OF_DASHBOARD:
        name = "controller[stripe_dashboard][type]"
        raise invalid(f"Invalid {name}: must be one of express, full, none", name)
    return _TYPE_OF_DASHBOARD[dashboard]


def _controller_of(params: JSON, kind: str) -> JSON:
    """``controller`` as the account shows it: the defaults of its kind, then what was
    asked for."""
    made = _controller(kind)
    asked: Any = params.get("controller") or {}
    for key in ("fees", "losses", "stripe_dashboard"):
        made[key].update(asked.get(key) or {})
    if "requirement_collection" in asked:
        made["requirement_collection"] = asked["requirement_collection"]
    return made


def _capabilities(params: JSON) -> JSON:
    """The requested capabilities, ``inactive`` until onboarding is done."""
    raw = params.get("capabilities") or {}
    if not isinstance(raw, dict):
        raise invalid("Invalid hash", "capabilities")
    out: JSON = {}
    for name, setting in raw.items():
        field = f"capabilities[{name}][requested]"
        requested = parse_bool(setting if isinstance(setting, dict) else {}, "requested", field)
        if requested:
            out[name] = "inactive"
    return out


def create(store: Store, req: RecordedRequest, _: str) -> JSON:
    params = req.params
    refuse_unmodelled(
        params,
        ("type", "controller", "country", "email", "capabilities", "metadata",
         "default_currency", "business_type"),
    )  # fmt: skip
    kind = _kind(params)
    country = params.get("country") or PLATFORM_COUNTRY
    if not isinstance(country, str) or not re.fullmatch(r"[A-Za-z]{2}", country):
        raise invalid(f"Country '{country}' is unknown. Try using a 2-character code.", "country")
    country = country.upper()
    business_type = parse_enum(
        params, "business_type", ("company", "government_entity", "individual", "non_profit")
    )
    acct_id = new_id("acct_", 16)
    # fmt: off
    acct: JSON = {
        "id": acct_id, "object": "account", "type": kind, "country": country,
        "default_currency": params.get("default_currency") or _CURRENCIES.get(country, "eur"),
        "charges_enabled": False, "payouts_enabled": False, "details_submitted": False,
        "email": params.get("email"), "metadata": parse_metadata(params.get("metadata")),
        "created": now(), "business_type": business_type,
        "controller": _controller_of(params, kind), "capabilities": _capabilities(params),
        "requirements": {"currently_due": list(ONBOARDING_DUE),
                         "eventually_due": list(ONBOARDING_DUE), "past_due": [],
                         "disabled_reason": "requirements.past_due"},
    }
    # fmt: on
    store.accounts[acct_id] = acct
    return copy.deepcopy(acct)


def retrieve(store: Store, req: RecordedRequest, acct_id: str) -> JSON:
    if not acct_id.startswith("acct_"):
        msg = f"The provided key does not have access to account '{acct_id}'."
        raise ApiError(403, msg, "account_invalid", type="invalid_request_error")
    return copy.deepcopy(account(store, acct_id))


def uses_express_dashboard(acct: JSON) -> bool:
    controller = acct.get("controller") or {}
    dashboard = (controller.get("stripe_dashboard") or {}).get("type")
    return bool(dashboard == "express" or (not controller and acct.get("type") == "express"))


def create_login_link(store: Store, req: RecordedRequest, acct_id: str) -> JSON:
    acct = account(store, acct_id)
    if not uses_express_dashboard(acct):
        raise ApiError(400, NOT_EXPRESS, param="account")
    if not acct["details_submitted"]:
        raise ApiError(400, NOT_ONBOARDED, param="account")
    token = new_id("", 24)
    created = now()
    store.login_links[token] = {"account": acct_id, "created": created}
    return {"object": "login_link", "created": created, "url": f"{req.base_url}/express/{token}"}


ROUTES = [
    route("POST", r"/v1/accounts", create, sp.AccountCreateParams),
    route("GET", r"/v1/accounts/([^/]+)", retrieve, sp.AccountRetrieveParams),
    route(
        "POST",
        r"/v1/accounts/([^/]+)/login_links",
        create_login_link,
        sp.AccountLoginLinkCreateParams,
    ),
]

"""The pages a browser opens instead of Stripe's hosted ones, so that onboarding works
offline: an Account Link's URL (``/connect/setup/<token>``) shows the account and a
"Complete onboarding" button, and an Express login link (``/express/<token>``) a small
stand-in for the Express Dashboard.

    GET  /connect/setup/<token>            the onboarding page, on the link's first visit;
                                           a link visited before, expired or completed
                                           answers 303 to its refresh_url, as at Stripe
    POST /connect/setup/<token>/complete   completes the onboarding (account.updated is
                                           sent) and answers 303 to the link's return_url
    GET  /express/<token>                  the account's state
"""

from __future__ import annotations

from html import escape
from typing import TYPE_CHECKING

from devtools.stripe_emulator import account_links
from devtools.stripe_emulator.errors import ApiError
from devtools.stripe_emulator.store import JSON
from devtools.stripe_emulator.wire import Response

if TYPE_CHECKING:
    from devtools.stripe_emulator.emulator import StripeEmulator

EXPRESS = "/express/"
PREFIXES = (account_links.PATH, EXPRESS)
HTML = "text/html; charset=utf-8"


def _page(title: str, body: str, status: int = 200) -> Response:
    document = (
        '<!doctype html>\n<html lang="en">\n<head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)} · Stripe emulator</title>"
        "<style>body{font-family:system-ui,sans-serif;max-width:36rem;margin:3rem auto;"
        "padding:0 1rem;line-height:1.5}button{font-size:1rem;padding:.6rem 1.2rem}"
        "dt{font-weight:600}</style></head>\n"
        f"<body><main><h1>{escape(title)}</h1>\n{body}\n"
        "<p><small>Stripe emulator: nothing here reaches Stripe.</small></p></main></body>\n"
        "</html>\n"
    )
    return Response(status, document, content_type=HTML)


def _redirect(url: str) -> Response:
    return Response(303, "", {"Location": url}, content_type=HTML)


def _facts(acct: JSON) -> str:
    due = ", ".join(acct["requirements"]["currently_due"]) or "nothing"
    rows = (
        ("Account", acct["id"]),
        ("Email", acct.get("email") or "—"),
        ("Country", acct["country"]),
        ("Charges enabled", "yes" if acct["charges_enabled"] else "no"),
        ("Payouts enabled", "yes" if acct["payouts_enabled"] else "no"),
        ("Currently due", due),
    )
    items = "".join(f"<dt>{escape(k)}</dt><dd>{escape(str(v))}</dd>" for k, v in rows)
    return f"<dl>{items}</dl>"


def _onboarding(emu: StripeEmulator, method: str, rest: str) -> Response:
    token, _, action = rest.partition("/")
    if method == "GET" and not action:
        link = emu.visit_account_link(token)
        if not link["shown"]:
            return _redirect(link["refresh_url"])
        form = (
            f'<form method="post" action="{account_links.PATH}{escape(token)}/complete">'
            '<button type="submit">Complete onboarding</button></form>'
        )
        intro = "<p>Stripe would ask for identity, business and bank details here.</p>"
        title = "Set up payouts"
        return _page(title, intro + _facts(emu.account(link["account"])) + form)
    if method == "POST" and action == "complete":
        link = emu.account_link(token)
        if not link["usable"]:
            return _redirect(link["refresh_url"])
        emu.complete_onboarding(token)
        return _redirect(link["return_url"])
    return _page("Not found", "<p>No such page.</p>", 404)


def _express(emu: StripeEmulator, method: str, token: str) -> Response:
    acct_id = emu.login_link_account(token)
    if method != "GET" or acct_id is None:
        return _page("Not found", "<p>This login link is unknown.</p>", 404)
    return _page("Express Dashboard", _facts(emu.account(acct_id)))


def handle(emu: StripeEmulator, method: str, path: str) -> Response:
    try:
        if path.startswith(account_links.PATH):
            return _onboarding(emu, method, path.removeprefix(account_links.PATH))
        return _express(emu, method, path.removeprefix(EXPRESS))
    except ApiError as e:
        return _page("Not found", f"<p>{escape(e.message)}</p>", e.status)

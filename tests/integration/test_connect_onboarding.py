"""Stripe Connect onboarding over the Flask app, the real database and the Stripe emulator
(the real SDK over HTTP): the onboarding link (the account made once, whatever the retries
and races), the Express Dashboard link, errors, and what an artist's JSON shows."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy.orm import Session, sessionmaker

from devtools.stripe_emulator import RecordedRequest, StripeEmulator
from shared.adapters.db import transaction
from shared.adapters.models import Artist
from shared.adapters.payments import (
    ExpressAccountRequest,
    StripeGateway,
    account_idempotency_key,
)
from shared.config import Settings
from tests import support

JSON = dict[str, Any]
RETURN = "https://studio.example/onboarding/done"
REFRESH = "https://studio.example/onboarding/again"
LINKS = {"returnUrl": RETURN, "refreshUrl": REFRESH}


@pytest.fixture(autouse=True)
def _no_failures_left(stripe_emulator: StripeEmulator) -> Iterator[None]:
    yield
    stripe_emulator.reset_failures()


def make_artist(client: FlaskClient, headers: dict[str, str], **fields: Any) -> JSON:
    tag = uuid.uuid4().hex[:8]
    body = {"name": f"Artist {tag}", "email": f"artist-{tag}@example.com", "timezone": "UTC"}
    response = client.post("/api/admin/artists", json=body | fields, headers=headers)
    assert response.status_code == 201, response.json
    created: JSON = response.json  # type: ignore[assignment]
    return created


def post(client: FlaskClient, path: str, **kwargs: Any) -> Any:
    """The answer, typed loosely: `.json` is the parsed body."""
    return client.post(path, **kwargs)


def onboard(client: FlaskClient, headers: dict[str, str], artist_id: str, **body: Any) -> Any:
    return client.post(
        f"/api/admin/artists/{artist_id}/stripe/onboarding", json=LINKS | body, headers=headers
    )


def artist_json(client: FlaskClient, headers: dict[str, str], artist_id: str) -> JSON:
    response = client.get(f"/api/admin/artists/{artist_id}", headers=headers)
    assert response.status_code == 200
    found: JSON = response.json  # type: ignore[assignment]
    return found


def account_creations(emulator: StripeEmulator, artist_id: str) -> list[RecordedRequest]:
    """The accounts.create calls made for this artist (the emulator is shared)."""
    key = account_idempotency_key(uuid.UUID(artist_id))
    return [r for r in emulator.requests_to("/v1/accounts", "POST")
            if r.path == "/v1/accounts" and r.idempotency_key == key]  # fmt: skip


def links_made(emulator: StripeEmulator, account_id: str) -> list[RecordedRequest]:
    return [r for r in emulator.requests_to("/v1/account_links", "POST")
            if r.params.get("account") == account_id]  # fmt: skip


def test_onboarding_creates_an_express_account_and_answers_a_fresh_link(
    client: FlaskClient, admin_headers: dict[str, str], stripe_emulator: StripeEmulator
) -> None:
    artist = make_artist(client, admin_headers)
    assert (artist["stripeAccountId"], artist["payoutsEnabled"], artist["requirementsDue"]) == (
        None,
        False,
        [],
    )
    before = datetime.now(UTC)

    response = onboard(client, admin_headers, artist["id"])

    assert response.status_code == 200, response.json
    body = response.json
    account_id = body["stripeAccountId"]
    assert set(body) == {"url", "expiresAt", "stripeAccountId"}
    assert body["url"].startswith(f"{stripe_emulator.url}/connect/setup/")
    expires = datetime.fromisoformat(body["expiresAt"])
    assert before + timedelta(minutes=4) < expires < before + timedelta(minutes=6)
    # What Stripe was asked: an Express account for this artist, once, under the artist's key.
    [created] = account_creations(stripe_emulator, artist["id"])
    assert created.params == {
        "controller": {
            "fees": {"payer": "application"},
            "losses": {"payments": "application"},
            "requirement_collection": "stripe",
            "stripe_dashboard": {"type": "express"},
        },
        "email": artist["email"],
        "capabilities": {
            "card_payments": {"requested": "true"},
            "transfers": {"requested": "true"},
        },
        "metadata": {"artistId": artist["id"]},
    }
    account = stripe_emulator.account(account_id)
    assert (account["type"], account["country"]) == ("express", "DE")  # the platform's
    [link] = links_made(stripe_emulator, account_id)
    assert link.params == {
        "account": account_id,
        "return_url": RETURN,
        "refresh_url": REFRESH,
        "type": "account_onboarding",
    }
    # The artist has its account, as Stripe describes it: no charges until onboarded.
    shown = artist_json(client, admin_headers, artist["id"])
    assert shown["stripeAccountId"] == account_id
    assert (shown["chargesEnabled"], shown["payoutsEnabled"]) == (False, False)
    assert "external_account" in shown["requirementsDue"]

    # Again (the link expired): a new link to the same account, no second account.
    again = onboard(client, admin_headers, artist["id"])
    assert again.status_code == 200
    assert again.json["stripeAccountId"] == account_id
    assert again.json["url"] != body["url"]
    assert len(account_creations(stripe_emulator, artist["id"])) == 1
    assert len(links_made(stripe_emulator, account_id)) == 2


def test_the_account_country_comes_from_the_setting(
    make_app: Callable[..., Flask], admin_headers: dict[str, str], stripe_emulator: StripeEmulator
) -> None:
    client = make_app(stripe_connect_country="FR").test_client()
    artist = make_artist(client, admin_headers)
    response = onboard(client, admin_headers, artist["id"])
    assert response.status_code == 200
    assert stripe_emulator.account(response.json["stripeAccountId"])["country"] == "FR"
    [created] = account_creations(stripe_emulator, artist["id"])
    assert created.params["country"] == "FR"


def test_an_artist_with_an_account_gets_a_fresh_link_to_that_account(
    client: FlaskClient, admin_headers: dict[str, str], stripe_emulator: StripeEmulator
) -> None:
    typed = f"acct_1Typed{uuid.uuid4().hex[:8]}"
    artist = make_artist(client, admin_headers, stripeAccountId=typed, chargesEnabled=True)
    first = onboard(client, admin_headers, artist["id"])
    second = onboard(client, admin_headers, artist["id"])
    assert (first.status_code, second.status_code) == (200, 200)
    assert first.json["stripeAccountId"] == second.json["stripeAccountId"] == typed
    assert first.json["url"] != second.json["url"]
    assert account_creations(stripe_emulator, artist["id"]) == []
    assert len(links_made(stripe_emulator, typed)) == 2
    # Nothing the operator said about the account is overwritten by asking for a link.
    assert artist_json(client, admin_headers, artist["id"])["chargesEnabled"] is True


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"returnUrl": "ftp://studio.example/done"}, "returnUrl"),
        ({"returnUrl": "/onboarding/done"}, "returnUrl"),
        ({"refreshUrl": "https:///again"}, "refreshUrl"),
        ({"refreshUrl": "https://studio example/again"}, "refreshUrl"),
        ({"refreshUrl": 42}, "refreshUrl"),
        ({"returnUrl": "https://studio.example/" + "x" * 2048}, "returnUrl"),
    ],
)
def test_urls_must_be_absolute_http_urls(
    client: FlaskClient,
    admin_headers: dict[str, str],
    stripe_emulator: StripeEmulator,
    body: JSON,
    field: str,
) -> None:
    artist = make_artist(client, admin_headers)
    response = onboard(client, admin_headers, artist["id"], **body)
    assert response.status_code == 400
    assert response.json["error"] == "VALIDATION_ERROR"
    assert list(response.json["details"]["fields"]) == [field]
    assert account_creations(stripe_emulator, artist["id"]) == []


def test_bad_requests_call_no_stripe(
    client: FlaskClient, admin_headers: dict[str, str], stripe_emulator: StripeEmulator
) -> None:
    artist = make_artist(client, admin_headers)
    path = f"/api/admin/artists/{artist['id']}/stripe/onboarding"
    missing = post(client, path, json={"returnUrl": RETURN}, headers=admin_headers)
    assert missing.status_code == 400
    assert "refreshUrl" in missing.json["details"]["fields"]
    empty = post(client, path, headers=admin_headers)
    assert (empty.status_code, empty.json["error"]) == (400, "VALIDATION_ERROR")
    assert post(client, path, json=LINKS).status_code == 401
    for unknown in (str(uuid.uuid4()), "not-a-uuid"):
        answer = onboard(client, admin_headers, unknown)
        assert (answer.status_code, answer.json["error"]) == (404, "NOT_FOUND")
        dashboard = post(
            client, f"/api/admin/artists/{unknown}/stripe/dashboard", headers=admin_headers
        )
        assert (dashboard.status_code, dashboard.json["error"]) == (404, "NOT_FOUND")
    assert account_creations(stripe_emulator, artist["id"]) == []


def test_stripe_failing_to_create_the_account_leaves_nothing(
    client: FlaskClient, admin_headers: dict[str, str], stripe_emulator: StripeEmulator
) -> None:
    artist = make_artist(client, admin_headers)
    stripe_emulator.fail_next(status=500, path_prefix="/v1/accounts", method="POST")

    failed = onboard(client, admin_headers, artist["id"])

    assert failed.status_code == 502
    assert failed.json["error"] == "PAYMENT_PROVIDER_ERROR"
    assert artist_json(client, admin_headers, artist["id"]) == artist  # untouched
    # Retried: the account is made then.
    retried = onboard(client, admin_headers, artist["id"])
    assert retried.status_code == 200
    assert (
        artist_json(client, admin_headers, artist["id"])["stripeAccountId"]
        == (retried.json["stripeAccountId"])
    )
    assert [r.status for r in account_creations(stripe_emulator, artist["id"])] == [500, 200]


def test_stripe_failing_to_link_keeps_the_account_it_made_and_never_makes_two(
    client: FlaskClient, admin_headers: dict[str, str], stripe_emulator: StripeEmulator
) -> None:
    artist = make_artist(client, admin_headers)
    stripe_emulator.fail_next(status=503, path_prefix="/v1/account_links")

    failed = onboard(client, admin_headers, artist["id"])

    assert (failed.status_code, failed.json["error"]) == (502, "PAYMENT_PROVIDER_ERROR")
    [created] = account_creations(stripe_emulator, artist["id"])
    account_id = created.response["id"]
    # The account exists at Stripe, so the artist has it: a retry links to it.
    assert artist_json(client, admin_headers, artist["id"])["stripeAccountId"] == account_id
    retried = onboard(client, admin_headers, artist["id"])
    assert retried.status_code == 200
    assert retried.json["stripeAccountId"] == account_id
    assert len(account_creations(stripe_emulator, artist["id"])) == 1


def test_an_account_made_before_a_crash_is_the_one_stored_after_it(
    client: FlaskClient,
    admin_headers: dict[str, str],
    stripe_emulator: StripeEmulator,
    settings: Settings,
) -> None:
    """Stripe made the account but the process died before storing it: the next request
    asks again with the artist's key and gets that same account, not a second one."""
    artist = make_artist(client, admin_headers)
    lost = StripeGateway(settings).create_express_account(
        ExpressAccountRequest(uuid.UUID(artist["id"]), artist["email"], None)
    )

    response = onboard(client, admin_headers, artist["id"])

    assert response.status_code == 200
    assert response.json["stripeAccountId"] == lost.id
    assert [r.replayed for r in account_creations(stripe_emulator, artist["id"])] == [False, True]


def test_concurrent_onboarding_requests_end_with_one_account(
    make_app: Callable[..., Flask],
    admin_headers: dict[str, str],
    stripe_emulator: StripeEmulator,
    sessions: sessionmaker[Session],
) -> None:
    # The SDK retries a request whose key is in use (409) as in production (2 retries by
    # default); the first account creation is held a moment so that the two overlap.
    app = make_app(stripe_max_retries=4)
    artist = make_artist(app.test_client(), admin_headers)
    stripe_emulator.delay_next(1.0, path_prefix="/v1/accounts", method="POST", phase="before")
    start = threading.Barrier(2)
    answers: list[Any] = [None, None]

    def request(n: int) -> None:
        client = app.test_client()
        start.wait()
        answers[n] = onboard(client, admin_headers, artist["id"])

    threads = [threading.Thread(target=request, args=(n,)) for n in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)

    assert [a.status_code for a in answers] == [200, 200], [a.json for a in answers]
    [account_id] = {a.json["stripeAccountId"] for a in answers}
    calls = account_creations(stripe_emulator, artist["id"])
    # Both asked Stripe (the race happened); Stripe made one account.
    assert len(calls) >= 2
    assert [c.response["id"] for c in calls if c.status == 200] == [account_id] * len(
        [c for c in calls if c.status == 200]
    )
    assert [c.replayed for c in calls if c.status == 200].count(False) == 1
    assert 409 in [c.status for c in calls]
    with transaction(sessions) as session:
        row = session.get(Artist, uuid.UUID(artist["id"]))
        assert row is not None
        assert row.stripe_account_id == account_id


def test_no_transaction_is_open_while_stripe_works(
    app: Flask, admin_headers: dict[str, str], stripe_emulator: StripeEmulator
) -> None:
    """Stripe slow to make the account: meanwhile the artist's row can be changed at once
    (no row lock, no transaction held across the call)."""
    artist = make_artist(app.test_client(), admin_headers)
    stripe_emulator.delay_next(1.5, path_prefix="/v1/accounts", method="POST", phase="before")
    answers: list[Any] = []
    slow = threading.Thread(
        target=lambda: answers.append(onboard(app.test_client(), admin_headers, artist["id"]))
    )
    slow.start()
    assert support.wait_until(
        lambda: account_creations(stripe_emulator, artist["id"]) != [], timeout=5
    )
    started = time.monotonic()
    patched = app.test_client().patch(
        f"/api/admin/artists/{artist['id']}", json={"name": "Renamed"}, headers=admin_headers
    )
    took = time.monotonic() - started
    slow.join(10)

    assert patched.status_code == 200
    assert took < 1.0, f"the artist's row was held for {took:.2f} s"
    [answer] = answers
    assert answer.status_code == 200
    shown = artist_json(app.test_client(), admin_headers, artist["id"])
    assert (shown["name"], shown["stripeAccountId"]) == ("Renamed", answer.json["stripeAccountId"])


def test_the_dashboard_link_once_onboarded(
    client: FlaskClient, admin_headers: dict[str, str], stripe_emulator: StripeEmulator
) -> None:
    artist = make_artist(client, admin_headers)
    path = f"/api/admin/artists/{artist['id']}/stripe/dashboard"

    none_yet = post(client, path, headers=admin_headers)
    assert (none_yet.status_code, none_yet.json["error"]) == (422, "STRIPE_NOT_CONFIGURED")
    assert "onboarding" in none_yet.json["message"]

    onboarding = onboard(client, admin_headers, artist["id"]).json
    unfinished = post(client, path, headers=admin_headers)
    assert (unfinished.status_code, unfinished.json["error"]) == (422, "STRIPE_NOT_CONFIGURED")

    stripe_emulator.complete_onboarding(onboarding["url"])
    response = post(client, path, headers=admin_headers)
    assert response.status_code == 200
    assert set(response.json) == {"url"}
    assert response.json["url"].startswith(f"{stripe_emulator.url}/express/")
    login = stripe_emulator.requests_to(f"/v1/accounts/{onboarding['stripeAccountId']}/login_links")
    assert [r.status for r in login] == [400, 200]

    stripe_emulator.fail_next(status=500, path_prefix="/v1/accounts/", method="POST")
    failed = post(client, path, headers=admin_headers)
    assert (failed.status_code, failed.json["error"]) == (502, "PAYMENT_PROVIDER_ERROR")
    assert post(client, path).status_code == 401


def test_changing_the_account_forgets_what_stripe_said_of_the_old_one(
    client: FlaskClient,
    admin_headers: dict[str, str],
    stripe_emulator: StripeEmulator,
    sessions: sessionmaker[Session],
) -> None:
    artist = make_artist(client, admin_headers)
    onboard(client, admin_headers, artist["id"])
    with transaction(sessions) as session:
        row = session.get(Artist, uuid.UUID(artist["id"]))
        assert row is not None
        row.payouts_enabled, row.charges_enabled = True, True
    assert artist_json(client, admin_headers, artist["id"])["requirementsDue"] != []

    response: Any = client.patch(
        f"/api/admin/artists/{artist['id']}",
        json={"stripeAccountId": "acct_1Other"},
        headers=admin_headers,
    )

    assert response.status_code == 200
    shown = response.json
    assert (shown["chargesEnabled"], shown["payoutsEnabled"], shown["requirementsDue"]) == (
        False,
        False,
        [],
    )

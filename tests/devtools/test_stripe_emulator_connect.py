"""The emulator's Stripe Connect onboarding, driven through the real SDK and a browser's
requests: Express accounts (``type`` or ``controller`` properties), Account Links and
their pages, the "complete onboarding" control endpoint, login links, and
``account.updated`` delivered to the Connect endpoint with its own secret."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import stripe
from stripe.params import AccountCreateParams

from devtools.stripe_emulator import StripeEmulator
from devtools.stripe_emulator.account_links import TTL_SECONDS
from devtools.stripe_emulator.delivery import Endpoint
from tests.devtools.test_stripe_emulator_webhooks import (
    FAST,
    SECRET,
    Receiver,
    serving,
    wait_types,
)

API_KEY = "sk_test_emulator"
CONNECT_SECRET = "whsec_emulator_connect"
RETURN, REFRESH = "https://inkflow.test/onboarding/done", "https://inkflow.test/onboarding/again"


@pytest.fixture
def connect_receiver() -> Iterator[Receiver]:
    with serving(Receiver(secret=CONNECT_SECRET)) as state:
        yield state


@pytest.fixture
def make_emulator() -> Iterator[Callable[..., StripeEmulator]]:
    started: list[StripeEmulator] = []

    def make(**kwargs: Any) -> StripeEmulator:
        kwargs.setdefault("retry", FAST)
        emulator = StripeEmulator(**kwargs).start()
        started.append(emulator)
        return emulator

    yield make
    for emulator in started:
        emulator.stop()


@pytest.fixture
def emulator(make_emulator: Callable[..., StripeEmulator]) -> StripeEmulator:
    return make_emulator()


@pytest.fixture
def client(emulator: StripeEmulator) -> Iterator[stripe.StripeClient]:
    http_client = stripe.RequestsClient(timeout=5)
    yield stripe.StripeClient(
        API_KEY,
        base_addresses={"api": emulator.url},
        max_network_retries=0,
        http_client=http_client,
    )
    http_client.close()


def express_params(**overrides: Any) -> AccountCreateParams:
    """What inkflow's gateway sends for an artist."""
    params: AccountCreateParams = {
        "controller": {
            "fees": {"payer": "application"},
            "losses": {"payments": "application"},
            "stripe_dashboard": {"type": "express"},
        },
        "country": "FR",
        "email": "ink@artist.test",
        "capabilities": {"card_payments": {"requested": True}, "transfers": {"requested": True}},
        "metadata": {"artistId": "ar_1"},
    }
    params.update(overrides)  # type: ignore[typeddict-item]
    return params


def onboarding_link(client: stripe.StripeClient, account: str) -> stripe.AccountLink:
    return client.v1.account_links.create(
        {"account": account, "refresh_url": REFRESH, "return_url": RETURN,
         "type": "account_onboarding"}
    )  # fmt: skip


def control(emulator: StripeEmulator, path: str) -> requests.Response:
    return requests.post(f"{emulator.url}/_emulator/{path}", timeout=5)


# --- accounts -----------------------------------------------------------------------------------


def test_an_express_account_from_controller_properties_cannot_take_charges_yet(
    client: stripe.StripeClient, emulator: StripeEmulator
) -> None:
    account = client.v1.accounts.create(express_params())
    shown = account.to_dict()

    assert account.id.startswith("acct_")
    assert (account.type, account.country, account.email) == ("express", "FR", "ink@artist.test")
    assert (account.charges_enabled, account.payouts_enabled, account.details_submitted) == (
        False,
        False,
        False,
    )
    assert shown["capabilities"] == {"card_payments": "inactive", "transfers": "inactive"}
    assert "external_account" in shown["requirements"]["currently_due"]
    assert shown["requirements"]["disabled_reason"] == "requirements.past_due"
    assert shown["controller"]["stripe_dashboard"]["type"] == "express"
    assert shown["metadata"] == {"artistId": "ar_1"}
    assert emulator.account(account.id)["charges_enabled"] is False
    # A destination charge to it is refused until onboarding is done.
    with pytest.raises(stripe.InvalidRequestError) as refused:
        client.v1.payment_intents.create(
            {"amount": 5000, "currency": "eur", "transfer_data": {"destination": account.id}}
        )
    assert refused.value.code == "insufficient_capabilities_for_transfer"


def test_type_express_standard_and_refused_params(client: stripe.StripeClient) -> None:
    express = client.v1.accounts.create({"type": "express", "country": "US"})
    assert (express.type, express.default_currency) == ("express", "usd")
    assert express.to_dict()["controller"]["stripe_dashboard"]["type"] == "express"
    assert express.to_dict()["capabilities"] == {}  # none requested
    standard = client.v1.accounts.create({})
    assert (standard.type, standard.country) == ("standard", "DE")  # the platform's country

    refused: list[tuple[AccountCreateParams, str]] = [
        ({"type": "express", "controller": {"stripe_dashboard": {"type": "express"}}}, "type"),
        ({"type": "bogus"}, "type"),
        ({"country": "France"}, "country"),
        ({"controller": {"stripe_dashboard": {"type": "fancy"}}}, "controller"),
        ({"business_profile": {"name": "Ink"}}, "business_profile"),
    ]
    for params, param in refused:
        with pytest.raises(stripe.InvalidRequestError) as exc:
            client.v1.accounts.create(params)
        assert exc.value.http_status == 400
        assert (exc.value.param or "").startswith(param), (params, exc.value.param)


def test_one_idempotency_key_one_account(
    client: stripe.StripeClient, emulator: StripeEmulator
) -> None:
    first = client.v1.accounts.create(express_params(), {"idempotency_key": "inkflow-account-1"})
    again = client.v1.accounts.create(express_params(), {"idempotency_key": "inkflow-account-1"})
    assert again.id == first.id
    assert [r.replayed for r in emulator.requests_to("/v1/accounts", "POST")] == [False, True]
    other = client.v1.accounts.create(express_params(), {"idempotency_key": "inkflow-account-2"})
    assert other.id != first.id


# --- account links, the control endpoint, the pages --------------------------------------------


def test_completing_an_account_link_enables_the_account_and_sends_account_updated(
    make_emulator: Callable[..., StripeEmulator], connect_receiver: Receiver
) -> None:
    emulator = make_emulator(webhook=Endpoint(connect_receiver.url, CONNECT_SECRET))
    client = stripe.StripeClient(
        API_KEY, base_addresses={"api": emulator.url}, max_network_retries=0
    )
    account = client.v1.accounts.create(express_params())
    before = time.time()
    link = onboarding_link(client, account.id)

    assert link.object == "account_link"
    assert link.url.startswith(f"{emulator.url}/connect/setup/")
    assert link.expires_at == link.created + TTL_SECONDS
    assert before - 1 <= link.created <= time.time()
    token = link.url.rsplit("/", 1)[-1]

    completed = control(emulator, f"account_links/{token}/complete")
    assert completed.status_code == 200, completed.text
    body = completed.json()
    assert (body["id"], body["charges_enabled"], body["payouts_enabled"]) == (
        account.id,
        True,
        True,
    )
    assert body["requirements"]["currently_due"] == []
    assert body["capabilities"] == {"card_payments": "active", "transfers": "active"}
    wait_types(connect_receiver, "account.updated")
    [event] = connect_receiver.events
    assert event["account"] == account.id
    assert event["data"]["object"]["charges_enabled"] is True
    assert event["data"]["previous_attributes"]["charges_enabled"] is False
    assert client.v1.accounts.retrieve(account.id).payouts_enabled is True

    # A link serves once.
    again = control(emulator, f"account_links/{token}/complete")
    assert again.status_code == 400
    assert again.json()["error"]["code"] == "account_link_expired"
    assert emulator.account_link(link.url)["used"] is True
    assert control(emulator, "account_links/nope/complete").status_code == 404


def test_the_onboarding_page_completes_in_a_browser_and_returns(
    client: stripe.StripeClient, emulator: StripeEmulator
) -> None:
    account = client.v1.accounts.create(express_params())
    link = onboarding_link(client, account.id)
    with requests.Session() as browser:
        page = browser.get(link.url, timeout=5)
        assert page.status_code == 200
        assert page.headers["Content-Type"].startswith("text/html")
        assert account.id in page.text
        assert "Complete onboarding" in page.text
        action = f'action="/connect/setup/{link.url.rsplit("/", 1)[-1]}/complete"'
        assert action in page.text

        # One visit per link, as at Stripe: a reload goes to refresh_url (the form still works).
        reloaded = browser.get(link.url, allow_redirects=False, timeout=5)
        assert (reloaded.status_code, reloaded.headers["Location"]) == (303, REFRESH)
        assert emulator.account_link(link.url)["visited"] is True

        done = browser.post(f"{link.url}/complete", allow_redirects=False, timeout=5)
        assert (done.status_code, done.headers["Location"]) == (303, RETURN)
        assert emulator.account(account.id)["charges_enabled"] is True
        [event] = emulator.logged_events(related_to=account.id)
        assert (event["type"], event["account"]) == ("account.updated", account.id)

        # Completed: Stripe sends the browser to refresh_url (the platform makes a new link).
        revisit = browser.get(link.url, allow_redirects=False, timeout=5)
        assert (revisit.status_code, revisit.headers["Location"]) == (303, REFRESH)
        again = browser.post(f"{link.url}/complete", allow_redirects=False, timeout=5)
        assert (again.status_code, again.headers["Location"]) == (303, REFRESH)
        assert len(emulator.logged_events(related_to=account.id)) == 1
        unknown = browser.get(f"{emulator.url}/connect/setup/nope", timeout=5)
        assert unknown.status_code == 404


def test_an_expired_link_goes_to_refresh_url_and_completes_nothing(
    client: stripe.StripeClient, emulator: StripeEmulator
) -> None:
    account = client.v1.accounts.create(express_params())
    link = onboarding_link(client, account.id)
    expired = emulator.expire_account_link(link.url)
    assert expired["expires_at"] < time.time()
    with requests.Session() as browser:
        shown = browser.get(link.url, allow_redirects=False, timeout=5)
        assert (shown.status_code, shown.headers["Location"]) == (303, REFRESH)
        posted = browser.post(f"{link.url}/complete", allow_redirects=False, timeout=5)
        assert (posted.status_code, posted.headers["Location"]) == (303, REFRESH)
    assert emulator.account(account.id)["charges_enabled"] is False
    assert emulator.logged_events(related_to=account.id) == []
    # A fresh link works.
    fresh = onboarding_link(client, account.id)
    assert emulator.complete_onboarding(fresh.url)["charges_enabled"] is True


def test_account_link_validation(client: stripe.StripeClient) -> None:
    account = client.v1.accounts.create(express_params())
    for params, param in (
        ({"return_url": "not a url"}, "return_url"),
        ({"refresh_url": "ftp://x/y"}, "refresh_url"),
        ({"type": "account_update"}, "type"),  # not for an Express Dashboard account
        ({"type": "bogus"}, "type"),
    ):
        with pytest.raises(stripe.InvalidRequestError) as exc:
            client.v1.account_links.create(
                {"account": account.id, "refresh_url": REFRESH, "return_url": RETURN,
                 "type": "account_onboarding", **params}  # type: ignore[typeddict-item]
            )  # fmt: skip
        assert exc.value.param == param


# --- login links ---------------------------------------------------------------------------------


def test_login_links_once_onboarded_and_only_for_express(
    client: stripe.StripeClient, emulator: StripeEmulator
) -> None:
    account = client.v1.accounts.create(express_params())
    with pytest.raises(stripe.InvalidRequestError) as early:
        client.v1.accounts.login_links.create(account.id)
    assert "not completed onboarding" in str(early.value.user_message)

    emulator.complete_onboarding(onboarding_link(client, account.id).url)
    login = client.v1.accounts.login_links.create(account.id)
    assert login.object == "login_link"
    assert login.url.startswith(f"{emulator.url}/express/")
    page = requests.get(login.url, timeout=5)
    assert page.status_code == 200
    assert "Express Dashboard" in page.text
    assert account.id in page.text

    standard = client.v1.accounts.create({"country": "FR"})
    with pytest.raises(stripe.InvalidRequestError) as full:
        client.v1.accounts.login_links.create(standard.id)
    assert "Express Dashboard" in str(full.value.user_message)
    assert requests.get(f"{emulator.url}/express/nope", timeout=5).status_code == 404


# --- Connect webhooks ----------------------------------------------------------------------------


def test_events_on_connected_accounts_go_to_the_connect_endpoint_with_its_secret(
    make_emulator: Callable[..., StripeEmulator], connect_receiver: Receiver
) -> None:
    with serving(Receiver()) as platform:
        emulator = make_emulator(
            webhook=Endpoint(platform.url, SECRET),
            connect_webhook=Endpoint(connect_receiver.url, CONNECT_SECRET),
        )
        client = stripe.StripeClient(
            API_KEY, base_addresses={"api": emulator.url}, max_network_retries=0
        )
        account = client.v1.accounts.create(express_params())
        emulator.complete_onboarding(onboarding_link(client, account.id).url)
        intent = client.v1.payment_intents.create(
            {"amount": 5000, "currency": "eur", "transfer_data": {"destination": account.id}}
        )
        emulator.set_account(account.id, charges_enabled=False)
        emulator.succeed_payment_intent(intent.id)
        assert emulator.wait_for_deliveries(10)

        # Each endpoint checked its own secret (a wrong one counts as a bad signature).
        assert connect_receiver.types() == ["account.updated", "account.updated"]
        assert {e["account"] for e in connect_receiver.events} == {account.id}
        wait_types(platform, "payment_intent.succeeded", "charge.succeeded")
        assert "account.updated" not in platform.types()
        assert (platform.bad_signatures, connect_receiver.bad_signatures) == (0, 0)
        described = requests.get(f"{emulator.url}/_emulator/webhook", timeout=5).json()
        assert described["connect"]["url"] == connect_receiver.url
        assert "secret" not in str(described)


def test_the_connect_endpoint_is_configured_over_the_control_api(
    emulator: StripeEmulator, client: stripe.StripeClient, connect_receiver: Receiver
) -> None:
    with serving(Receiver()) as platform:
        configured = requests.post(
            f"{emulator.url}/_emulator/webhook",
            json={"url": platform.url, "secret": SECRET, "connect_url": connect_receiver.url,
                  "connect_secret": CONNECT_SECRET},
            timeout=5,
        )  # fmt: skip
        assert configured.json()["connect"]["url"] == connect_receiver.url
        account = client.v1.accounts.create(express_params())
        link = onboarding_link(client, account.id)
        token = link.url.rsplit("/", 1)[-1]
        assert requests.get(f"{emulator.url}/_emulator/account_links/{token}", timeout=5).json()[
            "usable"
        ]
        assert control(emulator, f"account_links/{token}/complete").status_code == 200
        wait_types(connect_receiver, "account.updated")
        assert platform.types() == []


def test_links_survive_a_restart(
    make_emulator: Callable[..., StripeEmulator], tmp_path: Path
) -> None:
    state = tmp_path / "state.json"
    first = make_emulator(state_path=state)
    client = stripe.StripeClient(API_KEY, base_addresses={"api": first.url}, max_network_retries=0)
    account = client.v1.accounts.create(express_params())
    link = onboarding_link(client, account.id)
    first.stop()

    second = make_emulator(state_path=state)
    assert second.account(account.id)["charges_enabled"] is False
    assert second.complete_onboarding(link.url)["charges_enabled"] is True

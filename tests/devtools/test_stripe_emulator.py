"""The Stripe emulator, driven through the real ``stripe`` SDK (16.x) and plain HTTP."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import stripe
from stripe.params import PaymentIntentCreateParams

from devtools.stripe_emulator import API_VERSION, ApiError, StripeEmulator, decode_form
from devtools.stripe_emulator.idempotency import Claim, IdempotencyKeys, Stored
from devtools.stripe_emulator.wire import Headers, RecordedRequest, Response
from tests.support import free_port

API_KEY = "sk_test_emulator"
REPO_ROOT = Path(__file__).resolve().parents[2]
ClientFactory = Callable[..., stripe.StripeClient]


@pytest.fixture
def emulator() -> Iterator[StripeEmulator]:
    with StripeEmulator() as emu:
        yield emu


@pytest.fixture
def make_client(emulator: StripeEmulator) -> Iterator[ClientFactory]:
    """StripeClients on the emulator; their HTTP sessions are closed afterwards."""
    http_clients: list[stripe.RequestsClient] = []

    def make(
        *, retries: int = 0, timeout: float = 5.0, api_key: str = API_KEY
    ) -> stripe.StripeClient:
        http_client = stripe.RequestsClient(timeout=timeout)
        http_clients.append(http_client)
        return stripe.StripeClient(
            api_key,
            base_addresses={"api": emulator.url},
            max_network_retries=retries,
            http_client=http_client,
        )

    yield make
    for http_client in http_clients:
        http_client.close()


@pytest.fixture
def client(make_client: ClientFactory) -> stripe.StripeClient:
    return make_client()


@pytest.fixture
def http(emulator: StripeEmulator) -> Iterator[requests.Session]:
    with requests.Session() as session:
        session.headers["Authorization"] = f"Bearer {API_KEY}"
        yield session


def deposit_params(**overrides: Any) -> PaymentIntentCreateParams:
    """What the booking service sends for a deposit (Connect destination charge)."""
    params: PaymentIntentCreateParams = {
        "amount": 5000,
        "currency": "eur",
        "automatic_payment_methods": {"enabled": True},
        "metadata": {
            "bookingId": "bk_1",
            "artistId": "ar_1",
            "clientId": "cl_1",
            "serviceId": "sv_1",
        },
        "transfer_data": {"destination": "acct_artist1"},
        "application_fee_amount": 500,
    }
    params.update(overrides)  # type: ignore[typeddict-item]
    return params


def create_deposit(client: stripe.StripeClient, key: str = "booking-bk_1") -> stripe.PaymentIntent:
    return client.v1.payment_intents.create(deposit_params(), {"idempotency_key": key})


# --- create / retrieve / update / cancel ------------------------------------------------------


def test_create_payment_intent_with_project_params(
    client: stripe.StripeClient, emulator: StripeEmulator
) -> None:
    pi = client.v1.payment_intents.create(
        deposit_params(), {"idempotency_key": "booking-bk_1", "stripe_account": "acct_platform"}
    )

    assert pi.id.startswith("pi_")
    assert pi.object == "payment_intent"
    assert (pi.amount, pi.currency, pi.status) == (5000, "eur", "requires_payment_method")
    assert pi.client_secret is not None
    assert pi.client_secret.startswith(f"{pi.id}_secret_")
    assert pi.metadata.to_dict() == deposit_params()["metadata"]
    assert pi.transfer_data is not None
    assert pi.transfer_data.destination == "acct_artist1"
    assert pi.application_fee_amount == 500
    assert pi.automatic_payment_methods is not None
    assert pi.automatic_payment_methods.to_dict() == {"enabled": True, "allow_redirects": "always"}
    assert (pi.latest_charge, pi.livemode, pi.canceled_at) == (None, False, None)
    assert abs(pi.created - time.time()) < 5

    [req] = emulator.requests_to("/v1/payment_intents", method="POST")
    assert req.params == {
        "amount": "5000",
        "currency": "eur",
        "automatic_payment_methods": {"enabled": "true"},
        "metadata": {
            "bookingId": "bk_1",
            "artistId": "ar_1",
            "clientId": "cl_1",
            "serviceId": "sv_1",
        },
        "transfer_data": {"destination": "acct_artist1"},
        "application_fee_amount": "500",
    }
    assert req.headers["idempotency-KEY"] == req.idempotency_key == "booking-bk_1"
    assert req.stripe_account == "acct_platform"
    assert req.api_key == API_KEY
    assert req.headers["Stripe-Version"] == API_VERSION
    assert (req.status, req.replayed) == (200, False)
    assert emulator.payment_intent(pi.id)["metadata"]["bookingId"] == "bk_1"


def test_retrieve_update_and_cancel(client: stripe.StripeClient, emulator: StripeEmulator) -> None:
    pi = create_deposit(client)
    assert client.v1.payment_intents.retrieve(pi.id).to_dict() == pi.to_dict()

    updated = client.v1.payment_intents.update(pi.id, {"metadata": {"note": "x", "serviceId": ""}})
    assert updated.metadata.to_dict() == {
        "bookingId": "bk_1",
        "artistId": "ar_1",
        "clientId": "cl_1",
        "note": "x",
    }

    canceled = client.v1.payment_intents.cancel(pi.id, {"cancellation_reason": "abandoned"})
    assert (canceled.status, canceled.cancellation_reason) == ("canceled", "abandoned")
    assert canceled.canceled_at is not None

    with pytest.raises(stripe.InvalidRequestError) as exc:
        client.v1.payment_intents.cancel(pi.id)
    assert exc.value.code == "payment_intent_unexpected_state"
    assert exc.value.http_status == 400

    with pytest.raises(stripe.InvalidRequestError) as missing:
        client.v1.payment_intents.retrieve("pi_unknown")
    assert (missing.value.http_status, missing.value.code) == (404, "resource_missing")


def test_cancel_after_succeeded_is_refused(
    client: stripe.StripeClient, emulator: StripeEmulator
) -> None:
    pi = create_deposit(client)
    succeeded = emulator.succeed_payment_intent(pi.id)
    assert succeeded["status"] == "succeeded"
    assert succeeded["latest_charge"].startswith("ch_")
    assert succeeded["amount_received"] == 5000

    with pytest.raises(stripe.InvalidRequestError) as exc:
        client.v1.payment_intents.cancel(pi.id, {"cancellation_reason": "requested_by_customer"})
    assert exc.value.code == "payment_intent_unexpected_state"
    assert "status of succeeded" in exc.value.user_message
    body = exc.value.json_body
    assert isinstance(body, dict)
    assert body["error"]["payment_intent"]["id"] == pi.id
    assert client.v1.payment_intents.retrieve(pi.id).status == "succeeded"


def test_failed_payment_attempt(client: stripe.StripeClient, emulator: StripeEmulator) -> None:
    pi = create_deposit(client)
    failed = emulator.fail_payment_intent(pi.id)
    assert failed["status"] == "requires_payment_method"
    assert failed["last_payment_error"]["code"] == "card_declined"
    fetched = client.v1.payment_intents.retrieve(pi.id)
    assert fetched.last_payment_error is not None
    assert fetched.last_payment_error.message == "Your card was declined."
    assert client.v1.payment_intents.cancel(pi.id).status == "canceled"
    with pytest.raises(ValueError, match="cannot move"):
        emulator.succeed_payment_intent(pi.id)


def test_zero_decimal_currency_jpy(client: stripe.StripeClient) -> None:
    pi = client.v1.payment_intents.create({"amount": 5000, "currency": "JPY"})
    assert (pi.amount, pi.currency) == (5000, "jpy")
    with pytest.raises(stripe.InvalidRequestError) as exc:
        client.v1.payment_intents.create({"amount": 49, "currency": "jpy"})
    assert exc.value.code == "amount_too_small"


# --- validation -------------------------------------------------------------------------------


def test_payment_method_types_is_not_in_sdk_16_create_params() -> None:
    assert "payment_method_types" not in PaymentIntentCreateParams.__annotations__
    assert "automatic_payment_methods" in PaymentIntentCreateParams.__annotations__


def test_unknown_parameter_is_rejected(
    client: stripe.StripeClient, emulator: StripeEmulator
) -> None:
    with pytest.raises(stripe.InvalidRequestError) as exc:
        client.raw_request(
            "post",
            "/v1/payment_intents",
            amount=5000,
            currency="eur",
            payment_method_types=["card"],
        )
    assert (exc.value.code, exc.value.param) == ("parameter_unknown", "payment_method_types")
    assert exc.value.user_message == "Received unknown parameter: payment_method_types"
    assert emulator.requests[-1].params["payment_method_types"] == ["card"]

    with pytest.raises(stripe.InvalidRequestError) as nested:
        client.raw_request("post", "/v1/refunds", payment_intent="pi_1", metadata={"a": "b"}, foo=1)
    assert (nested.value.code, nested.value.param) == ("parameter_unknown", "foo")


EUR_5000 = {"amount": "5000", "currency": "eur"}


@pytest.mark.parametrize(
    ("body", "param", "code"),
    [
        (EUR_5000 | {"transfer_data[dest]": "acct_1"}, "transfer_data[dest]", "parameter_unknown"),
        (EUR_5000 | {"transfer_data[amount]": "1"}, "transfer_data[destination]", "parameter_missing"),  # noqa: E501
        (EUR_5000 | {"automatic_payment_methods[x]": "1"}, "automatic_payment_methods[x]", "parameter_unknown"),  # noqa: E501
        ({"amount": "5000"}, "currency", "parameter_missing"),
        ({"amount": "0", "currency": "eur"}, "amount", "parameter_invalid_integer"),
        ({"amount": "12.5", "currency": "eur"}, "amount", "parameter_invalid_integer"),
        (EUR_5000 | {"application_fee_amount": "500"}, "application_fee_amount", None),
        (EUR_5000 | {"confirm": "true"}, "confirm", "emulator_unsupported_parameter"),
        ({"amount": "5000", "currency": "xyz"}, "currency", "parameter_invalid"),
    ],
)  # fmt: skip
def test_invalid_create_params(
    http: requests.Session,
    emulator: StripeEmulator,
    body: dict[str, str],
    param: str,
    code: str | None,
) -> None:
    resp = http.post(f"{emulator.url}/v1/payment_intents", data=body)
    assert resp.status_code == 400
    error = resp.json()["error"]
    assert (error["type"], error["param"], error.get("code")) == (
        "invalid_request_error",
        param,
        code,
    )
    assert emulator.requests[-1].status == 400


def test_metadata_accepts_any_keys(http: requests.Session, emulator: StripeEmulator) -> None:
    body = {"amount": "5000", "currency": "eur", "metadata[0]": "a", "metadata[any key]": "b"}
    resp = http.post(f"{emulator.url}/v1/payment_intents", data=body)
    assert resp.status_code == 200
    assert resp.json()["metadata"] == {"0": "a", "any key": "b"}


def test_authentication(
    make_client: ClientFactory, http: requests.Session, emulator: StripeEmulator
) -> None:
    with pytest.raises(stripe.AuthenticationError):
        make_client(api_key="sk_live_nope").v1.payment_intents.create(
            {"amount": 5000, "currency": "eur"}
        )
    resp = requests.get(f"{emulator.url}/v1/accounts/acct_1", timeout=5)
    assert resp.status_code == 401
    assert resp.json()["error"]["type"] == "authentication_error"
    assert [r.status for r in emulator.requests] == [401, 401]
    assert http.get(f"{emulator.url}/v1/accounts/acct_1").status_code == 200


def test_unrecognized_url(http: requests.Session, emulator: StripeEmulator) -> None:
    resp = http.get(f"{emulator.url}/v1/customers/cus_1")
    assert resp.status_code == 404
    assert resp.json()["error"]["message"].startswith("Unrecognized request URL")


# --- idempotency ------------------------------------------------------------------------------


def test_idempotent_replay(client: stripe.StripeClient, emulator: StripeEmulator) -> None:
    first = create_deposit(client, key="booking-bk_1")
    second = create_deposit(client, key="booking-bk_1")
    assert second.id == first.id
    assert second.last_response is not None
    assert second.last_response.headers["Idempotent-Replayed"] == "true"
    assert [r.replayed for r in emulator.requests] == [False, True]
    assert create_deposit(client, key="booking-bk_2").id != first.id


def test_idempotency_key_reused_with_other_params(client: stripe.StripeClient) -> None:
    create_deposit(client, key="booking-bk_1")
    with pytest.raises(stripe.IdempotencyError):
        client.v1.payment_intents.create(
            deposit_params(amount=6000), {"idempotency_key": "booking-bk_1"}
        )
    with pytest.raises(stripe.IdempotencyError):
        client.v1.refunds.create({"payment_intent": "pi_x"}, {"idempotency_key": "booking-bk_1"})


def test_idempotency_keys_are_scoped_per_api_key(make_client: ClientFactory) -> None:
    one = create_deposit(make_client(api_key="sk_test_one"), key="k")
    two = create_deposit(make_client(api_key="sk_test_two"), key="k")
    assert one.id != two.id


def test_a_key_is_forgotten_24_hours_after_its_first_use() -> None:
    """As at Stripe: asking again with the key replays the first answer for 24 hours (what
    inkflow's deposit-intent reconciler relies on), then the request runs anew."""
    now = [1_000_000.0]
    keys = IdempotencyKeys(clock=lambda: now[0])
    slot = ("sk_test_x", "inkflow-deposit-1")
    request = RecordedRequest("POST", "/v1/payment_intents", {"amount": "5000"}, Headers({}))
    assert keys.claim(slot) is Claim.NEW
    keys.keep(slot, request, Response(200, {"id": "pi_1"}, {"Request-Id": "req_1"}))
    keys.release(slot)
    now[0] += 24 * 3600 - 1
    kept = keys.claim(slot)
    assert isinstance(kept, Stored)
    assert kept.response.body == {"id": "pi_1"}
    saved = IdempotencyKeys(clock=lambda: now[0])
    saved.load_json(keys.to_json())  # kept across a restart with its time
    now[0] += 1
    assert keys.claim(slot) is Claim.NEW
    assert saved.claim(slot) is Claim.NEW


def test_every_intent_is_listed(client: stripe.StripeClient, emulator: StripeEmulator) -> None:
    made = [create_deposit(client, key=f"booking-bk_{n}").id for n in range(3)]
    assert [pi["id"] for pi in emulator.payment_intents()] == made


def test_validation_errors_are_not_stored_under_the_key(client: stripe.StripeClient) -> None:
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.payment_intents.create(deposit_params(amount=0), {"idempotency_key": "k"})
    assert create_deposit(client, key="k").status == "requires_payment_method"


def test_concurrent_use_of_a_key_gets_409_and_sdk_retries(
    make_client: ClientFactory, emulator: StripeEmulator
) -> None:
    emulator.delay_next(0.5, phase="before")
    results: list[str] = []
    first = threading.Thread(target=lambda: results.append(create_deposit(make_client(), "k").id))
    first.start()
    time.sleep(0.2)
    second = create_deposit(make_client(retries=2), "k")
    first.join()
    assert results == [second.id]
    assert [(r.status, r.replayed) for r in emulator.requests] == [
        (200, False),  # the slow first request
        (409, False),  # the same key while it is in progress: the SDK retries 409s
        (200, True),
    ]


# --- refunds, charges, accounts ---------------------------------------------------------------


def test_refund_full_and_partial(client: stripe.StripeClient, emulator: StripeEmulator) -> None:
    pi = create_deposit(client)
    with pytest.raises(stripe.InvalidRequestError) as not_paid:
        client.v1.refunds.create({"payment_intent": pi.id})
    assert not_paid.value.code == "charge_not_refundable"

    emulator.succeed_payment_intent(pi.id)
    partial = client.v1.refunds.create(
        {"payment_intent": pi.id, "amount": 1000, "reason": "requested_by_customer"}
    )
    rest = client.v1.refunds.create(
        {
            "payment_intent": pi.id,
            "reverse_transfer": True,
            "refund_application_fee": True,
            "metadata": {"bookingId": "bk_1"},
        },
        {"idempotency_key": "refund-bk_1"},
    )
    assert (partial.amount, rest.amount) == (1000, 4000)
    assert rest.id.startswith("re_")
    assert rest.object == "refund"
    assert rest.status == "succeeded"
    assert rest.metadata is not None
    assert (rest.payment_intent, rest.currency, rest.metadata.to_dict()) == (
        pi.id,
        "eur",
        {"bookingId": "bk_1"},
    )
    assert rest.charge == emulator.payment_intent(pi.id)["latest_charge"]
    assert isinstance(rest.transfer_reversal, str)
    assert rest.transfer_reversal.startswith("trr_")
    assert client.v1.refunds.retrieve(rest.id).to_dict() == rest.to_dict()

    with pytest.raises(stripe.InvalidRequestError) as again:
        client.v1.refunds.create({"payment_intent": pi.id})
    assert again.value.code == "charge_already_refunded"

    charge = emulator.charge_object(pi.id)
    assert (charge["object"], charge["payment_intent"], charge["currency"]) == (
        "charge",
        pi.id,
        "eur",
    )
    assert (charge["amount"], charge["amount_refunded"], charge["refunded"]) == (5000, 5000, True)
    assert "refunds" not in charge  # API versions since 2022-11-15: list them instead
    assert [r["id"] for r in emulator.refunds_of(pi.id)] == [partial.id, rest.id]
    assert client.v1.charges.retrieve(charge["id"]).amount_refunded == 5000
    expanded = client.v1.charges.retrieve(charge["id"], {"expand": ["refunds"]})
    assert expanded.refunds is not None
    assert [r.id for r in expanded.refunds.data] == [rest.id, partial.id]  # newest first


def test_refund_defaults_to_full_amount(
    client: stripe.StripeClient, emulator: StripeEmulator
) -> None:
    pi = create_deposit(client)
    emulator.succeed_payment_intent(pi.id)
    refund = client.v1.refunds.create({"payment_intent": pi.id})
    assert refund.amount == 5000
    assert refund.transfer_reversal is None
    assert emulator.charge_object(pi.id)["refunded"] is True


def test_accounts(client: stripe.StripeClient, emulator: StripeEmulator) -> None:
    account = client.v1.accounts.retrieve("acct_new")
    assert (account.object, account.charges_enabled, account.details_submitted) == (
        "account",
        True,
        True,
    )

    emulator.set_account("acct_pending", charges_enabled=False)
    pending = client.v1.accounts.retrieve("acct_pending")
    assert (pending.charges_enabled, pending.payouts_enabled) == (False, False)
    with pytest.raises(stripe.InvalidRequestError) as exc:
        client.v1.payment_intents.create(
            deposit_params(transfer_data={"destination": "acct_pending"})
        )
    assert exc.value.code == "insufficient_capabilities_for_transfer"


# --- failure injection and SDK retries / timeouts ---------------------------------------------


def test_injected_failure_raises_api_error(
    client: stripe.StripeClient, emulator: StripeEmulator
) -> None:
    emulator.fail_next(n=1, status=500, error_type="api_error", path_prefix="/v1/payment_intents")
    with pytest.raises(stripe.APIError) as exc:
        create_deposit(client)
    assert exc.value.http_status == 500
    assert create_deposit(client).status == "requires_payment_method"  # only the next one failed


def test_fail_always_and_reset(client: stripe.StripeClient, emulator: StripeEmulator) -> None:
    emulator.fail_always(status=503, path_prefix="/v1/accounts", method="GET")
    for _ in range(2):
        with pytest.raises(stripe.APIError):
            client.v1.accounts.retrieve("acct_1")
    create_deposit(client)  # other paths are not affected
    emulator.reset_failures()
    assert client.v1.accounts.retrieve("acct_1").id == "acct_1"


def test_sdk_retry_reuses_one_idempotency_key(
    make_client: ClientFactory, emulator: StripeEmulator
) -> None:
    emulator.fail_next(n=1, status=500, path_prefix="/v1/payment_intents")
    pi = make_client(retries=2).v1.payment_intents.create(deposit_params())  # SDK picks the key
    attempts = emulator.requests_to("/v1/payment_intents", method="POST")
    assert [r.status for r in attempts] == [500, 200]
    assert attempts[0].idempotency_key
    assert attempts[0].idempotency_key == attempts[1].idempotency_key
    assert emulator.payment_intent(pi.id)["status"] == "requires_payment_method"


def test_default_stripe_client_does_not_retry(emulator: StripeEmulator) -> None:
    http_client = stripe.RequestsClient(timeout=5)
    client = stripe.StripeClient(
        API_KEY, base_addresses={"api": emulator.url}, http_client=http_client
    )
    emulator.fail_next(n=1)
    try:
        with pytest.raises(stripe.APIError):
            client.v1.accounts.retrieve("acct_1")
    finally:
        http_client.close()
    assert len(emulator.requests) == 1


def test_timeout_then_retry_with_same_key_gets_the_same_intent(
    make_client: ClientFactory, emulator: StripeEmulator
) -> None:
    emulator.delay_next(1.0, path_prefix="/v1/payment_intents")  # processed, answer too late
    with pytest.raises(stripe.APIConnectionError):
        create_deposit(make_client(timeout=0.3), key="booking-bk_1")
    retried = create_deposit(make_client(), key="booking-bk_1")
    attempts = emulator.requests_to("/v1/payment_intents")
    assert [r.replayed for r in attempts] == [False, True]
    assert attempts[0].response is not None
    assert attempts[0].response["id"] == retried.id


def test_delay_before_processing(make_client: ClientFactory, emulator: StripeEmulator) -> None:
    emulator.delay_next(0.2, phase="before", method="GET")
    started = time.monotonic()
    make_client().v1.accounts.retrieve("acct_1")
    assert time.monotonic() - started >= 0.2


def test_stop_wakes_delayed_answers() -> None:
    emu = StripeEmulator().start()
    emu.delay_next(30)
    http_client = stripe.RequestsClient(timeout=10)
    client = stripe.StripeClient(API_KEY, base_addresses={"api": emu.url}, http_client=http_client)
    errors: list[Exception] = []

    def call() -> None:
        try:
            client.v1.accounts.retrieve("acct_1")
        except stripe.StripeError as e:
            errors.append(e)

    caller = threading.Thread(target=call)
    caller.start()
    time.sleep(0.2)
    started = time.monotonic()
    emu.stop()
    caller.join(5)
    http_client.close()
    assert time.monotonic() - started < 3
    assert not caller.is_alive()


# --- events, control API, decoding, standalone process ----------------------------------------


def test_event_payloads(client: stripe.StripeClient, emulator: StripeEmulator) -> None:
    pi = create_deposit(client)
    event = emulator.event(
        "payment_intent.succeeded", emulator.succeed_payment_intent(pi.id), created=1_700_000_000
    )
    assert event["id"].startswith("evt_")
    assert event["object"] == "event"
    assert (event["type"], event["created"], event["livemode"]) == (
        "payment_intent.succeeded",
        1_700_000_000,
        False,
    )
    assert event["api_version"] == API_VERSION
    assert event["api_version"].startswith("2026-10-28")
    assert event["pending_webhooks"] == 1
    assert event["request"] == {"id": None, "idempotency_key": None}
    assert event["data"]["object"]["id"] == pi.id

    payload = json.dumps(
        emulator.event(
            "customer.created", {"id": "cus_1", "object": "customer"}, event_id="evt_fixed"
        )
    )
    header = stripe.WebhookSignature.generate_signature_header(
        payload, "whsec_test", timestamp=int(time.time())
    )
    parsed = stripe.Webhook.construct_event(payload, header, "whsec_test")
    assert parsed.id == "evt_fixed"
    assert parsed.data.object.object == "customer"


def test_control_api_over_http(client: stripe.StripeClient, emulator: StripeEmulator) -> None:
    base = f"{emulator.url}/_emulator"
    pi = create_deposit(client)
    with requests.Session() as s:
        assert s.post(f"{base}/payment_intents/{pi.id}/succeed").json()["status"] == "succeeded"
        assert s.get(f"{base}/payment_intents/{pi.id}/charge").json()["refunded"] is False
        assert (
            s.post(f"{base}/payment_intents/{pi.id}/refund", json={"amount": 100}).json()["amount"]
            == 100
        )
        event = s.post(
            f"{base}/events", json={"type": "charge.refunded", "payment_intent": pi.id}
        ).json()
        assert event["data"]["object"]["amount_refunded"] == 100
        assert event["data"]["previous_attributes"] == {"amount_refunded": 0}
        assert (
            s.post(f"{base}/payment_intents/{pi.id}/fail").status_code == 400
        )  # already succeeded
        assert s.post(f"{base}/payment_intents/pi_nope/succeed").status_code == 404
        assert (
            s.post(f"{base}/accounts/acct_x", json={"charges_enabled": False}).json()[
                "charges_enabled"
            ]
            is False
        )
        assert s.post(
            f"{base}/fail_next", json={"n": 1, "status": 502, "path_prefix": "/v1/accounts"}
        ).json() == {"ok": True}
        with pytest.raises(stripe.APIError):
            client.v1.accounts.retrieve("acct_x")
        assert s.post(f"{base}/delay_next", json={"seconds": 0.1, "n": 1}).json() == {"ok": True}
        assert client.v1.accounts.retrieve("acct_x").charges_enabled is False
        recorded = s.get(f"{base}/requests").json()
        assert [(r["method"], r["path"], r["status"]) for r in recorded][-2:] == [
            ("GET", "/v1/accounts/acct_x", 502), ("GET", "/v1/accounts/acct_x", 200)
        ]  # fmt: skip
        assert recorded[0]["headers"]["idempotency-key"] == "booking-bk_1"
        assert s.post(f"{base}/reset").json() == {"ok": True}
        assert s.get(f"{base}/requests").json() == []
        assert s.get(f"{base}/payment_intents/{pi.id}").status_code == 404
        assert s.post(f"{base}/nope").status_code == 404


def test_decode_form() -> None:
    body = (
        "a=1&m[k]=v&m[0]=z&t[destination]=acct_1&l[0]=x&l[1]=y&n[0][b]=1&n[1][b]=2&e[]=p&e[]=q&s="
    )
    assert decode_form(body) == {
        "a": "1",
        "m": {"k": "v", "0": "z"},
        "t": {"destination": "acct_1"},
        "l": ["x", "y"],
        "n": [{"b": "1"}, {"b": "2"}],
        "e": ["p", "q"],
        "s": "",
    }
    assert decode_form("metadata[0]=a") == {"metadata": {"0": "a"}}
    assert decode_form("") == {}


def test_standalone_process(tmp_path: Path) -> None:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "devtools.stripe_emulator", "--port", str(port)],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONWARNINGS": "error"},
    )
    try:
        assert proc.stdout is not None
        assert (
            proc.stdout.readline().strip()
            == f"stripe emulator listening on http://127.0.0.1:{port}"
        )
        url = f"http://127.0.0.1:{port}"
        http_client = stripe.RequestsClient(timeout=5)
        client = stripe.StripeClient(API_KEY, base_addresses={"api": url}, http_client=http_client)
        try:
            pi = create_deposit(client)
            with requests.Session() as s:
                s.post(f"{url}/_emulator/payment_intents/{pi.id}/succeed").raise_for_status()
            assert client.v1.payment_intents.retrieve(pi.id).status == "succeeded"
        finally:
            http_client.close()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


# --- refunds: Connect parameters, several per charge, listing, failures, events ---------------


def paid_deposit(client: stripe.StripeClient, emulator: StripeEmulator, **overrides: Any) -> str:
    pi = client.v1.payment_intents.create(deposit_params(**overrides))
    emulator.succeed_payment_intent(pi.id)
    return pi.id


def test_refund_params_are_validated_and_reverse_the_transfer_and_fee_in_proportion(
    client: stripe.StripeClient, emulator: StripeEmulator
) -> None:
    pi_id = paid_deposit(client, emulator)  # 50.00, fee 5.00, to acct_artist1
    with pytest.raises(stripe.InvalidRequestError) as bad:
        client.raw_request("post", "/v1/refunds", payment_intent=pi_id, reverse_transfer="maybe")
    assert bad.value.code == "parameter_invalid_boolean"
    transfer = emulator.transfer(pi_id)
    assert transfer is not None
    assert (transfer["amount"], transfer["destination"], transfer["amount_reversed"]) == (
        5000,
        "acct_artist1",
        0,
    )
    assert emulator.charge_object(pi_id)["transfer"] == transfer["id"]

    partial = client.v1.refunds.create(
        {
            "payment_intent": pi_id,
            "amount": 1000,
            "reverse_transfer": True,
            "refund_application_fee": True,
        }
    )
    plain = client.v1.refunds.create({"payment_intent": pi_id, "amount": 1000})
    rest = client.v1.refunds.create(
        {"payment_intent": pi_id, "reverse_transfer": True, "refund_application_fee": True}
    )
    assert (partial.amount, plain.amount, rest.amount) == (1000, 1000, 3000)
    assert plain.transfer_reversal is None  # the platform paid that one alone
    transfer = emulator.transfer(pi_id)
    assert transfer is not None
    reversals = {r["id"]: (r["amount"], r["source_refund"]) for r in transfer["reversals"]["data"]}
    assert reversals == {
        partial.transfer_reversal: (1000, partial.id),
        rest.transfer_reversal: (3000, rest.id),
    }
    assert (transfer["amount_reversed"], transfer["reversed"]) == (4000, False)
    fee = emulator.application_fee(pi_id)
    assert fee is not None
    assert [r["amount"] for r in fee["refunds"]["data"]] == [100, 300]
    assert (fee["amount"], fee["amount_refunded"], fee["refunded"]) == (500, 400, False)

    # A charge without a transfer has nothing to reverse.
    direct = paid_deposit(client, emulator, transfer_data=None, application_fee_amount=None)
    assert emulator.transfer(direct) is None
    with pytest.raises(stripe.InvalidRequestError) as none:
        client.v1.refunds.create({"payment_intent": direct, "reverse_transfer": True})
    assert none.value.param == "reverse_transfer"
    assert client.v1.refunds.create({"payment_intent": direct}).amount == 5000


def test_the_last_refund_reverses_what_is_left(
    client: stripe.StripeClient, emulator: StripeEmulator
) -> None:
    pi_id = paid_deposit(client, emulator, amount=1000, application_fee_amount=333)
    for _ in range(3):  # 3.33 each, then 0.01: the shares add up to the whole
        client.v1.refunds.create(
            {
                "payment_intent": pi_id,
                "amount": 333,
                "reverse_transfer": True,
                "refund_application_fee": True,
            }
        )
    client.v1.refunds.create(
        {"payment_intent": pi_id, "reverse_transfer": True, "refund_application_fee": True}
    )
    transfer, fee = emulator.transfer(pi_id), emulator.application_fee(pi_id)
    assert transfer is not None
    assert fee is not None
    assert [r["amount"] for r in transfer["reversals"]["data"]] == [333, 333, 333, 1]
    assert transfer["reversed"] is True
    assert [r["amount"] for r in fee["refunds"]["data"]] == [111, 111, 111, 0]
    assert fee["refunded"] is True


def test_several_refunds_running_totals_and_listing(
    client: stripe.StripeClient, emulator: StripeEmulator
) -> None:
    pi_id = paid_deposit(client, emulator)
    other = paid_deposit(client, emulator)
    made, totals = [], []
    for amount in (1000, 1500, None):
        params: dict[str, Any] = {"payment_intent": pi_id}
        if amount:
            params["amount"] = amount
        made.append(client.v1.refunds.create(params).id)  # type: ignore[arg-type]
        totals.append(emulator.charge_object(pi_id)["amount_refunded"])
    client.v1.refunds.create({"payment_intent": other, "amount": 700})
    assert totals == [1000, 2500, 5000]
    assert emulator.charge_object(pi_id)["refunded"] is True
    charge_id = emulator.charge_object(pi_id)["id"]

    newest_first = list(reversed(made))
    by_charge = client.v1.refunds.list({"charge": charge_id})
    assert [r.id for r in by_charge.data] == newest_first
    assert by_charge.has_more is False
    by_intent = client.v1.refunds.list({"payment_intent": pi_id, "limit": 1})
    assert ([r.id for r in by_intent.data], by_intent.has_more) == ([made[2]], True)
    assert [r.id for r in by_intent.auto_paging_iter()] == newest_first  # starting_after
    before = client.v1.refunds.list({"payment_intent": pi_id, "ending_before": made[0]})
    assert [r.id for r in before.data] == [made[2], made[1]]
    assert len(client.v1.refunds.list({"limit": 100}).data) == 4
    assert client.v1.refunds.list({"payment_intent": "pi_nobody"}).data == []
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.refunds.list({"limit": 101})
    with pytest.raises(stripe.InvalidRequestError) as unmodelled:
        client.v1.refunds.list({"created": {"gte": 1}})
    assert unmodelled.value.code == "emulator_unsupported_parameter"


def test_a_planned_failure_answers_pending_then_fails_with_stripes_events(
    client: stripe.StripeClient, emulator: StripeEmulator
) -> None:
    pi_id = paid_deposit(client, emulator)
    emulator.fail_next_refunds(1, reason="lost_or_stolen_card")
    doomed = client.v1.refunds.create(
        {"payment_intent": pi_id, "reverse_transfer": True}, {"idempotency_key": "refund-1"}
    )
    assert doomed.status == "pending"
    assert emulator.charge_object(pi_id)["amount_refunded"] == 5000  # pending counts
    assert [
        e["type"] for e in emulator.emitted_events(payment_intent=pi_id, about_refunds=True)
    ] == [
        "refund.created",
        "charge.refunded",
    ]

    sent = emulator.settle_refunds()  # Stripe processes it, later

    assert [e["type"] for e in sent] == ["refund.updated", "refund.failed"]
    updated, failed = sent
    assert updated["data"]["object"]["status"] == "failed"
    assert updated["data"]["object"]["failure_reason"] == "lost_or_stolen_card"
    assert updated["data"]["previous_attributes"] == {
        "status": "pending",
        "failure_reason": None,
        "failure_balance_transaction": None,
    }
    assert "previous_attributes" not in failed["data"]
    assert failed["data"]["object"]["id"] == doomed.id
    assert failed["request"] == {"id": None, "idempotency_key": None}  # Stripe's own doing
    refund = client.v1.refunds.retrieve(doomed.id)
    assert (refund.status, refund.failure_reason) == ("failed", "lost_or_stolen_card")
    assert emulator.charge_object(pi_id)["amount_refunded"] == 0
    assert emulator.emitted_events(payment_intent=pi_id, about_refunds=True)[-2:] == sent
    assert emulator.settle_refunds() == []

    # The next refund is not planned to fail: it succeeds at once.
    again = client.v1.refunds.create({"payment_intent": pi_id}, {"idempotency_key": "refund-2"})
    assert (again.status, again.amount) == ("succeeded", 5000)


def test_pending_refunds_not_planned_to_fail_succeed_when_settled(
    client: stripe.StripeClient, emulator: StripeEmulator
) -> None:
    pi_id = paid_deposit(client, emulator)
    emulator.fail_next_refunds(1)
    emulator.pend_next_refunds(1)
    doomed = client.v1.refunds.create({"payment_intent": pi_id, "amount": 1000})
    fine = client.v1.refunds.create({"payment_intent": pi_id, "amount": 1000})
    assert (doomed.status, fine.status) == ("pending", "pending")
    sent = emulator.settle_refunds()
    assert [(e["type"], e["data"]["object"]["id"]) for e in sent] == [
        ("refund.updated", doomed.id),
        ("refund.failed", doomed.id),
        ("refund.updated", fine.id),
    ]
    assert sent[2]["data"]["previous_attributes"] == {"status": "pending"}
    assert emulator.refund(fine.id)["status"] == "succeeded"


def test_a_failure_at_once_and_a_succeeded_refund_failing_later(
    client: stripe.StripeClient, emulator: StripeEmulator
) -> None:
    pi_id = paid_deposit(client, emulator)
    emulator.fail_next_refunds(1, at_once=True)
    failed = client.v1.refunds.create({"payment_intent": pi_id, "reverse_transfer": True})
    assert (failed.status, failed.failure_reason) == ("failed", "expired_or_canceled_card")
    assert failed.transfer_reversal is None
    assert emulator.charge_object(pi_id)["amount_refunded"] == 0
    assert (
        emulator.emitted_events(payment_intent=pi_id, about_refunds=True) == []
    )  # nothing was refunded

    done = client.v1.refunds.create({"payment_intent": pi_id, "amount": 2000})
    assert done.status == "succeeded"
    [updated, failed_event] = emulator.fail_refund(done.id, "declined")
    assert updated["data"]["previous_attributes"]["status"] == "succeeded"
    assert failed_event["data"]["object"]["failure_reason"] == "declined"
    assert emulator.charge_object(pi_id)["amount_refunded"] == 0
    with pytest.raises(ValueError, match="already failed"):
        emulator.fail_refund(done.id)
    with pytest.raises(ValueError, match="unknown failure reason"):
        emulator.fail_next_refunds(1, reason="bad luck")


def test_a_refund_failing_with_500_for_n_attempts_is_made_once_with_one_key(
    client: stripe.StripeClient, emulator: StripeEmulator
) -> None:
    pi_id = paid_deposit(client, emulator)
    emulator.fail_next(2, status=500, path_prefix="/v1/refunds", method="POST")
    params: Any = {"payment_intent": pi_id, "reverse_transfer": True}
    for _ in range(2):
        with pytest.raises(stripe.APIError):
            client.v1.refunds.create(params, {"idempotency_key": "refund-bk_1"})
    made = client.v1.refunds.create(params, {"idempotency_key": "refund-bk_1"})
    assert client.v1.refunds.create(params, {"idempotency_key": "refund-bk_1"}).id == made.id
    assert [r["id"] for r in emulator.refunds_of(pi_id)] == [made.id]
    attempts = emulator.requests_to("/v1/refunds", "POST")
    assert [(r.status, r.replayed) for r in attempts] == [
        (500, False),
        (500, False),
        (200, False),
        (200, True),
    ]


def test_refund_event_payloads_as_stripe_sends_them(
    client: stripe.StripeClient, emulator: StripeEmulator
) -> None:
    pi_id = paid_deposit(client, emulator)
    dashboard = emulator.refund_payment_intent(pi_id, 1500)
    ours = client.v1.refunds.create(
        {"payment_intent": pi_id, "reverse_transfer": True, "metadata": {"bookingId": "bk_1"}},
        {"idempotency_key": "inkflow-refund-bk_1"},
    )
    emitted = emulator.emitted_events(payment_intent=pi_id, about_refunds=True)
    assert [(e["type"], e["data"]["object"]["id"]) for e in emitted] == [
        ("refund.created", dashboard["id"]),
        ("charge.refunded", dashboard["charge"]),
        ("refund.created", ours.id),
        ("charge.refunded", dashboard["charge"]),
    ]
    first, second = emitted[1], emitted[3]
    for charge_refunded in (first, second):
        charge = charge_refunded["data"]["object"]
        assert charge["object"] == "charge"
        assert "refunds" not in charge  # the running total only
        assert charge_refunded["api_version"] == API_VERSION
    assert first["data"]["object"]["amount_refunded"] == 1500
    assert first["data"]["previous_attributes"] == {"amount_refunded": 0}
    assert second["data"]["object"]["amount_refunded"] == 5000
    assert second["data"]["previous_attributes"] == {"amount_refunded": 1500, "refunded": False}
    assert second["request"]["idempotency_key"] == "inkflow-refund-bk_1"
    assert second["request"]["id"].startswith("req_")

    # Built on demand (for the refund given, or the latest), signed like Stripe's.
    rebuilt = emulator.charge_refunded_event(pi_id, dashboard["id"], event_id="evt_again")
    assert rebuilt["id"] == "evt_again"
    assert rebuilt["data"]["previous_attributes"] == {"amount_refunded": 0, "refunded": False}
    updated = emulator.refund_event("refund.updated", ours.id, {"status": "pending"})
    body = json.dumps(updated)
    header = stripe.WebhookSignature.generate_signature_header(body, "whsec_test")
    parsed = stripe.Webhook.construct_event(body, header, "whsec_test")
    assert parsed.type == "refund.updated"
    assert parsed.data.object.metadata.to_dict() == {"bookingId": "bk_1"}
    assert parsed.data.previous_attributes.to_dict() == {"status": "pending"}
    with pytest.raises(ApiError, match="No such refund"):
        emulator.refund_event("refund.updated", "re_nobody")


def test_refund_controls_over_http(client: stripe.StripeClient, emulator: StripeEmulator) -> None:
    base = f"{emulator.url}/_emulator"
    pi_id = paid_deposit(client, emulator)
    with requests.Session() as s:
        assert s.post(f"{base}/fail_next_refunds", json={"n": 1}).json() == {"ok": True}
        refund = s.post(f"{base}/payment_intents/{pi_id}/refund", json={"amount": 100}).json()
        assert refund["status"] == "pending"
        assert [e["type"] for e in s.post(f"{base}/settle_refunds").json()] == [
            "refund.updated",
            "refund.failed",
        ]
        other = s.post(f"{base}/payment_intents/{pi_id}/refund", json={"amount": 200}).json()
        failed = s.post(f"{base}/refunds/{other['id']}/fail", json={"reason": "declined"})
        assert [e["type"] for e in failed.json()] == ["refund.updated", "refund.failed"]
        assert s.post(f"{base}/refunds/{other['id']}/fail").status_code == 400  # already failed
        assert s.get(f"{base}/refunds/{other['id']}").json()["failure_reason"] == "declined"
        assert s.get(f"{base}/refunds/re_nobody").status_code == 404
        listed = s.get(f"{base}/payment_intents/{pi_id}/refunds").json()
        assert [r["id"] for r in listed] == [refund["id"], other["id"]]
        assert s.get(f"{base}/payment_intents/{pi_id}/transfer").json()["amount_reversed"] == 300
        assert s.get(f"{base}/payment_intents/{pi_id}/application_fee").json()["amount"] == 500
        event = s.post(
            f"{base}/events", json={"type": "refund.updated", "refund": other["id"]}
        ).json()
        assert (event["type"], event["data"]["object"]["status"]) == ("refund.updated", "failed")
        types = [e["type"] for e in s.get(f"{base}/emitted_events").json()]
        assert types.count("refund.failed") == 2

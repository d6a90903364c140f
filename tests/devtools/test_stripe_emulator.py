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

from devtools.stripe_emulator import API_VERSION, StripeEmulator, decode_form
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
    assert [r["id"] for r in charge["refunds"]["data"]] == [partial.id, rest.id]
    assert client.v1.charges.retrieve(charge["id"]).amount_refunded == 5000


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
        emulator.event("charge.refunded", emulator.charge_object(pi.id), event_id="evt_fixed")
    )
    header = stripe.WebhookSignature.generate_signature_header(
        payload, "whsec_test", timestamp=int(time.time())
    )
    parsed = stripe.Webhook.construct_event(payload, header, "whsec_test")
    assert parsed.id == "evt_fixed"
    assert parsed.data.object.object == "charge"
    assert parsed.data.object.payment_intent == pi.id


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

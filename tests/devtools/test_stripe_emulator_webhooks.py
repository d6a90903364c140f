"""The emulator as Stripe in test mode: paying with Stripe's test cards (server-side with a
secret key, or from a browser with a publishable key and the client secret), the events
that follow, their signed delivery to an endpoint with retries and backoff, latency, and
the state kept across a restart. The endpoint is a real HTTP server on loopback that
checks each signature with the `stripe` SDK, as inkflow's receiver does."""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests
import stripe

from devtools.stripe_emulator import StripeEmulator
from devtools.stripe_emulator.delivery import Endpoint, RetryPolicy
from tests.support import wait_until

API_KEY = "sk_test_emulator"
SECRET = "whsec_emulator_test"
FAST = RetryPolicy(first_delay=0.1, factor=2.0, max_delay=0.4, max_attempts=4, timeout=2.0)


@dataclass
class Receiver:
    """A webhook endpoint: answers with `statuses` in turn (then 200), records each event
    whose signature the SDK accepts, and each delivery's arrival time."""

    statuses: list[int] = field(default_factory=list)
    delay: float = 0.0
    events: list[dict[str, Any]] = field(default_factory=list)
    arrivals: list[float] = field(default_factory=list)
    bad_signatures: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    url: str = ""
    secret: str = SECRET

    def types(self) -> list[str]:
        with self.lock:
            return [e["type"] for e in self.events]

    def handle(self, body: bytes, signature: str) -> int:
        time.sleep(self.delay)
        with self.lock:
            self.arrivals.append(time.monotonic())
            status = self.statuses.pop(0) if self.statuses else 200
        try:
            event = stripe.Webhook.construct_event(body.decode(), signature, self.secret)
        except stripe.SignatureVerificationError:
            with self.lock:
                self.bad_signatures += 1
            return 400
        if 200 <= status < 300:
            with self.lock:
                self.events.append(event.to_dict())
        return status


@contextlib.contextmanager
def serving(state: Receiver) -> Iterator[Receiver]:
    """`state` as a webhook endpoint on loopback (its `url` set) until the block ends."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            status = state.handle(body, self.headers.get("Stripe-Signature", ""))
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}/webhooks"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with serving(Receiver()) as state:
        yield state


@pytest.fixture
def make_emulator(receiver: Receiver) -> Iterator[Callable[..., StripeEmulator]]:
    started: list[StripeEmulator] = []

    def make(**kwargs: Any) -> StripeEmulator:
        kwargs.setdefault("webhook", Endpoint(receiver.url, SECRET))
        kwargs.setdefault("retry", FAST)
        emulator = StripeEmulator(**kwargs).start()
        started.append(emulator)
        return emulator

    yield make
    for emulator in started:
        emulator.stop()


def sdk(emulator: StripeEmulator, key: str = API_KEY) -> stripe.StripeClient:
    return stripe.StripeClient(key, base_addresses={"api": emulator.url}, max_network_retries=0)


def deposit(client: stripe.StripeClient) -> stripe.PaymentIntent:
    return client.v1.payment_intents.create(
        {
            "amount": 5000,
            "currency": "eur",
            "automatic_payment_methods": {"enabled": True},
            "metadata": {"bookingId": "bk_1"},
            "transfer_data": {"destination": "acct_1Artist"},
        }
    )


def wait_types(receiver: Receiver, *expected: str, timeout: float = 10) -> None:
    assert wait_until(lambda: set(expected) <= set(receiver.types()), timeout=timeout), (
        receiver.types()
    )


def test_paying_with_pm_card_visa_sends_the_stripe_event_sequence_signed(
    make_emulator: Callable[..., StripeEmulator], receiver: Receiver
) -> None:
    emulator = make_emulator()
    client = sdk(emulator)
    pi = deposit(client)
    paid = client.v1.payment_intents.confirm(
        pi.id, {"payment_method": "pm_card_visa", "return_url": "https://example.test/done"}
    )
    assert paid.status == "succeeded"
    assert paid.amount_received == 5000
    assert paid.latest_charge

    wait_types(receiver, "payment_intent.created", "charge.succeeded", "payment_intent.succeeded")
    assert receiver.bad_signatures == 0
    succeeded = next(e for e in receiver.events if e["type"] == "payment_intent.succeeded")
    assert succeeded["id"].startswith("evt_")
    assert succeeded["object"] == "event"
    assert succeeded["livemode"] is False
    assert succeeded["api_version"] == stripe.api_version
    assert isinstance(succeeded["created"], int)
    obj = succeeded["data"]["object"]
    assert (obj["id"], obj["status"], obj["metadata"]) == (
        pi.id,
        "succeeded",
        {"bookingId": "bk_1"},
    )
    charge = next(e for e in receiver.events if e["type"] == "charge.succeeded")["data"]["object"]
    assert charge["payment_method_details"]["card"]["last4"] == "4242"
    # The event log answers like GET /v1/events.
    logged = client.v1.events.list({"type": "payment_intent.succeeded"})
    assert [e.id for e in logged.data] == [succeeded["id"]]
    assert client.v1.events.retrieve(succeeded["id"]).data.object.id == pi.id

    with pytest.raises(stripe.InvalidRequestError, match="status of succeeded"):
        client.v1.payment_intents.confirm(pi.id, {"payment_method": "pm_card_visa"})


@pytest.mark.parametrize(
    ("params", "code", "decline_code", "message"),
    [
        ({"payment_method": "pm_card_chargeDeclined"}, "card_declined", "generic_decline",
         "Your card was declined."),
        ({"payment_method": "pm_card_visa_chargeDeclinedInsufficientFunds"}, "card_declined",
         "insufficient_funds", "Your card has insufficient funds."),
        ({"payment_method_data": {"type": "card", "card": {"number": "4000 0000 0000 0002"}}},
         "card_declined", "generic_decline", "Your card was declined."),
        ({"payment_method_data": {"type": "card", "card": {"number": "4000000000009995"}}},
         "card_declined", "insufficient_funds", "Your card has insufficient funds."),
        ({"payment_method_data": {"type": "card", "card": {"number": "4000000000000069"}}},
         "expired_card", None, "Your card has expired."),
    ],
)  # fmt: skip
def test_declined_test_cards_answer_402_and_send_payment_failed(
    make_emulator: Callable[..., StripeEmulator],
    receiver: Receiver,
    params: dict[str, Any],
    code: str,
    decline_code: str | None,
    message: str,
) -> None:
    emulator = make_emulator()
    client = sdk(emulator)
    pi = deposit(client)
    with pytest.raises(stripe.CardError) as raised:
        client.v1.payment_intents.confirm(pi.id, params)  # type: ignore[arg-type]
    assert raised.value.http_status == 402
    assert raised.value.code == code
    assert raised.value.error is not None
    assert raised.value.error.decline_code == decline_code
    intent = raised.value.error.payment_intent
    assert intent is not None
    assert intent.status == "requires_payment_method"

    wait_types(receiver, "payment_intent.payment_failed")
    failed = next(e for e in receiver.events if e["type"] == "payment_intent.payment_failed")
    error = failed["data"]["object"]["last_payment_error"]
    assert (error["code"], error["decline_code"], error["message"]) == (
        code,
        decline_code,
        message,
    )
    # The customer may retry with another card: the intent can still be paid.
    assert client.v1.payment_intents.confirm(pi.id, {"payment_method": "pm_card_visa"}).status == (
        "succeeded"
    )


def test_a_mistyped_or_live_card_number(make_emulator: Callable[..., StripeEmulator]) -> None:
    emulator = make_emulator(webhook=None)
    client = sdk(emulator)
    pi = deposit(client)
    card: Any = {"payment_method_data": {"type": "card", "card": {"number": "4242424242424241"}}}
    with pytest.raises(stripe.CardError) as raised:
        client.v1.payment_intents.confirm(pi.id, card)
    assert raised.value.code == "incorrect_number"
    assert client.v1.payment_intents.retrieve(pi.id).last_payment_error is None
    live: Any = {"payment_method_data": {"type": "card", "card": {"number": "4111111111111111"}}}
    with pytest.raises(stripe.CardError) as raised:
        client.v1.payment_intents.confirm(pi.id, live)
    assert raised.value.error is not None
    assert raised.value.error.decline_code == "test_mode_live_card"
    with pytest.raises(stripe.InvalidRequestError, match="No such PaymentMethod"):
        client.v1.payment_intents.confirm(pi.id, {"payment_method": "pm_card_nope"})


def test_a_browser_confirms_with_the_publishable_key_and_client_secret(
    make_emulator: Callable[..., StripeEmulator], receiver: Receiver
) -> None:
    """What Stripe.js sends from a card form: form-encoded, `key` and `client_secret`."""
    emulator = make_emulator()
    pi = deposit(sdk(emulator))
    url = f"{emulator.url}/v1/payment_intents/{pi.id}/confirm"
    card = {
        "payment_method_data[type]": "card",
        "payment_method_data[card][number]": "4242 4242 4242 4242",
        "payment_method_data[card][exp_month]": "12",
        "payment_method_data[card][exp_year]": "2034",
        "payment_method_data[card][cvc]": "123",
        "key": "pk_test_inkflow",
        "expected_payment_method_type": "card",
        "use_stripe_sdk": "true",
    }
    with requests.Session() as http:
        wrong = http.post(url, data={**card, "client_secret": pi.id + "_secret_wrong"})
        assert wrong.status_code == 400, wrong.text
        assert wrong.json()["error"]["param"] == "client_secret"
        paid = http.post(url, data={**card, "client_secret": pi.client_secret})
        assert paid.status_code == 200, paid.text
        assert paid.json()["status"] == "succeeded"
        polled = http.get(
            f"{emulator.url}/v1/payment_intents/{pi.id}",
            params={"key": "pk_test_inkflow", "client_secret": pi.client_secret},
        )
        assert polled.json()["status"] == "succeeded"
        # A server reads it with the secret key, as `curl -u sk_test_…:` in Stripe's docs.
        read = http.get(f"{emulator.url}/v1/payment_intents/{pi.id}", auth=(API_KEY, ""))
        assert read.json()["amount_received"] == 5000
        # A publishable key may confirm and read an intent, nothing else.
        refused = http.post(
            f"{emulator.url}/v1/refunds",
            data={"payment_intent": pi.id},
            headers={"Authorization": "Bearer pk_test_inkflow"},
        )
        assert refused.status_code == 401
    wait_types(receiver, "payment_intent.succeeded")


def test_refunds_and_account_changes_send_their_events(
    make_emulator: Callable[..., StripeEmulator], receiver: Receiver
) -> None:
    emulator = make_emulator()
    client = sdk(emulator)
    pi = deposit(client)
    client.v1.payment_intents.confirm(pi.id, {"payment_method": "pm_card_visa"})
    client.v1.refunds.create({"payment_intent": pi.id, "amount": 1000})
    emulator.refund_payment_intent(pi.id)  # the rest, from the Dashboard
    client.v1.payment_intents.cancel(deposit(client).id)
    emulator.set_account("acct_1Artist", charges_enabled=False)
    assert wait_until(lambda: receiver.types().count("charge.refunded") == 2, timeout=10)
    wait_types(receiver, "account.updated", "payment_intent.canceled")
    refunded = [e["data"]["object"] for e in receiver.events if e["type"] == "charge.refunded"]
    assert sorted((c["amount_refunded"], c["refunded"]) for c in refunded) == [
        (1000, False),
        (5000, True),
    ]
    account = next(e for e in receiver.events if e["type"] == "account.updated")
    assert account["data"]["object"]["charges_enabled"] is False


def test_failed_deliveries_are_retried_with_exponential_backoff(
    make_emulator: Callable[..., StripeEmulator], receiver: Receiver
) -> None:
    receiver.statuses = [500, 503, 404]  # then 200
    emulator = make_emulator(webhook=Endpoint(receiver.url, SECRET, ("payment_intent.succeeded",)))
    pi = deposit(sdk(emulator))
    emulator.succeed_payment_intent(pi.id)
    wait_types(receiver, "payment_intent.succeeded")
    assert emulator.wait_for_deliveries(5)
    attempts = emulator.deliveries(related_to=pi.id)
    # Only the enabled type is delivered (not payment_intent.created, charge.succeeded).
    assert {a.type for a in attempts} == {"payment_intent.succeeded"}
    assert [(a.attempt, a.status, a.delivered) for a in attempts] == [
        (1, 500, False),
        (2, 503, False),
        (3, 404, False),
        (4, 200, True),
    ]
    gaps = [b - a for a, b in zip(receiver.arrivals, receiver.arrivals[1:], strict=False)]
    # 0.1, 0.2, 0.4 s (FAST), each at least its delay and the delays growing.
    for gap, delay in zip(gaps, (0.1, 0.2, 0.4), strict=True):
        assert gap >= delay * 0.9, gaps
    assert gaps[2] > gaps[0]


def test_delivery_gives_up_after_max_attempts_and_can_be_resent(
    make_emulator: Callable[..., StripeEmulator], receiver: Receiver
) -> None:
    receiver.statuses = [500, 500]
    policy = RetryPolicy(first_delay=0.05, max_delay=0.05, max_attempts=2, timeout=2)
    emulator = make_emulator(
        webhook=Endpoint(receiver.url, SECRET, ("account.updated",)), retry=policy
    )
    emulator.set_account("acct_x", charges_enabled=False)
    assert emulator.wait_for_deliveries(5)
    attempts = emulator.deliveries(related_to="acct_x")
    assert [(a.attempt, a.status, a.next_retry_at is None) for a in attempts] == [
        (1, 500, False),
        (2, 500, True),
    ]
    assert receiver.types() == []
    # An operator re-sends it (`stripe events resend`), over the control API.
    with requests.Session() as http:
        base = f"{emulator.url}/_emulator"
        resent = http.post(f"{base}/events/{attempts[0].event_id}/resend")
        assert resent.status_code == 200, resent.text
        assert http.post(f"{base}/wait_for_deliveries", json={"timeout": 5}).json() == {
            "idle": True
        }
        listed = http.get(f"{base}/deliveries", params={"event_id": attempts[0].event_id}).json()
        assert [(a["attempt"], a["status"]) for a in listed] == [(1, 500), (2, 500), (1, 200)]
        assert listed[-1]["delivered"] is True
        assert http.post(f"{base}/events/evt_nope/resend").status_code == 404
    assert receiver.types() == ["account.updated"]


def test_api_calls_return_at_once_while_the_endpoint_is_slow(
    make_emulator: Callable[..., StripeEmulator], receiver: Receiver
) -> None:
    receiver.delay = 1.5
    emulator = make_emulator()
    client = sdk(emulator)
    pi = deposit(client)
    started = time.monotonic()
    client.v1.payment_intents.confirm(pi.id, {"payment_method": "pm_card_visa"})
    assert time.monotonic() - started < 0.5
    wait_types(receiver, "payment_intent.succeeded")


def test_unreachable_endpoint_is_retried(make_emulator: Callable[..., StripeEmulator]) -> None:
    policy = RetryPolicy(first_delay=0.05, max_delay=0.05, max_attempts=3, timeout=1)
    emulator = make_emulator(webhook=Endpoint("http://127.0.0.1:9/nothing", SECRET), retry=policy)
    emulator.set_account("acct_y")
    assert emulator.wait_for_deliveries(5)
    attempts = emulator.deliveries(related_to="acct_y")
    assert [(a.attempt, a.status) for a in attempts] == [(1, None), (2, None), (3, None)]
    assert all(a.error for a in attempts)


def test_latency_is_added_to_api_calls_only(make_emulator: Callable[..., StripeEmulator]) -> None:
    emulator = make_emulator(webhook=None, latency_ms=300)
    client = sdk(emulator)
    started = time.monotonic()
    pi = deposit(client)
    assert time.monotonic() - started >= 0.3
    started = time.monotonic()
    requests.get(f"{emulator.url}/_emulator/payment_intents/{pi.id}", timeout=5)
    assert time.monotonic() - started < 0.25
    requests.post(f"{emulator.url}/_emulator/latency", json={"ms": 0}, timeout=5)
    started = time.monotonic()
    client.v1.payment_intents.retrieve(pi.id)
    assert time.monotonic() - started < 0.25


def test_state_survives_a_restart(
    make_emulator: Callable[..., StripeEmulator], receiver: Receiver, tmp_path: Path
) -> None:
    path = tmp_path / "stripe" / "state.json"
    first = make_emulator(state_path=path, webhook=None)
    client = sdk(first)
    pi = client.v1.payment_intents.create(
        {"amount": 5000, "currency": "eur"}, {"idempotency_key": "booking-1"}
    )
    client.v1.payment_intents.confirm(pi.id, {"payment_method": "pm_card_visa"})
    # The endpoint is down: the event is still due when the emulator stops.
    first.configure_webhook("http://127.0.0.1:9/down", SECRET, retry=RetryPolicy(first_delay=30))
    first.set_account("acct_z", charges_enabled=False)
    assert wait_until(lambda: len(first.deliveries(related_to="acct_z")) == 1, timeout=5)
    first.stop()
    saved = json.loads(path.read_text())
    assert pi.id in saved["intents"]
    assert [d["event"]["type"] for d in saved["deliveries"]] == ["account.updated"]

    # Restarted, on another port, with the endpoint up again: all is there.
    second = make_emulator(state_path=path, retry=RetryPolicy(first_delay=0.05))
    client = sdk(second)
    assert client.v1.payment_intents.retrieve(pi.id).status == "succeeded"
    again = client.v1.payment_intents.create(
        {"amount": 5000, "currency": "eur"}, {"idempotency_key": "booking-1"}
    )
    assert again.id == pi.id  # the key is remembered
    assert client.v1.events.list({"type": "payment_intent.succeeded"}).data[0].data.object.id == (
        pi.id
    )
    # The delivery that was due is made (its retry time has come: 30 s from the first
    # attempt is restored as it was, so resend it to avoid waiting).
    evt_id = saved["deliveries"][0]["event"]["id"]
    second.resend_event(evt_id)
    wait_types(receiver, "account.updated")

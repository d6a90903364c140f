"""Development commands beside a running system (`make run`): pay a booking with a Stripe
test card, have Stripe (the emulator) send an event, and the whole seed flow in one go.

They talk over HTTP to the API (as an operator: ADMIN_API_TOKEN; as the client for the
client endpoints) and to Stripe at STRIPE_API_BASE with the official SDK, as inkflow
itself does. Events reach the API through the emulator's own webhook delivery; the
emulator's control API (`/_emulator/`) tells which deliveries were made.
"""

from __future__ import annotations

import argparse
import json
import re
import secrets
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast
from zoneinfo import ZoneInfo

import stripe
from stripe._base_address import BaseAddresses

from services.cli.environment import Endpoints
from services.cli.errors import CliError
from services.cli.http import JSON, Service, poll
from shared.adapters import tokens
from shared.domain.access import Role

# Stripe's test PaymentMethods by the names `--card` takes (Stripe's "Testing" docs).
CARDS = {
    "visa": "pm_card_visa",
    "mastercard": "pm_card_mastercard",
    "declined": "pm_card_chargeDeclined",
    "insufficient_funds": "pm_card_chargeDeclinedInsufficientFunds",
    "lost_card": "pm_card_chargeDeclinedLostCard",
    "stolen_card": "pm_card_chargeDeclinedStolenCard",
    "expired_card": "pm_card_chargeDeclinedExpiredCard",
    "incorrect_cvc": "pm_card_chargeDeclinedIncorrectCvc",
    "processing_error": "pm_card_chargeDeclinedProcessingError",
}
DEMO_CARD = "4242 4242 4242 4242"
DEMO_ARTIST_EMAIL = "demo-artist@inkflow.local"
DEMO_CLIENT_EMAIL = "demo-client@inkflow.local"
TRIGGERS = (
    "payment_intent.succeeded",
    "payment_intent.payment_failed",
    "payment_intent.canceled",
    "charge.refunded",
    "account.updated",
)


@dataclass
class System:
    """The running system as the commands see it."""

    endpoints: Endpoints
    api: Service
    emulator: Service | None
    stripe: stripe.StripeClient

    def booking(self, booking_id: str) -> JSON:
        """The admin view of a booking: booking, transactions, notifications."""
        found = self.api.get(f"/api/admin/bookings/{booking_id}", expect=(200, 404))
        if "booking" not in found:
            raise CliError(f"no booking {booking_id}")
        return cast(JSON, found)

    def require_emulator(self, command: str) -> Service:
        if self.emulator is None:
            raise CliError(
                f"`inkflow {command}` needs the Stripe emulator (`make run` starts it when "
                "STRIPE_SECRET_KEY is unset); with Stripe itself use the Stripe CLI"
            )
        return self.emulator


@contextmanager
def system() -> Iterator[System]:
    endpoints = Endpoints.from_env()
    api = Service("inkflow API", endpoints.api_url, _bearer(endpoints.admin_token))
    emulator = (
        Service("Stripe emulator", endpoints.emulator_url + "/_emulator")
        if endpoints.emulator_url
        else None
    )
    base: BaseAddresses | None = (
        {"api": endpoints.stripe_api_base} if endpoints.stripe_api_base else None
    )
    client = stripe.StripeClient(
        endpoints.stripe_secret_key, base_addresses=base, max_network_retries=0
    )
    try:
        yield System(endpoints, api, emulator, client)
    finally:
        api.close()
        if emulator is not None:
            emulator.close()


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@contextmanager
def stripe_call(what: str) -> Iterator[None]:
    """Stripe's errors as one line."""
    try:
        yield
    except stripe.APIConnectionError:
        raise CliError(f"cannot reach Stripe to {what}: is `make run` running?") from None
    except stripe.StripeError as exc:
        raise CliError(f"Stripe refused to {what}: {exc.user_message or exc}") from None


# --------------------------------------------------------------------------- pay


def pay(args: argparse.Namespace) -> int:
    with system() as sys_:
        detail = sys_.booking(args.booking_id)
        booking = detail["booking"]
        intent_id = booking["paymentIntentId"]
        if booking["status"] != "PENDING_PAYMENT" or not intent_id:
            raise CliError(f"booking {args.booking_id} is {booking['status']}: nothing to pay")
        card = args.card
        params: dict[str, Any]
        if re.fullmatch(r"[\d -]{12,23}", card):
            # A raw number, as a card form sends it through Stripe.js (the emulator only).
            params = {"payment_method_data": {"type": "card", "card": {"number": card}}}
            shown = f"card {card}"
        else:
            method = CARDS.get(card, card)
            params = {"payment_method": method}
            shown = method
        started = time.monotonic()
        seen = _delivered_events(sys_, intent_id)
        failed_before = _failed_attempts(detail, intent_id)
        outcome = _confirm(sys_, intent_id, params)
        print(f"Paid {intent_id} with {shown}: {outcome.describe()}")
        if args.no_wait:
            return 0
        _report_outcome(
            sys_, args.booking_id, intent_id, outcome, started, args.timeout, seen, failed_before
        )
    return 0


def _failed_attempts(detail: JSON, intent_id: str) -> int:
    return sum(
        1
        for t in detail["transactions"]
        if t["paymentIntentId"] == intent_id and t["status"] == "FAILED"
    )


@dataclass(frozen=True)
class Confirmation:
    status: str  # the intent's status after confirming
    code: str | None = None
    decline_code: str | None = None
    message: str | None = None

    @property
    def succeeded(self) -> bool:
        return self.status == "succeeded"

    def describe(self) -> str:
        if self.succeeded:
            return "succeeded"
        reason = self.code or "failed"
        if self.decline_code and self.decline_code != self.code:
            reason += f" ({self.decline_code})"
        return f"declined, {reason}: {self.message}"


def _confirm(sys_: System, intent_id: str, params: dict[str, Any]) -> Confirmation:
    with stripe_call(f"confirm {intent_id}"):
        try:
            paid = sys_.stripe.v1.payment_intents.confirm(
                intent_id, cast(Any, {**params, "return_url": "https://inkflow.invalid/paid"})
            )
        except stripe.CardError as declined:
            return Confirmation(
                "requires_payment_method",
                declined.code,
                getattr(declined.error, "decline_code", None),
                declined.user_message or str(declined),
            )
    return Confirmation(str(paid.status))


def _report_outcome(
    sys_: System,
    booking_id: str,
    intent_id: str,
    outcome: Confirmation,
    started: float,
    timeout: float,
    seen: set[str],
    failed_before: int,
) -> JSON:
    """Wait until inkflow applied the payment's webhook event; print what happened."""

    def applied() -> JSON | None:
        detail = sys_.booking(booking_id)
        if outcome.succeeded:
            return detail if detail["booking"]["status"] != "PENDING_PAYMENT" else None
        return detail if _failed_attempts(detail, intent_id) > failed_before else None

    detail = poll(applied, timeout)
    for line in _deliveries(sys_, intent_id, skip=seen):
        print(line)
    if detail is None:
        status = sys_.booking(booking_id)["booking"]["status"]
        raise CliError(
            f"booking {booking_id} is still {status} after {timeout:.0f} s: the webhook "
            "was not applied (is the worker running? `inkflow events list`)"
        )
    elapsed = time.monotonic() - started
    status = detail["booking"]["status"]
    if outcome.succeeded:
        print(f"Booking {booking_id} {status} ({elapsed:.1f} s)")
    else:
        print(
            f"Booking {booking_id} still {status}: the failed attempt is recorded and the "
            f"hold kept, the client may pay with another card ({elapsed:.1f} s)"
        )
    return cast(JSON, detail)


def _delivered_events(sys_: System, object_id: str) -> set[str]:
    """Events about `object_id` the emulator tried to deliver so far."""
    if sys_.emulator is None:
        return set()
    attempts = sys_.emulator.get("/deliveries", params={"related_to": object_id})
    return {a["event_id"] for a in attempts}


def _deliveries(
    sys_: System, object_id: str, types: tuple[str, ...] = (), skip: set[str] | None = None
) -> list[str]:
    """Lines on the emulator's webhook deliveries of events about `object_id` (but not
    those in `skip`, delivered before)."""
    if sys_.emulator is None:
        return []
    attempts = sys_.emulator.get("/deliveries", params={"related_to": object_id})
    latest: dict[str, JSON] = {}
    for attempt in attempts:
        if (not types or attempt["type"] in types) and attempt["event_id"] not in (skip or ()):
            latest[attempt["event_id"]] = attempt
    lines = []
    for attempt in latest.values():
        answer = attempt["status"] if attempt["status"] is not None else "no answer"
        if attempt["delivered"]:
            state = f"delivered ({answer})"
        elif attempt["next_retry_at"] is not None:
            state = f"attempt {attempt['attempt']}: {answer}, retrying"
        else:
            state = f"not delivered ({answer}), given up"
        lines.append(f"Webhook {attempt['type']} {attempt['event_id']} {state}")
    return lines


# --------------------------------------------------------------------------- trigger


def trigger(args: argparse.Namespace) -> int:
    """Like `stripe trigger`: make what the event needs through the API, so that Stripe
    (the emulator) emits the event and delivers it."""
    with system() as sys_:
        emulator = sys_.require_emulator("trigger")
        event_type = args.event_type
        seen: set[str] = set()
        if event_type == "account.updated":
            account = args.account or f"acct_trigger{secrets.token_hex(6)}"
            emulator.post(f"/accounts/{account}", json={"charges_enabled": not args.disable})
            subject, what = account, f"account {account}"
        else:
            intent_id, what = _intent_for(sys_, args.booking)
            subject = intent_id
            seen = _delivered_events(sys_, intent_id)
            with stripe_call(f"trigger {event_type}"):
                _act(sys_, event_type, intent_id)
        print(f"Triggered {event_type} on {what}")
        webhook = emulator.get("/webhook")
        if webhook.get("url") is None:
            print("The emulator has no webhook endpoint: the events were logged, not sent.")
            return 0
        emulator.post("/wait_for_deliveries", json={"timeout": args.timeout})
        lines = _deliveries(sys_, subject, skip=seen)
        for line in lines:
            print(line)
        if not any(event_type in line and "delivered (" in line for line in lines):
            raise CliError(f"{event_type} was not delivered to {webhook['url']}")
    return 0


def _intent_for(sys_: System, booking_id: str | None) -> tuple[str, str]:
    if booking_id is None:
        with stripe_call("create a PaymentIntent"):
            intent = sys_.stripe.v1.payment_intents.create(
                {
                    "amount": 2000,
                    "currency": "eur",
                    "automatic_payment_methods": {"enabled": True},
                    "metadata": {"createdBy": "inkflow trigger"},
                }
            )
        return intent.id, f"a new PaymentIntent {intent.id} (20.00 eur, no booking)"
    booking = sys_.booking(booking_id)["booking"]
    if not booking["paymentIntentId"]:
        raise CliError(f"booking {booking_id} has no PaymentIntent")
    return booking["paymentIntentId"], f"booking {booking_id} ({booking['paymentIntentId']})"


def _act(sys_: System, event_type: str, intent_id: str) -> None:
    intents = sys_.stripe.v1.payment_intents
    if event_type == "payment_intent.canceled":
        intents.cancel(intent_id)
        return
    if event_type == "payment_intent.payment_failed":
        try:
            intents.confirm(intent_id, {"payment_method": CARDS["declined"]})
        except stripe.CardError:
            return  # the decline is the point
        raise CliError("the declined test card was accepted")
    status = intents.retrieve(intent_id).status
    if event_type == "payment_intent.succeeded" and status == "succeeded":
        raise CliError(f"{intent_id} is paid already: nothing to trigger")
    if status != "succeeded":
        intents.confirm(intent_id, {"payment_method": CARDS["visa"]})
    if event_type == "charge.refunded":
        sys_.stripe.v1.refunds.create({"payment_intent": intent_id})


# --------------------------------------------------------------------------- demo


def demo(args: argparse.Namespace) -> int:
    """Book the demo artist's next free slot, pay with 4242 through the emulator as a
    browser does, wait for CONFIRMED by way of the emulator's webhook, show the emails."""
    started = time.monotonic()
    with system() as sys_:
        sys_.require_emulator("demo")
        artist, service, client = _demo_catalogue(sys_.api)
        tz = ZoneInfo(artist["timezone"])
        start = _next_free_slot(sys_, artist["id"], service["id"], client["id"])
        created = sys_.api.post(
            "/api/bookings/create",
            json={
                "clientId": client["id"],
                "artistId": artist["id"],
                "serviceId": service["id"],
                "startTime": start,
            },
            headers=_client_auth(sys_.endpoints, client["id"]),
            expect=(201,),
        )
        booking, intent = created["booking"], created["paymentIntent"]
        if not args.json:
            local = _local(booking["startTime"], tz)
            print(
                f"Booked   {artist['name']}, {service['name']}, {local:%a %d %b %Y %H:%M} "
                f"{artist['timezone']}: booking {booking['id']} {booking['status']}, "
                f"deposit {booking['depositAmount']} {booking['currency']}"
            )
        if intent is None:
            raise CliError("the demo service takes no deposit: nothing to pay")
        paid = _pay_as_browser(sys_, intent)
        if not args.json:
            print(f"Paid     {intent['id']} with test card {DEMO_CARD}: {paid}")
        detail = _wait_confirmed(sys_, booking["id"], args.timeout)
    if args.json:
        print(json.dumps(detail, indent=2))
        return 0
    for line in _deliveries(sys_, intent["id"], ("payment_intent.succeeded",)):
        print(line.replace("Webhook ", "Webhook  ", 1))
    print(f"{detail['booking']['status']}  after {time.monotonic() - started:.1f} s")
    print("Emails:")
    for note in detail["notifications"]:
        sent = f" at {note['sentAt']}" if note["sentAt"] else ""
        print(f"  {note['kind']:<18} to {note['recipient']:<28} {note['status']}{sent}")
    print("Booking:")
    print(json.dumps(detail["booking"], indent=2))
    return 0


def _demo_catalogue(api: Service) -> tuple[JSON, JSON, JSON]:
    artists = api.get("/api/admin/artists")["items"]
    artist = next((a for a in artists if a["email"] == DEMO_ARTIST_EMAIL), None)
    clients = api.get("/api/admin/clients")["items"]
    client = next((c for c in clients if c["email"] == DEMO_CLIENT_EMAIL), None)
    if artist is None or client is None:
        raise CliError("no demo artist or client: run `inkflow seed` (make run does)")
    services = api.get(f"/api/admin/artists/{artist['id']}/services")["items"]
    service = next((s for s in services if s.get("active", True)), None)
    if service is None:
        raise CliError(f"the demo artist {artist['id']} has no service")
    return artist, service, client


def _next_free_slot(sys_: System, artist_id: str, service_id: str, client_id: str) -> str:
    now = datetime.now(UTC)
    for week in range(0, 12):
        answer = sys_.api.post(
            "/api/availability",
            json={
                "artistId": artist_id,
                "serviceId": service_id,
                "startDate": (now + timedelta(weeks=week)).isoformat(),
                "endDate": (now + timedelta(weeks=week + 1)).isoformat(),
            },
            headers=_client_auth(sys_.endpoints, client_id),
        )
        free = next((s["startTime"] for s in answer["slots"] if s["available"]), None)
        if free is not None:
            return str(free)
    raise CliError(f"the demo artist has no free slot in the next 12 weeks ({artist_id})")


def _client_auth(endpoints: Endpoints, client_id: str) -> dict[str, str]:
    """The client's own token when the API asks for one (AUTH_JWT_SECRET set)."""
    if endpoints.auth_jwt_secret is None:
        return {}
    minted = tokens.mint(
        endpoints.auth_jwt_secret,
        Role.CLIENT,
        uuid.UUID(client_id),
        now=datetime.now(UTC),
        ttl=timedelta(minutes=5),
    )
    return _bearer(minted)


def _pay_as_browser(sys_: System, intent: JSON) -> str:
    """Confirm as Stripe.js does from a card form: the publishable key and the intent's
    client secret (or, without a publishable key, the secret key)."""
    key = sys_.endpoints.stripe_publishable_key
    base = sys_.endpoints.stripe_api_base or "https://api.stripe.com"
    stripe_js = Service("Stripe emulator", base)
    form = {
        "payment_method_data[type]": "card",
        "payment_method_data[card][number]": DEMO_CARD,
        "payment_method_data[card][exp_month]": "12",
        "payment_method_data[card][exp_year]": str(datetime.now(UTC).year + 3),
        "payment_method_data[card][cvc]": "123",
        "expected_payment_method_type": "card",
        "client_secret": intent["clientSecret"],
        "key": key or "",
    }
    headers = {} if key else _bearer(sys_.endpoints.stripe_secret_key)
    if not key:
        form.pop("key")
        form.pop("client_secret")
    try:
        paid = stripe_js.post(
            f"/v1/payment_intents/{intent['id']}/confirm", data=form, headers=headers
        )
    finally:
        stripe_js.close()
    return str(paid["status"])


def _wait_confirmed(sys_: System, booking_id: str, timeout: float) -> JSON:
    """Until CONFIRMED with both emails sent (or, at the deadline, as far as it got)."""

    def done() -> JSON | None:
        detail = sys_.booking(booking_id)
        notes = detail["notifications"]
        sent = len(notes) >= 2 and all(n["status"] == "SENT" for n in notes)
        return detail if detail["booking"]["status"] == "CONFIRMED" and sent else None

    detail = poll(done, timeout)
    if detail is None:
        detail = sys_.booking(booking_id)
        if detail["booking"]["status"] != "CONFIRMED":
            for line in _deliveries(sys_, detail["booking"]["paymentIntentId"] or ""):
                print(line)
            raise CliError(
                f"booking {booking_id} is still {detail['booking']['status']} after "
                f"{timeout:.0f} s (is the worker running? `inkflow events list`)"
            )
    return cast(JSON, detail)


def _local(timestamp: str, tz: ZoneInfo) -> datetime:
    return datetime.fromisoformat(timestamp.replace("Z", "+00:00")).astimezone(tz)

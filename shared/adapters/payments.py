"""The Stripe gateway: the official SDK's StripeClient, typed params, our own idempotency
keys (derived from the booking or the artist, so a retry after a crash can never create a
second intent or a second connected account), a timeout and bounded retries."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import stripe
from stripe.params import (
    AccountCreateParams,
    AccountLinkCreateParams,
    PaymentIntentCancelParams,
    PaymentIntentCreateParams,
    RefundCreateParams,
    RefundListParams,
)

from shared.adapters.stripe_http import StripeHttpClient
from shared.config import Settings
from shared.domain.money import platform_fee
from shared.domain.refunds import RefundReason

log = logging.getLogger("inkflow.payments")


class PaymentProviderError(Exception):
    """Stripe failed, refused or did not answer in time."""


class TransientPaymentError(PaymentProviderError):
    """A failure worth retrying: no answer, 409 (a request with this key is running),
    429 or 5xx. Anything else (a refused or invalid request) will fail again."""


class DashboardUnavailable(Exception):
    """Stripe refuses an Express Dashboard login link for the account: it has not finished
    onboarding, or it does not use the Express Dashboard (a Standard account typed in by
    the operator). Not a provider failure: asking again will not help."""


def provider_error(exc: stripe.StripeError) -> PaymentProviderError:
    status = exc.http_status
    if status is None or status in (409, 429) or status >= 500:
        return TransientPaymentError(str(exc))
    return PaymentProviderError(str(exc))


@dataclass(frozen=True, slots=True)
class Intent:
    id: str
    client_secret: str | None
    amount: int
    currency: str
    status: str


@dataclass(frozen=True, slots=True)
class DepositRequest:
    booking_id: uuid.UUID
    artist_id: uuid.UUID
    client_id: uuid.UUID
    service_id: uuid.UUID
    amount_minor: int
    currency: str
    destination: str


def deposit_idempotency_key(booking_id: uuid.UUID) -> str:
    return f"inkflow-deposit-{booking_id}"


def refund_idempotency_key(booking_id: uuid.UUID, reason: RefundReason) -> str:
    """One refund per booking and reason. The late-payment form predates the others and
    is kept: a refund asked for before an upgrade is the same refund after it."""
    if reason == RefundReason.LATE_PAYMENT:
        return f"inkflow-late-refund-{booking_id}"
    return f"inkflow-refund-{reason.lower().replace('_', '-')}-{booking_id}"


def retry_idempotency_key(
    booking_id: uuid.UUID, reason: RefundReason, failed_refund_id: uuid.UUID
) -> str:
    """An operator's new request for a refund that failed (one per failed refund)."""
    return f"{refund_idempotency_key(booking_id, reason)}-retry-{failed_refund_id}"


@dataclass(frozen=True, slots=True)
class RefundRequest:
    intent_id: str
    booking_id: uuid.UUID
    reason: RefundReason
    idempotency_key: str


@dataclass(frozen=True, slots=True)
class RefundResult:
    """A Stripe refund as Stripe reports it (the answer to our request, a list, an event)."""

    id: str
    amount: int
    currency: str
    status: str  # Stripe's: succeeded | pending | requires_action | failed | canceled
    charge_id: str | None
    intent_id: str | None = None
    created: int = 0  # Stripe's time of creation (Unix seconds)
    failure_reason: str | None = None  # lost_or_stolen_card, expired_or_canceled_card, ...
    metadata: Mapping[str, str] = field(default_factory=dict)


def account_idempotency_key(artist_id: uuid.UUID) -> str:
    """One connected account per artist: concurrent or repeated onboarding requests get the
    account the first one created (Stripe keeps the key 24 hours)."""
    return f"inkflow-account-{artist_id}"


@dataclass(frozen=True, slots=True)
class ExpressAccountRequest:
    artist_id: uuid.UUID
    email: str
    country: str | None  # ISO 3166-1 alpha-2; None: the platform's country (Stripe's default)


@dataclass(frozen=True, slots=True)
class AccountState:
    """What Stripe says a connected account can do, from an API answer or from the
    account in an `account.updated` event."""

    id: str
    charges_enabled: bool
    payouts_enabled: bool
    requirements_due: tuple[str, ...]  # `requirements.currently_due`


def account_from_json(data: Mapping[str, Any]) -> AccountState:
    requirements = data.get("requirements") or {}
    return AccountState(
        id=str(data["id"]),
        charges_enabled=bool(data.get("charges_enabled")),
        payouts_enabled=bool(data.get("payouts_enabled")),
        requirements_due=tuple(str(r) for r in requirements.get("currently_due") or ()),
    )


@dataclass(frozen=True, slots=True)
class OnboardingLink:
    url: str
    expires_at: datetime


def _id_of(value: Any) -> str | None:
    """An expandable field: the id, whether Stripe sent it alone or expanded."""
    if value is None or isinstance(value, str):
        return value
    return str(value["id"])


def refund_from_json(data: Mapping[str, Any]) -> RefundResult:
    """A refund object as Stripe's JSON shows it (an event's payload, `to_dict()`)."""
    return RefundResult(
        id=str(data["id"]),
        amount=int(data.get("amount") or 0),
        currency=str(data.get("currency") or ""),
        status=str(data.get("status") or "pending"),
        charge_id=_id_of(data.get("charge")),
        intent_id=_id_of(data.get("payment_intent")),
        created=int(data.get("created") or 0),
        failure_reason=data.get("failure_reason"),
        metadata={str(k): str(v) for k, v in (data.get("metadata") or {}).items()},
    )


def _refund(obj: stripe.Refund) -> RefundResult:
    return refund_from_json(obj.to_dict())


def _intent(obj: stripe.PaymentIntent) -> Intent:
    return Intent(
        id=obj.id,
        client_secret=obj.client_secret,
        amount=obj.amount,
        currency=obj.currency,
        status=obj.status,
    )


class StripeGateway:
    def __init__(self, settings: Settings) -> None:
        self._fee_bps = settings.platform_fee_bps
        base = settings.stripe_api_base
        self._client = stripe.StripeClient(
            settings.stripe_secret_key,
            base_addresses={"api": base} if base else None,
            max_network_retries=settings.stripe_max_retries,
            http_client=StripeHttpClient(timeout=settings.stripe_timeout_seconds),
        )

    def create_deposit_intent(self, deposit: DepositRequest) -> Intent:
        params: PaymentIntentCreateParams = {
            "amount": deposit.amount_minor,
            "currency": deposit.currency,
            "automatic_payment_methods": {"enabled": True},
            "metadata": {
                "bookingId": str(deposit.booking_id),
                "artistId": str(deposit.artist_id),
                "clientId": str(deposit.client_id),
                "serviceId": str(deposit.service_id),
            },
            "transfer_data": {"destination": deposit.destination},
        }
        fee = platform_fee(deposit.amount_minor, self._fee_bps)
        if fee > 0:
            params["application_fee_amount"] = fee
        try:
            created = self._client.v1.payment_intents.create(
                params, {"idempotency_key": deposit_idempotency_key(deposit.booking_id)}
            )
        except stripe.StripeError as exc:
            log.warning("payment intent for booking %s failed: %s", deposit.booking_id, exc)
            raise provider_error(exc) from exc
        return _intent(created)

    def retrieve_intent(self, intent_id: str) -> Intent:
        try:
            return _intent(self._client.v1.payment_intents.retrieve(intent_id))
        except stripe.StripeError as exc:
            raise provider_error(exc) from exc

    def cancel_intent(self, intent_id: str) -> Intent:
        """Cancel an unpaid intent; an intent that already succeeded or was cancelled is
        returned as it is (its webhook decides what happens)."""
        params: PaymentIntentCancelParams = {"cancellation_reason": "abandoned"}
        try:
            return _intent(
                self._client.v1.payment_intents.cancel(
                    intent_id, params, {"idempotency_key": f"inkflow-cancel-{intent_id}"}
                )
            )
        except stripe.InvalidRequestError as exc:
            if exc.code == "payment_intent_unexpected_state":
                return self.retrieve_intent(intent_id)
            raise provider_error(exc) from exc
        except stripe.StripeError as exc:
            raise provider_error(exc) from exc

    def refund_in_full(self, request: RefundRequest) -> RefundResult:
        """Refund a destination charge in full, taking the transfer (and the platform fee)
        back from the artist. Never call it inside a database transaction: it may take
        as long as Stripe does. Asking again with the same key returns the same refund."""
        params: RefundCreateParams = {
            "payment_intent": request.intent_id,
            "reverse_transfer": True,
            "refund_application_fee": True,
            "metadata": {"bookingId": str(request.booking_id), "reason": request.reason.lower()},
        }
        try:
            refund = self._client.v1.refunds.create(
                params, {"idempotency_key": request.idempotency_key}
            )
        except stripe.StripeError as exc:
            log.warning("refund for booking %s failed: %s", request.booking_id, exc)
            raise provider_error(exc) from exc
        return _refund(refund)

    def retrieve_refund(self, refund_id: str) -> RefundResult:
        try:
            return _refund(self._client.v1.refunds.retrieve(refund_id))
        except stripe.StripeError as exc:
            raise provider_error(exc) from exc

    def list_refunds(
        self, *, charge_id: str | None = None, intent_id: str | None = None
    ) -> list[RefundResult]:
        """Every refund of a charge (or of a payment intent's charges), whoever made it and
        whatever its status, page after page. Never inside a database transaction."""
        params: RefundListParams = {"limit": 100}
        if charge_id:
            params["charge"] = charge_id
        elif intent_id:
            params["payment_intent"] = intent_id
        else:
            raise ValueError("list_refunds needs a charge or a payment intent")
        try:
            return [_refund(r) for r in self._client.v1.refunds.list(params).auto_paging_iter()]
        except stripe.StripeError as exc:
            raise provider_error(exc) from exc

    def create_express_account(self, request: ExpressAccountRequest) -> AccountState:
        """A connected account with the Express Dashboard (Stripe's `controller` properties
        for what `type=express` meant: the platform pays Stripe's fees and bears losses,
        Stripe collects the requirements), card payments and transfers requested. The key
        derived from the artist makes a retry, or a concurrent request, get the same
        account. Never inside a database transaction."""
        params: AccountCreateParams = {
            "controller": {
                "fees": {"payer": "application"},
                "losses": {"payments": "application"},
                "requirement_collection": "stripe",
                "stripe_dashboard": {"type": "express"},
            },
            "email": request.email,
            "capabilities": {
                "card_payments": {"requested": True},
                "transfers": {"requested": True},
            },
            "metadata": {"artistId": str(request.artist_id)},
        }
        if request.country is not None:
            params["country"] = request.country
        try:
            created = self._client.v1.accounts.create(
                params, {"idempotency_key": account_idempotency_key(request.artist_id)}
            )
        except stripe.StripeError as exc:
            log.warning("connected account for artist %s failed: %s", request.artist_id, exc)
            raise provider_error(exc) from exc
        return account_from_json(created.to_dict())

    def create_onboarding_link(
        self, account_id: str, *, return_url: str, refresh_url: str
    ) -> OnboardingLink:
        """A fresh Account Link to Stripe's hosted onboarding (single use, valid minutes).
        No idempotency key of ours: each call must give a new link."""
        params: AccountLinkCreateParams = {
            "account": account_id,
            "return_url": return_url,
            "refresh_url": refresh_url,
            "type": "account_onboarding",
        }
        try:
            link = self._client.v1.account_links.create(params)
        except stripe.StripeError as exc:
            log.warning("account link for %s failed: %s", account_id, exc)
            raise provider_error(exc) from exc
        return OnboardingLink(url=link.url, expires_at=datetime.fromtimestamp(link.expires_at, UTC))

    def create_dashboard_link(self, account_id: str) -> str:
        """A single-use login link to the account's Express Dashboard. Raises
        DashboardUnavailable when Stripe refuses it for the account."""
        try:
            return self._client.v1.accounts.login_links.create(account_id).url
        except stripe.InvalidRequestError as exc:
            if exc.http_status in (400, 404):
                raise DashboardUnavailable(exc.user_message or str(exc)) from exc
            raise provider_error(exc) from exc
        except stripe.StripeError as exc:
            raise provider_error(exc) from exc

    def charges_enabled(self, account_id: str) -> bool:
        try:
            return bool(self._client.v1.accounts.retrieve(account_id).charges_enabled)
        except stripe.StripeError as exc:
            raise provider_error(exc) from exc

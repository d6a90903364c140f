"""Stripe Connect onboarding: an artist gets an Express connected account and a link to
Stripe's hosted onboarding; later, a login link to their Express Dashboard.

Stripe is never called inside a database transaction: read the artist and commit, call
Stripe, then store the new account's id in a short transaction of its own. Two onboarding
requests racing for one artist both ask Stripe with the same idempotency key (derived from
the artist), so Stripe gives both the same account; the store is conditional (only while
the artist has none), so the first one stores it and the second finds it there. If Stripe
fails, nothing is written but what is true: an account Stripe made is stored even when the
link that follows fails (a retry links to it; never a second account).

From then on Stripe tells us what the account can do through `account.updated`
(`stripe_events.account_updated`): once onboarding is complete, charges are enabled and
the artist takes deposits without an operator.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import datetime

from shared.adapters.db import transaction
from shared.adapters.models import Artist
from shared.adapters.payments import (
    AccountState,
    DashboardUnavailable,
    ExpressAccountRequest,
    PaymentProviderError,
    StripeGateway,
)
from shared.adapters.runtime import Resources
from shared.domain.errors import DomainError, ErrorCode
from shared.usecases.catalog import get_or_404

log = logging.getLogger("inkflow.connect")

STRIPE_FAILED = "Stripe failed or did not answer. Safe to retry."


@dataclass(frozen=True, slots=True)
class Onboarding:
    url: str
    expires_at: datetime
    stripe_account_id: str


@dataclass(frozen=True, slots=True)
class _Artist:
    id: uuid.UUID
    email: str
    stripe_account_id: str | None


class ConnectOnboarding:
    def __init__(self, resources: Resources, gateway: StripeGateway) -> None:
        self._resources = resources
        self._gateway = gateway

    def _artist(self, artist_id: str) -> _Artist:
        with transaction(self._resources.sessions) as session:
            artist = get_or_404(session, Artist, artist_id)
            return _Artist(artist.id, artist.email, artist.stripe_account_id)

    def start(self, artist_id: str, *, return_url: str, refresh_url: str) -> Onboarding:
        """The artist's account (created if it has none) and a fresh onboarding link to it.
        An artist that has an account (onboarded or not, typed in by the operator or made
        here) gets a new link to that same account."""
        artist = self._artist(artist_id)
        account_id = artist.stripe_account_id
        try:
            if account_id is None:
                account_id = self._store(artist.id, self._create_account(artist))
            link = self._gateway.create_onboarding_link(
                account_id, return_url=return_url, refresh_url=refresh_url
            )
        except PaymentProviderError:
            raise DomainError(ErrorCode.PAYMENT_PROVIDER_ERROR, STRIPE_FAILED) from None
        return Onboarding(url=link.url, expires_at=link.expires_at, stripe_account_id=account_id)

    def _create_account(self, artist: _Artist) -> AccountState:
        request = ExpressAccountRequest(
            artist_id=artist.id,
            email=artist.email,
            country=self._resources.settings.stripe_connect_country,
        )
        return self._gateway.create_express_account(request)

    def _store(self, artist_id: uuid.UUID, account: AccountState) -> str:
        """Keep the account Stripe made, unless the artist got one meanwhile (a concurrent
        request stored this same one; or the operator typed another, which wins). Its state
        is Stripe's answer; any `account.updated` about it applies, whatever its age, as
        when the operator changes the account."""
        with transaction(self._resources.sessions) as session:
            # The row lock orders racing requests: the second one sees the first's account.
            artist = get_or_404(session, Artist, artist_id, lock="update")
            current = artist.stripe_account_id
            if current is None:
                artist.stripe_account_id = account.id
                artist.charges_enabled = account.charges_enabled
                artist.payouts_enabled = account.payouts_enabled
                artist.requirements_due = list(account.requirements_due)
                artist.stripe_account_synced_at = None
                log.info("artist %s: connected account %s created", artist_id, account.id)
                return account.id
        if current != account.id:
            log.warning(
                "artist %s got account %s meanwhile; the account %s made for it is unused",
                artist_id,
                current,
                account.id,
            )
        return current

    def dashboard(self, artist_id: str) -> str:
        """A login link to the artist's Express Dashboard."""
        account_id = self._artist(artist_id).stripe_account_id
        if account_id is None:
            raise DomainError(
                ErrorCode.STRIPE_NOT_CONFIGURED,
                "This artist has no Stripe account yet: start the onboarding first.",
            )
        try:
            return self._gateway.create_dashboard_link(account_id)
        except DashboardUnavailable:
            raise DomainError(
                ErrorCode.STRIPE_NOT_CONFIGURED,
                "Stripe has no Express Dashboard for this artist's account yet: the onboarding "
                "is not finished, or the account does not use the Express Dashboard.",
            ) from None
        except PaymentProviderError:
            raise DomainError(ErrorCode.PAYMENT_PROVIDER_ERROR, STRIPE_FAILED) from None

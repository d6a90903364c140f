"""Stripe Connect onboarding of an artist under /api/admin: the onboarding link (the
account is created on the first one) and the Express Dashboard login link."""

from __future__ import annotations

from functools import partial

from flask import Blueprint, Response

from services.api import responses as out
from services.api.openapi import ARTIST, Reply, operation
from services.api.responses import reply
from services.api.schemas import OnboardingRequest, parse_body
from services.api.state import state
from shared.domain.errors import ErrorCode

bp = Blueprint("connect", __name__, url_prefix="/api/admin")

# The operator, or the artist the path names (its own onboarding).
admin_operation = partial(operation, tag="admin", security=ARTIST)


@bp.post("/artists/<artist_id>/stripe/onboarding")
@admin_operation(
    "startStripeOnboarding",
    "A Stripe onboarding link for an artist (its Express account is created if needed)",
    body=OnboardingRequest,
    responses={200: Reply("A fresh Account Link and the artist's account.", out.StripeOnboarding)},
    errors=[ErrorCode.VALIDATION_ERROR, ErrorCode.NOT_FOUND, ErrorCode.PAYMENT_PROVIDER_ERROR],
    description=(
        "An artist without a Stripe account gets an Express connected account (the artist's "
        "email, STRIPE_CONNECT_COUNTRY or else the platform's country, card payments and "
        "transfers requested), stored as its `stripeAccountId`; an artist with one keeps it. "
        "The answer is a fresh single-use Account Link to Stripe's hosted onboarding: send "
        "the artist to `url` before `expiresAt`. Asking again (a link expired, the artist "
        "came back through `refreshUrl`) gives a new link to the same account; concurrent "
        "requests end with one account. When the artist has finished, Stripe sends "
        "`account.updated`: `chargesEnabled` turns true and deposits can be asked for. "
        "PAYMENT_PROVIDER_ERROR: Stripe failed or did not answer, and there is no link; an "
        "account already made for the artist is kept (asking again gives a link to it, "
        "never a second account). Safe to retry."
    ),
)
def start_onboarding(artist_id: str) -> Response:
    body = parse_body(OnboardingRequest)
    onboarding = state().connect.start(
        artist_id, return_url=body.return_url, refresh_url=body.refresh_url
    )
    return reply(out.StripeOnboarding.of(onboarding))


@bp.post("/artists/<artist_id>/stripe/dashboard")
@admin_operation(
    "createStripeDashboardLink",
    "A login link to the artist's Stripe Express Dashboard",
    responses={200: Reply("A single-use login link.", out.StripeDashboardLink)},
    errors=[
        ErrorCode.NOT_FOUND,
        ErrorCode.STRIPE_NOT_CONFIGURED,
        ErrorCode.PAYMENT_PROVIDER_ERROR,
    ],
    description=(
        "STRIPE_NOT_CONFIGURED (422): the artist has no Stripe account, or Stripe has no "
        "Express Dashboard for it yet (onboarding not finished, or an account that does not "
        "use the Express Dashboard). PAYMENT_PROVIDER_ERROR: Stripe failed or did not "
        "answer; safe to retry. No body."
    ),
)
def dashboard_link(artist_id: str) -> Response:
    return reply(out.StripeDashboardLink(url=state().connect.dashboard(artist_id)))

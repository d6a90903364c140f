"""The webhook inbox: verify the signature on the raw body, store the event durably
(deduplicated by its id), commit, then enqueue it by id. Stripe gets its 200 only for an
event that is stored; a broker outage does not lose it (the sweeper re-enqueues).

Two Stripe endpoints may post here: the platform's (STRIPE_WEBHOOK_SECRET) and the Connect
endpoint (STRIPE_CONNECT_WEBHOOK_SECRET, optional), through which Stripe sends the events
of connected accounts (`account.updated`) signed with its own secret. A signature made
with either secret is accepted; the event ids are Stripe's either way, so one inbox and
one deduplication serve both."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from typing import Any

import stripe
from sqlalchemy import Select, bindparam, func, literal_column, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.sql.dml import ReturningInsert

from shared.adapters import metrics
from shared.adapters.claims import claim_each
from shared.adapters.db import transaction
from shared.adapters.models import EventStatus, StripeEvent
from shared.adapters.runtime import Resources
from shared.config import Settings
from shared.domain.errors import DomainError, ErrorCode
from shared.domain.event_bodies import MAX_EVENT_DEPTH as MAX_EVENT_DEPTH
from shared.domain.event_bodies import UnstorableEvent, parse_event
from shared.tasks import APPLY_STRIPE_EVENT
from shared.usecases.effects import NONE, Effects
from shared.usecases.stripe_events import HANDLED_EVENT_TYPES
from shared.usecases.stripe_events import MAX_AUTOMATIC_ATTEMPTS as MAX_AUTOMATIC_ATTEMPTS

log = logging.getLogger("inkflow.inbox")

SIGNATURE_TOLERANCE_SECONDS = 300


@dataclass(frozen=True, slots=True)
class VerifiedEvent:
    id: str
    type: str
    created: int | None
    payload: dict[str, Any]


def signing_secrets(settings: Settings) -> tuple[str, ...]:
    """The secrets a webhook may be signed with: the platform endpoint's, then the Connect
    endpoint's when configured."""
    connect = settings.stripe_connect_webhook_secret
    return (settings.stripe_webhook_secret, *([connect] if connect else []))


def _signed_by_one_of(payload: str, signature: str, secrets: Sequence[str]) -> bool:
    for secret in secrets:
        try:
            stripe.WebhookSignature.verify_header(
                payload, signature, secret, SIGNATURE_TOLERANCE_SECONDS
            )
        except stripe.SignatureVerificationError:
            continue
        return True
    return False


def verify(raw_body: bytes, signature: str | None, secrets: Sequence[str]) -> VerifiedEvent:
    """The signed event as the inbox can store it. A body that no delivery can make
    storable is refused for good (VALIDATION_ERROR) and logged: see
    `shared.domain.event_bodies` for which bodies and why."""
    if not signature:
        raise DomainError(ErrorCode.INVALID_SIGNATURE, "The Stripe-Signature header is missing.")
    try:
        text = raw_body.decode("utf-8")
    except UnicodeDecodeError:
        raise DomainError(ErrorCode.INVALID_SIGNATURE) from None
    if not _signed_by_one_of(text, signature, secrets):
        raise DomainError(ErrorCode.INVALID_SIGNATURE)
    try:
        body = parse_event(text)
    except UnstorableEvent as exc:
        # Signed, so Stripe's (or whoever holds our secret): worth an operator's look.
        log.warning(
            "webhook refused for good, %s %s (event %s)",
            exc.field,
            exc.reason,
            _shown(exc.event_id),
        )
        raise DomainError(
            ErrorCode.VALIDATION_ERROR,
            "The event cannot be stored.",
            {"fields": {exc.field: exc.reason}},
        ) from None
    if body.replaced:
        log.warning(
            "webhook %s stored with %d characters JSONB cannot hold (NUL, lone surrogates) "
            "replaced by U+FFFD before storing",
            _shown(body.id),
            body.replaced,
        )
    return VerifiedEvent(body.id, body.type, body.created, body.payload)


def _shown(event_id: object) -> str:
    """An untrusted id for a log line: quoted, escaped and short."""
    if event_id is None:
        return "unknown"
    text = repr(event_id)
    return text if len(text) <= 80 else f"{text[:77]}..."


def store_event(resources: Resources, event: VerifiedEvent) -> bool:
    """True when this delivery stored an event that needs applying; False for a
    duplicate delivery or a type nothing handles (stored as IGNORED at once)."""
    # One statement in autocommit: durable when it returns, no BEGIN/COMMIT round trips.
    handled = event.type in HANDLED_EVENT_TYPES
    with resources.autocommit_sessions() as session:
        inserted = session.execute(_prebuilt_event_insert(handled), _event_values(event)).first()
    return inserted is not None and handled


def event_insert(event: VerifiedEvent) -> ReturningInsert[tuple[str]]:
    """The inbox's one statement with its values in it (for EXPLAIN and tests)."""
    handled = event.type in HANDLED_EVENT_TYPES
    return _event_statement(handled, event.id, event.type, event.payload, event.created)


def _event_values(event: VerifiedEvent) -> dict[str, object]:
    return {
        "event_id": event.id,
        "event_type": event.type,
        "body": event.payload,
        "created": event.created,
    }


@cache
def _prebuilt_event_insert(handled: bool) -> ReturningInsert[tuple[str]]:
    """The inbox's one statement, built once per kind (`shared.adapters.models.When`),
    executed with `_event_values`. (No parameter may be named after a column of an
    INSERT: "event_id", not "id".)"""
    return _event_statement(
        handled,
        bindparam("event_id"),
        bindparam("event_type"),
        bindparam("body"),
        bindparam("created"),
    )


def _event_statement(
    handled: bool, event_id: object, event_type: object, payload: object, created: object
) -> ReturningInsert[tuple[str]]:
    """The event, unless its id is stored already; one nothing handles is stored as done."""
    return (
        insert(StripeEvent)
        .values(
            id=event_id,
            type=event_type,
            payload=payload,
            status=EventStatus.RECEIVED if handled else EventStatus.IGNORED,
            attempts=0,
            stripe_created=created,
            processed_at=None if handled else func.now(),
        )
        .on_conflict_do_nothing(index_elements=["id"])
        .returning(StripeEvent.id)
    )


def _apply(event_id: str) -> Effects:
    return Effects(tasks=((APPLY_STRIPE_EVENT, (event_id,)),))


def receive(resources: Resources, raw_body: bytes, signature: str | None) -> Effects:
    """Verify and store; the effects enqueue the event for the workers."""
    event = verify(raw_body, signature, signing_secrets(resources.settings))
    if store_event(resources, event):
        metrics.webhook_event("received")
        log.info("webhook %s %s received", event.type, event.id)
        return _apply(event.id)
    metrics.webhook_event("duplicate")
    log.debug("webhook %s %s stored as ignored, or a duplicate", event.type, event.id)
    # A duplicate delivery is not re-enqueued: the first one is applied or the sweeper
    # will pick it up, and applying is idempotent anyway.
    return NONE


def stale_events(older_than: datetime, limit: int) -> Select[str]:
    """Unprocessed events received before `older_than` with automatic attempts left,
    oldest first: ix_stripe_events_redeliverable holds exactly such rows. The attempts
    limit is written as a constant (not a parameter) so that the planner can match it to
    the index's predicate, prepared statement or not."""
    return (
        select(StripeEvent.id)
        .where(
            StripeEvent.status.in_([EventStatus.RECEIVED, EventStatus.FAILED]),
            StripeEvent.received_at < older_than,
            StripeEvent.attempts < literal_column(str(int(MAX_AUTOMATIC_ATTEMPTS))),
        )
        .order_by(StripeEvent.received_at)
        .limit(limit)
    )


def redeliver_stale_events(resources: Resources, *, now: datetime, limit: int = 500) -> Effects:
    """Re-enqueue events still unprocessed after the configured delay (the broker was
    down, or a worker lost the task), each at most once per that delay: an event whose
    task is only waiting in a backlog or retrying must not get a new copy every sweep."""
    delay = resources.settings.inbox_redelivery_seconds
    older_than = now - timedelta(seconds=delay)
    with transaction(resources.sessions) as session:
        ids = list(session.scalars(stale_events(older_than, limit)))
    ids = claim_each(resources.redis, "inkflow:inbox:redelivered:", ids, delay)
    if ids:
        log.info("re-enqueuing %d unprocessed Stripe events", len(ids))
    effects = NONE
    for event_id in ids:
        effects += _apply(event_id)
    return effects

"""Database errors never carry their bound parameters (client emails, names …) into a log
line, a traceback or a stored `last_error`: the engine hides them, and what is stored is
the error's type and the database's own message."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable

import pytest
import stripe
from flask import Flask
from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from devtools.stripe_emulator import StripeEmulator
from services.api.state import EXTENSION_KEY, ApiState
from shared.adapters.db import describe_error, transaction
from shared.adapters.models import EventStatus, StripeEvent
from shared.adapters.payments import StripeGateway
from shared.config import Settings
from shared.domain.timeutil import utcnow
from shared.usecases.stripe_events import apply_event
from tests import support
from tests.fakes.queue import RecordingQueue

SECRET_ADDRESS = "leak.me@example.com"


def test_a_database_error_shows_the_sql_but_not_its_parameters(engine: Engine) -> None:
    with pytest.raises(DBAPIError) as caught, engine.connect() as connection:
        # PostgreSQL text cannot hold NUL: psycopg refuses the parameters.
        connection.execute(text("SELECT :email || :nul"), {"email": SECRET_ADDRESS, "nul": "\0"})

    shown = str(caught.value)
    assert "SELECT" in shown
    assert SECRET_ADDRESS not in shown
    described = describe_error(caught.value)
    assert described.startswith("DataError: DataError: ")
    assert "SELECT" not in described
    assert SECRET_ADDRESS not in described


def test_a_failed_event_stores_its_error_without_parameters(
    make_app: Callable[..., Flask],
    settings: Settings,
    sessions: sessionmaker[Session],
    stripe_emulator: StripeEmulator,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Signed, stored (200), then the worker fails on it: an intent "id" that is an object
    # cannot be bound to the query that looks for its booking.
    app = make_app(queue=RecordingQueue())
    payload = stripe_emulator.event(
        "payment_intent.succeeded",
        {"id": {"email": SECRET_ADDRESS}, "object": "payment_intent", "metadata": {}},
    )
    body = json.dumps(payload)
    signature = stripe.WebhookSignature.generate_signature_header(
        body, support.WEBHOOK_SECRET, timestamp=int(time.time())
    )
    response = app.test_client().post(
        "/api/webhooks/stripe", data=body, headers={"Stripe-Signature": signature}
    )
    assert response.status_code == 200
    state: ApiState = app.extensions[EXTENSION_KEY]

    with caplog.at_level(logging.DEBUG), pytest.raises(DBAPIError) as caught:
        apply_event(state.resources, payload["id"], now=utcnow(), stripe=StripeGateway(settings))

    assert SECRET_ADDRESS not in str(caught.value)
    assert SECRET_ADDRESS not in caplog.text
    with transaction(sessions) as session:
        event = session.get(StripeEvent, payload["id"])
        assert event is not None
        assert event.status == EventStatus.FAILED
        assert event.last_error is not None
        assert event.last_error.startswith("ProgrammingError: ")
        assert SECRET_ADDRESS not in event.last_error
        assert "SELECT" not in event.last_error

"""Quiet by default: at INFO the logs show business events, not Celery's line per task
received, task succeeded and beat tick, nor the Stripe SDK's lines per API call (those
are DEBUG)."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
from celery.app import trace

from services.worker.celery_app import quiet_routine_logs
from shared.logging_setup import configure_logging


class Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def collected() -> Iterator[Collect]:
    root = logging.getLogger()
    handler, level = Collect(), root.level
    root.addHandler(handler)
    configure_logging(logging.getLevelName(level))
    quiet_routine_logs()
    yield handler
    root.removeHandler(handler)
    root.setLevel(level)


def routine_lines() -> None:
    context = {"name": "inkflow.apply_stripe_event", "id": "1", "runtime": 0.01}
    logging.getLogger("celery.beat").info("Scheduler: Sending due task %s (%s)", "x", "y")
    logging.getLogger("celery.worker.strategy").info(trace.LOG_RECEIVED, context)
    logging.getLogger("celery.app.trace").info(trace.LOG_SUCCESS, {**context, "return_value": 1})
    logging.getLogger("celery.app.trace").error(
        trace.LOG_FAILURE, {**context, "description": "d", "exc": "e"}
    )
    stripe_sdk = logging.getLogger("stripe")
    stripe_sdk.info("message='Request to Stripe api' method=post url=http://x/v1/refunds")
    stripe_sdk.info("message='Stripe API response' path=http://x/v1/refunds response_code=200")
    logging.getLogger("inkflow.bookings").info("booking %s PENDING_PAYMENT -> CONFIRMED", "b")


def test_routine_celery_lines_are_hidden_at_info(collected: Collect) -> None:
    logging.getLogger().setLevel(logging.INFO)
    routine_lines()
    shown = [(r.levelname, r.getMessage()) for r in collected.records]
    assert shown == [
        ("ERROR", "Task inkflow.apply_stripe_event[1] d: e"),
        ("INFO", "booking b PENDING_PAYMENT -> CONFIRMED"),
    ]


def test_and_shown_as_debug_at_debug(collected: Collect) -> None:
    logging.getLogger().setLevel(logging.DEBUG)
    routine_lines()
    levels = [r.levelname for r in collected.records]
    assert levels == ["DEBUG", "DEBUG", "DEBUG", "ERROR", "DEBUG", "DEBUG", "INFO"]

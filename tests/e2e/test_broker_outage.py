"""The Celery worker when its Redis broker is SIGKILLed while a task runs.

The worker runs as `make run` runs it (two pool processes, no mingle or gossip) on a
Valkey of its own. Each round: an event whose application asks Stripe something, Stripe
slow to answer (the task runs, its message unacknowledged, while the consumer waits in
BRPOP for the next one), the broker killed and started again. Before the repair in
shared/adapters/broker.py the worker logged `Unrecoverable error: AttributeError("'NoneType'
object has no attribute 'hostname'")` and exited in the first round; now it reconnects
and the event is applied (once: the inbox) after its message comes back.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker

from devtools import commands
from devtools.embedded import EmbeddedValkey
from devtools.processes import port_is_open
from devtools.stack import WORKER_ARGS
from devtools.stripe_emulator import StripeEmulator
from shared.adapters.db import transaction
from shared.adapters.models import EventStatus, StripeEvent
from shared.adapters.payments import DepositRequest, StripeGateway
from shared.adapters.queue import CeleryQueue
from shared.adapters.runtime import build_resources
from shared.config import Settings
from shared.tasks import APPLY_STRIPE_EVENT
from shared.usecases.inbox import VerifiedEvent, store_event
from tests import support

VALKEY_PORTS = range(26411, 26419)
OUTAGES = 2
STRIPE_DELAY_SECONDS = 4.0
# No booking has this charge: the event is applied as "ignored" (a final status too).
APPLIED = (EventStatus.PROCESSED, EventStatus.IGNORED)


@pytest.fixture
def valkey(tmp_path: Path) -> Iterator[EmbeddedValkey]:
    port = next((p for p in VALKEY_PORTS if not port_is_open(p)), None)
    if port is None:
        pytest.fail(f"no free port for Valkey in {VALKEY_PORTS}")
    server = EmbeddedValkey(tmp_path / "valkey", port=port)
    server.start()
    yield server
    server.stop()


def refunded_charge_event(settings: Settings, emulator: StripeEmulator) -> VerifiedEvent:
    """charge.refunded for a real charge on the emulator: applying it lists the charge's
    refunds on Stripe first (outside the transaction), which is the call we slow down."""
    deposit = DepositRequest(
        booking_id=uuid.uuid4(), artist_id=uuid.uuid4(), client_id=uuid.uuid4(),
        service_id=uuid.uuid4(), amount_minor=5000, currency="eur",
        destination="acct_1BrokerOutage",
    )  # fmt: skip
    intent = StripeGateway(settings).create_deposit_intent(deposit)
    emulator.succeed_payment_intent(intent.id)
    emulator.refund_payment_intent(intent.id)
    payload = emulator.charge_refunded_event(intent.id)
    return VerifiedEvent(payload["id"], payload["type"], payload["created"], payload)


def event_status(sessions: sessionmaker[Session], event_id: str) -> str | None:
    with transaction(sessions) as session:
        row = session.get(StripeEvent, event_id)
        return None if row is None else row.status


def test_the_worker_survives_its_broker_killed_while_a_task_runs(
    e2e_env: dict[str, str],
    celery_queue_name: str,
    valkey: EmbeddedValkey,
    stripe_emulator: StripeEmulator,
    sessions: sessionmaker[Session],
    log_dir: Path,
) -> None:
    env = {
        **e2e_env,
        "CELERY_BROKER_URL": valkey.url,
        # A task cancelled by the connection loss comes back this soon after the broker.
        "CELERY_VISIBILITY_TIMEOUT": "2",
        "STRIPE_TIMEOUT_SECONDS": str(STRIPE_DELAY_SECONDS + 5),
    }
    settings = Settings.from_env(env)
    resources = build_resources(settings, pool_size=1)
    queue = CeleryQueue(settings)
    worker = support.start_child(
        "celery-worker", commands.celery(*WORKER_ARGS, "-Q", celery_queue_name), env, log_dir
    )
    try:
        worker.wait_ready(lambda: worker.printed("ready."), timeout=30)
        for outage in range(OUTAGES):
            event = refunded_charge_event(settings, stripe_emulator)
            listed = len(stripe_emulator.requests_to("/v1/refunds", "GET"))
            stripe_emulator.delay_next(
                STRIPE_DELAY_SECONDS, path_prefix="/v1/refunds", method="GET", phase="before"
            )
            assert store_event(resources, event)
            assert queue.enqueue(APPLY_STRIPE_EVENT, event.id)

            def running(before: int = listed) -> bool:
                return len(stripe_emulator.requests_to("/v1/refunds", "GET")) > before

            def applied(event_id: str = event.id) -> bool:
                return event_status(sessions, event_id) in APPLIED

            assert support.wait_until(running, timeout=15), worker.output()
            time.sleep(0.3)  # the consumer is back in BRPOP for the next message

            valkey.kill()
            time.sleep(0.5)
            valkey.start()

            done = support.wait_until(applied, timeout=STRIPE_DELAY_SECONDS + 20)
            assert worker.alive(), f"outage {outage + 1}: the worker exited\n{worker.output()}"
            assert done, f"outage {outage + 1}: {event_status(sessions, event.id)}"
        assert "Unrecoverable error" not in worker.full_output()
        assert worker.full_output().count("Connection to broker lost") >= OUTAGES
    finally:
        stripe_emulator.reset_failures()
        queue.close()
        resources.close()
        worker.stop(timeout=15)

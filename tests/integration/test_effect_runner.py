"""The after-commit runner: tasks by name for mails and refunds, intents cancelled on the
Stripe emulator; the world failing (broker down, Stripe refusing) is logged, never raised."""

from __future__ import annotations

import logging
import uuid

import pytest

from devtools.stripe_emulator import StripeEmulator
from shared.adapters.payments import DepositRequest, StripeGateway
from shared.config import Settings
from shared.tasks import APPLY_STRIPE_EVENT, PROCESS_REFUND, SEND_NOTIFICATION
from shared.usecases.effects import EffectRunner, Effects
from tests.fakes.queue import RecordingQueue


def _open_intent(gateway: StripeGateway, emulator: StripeEmulator) -> str:
    intent = gateway.create_deposit_intent(
        DepositRequest(
            booking_id=uuid.uuid4(),
            artist_id=uuid.uuid4(),
            client_id=uuid.uuid4(),
            service_id=uuid.uuid4(),
            amount_minor=5000,
            currency="eur",
            destination="acct_1Runner",
        )
    )
    assert emulator.payment_intent(intent.id)["status"] == "requires_payment_method"
    return intent.id


def test_runs_every_kind_of_effect(settings: Settings, stripe_emulator: StripeEmulator) -> None:
    gateway = StripeGateway(settings)
    queue = RecordingQueue()
    mail, refund = uuid.uuid4(), uuid.uuid4()
    intent = _open_intent(gateway, stripe_emulator)

    ran = EffectRunner(queue, gateway).run(
        Effects(
            mails=(mail,),
            refunds=(refund,),
            cancel_intents=(intent,),
            tasks=((APPLY_STRIPE_EVENT, ("evt_1",)),),
        )
    )

    assert queue.sent == [
        (SEND_NOTIFICATION, (str(mail),)),
        (PROCESS_REFUND, (str(refund),)),
        (APPLY_STRIPE_EVENT, ("evt_1",)),
    ]
    assert ran.enqueued == 3
    assert ran.intents_cancelled == [intent]
    assert stripe_emulator.payment_intent(intent)["status"] == "canceled"


def test_the_world_failing_is_logged_not_raised(
    settings: Settings, stripe_emulator: StripeEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    gateway = StripeGateway(settings)
    intent = _open_intent(gateway, stripe_emulator)
    down = RecordingQueue(accepting=False)
    stripe_emulator.fail_next(1, status=500, path_prefix=f"/v1/payment_intents/{intent}")
    try:
        with caplog.at_level(logging.WARNING, logger="inkflow.effects"):
            ran = EffectRunner(down, gateway).run(
                Effects(mails=(uuid.uuid4(),), cancel_intents=(intent,))
            )
    finally:
        stripe_emulator.reset_failures()
    assert ran.enqueued == 0
    assert ran.intents_cancelled == []
    assert [r.getMessage() for r in caplog.records if intent in r.getMessage()]
    assert stripe_emulator.payment_intent(intent)["status"] == "requires_payment_method"

"""Effects, then commit, then the world.

A use case decides inside its transaction and returns what the world must hear of it as
one `Effects` value: mails to send (outbox rows), refunds to make (refund rows), deposit
intents to cancel, tasks to enqueue. Everything in it is already durable in PostgreSQL
(or harmless to lose: an intent left open is settled by the late-payment rules), so one
runner carries it out after the commit, in the API and in the worker alike, and a lost
message is found again by a sweeper. Nothing here runs inside a transaction.

Refunds: the worker's runner enqueues one `PROCESS_REFUND` task per refund owed. The
API's runner is given `make_refund` and tries each refund once inline (so the answer to a
cancel can say the refund succeeded); when Stripe or the database fails momentarily it
enqueues the task instead, and the refunds sweeper is the net under both.

Who runs it: whoever commits. A use case with one transaction returns its Effects to the
edge that called it (route, task, CLI), which hands them to `EffectRunner.run`; a use case
that commits more than once (booking creation: the hold, then Stripe; the hold sweep: one
commit per batch) is given the runner and runs each commit's effects before going on.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from typing import Protocol

from sqlalchemy.exc import DBAPIError

from shared.adapters.db import is_momentary
from shared.adapters.payments import Intent, PaymentProviderError, TransientPaymentError
from shared.adapters.queue import TaskQueue
from shared.tasks import PROCESS_REFUND, SEND_NOTIFICATION

log = logging.getLogger("inkflow.effects")

Task = tuple[str, tuple[str, ...]]


@dataclass(frozen=True, slots=True)
class Effects:
    mails: tuple[uuid.UUID, ...] = ()  # outbox rows to send
    refunds: tuple[uuid.UUID, ...] = ()  # refund rows (PENDING) to make on Stripe
    cancel_intents: tuple[str, ...] = ()  # deposit intents of holds that ended
    tasks: tuple[Task, ...] = ()  # any other task, by name, with its arguments

    def __add__(self, other: Effects) -> Effects:
        return Effects(
            mails=self.mails + other.mails,
            refunds=self.refunds + other.refunds,
            cancel_intents=self.cancel_intents + other.cancel_intents,
            tasks=self.tasks + other.tasks,
        )

    def __bool__(self) -> bool:
        return bool(self.mails or self.refunds or self.cancel_intents or self.tasks)


NONE = Effects()


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a single-transaction use case did: a note for logs and tests, and the effects
    its caller must run."""

    note: str
    effects: Effects = NONE


class IntentCanceller(Protocol):
    def cancel_intent(self, intent_id: str) -> Intent: ...


class RefundMaker(Protocol):
    """Makes one owed refund on Stripe now (`shared.usecases.refunds.make`); raises
    TransientPaymentError when it is worth retrying later."""

    def __call__(self, refund_id: uuid.UUID) -> Outcome: ...


@dataclass(slots=True)
class Ran:
    enqueued: int = 0
    intents_cancelled: list[str] = field(default_factory=list)
    refunds_attempted: list[uuid.UUID] = field(default_factory=list)


class EffectRunner:
    """The one after-commit runner. It never raises for a failure of the world: the broker
    being down is covered by the sweepers, Stripe refusing to cancel an intent by the
    late-payment rules, a refund failing momentarily by its task; all are logged."""

    def __init__(
        self,
        queue: TaskQueue,
        gateway: IntentCanceller,
        *,
        make_refund: RefundMaker | None = None,
    ) -> None:
        self._queue = queue
        self._gateway = gateway
        self._make_refund = make_refund

    def run(self, effects: Effects) -> Ran:
        ran = Ran()
        queued_refunds = effects.refunds if self._make_refund is None else ()
        messages: list[Task] = [
            *((SEND_NOTIFICATION, (str(i),)) for i in effects.mails),
            *((PROCESS_REFUND, (str(i),)) for i in queued_refunds),
            *effects.tasks,
        ]
        for name, args in messages:
            ran.enqueued += bool(self._queue.enqueue(name, *args))
        for intent_id in effects.cancel_intents:
            try:
                self._gateway.cancel_intent(intent_id)
            except PaymentProviderError as exc:
                # The hold is EXPIRED either way; a payment arriving on it is a late
                # payment (confirmed if the slot is still free, refunded otherwise).
                log.warning("could not cancel intent %s of an ended hold: %s", intent_id, exc)
            else:
                ran.intents_cancelled.append(intent_id)
        if self._make_refund is not None:
            for refund_id in effects.refunds:
                self._refund_now(self._make_refund, refund_id, ran)
        return ran

    def _refund_now(self, make: RefundMaker, refund_id: uuid.UUID, ran: Ran) -> None:
        """One attempt; a momentary failure leaves the refund owed for its task."""
        ran.refunds_attempted.append(refund_id)
        try:
            outcome = make(refund_id)
        except TransientPaymentError as exc:
            log.warning("refund %s: Stripe failed for now (%s); its task retries", refund_id, exc)
        except DBAPIError as exc:
            if not is_momentary(exc):
                raise
            log.warning("refund %s: database busy (%s); its task retries", refund_id, exc)
        else:
            nested = self.run(outcome.effects)
            ran.enqueued += nested.enqueued
            return
        ran.enqueued += bool(self._queue.enqueue(PROCESS_REFUND, str(refund_id)))

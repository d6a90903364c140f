"""The per-process state the handlers use, attached to the Flask app."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from flask import Flask, current_app
from sqlalchemy.orm import Session

from shared.adapters.cache import ExpiringLru
from shared.adapters.db import transaction
from shared.adapters.payments import StripeGateway
from shared.adapters.runtime import Resources
from shared.domain.timeutil import Clock
from shared.usecases.booking import BookingService
from shared.usecases.connect import ConnectOnboarding
from shared.usecases.effects import EffectRunner
from shared.usecases.lifecycle import Lifecycle

EXTENSION_KEY = "inkflow"


@dataclass(slots=True)
class ApiState:
    resources: Resources
    bookings: BookingService
    lifecycle: Lifecycle
    connect: ConnectOnboarding
    effects: EffectRunner
    clock: Clock
    # The booking page reads a deposit intent's client secret back from Stripe.
    gateway: StripeGateway
    availability_cache: ExpiringLru[bytes] = field(default_factory=lambda: ExpiringLru(512))
    # Closes what the factory built itself (not what the caller handed in).
    closers: list[Callable[[], None]] = field(default_factory=list)

    def close(self) -> None:
        for close in reversed(self.closers):
            close()
        self.closers.clear()


def init_state(app: Flask, state: ApiState) -> None:
    app.extensions[EXTENSION_KEY] = state


def state() -> ApiState:
    found: ApiState = current_app.extensions[EXTENSION_KEY]
    return found


@contextmanager
def autocommit() -> Iterator[Session]:
    """For one-statement reads: each statement commits on its own."""
    with state().resources.autocommit_sessions() as session:
        yield session


@contextmanager
def unit_of_work() -> Iterator[Session]:
    with transaction(state().resources.sessions) as session:
        yield session

"""What the emulator holds: Stripe objects by id, and how new ids and times are made.

Plain JSON-able dicts, so that a later version can save and load them as they are.
Whoever reads or writes a `Store` holds the emulator's lock.
"""

from __future__ import annotations

import secrets
import string
import time
from dataclasses import dataclass, field
from typing import Any

JSON = dict[str, Any]


def new_id(prefix: str, length: int = 24) -> str:
    alphabet = string.ascii_letters + string.digits
    return prefix + "".join(secrets.choice(alphabet) for _ in range(length))


def now() -> int:
    return int(time.time())


@dataclass
class Store:
    """Every object by id. Intents, refunds, accounts and events are kept as the API shows
    them; a charge is kept as ``{id, payment_intent, created, refunds, payment_method,
    transfer, application_fee, failing_refunds}`` and rendered from its intent (see
    ``charges.charge_json``). ``events`` are the Events Stripe would send, in the order they
    happened; ``refund_plans`` what the next refunds created will do (see
    ``refunds.plan_failures``)."""

    intents: dict[str, JSON] = field(default_factory=dict)
    charges: dict[str, JSON] = field(default_factory=dict)
    refunds: dict[str, JSON] = field(default_factory=dict)
    accounts: dict[str, JSON] = field(default_factory=dict)
    events: dict[str, JSON] = field(default_factory=dict)
    refund_plans: list[JSON] = field(default_factory=list)

    def clear(self) -> None:
        for objects in (self.intents, self.charges, self.refunds, self.accounts, self.events):
            objects.clear()
        self.refund_plans.clear()

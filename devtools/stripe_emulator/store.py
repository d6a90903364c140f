"""What the emulator holds: Stripe objects by id, and how new ids and times are made.

Plain JSON-able dicts, saved and loaded as they are (``to_json``/``from_json``, see
``state.py``). Whoever reads or writes a `Store` holds the emulator's lock.
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


# The collections that make up the state, in the order they are saved.
COLLECTIONS = (
    "intents", "charges", "refunds", "accounts", "account_links", "login_links", "events",
)  # fmt: skip


@dataclass
class Store:
    """Every object by id. Intents, refunds, accounts and events are kept as the API shows
    them; a charge is kept as ``{id, payment_intent, created, refunds, payment_method, card,
    transfer, application_fee, failing_refunds}`` and rendered from its intent (see
    ``charges.charge_json``); Account Links and login links by the token in their URL
    (``account_links``, ``accounts``). ``events`` is the event log, the Events Stripe sent in the
    order they happened; ``outbox`` the events emitted since the emulator last handed them
    to its webhook delivery (not saved); ``refund_plans`` what the next refunds created will
    do (see ``refunds.plan_failures``)."""

    intents: dict[str, JSON] = field(default_factory=dict)
    charges: dict[str, JSON] = field(default_factory=dict)
    refunds: dict[str, JSON] = field(default_factory=dict)
    accounts: dict[str, JSON] = field(default_factory=dict)
    account_links: dict[str, JSON] = field(default_factory=dict)
    login_links: dict[str, JSON] = field(default_factory=dict)
    events: dict[str, JSON] = field(default_factory=dict)
    outbox: list[JSON] = field(default_factory=list)
    refund_plans: list[JSON] = field(default_factory=list)

    def clear(self) -> None:
        for name in COLLECTIONS:
            getattr(self, name).clear()
        self.outbox.clear()
        self.refund_plans.clear()

    def take_outbox(self) -> list[JSON]:
        taken, self.outbox = self.outbox, []
        return taken

    def to_json(self) -> JSON:
        return {name: getattr(self, name) for name in COLLECTIONS} | {
            "refund_plans": self.refund_plans
        }

    def load_json(self, data: JSON) -> None:
        self.clear()
        for name in COLLECTIONS:
            getattr(self, name).update(data.get(name) or {})
        self.refund_plans.extend(data.get("refund_plans") or [])

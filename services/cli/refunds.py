"""Operator commands on refunds: list them (the failed ones nobody made good, first of
all) and ask Stripe again for failed ones."""

from __future__ import annotations

import argparse
import json
from typing import Any

from services.cli import output
from services.cli.errors import CliError
from shared.adapters.db import make_engine, make_session_factory, transaction
from shared.config import database_url_from_env

COLUMNS = ["refundId", "bookingId", "madeBy", "reason", "status", "amount", "currency",
           "attempts", "depositStatus", "lastError"]  # fmt: skip


def refunds_list(args: argparse.Namespace) -> int:
    """Refunds, newest first: owed or asked for by inkflow, and those made elsewhere (the
    Dashboard); `--failed`: the failed ones of bookings whose deposit is still REFUND_FAILED."""
    from shared.domain.money import format_amount, from_minor_units
    from shared.usecases.refund_listing import list_refunds

    engine = make_engine(database_url_from_env(), pool_size=1)
    try:
        with transaction(make_session_factory(engine)) as session:
            listed = list_refunds(
                session, failed_only=args.failed, booking_id=args.booking, limit=args.limit
            )
    finally:
        engine.dispose()
    rows: list[dict[str, Any]] = []
    for item in listed:
        amount = from_minor_units(item.amount_minor, item.currency)
        rows.append(
            {
                "refundId": str(item.refund_id) if item.refund_id else None,
                "bookingId": str(item.booking_id) if item.booking_id else None,
                "stripeRefundId": item.stripe_refund_id,
                "madeBy": "inkflow" if item.refund_id else "elsewhere",
                "reason": item.reason,
                "status": item.status,
                "amount": format_amount(amount, item.currency),
                "currency": item.currency,
                "attempts": item.attempts,
                "lastError": item.last_error,
                "depositStatus": item.deposit_status,
                "updatedAt": item.updated_at.isoformat(),
            }
        )
    if args.json:
        if rows:
            print(output.json_lines(rows))
    elif not rows:
        print("no failed refunds" if args.failed else "no refunds")
    else:
        print(output.table(rows, COLUMNS))
    return 0


def refunds_retry(args: argparse.Namespace) -> int:
    """For each failed refund of ours: a new refund of what is left, made now in this
    process (if Stripe does not answer, it stays owed and the worker retries it)."""
    from shared.adapters.payments import StripeGateway, TransientPaymentError
    from shared.adapters.queue import CeleryQueue
    from shared.adapters.runtime import build_resources
    from shared.config import Settings
    from shared.domain.timeutil import utcnow
    from shared.usecases import refunds
    from shared.usecases.effects import EffectRunner

    settings = Settings.from_env()
    resources = build_resources(settings, pool_size=1)
    queue = CeleryQueue(settings)
    gateway = StripeGateway(settings)
    effects = EffectRunner(queue, gateway)
    failures: list[str] = []
    try:
        for refund_id in args.refund_ids:
            try:
                with transaction(resources.sessions) as session:
                    owed = refunds.retry(session, refund_id, now=utcnow())
                outcome = owed.note
                for new_id in owed.effects.refunds:
                    made = refunds.make(resources, gateway, new_id, now=utcnow())
                    effects.run(made.effects)
                    outcome = made.note
                    if made.note.startswith("failed"):
                        failures.append(str(refund_id))
            except TransientPaymentError as exc:
                effects.run(owed.effects)  # owed: the worker's task retries it
                failures.append(str(refund_id))
                outcome = f"owed, Stripe did not answer ({exc}): the worker retries it"
            except ValueError as exc:
                failures.append(str(refund_id))
                outcome = f"failed: {exc}"
            line = {"refundId": str(refund_id), "outcome": outcome}
            print(json.dumps(line) if args.json else f"{refund_id}  {outcome}")
    finally:
        queue.close()
        resources.close()
    if failures:
        raise CliError(f"{len(failures)} refund(s) not made: {', '.join(failures)}")
    return 0

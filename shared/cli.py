"""Operator commands (`python -m shared.cli ...`, or `inkflow ...` in the venv):

seed                          demo artist, service, hours and client; prints their ids
events list [--status S]      inbox events not yet applied (RECEIVED, FAILED)
events replay ID... | --all-unprocessed   re-apply events now
refunds list [--failed] [--booking ID]    refunds owed or asked for; --failed: the failed
                              ones nobody made good (deposit REFUND_FAILED), ours or not
refunds retry REFUND_ID...    ask Stripe again for failed refunds, now
"""

from __future__ import annotations

import argparse
import json
import sys
import uuid
from collections.abc import Sequence

from shared.adapters.db import make_engine, make_session_factory, transaction
from shared.config import ConfigError, database_url_from_env, load_dotenv_for_development


def cmd_seed(_: argparse.Namespace) -> int:
    from shared.usecases.demo import seed_demo

    engine = make_engine(database_url_from_env(), pool_size=1)
    try:
        with transaction(make_session_factory(engine)) as session:
            ids = seed_demo(session)
    finally:
        engine.dispose()
    print(json.dumps(ids, indent=2))
    return 0


def cmd_events_list(args: argparse.Namespace) -> int:
    from sqlalchemy import select

    from shared.adapters.models import EventStatus, StripeEvent

    statuses = args.status or [EventStatus.RECEIVED, EventStatus.FAILED]
    engine = make_engine(database_url_from_env(), pool_size=1)
    try:
        with transaction(make_session_factory(engine)) as session:
            rows = session.scalars(
                select(StripeEvent)
                .where(StripeEvent.status.in_(statuses))
                .order_by(StripeEvent.received_at)
                .limit(args.limit)
            ).all()
            for row in rows:
                print(
                    json.dumps(
                        {
                            "id": row.id,
                            "type": row.type,
                            "status": row.status,
                            "attempts": row.attempts,
                            "receivedAt": row.received_at.isoformat(),
                            "lastError": row.last_error,
                        }
                    )
                )
    finally:
        engine.dispose()
    return 0


def cmd_events_replay(args: argparse.Namespace) -> int:
    """Re-apply chosen events in this process (dj-stripe's djstripe_process_events)."""
    from sqlalchemy import select

    from shared.adapters.models import EventStatus, StripeEvent
    from shared.adapters.payments import StripeGateway
    from shared.adapters.queue import CeleryQueue
    from shared.adapters.runtime import build_resources
    from shared.config import Settings
    from shared.domain.timeutil import utcnow
    from shared.usecases.effects import EffectRunner
    from shared.usecases.stripe_events import apply_event

    settings = Settings.from_env()
    resources = build_resources(settings, pool_size=1)
    queue = CeleryQueue(settings)
    gateway = StripeGateway(settings)
    effects = EffectRunner(queue, gateway)
    failures = 0
    try:
        ids = list(args.event_ids)
        if args.all_unprocessed:
            with transaction(resources.sessions) as session:
                ids += session.scalars(
                    select(StripeEvent.id)
                    .where(StripeEvent.status.in_([EventStatus.RECEIVED, EventStatus.FAILED]))
                    .order_by(StripeEvent.received_at)
                ).all()
        for event_id in ids:
            try:
                applied = apply_event(resources, event_id, now=utcnow(), stripe=gateway)
            except Exception as exc:  # noqa: BLE001 - reported per event; the others still run
                failures += 1
                note = f"failed: {type(exc).__name__}: {exc}"
            else:
                effects.run(applied.effects)
                note = applied.note
            print(json.dumps({"id": event_id, "outcome": note}))
    finally:
        queue.close()
        resources.close()
    return 1 if failures else 0


# --- refunds (self-contained: the command, its parser, nothing else depends on them) -------


def cmd_refunds_list(args: argparse.Namespace) -> int:
    """One JSON line per refund, newest first."""
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
    for item in listed:
        amount = from_minor_units(item.amount_minor, item.currency)
        line = {
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
        print(json.dumps(line))
    return 0


def cmd_refunds_retry(args: argparse.Namespace) -> int:
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
    failures = 0
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
                    failures += made.note.startswith("failed")
            except TransientPaymentError as exc:
                effects.run(owed.effects)  # owed: the worker's task retries it
                failures += 1
                outcome = f"owed, Stripe did not answer ({exc}): the worker retries it"
            except ValueError as exc:
                failures += 1
                outcome = f"failed: {exc}"
            print(json.dumps({"refundId": str(refund_id), "outcome": outcome}))
    finally:
        queue.close()
        resources.close()
    return 1 if failures else 0


def add_refund_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    refunds = commands.add_parser("refunds", help="refunds owed, made, failed")
    refund_commands = refunds.add_subparsers(dest="refunds_command", required=True)
    listing = refund_commands.add_parser("list", help="refunds, newest first (JSON lines)")
    listing.add_argument(
        "--failed",
        action="store_true",
        help="failed refunds nobody made good since (deposit REFUND_FAILED): an operator's",
    )
    listing.add_argument("--booking", type=uuid.UUID, metavar="BOOKING_ID")
    listing.add_argument("--limit", type=int, default=100)
    listing.set_defaults(func=cmd_refunds_list)
    retry = refund_commands.add_parser(
        "retry", help="ask Stripe again for failed refunds (what is left of the deposit)"
    )
    retry.add_argument("refund_ids", nargs="+", type=uuid.UUID, metavar="REFUND_ID")
    retry.set_defaults(func=cmd_refunds_retry)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="inkflow", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    seed = commands.add_parser("seed", help="create the demo artist, service, hours and client")
    seed.set_defaults(func=cmd_seed)
    events = commands.add_parser("events", help="the Stripe webhook inbox")
    event_commands = events.add_subparsers(dest="events_command", required=True)
    listing = event_commands.add_parser("list", help="unprocessed and failed events")
    listing.add_argument(
        "--status", action="append", choices=["RECEIVED", "FAILED", "PROCESSED", "IGNORED"]
    )
    listing.add_argument("--limit", type=int, default=100)
    listing.set_defaults(func=cmd_events_list)
    replay = event_commands.add_parser("replay", help="re-apply events now, in this process")
    replay.add_argument("event_ids", nargs="*", metavar="EVENT_ID")
    replay.add_argument(
        "--all-unprocessed", action="store_true", help="every RECEIVED or FAILED event"
    )
    replay.set_defaults(func=cmd_events_replay)
    add_refund_commands(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    load_dotenv_for_development()
    args = build_parser().parse_args(argv)
    try:
        result: int = args.func(args)
    except ConfigError as exc:
        print(f"inkflow: {exc}", file=sys.stderr)
        return 2
    return result


if __name__ == "__main__":
    sys.exit(main())

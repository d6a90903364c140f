"""Operator commands on the database: demo data and the Stripe webhook inbox."""

from __future__ import annotations

import argparse
import json

from sqlalchemy import select

from services.cli import output
from services.cli.errors import CliError
from shared.adapters.db import make_engine, make_session_factory, transaction
from shared.adapters.models import EventStatus, StripeEvent
from shared.config import database_url_from_env

UNPROCESSED = [EventStatus.RECEIVED, EventStatus.FAILED]


def seed(_: argparse.Namespace) -> int:
    from shared.usecases.demo import seed_demo

    engine = make_engine(database_url_from_env(), pool_size=1)
    try:
        with transaction(make_session_factory(engine)) as session:
            ids = seed_demo(session)
    finally:
        engine.dispose()
    print(json.dumps(ids, indent=2))
    return 0


def events_list(args: argparse.Namespace) -> int:
    statuses = args.status or UNPROCESSED
    engine = make_engine(database_url_from_env(), pool_size=1)
    try:
        with transaction(make_session_factory(engine)) as session:
            rows = [
                {
                    "id": row.id,
                    "type": row.type,
                    "status": row.status,
                    "attempts": row.attempts,
                    "receivedAt": row.received_at.isoformat(timespec="seconds"),
                    "lastError": row.last_error,
                }
                for row in session.scalars(
                    select(StripeEvent)
                    .where(StripeEvent.status.in_(statuses))
                    .order_by(StripeEvent.received_at)
                    .limit(args.limit)
                )
            ]
    finally:
        engine.dispose()
    if args.json:
        if rows:
            print(output.json_lines(rows))
    elif not rows:
        which = "unprocessed" if statuses == UNPROCESSED else "/".join(statuses)
        print(f"no {which} events")
    else:
        print(output.table(rows, ["id", "type", "status", "attempts", "receivedAt", "lastError"]))
    return 0


def events_replay(args: argparse.Namespace) -> int:
    """Re-apply chosen events in this process (dj-stripe's djstripe_process_events)."""
    from shared.adapters.payments import StripeGateway
    from shared.adapters.queue import CeleryQueue
    from shared.adapters.runtime import build_resources
    from shared.config import Settings
    from shared.domain.timeutil import utcnow
    from shared.usecases.effects import EffectRunner
    from shared.usecases.stripe_events import apply_event

    if not args.event_ids and not args.all_unprocessed:
        raise CliError("name the events to replay, or pass --all-unprocessed")
    settings = Settings.from_env()
    resources = build_resources(settings, pool_size=1)
    queue = CeleryQueue(settings)
    gateway = StripeGateway(settings)
    effects = EffectRunner(queue, gateway)
    failures: list[str] = []
    try:
        with transaction(resources.sessions) as session:
            known = set(
                session.scalars(select(StripeEvent.id).where(StripeEvent.id.in_(args.event_ids)))
            )
            ids = [i for i in args.event_ids if i in known]
            if args.all_unprocessed:
                ids += session.scalars(
                    select(StripeEvent.id)
                    .where(StripeEvent.status.in_(UNPROCESSED))
                    .order_by(StripeEvent.received_at)
                ).all()
        unknown = [i for i in args.event_ids if i not in known]
        if not ids and not unknown:
            print("no unprocessed events")
        for event_id in dict.fromkeys(ids):
            try:
                applied = apply_event(resources, event_id, now=utcnow(), stripe=gateway)
            except Exception as exc:  # noqa: BLE001 - reported per event; the others still run
                failures.append(event_id)
                note = f"failed: {type(exc).__name__}: {exc}"
            else:
                effects.run(applied.effects)
                note = applied.note
            print(
                json.dumps({"id": event_id, "outcome": note})
                if args.json
                else f"{event_id}  {note}"
            )
    finally:
        queue.close()
        resources.close()
    if unknown:
        raise CliError(f"no such event: {', '.join(unknown)}")
    if failures:
        raise CliError(f"{len(failures)} event(s) failed: {', '.join(failures)}")
    return 0

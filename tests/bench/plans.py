"""The hot statements, exactly as the code builds them, and what their plans must use.

`hot_statements` returns each statement the request paths and the sweepers run, built
by the very functions the application calls (so a change there is measured here), with
the index each must read. `explain` runs `EXPLAIN` (or `EXPLAIN (ANALYZE, BUFFERS)`) on
one, inside a transaction that is rolled back (an INSERT or a DELETE leaves nothing), and
`summary` boils a plan down to one line: scans and their indexes, rows the scans threw
away, buffers, time. Used by the bench's scale stage (`tests/bench/scale.py`) and by
`tests/integration/test_query_plans.py`, which asserts the plans on a small database.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from psycopg.types.json import Jsonb
from sqlalchemy import Connection, select
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.sql import Executable

from shared.adapters.models import Artist, Booking, Leave
from shared.domain.transitions import Action, BookingStatus
from shared.usecases import holds, inbox, notifications, reminders, retention
from shared.usecases.booking import slot_taken_query
from shared.usecases.schedule import bookings_in_window, leaves_in_window
from shared.usecases.transitions import conditional_update, single_rule

# Tables that grow with the business: a sequential scan of one is a finding.
BIG_TABLES = ("bookings", "leaves", "notifications", "stripe_events", "idempotency_keys")


@dataclass(frozen=True)
class Hot:
    name: str
    statement: Executable
    # Every one of these appears in the plan ("a|b": either index).
    indexes: tuple[str, ...]
    # INSERT/DELETE/UPDATE: run (ANALYZE) only inside a rolled-back transaction.
    writes: bool = False
    # Indexes dropped for this plan, inside the rolled-back transaction ("before" figures
    # of an index this work added; DROP INDEX locks the table until the rollback).
    without: tuple[str, ...] = ()
    # A "before" statement: its plan is shown, not judged.
    before: bool = False


@dataclass(frozen=True)
class Target:
    """What the statements are about: one artist with a long history and a window."""

    artist_id: uuid.UUID
    client_id: uuid.UUID
    service_id: uuid.UUID
    start: datetime
    now: datetime
    days: int = 31
    duration_min: int = 60


def hot_statements(t: Target) -> list[Hot]:
    end = t.start + timedelta(days=t.days)
    duration = timedelta(minutes=t.duration_min)
    artist = Artist(id=t.artist_id, buffer_min=0)
    slot_end = t.start + duration
    booking = {
        "id": uuid.uuid4(),
        "client_id": t.client_id,
        "artist_id": t.artist_id,
        "service_id": t.service_id,
        "start_time": t.start,
        "end_time": slot_end,
        "status": BookingStatus.PENDING_PAYMENT.value,
        "deposit_amount": 30,
        "deposit_status": "UNPAID",
        "currency": "eur",
        "expires_at": t.now + timedelta(minutes=15),
        "created_at": t.now,
        "updated_at": t.now,
    }
    event = inbox.VerifiedEvent(
        id=f"evt_plan_{uuid.uuid4().hex}",
        type="payment_intent.succeeded",
        created=int(t.now.timestamp()),
        payload={"id": "evt_plan", "object": "event", "type": "payment_intent.succeeded"},
    )
    expire_rule = single_rule(Action.HOLD_EXPIRED, BookingStatus.PENDING_PAYMENT)
    gist = "ex_bookings_no_overlap"
    return [
        Hot(
            "availability: bookings in window",
            bookings_in_window(t.artist_id, t.start, end + duration, t.now),
            (gist,),
        ),
        Hot(
            "availability: leaves in window",
            leaves_in_window(t.artist_id, t.start, end + duration),
            ("ix_leaves_artist_period",),
        ),
        Hot(
            "booking create: expire stale holds in the slot",
            conditional_update(
                expire_rule, holds.overlapping_holds(t.artist_id, t.start, slot_end), t.now
            ),
            # Either reads only rows near the slot: the artist's live bookings in the GiST
            # index, or the few unpaid holds of the partial index.
            (f"{gist}|ix_bookings_pending_expires_at",),
            writes=True,
        ),
        Hot(
            "late payment: re-check of the slot (booking or leave)",
            slot_taken_query(artist, t.start, slot_end),
            (gist, "ix_leaves_artist_period"),
        ),
        Hot("booking create: insert", insert(Booking).values(**booking), (), writes=True),
        Hot("webhook receive: store", inbox.event_insert(event), (), writes=True),
        Hot(
            "inbox sweeper",
            inbox.stale_events(t.now - timedelta(minutes=2), 500),
            ("ix_stripe_events_redeliverable",),
        ),
        Hot(
            "outbox sweeper",
            notifications.pending_query(notifications.REDELIVERY_AFTER, 100),
            ("ix_notifications_pending_created_at",),
        ),
        Hot("hold sweeper", holds.stale_holds(t.now, 200), ("ix_bookings_pending_expires_at",)),
        Hot("reminder sweeper", reminders.due(t.now, reminders.BATCH), ("ix_bookings_remind_at",)),
        Hot(
            "retention: applied events",
            retention.applied_events_before(t.now - timedelta(days=30), 1000),
            ("ix_stripe_events_applied_processed_at",),
            writes=True,
        ),
        Hot(
            "retention: sent mails",
            retention.sent_notifications_before(t.now - timedelta(days=90), 1000),
            ("ix_notifications_sent_at",),
            writes=True,
        ),
        Hot(
            "retention: idempotency keys",
            retention.idempotency_keys_expired_before(t.now - timedelta(hours=24), 1000),
            ("ix_idempotency_keys_expires_at",),
            writes=True,
        ),
    ]


def former_statements(t: Target) -> list[Hot]:
    """The statements as they were before this work, for the before/after figures:
    availability's bookings and leaves queries with two comparisons (only the upper bound
    reaches a btree (artist_id, start_time)), the outbox and inbox sweepers without the
    partial indexes added for them."""
    end = t.start + timedelta(days=t.days) + timedelta(minutes=t.duration_min)
    bookings = select(Booking.start_time, Booking.end_time, Booking.expires_at).where(
        Booking.artist_id == t.artist_id,
        Booking.start_time < end,
        Booking.end_time > t.start,
        Booking.blocks_slot(t.now),
    )
    leaves = select(Leave.start_time, Leave.end_time).where(
        Leave.artist_id == t.artist_id, Leave.start_time < end, Leave.end_time > t.start
    )
    return [
        Hot("availability: bookings in window (before)", bookings, (), before=True),
        Hot(
            "availability: leaves in window (before)",
            leaves,
            (),
            without=("ix_leaves_artist_period",),
            before=True,
        ),
        Hot(
            "outbox sweeper (before)",
            notifications.pending_query(notifications.REDELIVERY_AFTER, 100),
            (),
            without=("ix_notifications_pending_created_at",),
            before=True,
        ),
        Hot(
            "inbox sweeper (before)",
            inbox.stale_events(t.now - timedelta(minutes=2), 500),
            (),
            without=("ix_stripe_events_redeliverable",),
            before=True,
        ),
    ]


def former_bookings_in_window(t: Target) -> Hot:
    return former_statements(t)[0]


def explain(conn: Connection, hot: Hot, *, analyze: bool) -> list[str]:
    """The plan's lines; a statement that writes is rolled back (a savepoint)."""
    compiled = hot.statement.compile(  # type: ignore[attr-defined]
        dialect=postgresql.dialect(), compile_kwargs={"render_postcompile": True}
    )
    options = "(ANALYZE, BUFFERS)" if analyze else ""
    # The driver-level call skips SQLAlchemy's bind processing: JSON goes in as Jsonb.
    params = {k: Jsonb(v) if isinstance(v, dict) else v for k, v in compiled.params.items()}
    with conn.begin_nested() as savepoint:
        for index in hot.without:
            conn.exec_driver_sql(f'DROP INDEX "{index}"')
        lines = list(conn.exec_driver_sql(f"EXPLAIN {options} {compiled}", params).scalars())
        savepoint.rollback()
    return [str(line) for line in lines]


@dataclass
class Summary:
    scans: list[str] = field(default_factory=list)  # "Index Scan using ix on table"
    removed: int = 0  # rows the scans' filters (and rechecks) threw away
    hit: int = 0
    read: int = 0
    ms: float | None = None

    def seq_scans_of_big_tables(self) -> list[str]:
        return [s for s in self.scans if s.startswith("Seq Scan") and s.split()[-1] in BIG_TABLES]

    def line(self) -> str:
        timing = "" if self.ms is None else f", {self.ms:.3f} ms"
        buffers = f", buffers hit {self.hit} read {self.read}" if self.hit or self.read else ""
        scans = "; ".join(self.scans) or "no scan"
        return f"{scans}; rows removed {self.removed}{buffers}{timing}"


_SCAN = re.compile(
    r"((?:Parallel )?(?:Seq Scan|Index Only Scan|Index Scan|Bitmap Index Scan|Bitmap Heap Scan)"
    r"(?: Backward)?(?: using \S+)? on \S+)"
)
_REMOVED = re.compile(r"Rows Removed by (?:Filter|Index Recheck|Join Filter): (\d+)")
_BUFFERS = re.compile(r"Buffers: shared(?: hit=(\d+))?(?: read=(\d+))?")
_TIME = re.compile(r"Execution Time: ([\d.]+) ms")


def summary(plan: list[str]) -> Summary:
    out = Summary()
    first_buffers = True
    for line in plan:
        text = line.strip().lstrip("-> ").strip()
        match = _SCAN.search(text)
        if match:
            out.scans.append(re.sub(r"\s+", " ", match.group(1)))
        if m := _REMOVED.search(text):
            out.removed += int(m.group(1))
        # The top node's buffers include its children's.
        if first_buffers and (m := _BUFFERS.search(text)):
            out.hit, out.read = int(m.group(1) or 0), int(m.group(2) or 0)
            first_buffers = False
        if m := _TIME.search(text):
            out.ms = float(m.group(1))
    return out


def problems(hot: Hot, plan: list[str]) -> list[str]:
    """What is wrong with `plan` for `hot`: a missing index, a Seq Scan of a big table."""
    if hot.before:
        return []
    found = summary(plan)
    text = "\n".join(plan)
    issues = [
        f"{index} not used"
        for index in hot.indexes
        if not any(name in text for name in index.split("|"))
    ]
    issues += found.seq_scans_of_big_tables()
    return issues


def as_json(hot: Hot, plan: list[str]) -> dict[str, Any]:
    found = summary(plan)
    return {
        "name": hot.name,
        "scans": found.scans,
        "rows_removed": found.removed,
        "buffers_hit": found.hit,
        "buffers_read": found.read,
        "ms": found.ms,
        "problems": problems(hot, plan),
        "plan": plan,
    }

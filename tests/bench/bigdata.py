"""`make bench-data`: a database at production scale for the bench's scale stage
(`python -m tests.bench.bigdata`).

The world is built per artist, so a small world (`--artists 50`, what the bench builds
for comparison) has exactly the per-artist history of the big one (`--artists 10000`):

- each artist: a time zone, 7 working-hours rows, 2 services, 20 clients of its own;
- 200 bookings over 1,000 days (900 past, 100 ahead), one a day at most, so live ones
  never overlap (the exclusion constraint holds); past ones COMPLETED 80 %, CANCELLED
  10 %, EXPIRED 6 %, NO_SHOW 4 %; future ones CONFIRMED 88 %, CANCELLED 11 %, unpaid
  holds 1 %; each with its PaymentIntent, deposit status and reminder as the code sets;
- 2 e-mails per booking (client and artist), SENT but for the newest few;
- 30 whole-day leaves over the three years;
- 500 webhook events (`stripe_events`) received over the three years, applied (PROCESSED
  98 %, IGNORED 1.9 %, FAILED 0.1 %), with a payload of Stripe's size (~1.2 kB);
- 20 idempotency keys, almost all expired.

At 10,000 artists: 2 M bookings, 4 M e-mails, 5 M events, 300,000 leaves, 200,000 keys.

Fast: each table is filled by one `INSERT ... SELECT` over `generate_series` (no rows
cross the wire); secondary indexes and constraints are dropped first and re-created
after (a sorted build is many times faster than 2 M GiST inserts), with triggers and
foreign-key checks off for the load (`session_replication_role = replica`: the data is
built consistent); then `VACUUM (ANALYZE)`, as a production database would have been.
The schema is Alembic's (`upgrade head`), identical to production.

The database (`inkflow_bench_big` by default) is reused by later runs when it is complete
(its COMMENT records the scale) and upgraded to the current head; `--rebuild` drops it
first; `--drop` only drops it.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from sqlalchemy.engine import make_url

from tests.support import libpq_url

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_SERVER_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
BIG_DATABASE = "inkflow_bench_big"
BIG_ARTISTS = 10_000

BOOKINGS_PER_ARTIST = 200
EVENTS_PER_ARTIST = 500
CLIENTS_PER_ARTIST = 20
LEAVES_PER_ARTIST = 30
KEYS_PER_ARTIST = 20
HISTORY_DAYS = 1095  # three years of webhook events
PAST_DAYS = 900
BOOKING_EVERY_DAYS = 5  # 200 bookings × 5 days: 900 days past, 100 ahead, one a day

# The tables whose secondary indexes are rebuilt after the load.
LOADED = ("bookings", "notifications", "stripe_events", "leaves", "idempotency_keys")


@dataclass(frozen=True)
class Scale:
    artists: int

    @property
    def bookings(self) -> int:
        return self.artists * BOOKINGS_PER_ARTIST

    @property
    def events(self) -> int:
        return self.artists * EVENTS_PER_ARTIST

    def describe(self) -> dict[str, int]:
        return {
            "artists": self.artists,
            "bookings": self.bookings,
            "notifications": 2 * self.bookings,
            "stripe_events": self.events,
            "leaves": self.artists * LEAVES_PER_ARTIST,
            "clients": self.artists * CLIENTS_PER_ARTIST,
            "idempotency_keys": self.artists * KEYS_PER_ARTIST,
        }


# Everything keys off `n`, the artist's number, and a per-artist index: the ids are
# derived (md5 → uuid), so the statements below need no join to find an artist's rows.
ARTISTS_SQL = """
INSERT INTO artists (id, name, email, timezone, stripe_account_id, charges_enabled,
    buffer_min, min_notice_min, max_advance_days, payouts_enabled, created_at)
SELECT md5('artist' || n)::uuid, 'Artist ' || n, 'artist' || n || '@big.inkflow.test',
    'Europe/Paris', 'acct_big' || n, true, 0, 60, 365, true,
    now() - interval '1100 days'
FROM generate_series(0, {artists} - 1) AS n;

INSERT INTO services (id, artist_id, name, duration_min, price, deposit_amount, currency,
    active, created_at)
SELECT md5('service' || n || ':' || s)::uuid, md5('artist' || n)::uuid,
    CASE s WHEN 0 THEN 'Session' ELSE 'Flash' END, CASE s WHEN 0 THEN 60 ELSE 120 END,
    120, 30, 'eur', true, now() - interval '1100 days'
FROM generate_series(0, {artists} - 1) AS n, generate_series(0, 1) AS s;

INSERT INTO working_hours (id, artist_id, day_of_week, start_minute, end_minute)
SELECT md5('hours' || n || ':' || d)::uuid, md5('artist' || n)::uuid, d, 600, 1080
FROM generate_series(0, {artists} - 1) AS n, generate_series(0, 6) AS d;

INSERT INTO clients (id, email, name, created_at)
SELECT md5('client' || c)::uuid, 'client' || c || '@big.inkflow.test', 'Client ' || c,
    now() - interval '1100 days'
FROM generate_series(0, {artists} * {clients} - 1) AS c;
"""

# Booking k of artist n: day k × 5 + n mod 5 of the three years, 10:00–17:00 UTC, 60 min.
BOOKINGS_SQL = """
INSERT INTO bookings (id, client_id, artist_id, service_id, start_time, end_time, status,
    deposit_amount, currency, expires_at, payment_intent_id, created_at, updated_at,
    confirmed_at, cancelled_at, expired_at, completed_at, no_show_at, cancelled_by,
    deposit_status, remind_at, reschedule_count, amount_refunded_minor, calendar_sequence)
SELECT id, client_id, artist_id, service_id, start_time, start_time + interval '60 min',
    status, 30, 'eur',
    CASE WHEN status = 'PENDING_PAYMENT' THEN now() + interval '10 min' END,
    'pi_big_' || g, created, created,
    CASE WHEN status IN ('CONFIRMED', 'COMPLETED', 'NO_SHOW') THEN created END,
    CASE WHEN status = 'CANCELLED' THEN created + interval '2 days' END,
    CASE WHEN status = 'EXPIRED' THEN created + interval '15 min' END,
    CASE WHEN status = 'COMPLETED' THEN start_time + interval '60 min' END,
    CASE WHEN status = 'NO_SHOW' THEN start_time + interval '60 min' END,
    CASE WHEN status = 'CANCELLED' THEN 'CLIENT' END,
    CASE status WHEN 'COMPLETED' THEN 'PAID' WHEN 'CONFIRMED' THEN 'PAID'
        WHEN 'CANCELLED' THEN 'REFUNDED' WHEN 'NO_SHOW' THEN 'FORFEITED' ELSE 'UNPAID' END,
    CASE WHEN status = 'CONFIRMED' AND start_time > now() + interval '24 hours'
        THEN start_time - interval '24 hours' END,
    0, CASE WHEN status = 'CANCELLED' THEN 3000 ELSE 0 END, 0
FROM (
    SELECT g, md5('booking' || g)::uuid AS id,
        md5('client' || (n * {clients} + k % {clients}))::uuid AS client_id,
        md5('artist' || n)::uuid AS artist_id, md5('service' || n || ':0')::uuid AS service_id,
        t AS start_time,
        -- booked 14 days ahead; a future booking at most an hour ago
        LEAST(t - interval '14 days', now() - interval '1 hour' - (t - now()) / 4) AS created,
        CASE WHEN t < now() THEN
            CASE WHEN r < 80 THEN 'COMPLETED' WHEN r < 90 THEN 'CANCELLED'
                WHEN r < 96 THEN 'EXPIRED' ELSE 'NO_SHOW' END
        ELSE
            CASE WHEN r < 88 THEN 'CONFIRMED' WHEN r < 99 THEN 'CANCELLED'
                ELSE 'PENDING_PAYMENT' END
        END AS status
    FROM generate_series(0, {artists} * {bookings_per} - 1) AS g,
        LATERAL (SELECT g / {bookings_per} AS n, g % {bookings_per} AS k,
            ((hashtext('b' || g) % 100) + 100) % 100 AS r) AS ids,
        LATERAL (SELECT date_trunc('day', now()) - {past} * interval '1 day'
            + (k * {every} + n % {every}) * interval '1 day'
            + (10 + (k * 3 + n) % 8) * interval '1 hour' AS t) AS times
) AS b;
"""

# Two e-mails per booking; the newest few hundred still PENDING, a few FAILED.
NOTIFICATIONS_SQL = """
INSERT INTO notifications (id, booking_id, kind, channel, recipient, occasion, status,
    attempts, created_at, sent_at)
SELECT md5('note' || b.id || r.role)::uuid, b.id, 'BOOKING_CONFIRMED', 'email',
    CASE r.role WHEN 'client' THEN 'client@big.inkflow.test' ELSE 'artist@big.inkflow.test' END,
    '', s.status, 1, b.created_at,
    CASE WHEN s.status = 'SENT' THEN b.created_at + interval '2 seconds' END
FROM bookings b
CROSS JOIN (VALUES ('client'), ('artist')) AS r(role),
LATERAL (SELECT CASE
    WHEN b.created_at > now() - interval '3 hours' THEN 'PENDING'
    WHEN hashtext(b.id::text) % 2000 = 0 THEN 'FAILED'
    ELSE 'SENT' END AS status) AS s;
"""

# Event j of E: received at now − (E − j) × (three years ÷ E), so the oldest have the
# lowest numbers (the bench re-creates exactly those after its purge run).
EVENTS_SQL = """
INSERT INTO stripe_events (id, type, payload, status, attempts, last_error, stripe_created,
    received_at, processed_at)
SELECT id, type, jsonb_build_object(
        'id', id, 'object', 'event', 'api_version', '2024-06-20', 'created', created,
        'livemode', false, 'pending_webhooks', 1, 'type', type,
        'request', jsonb_build_object('id', 'req_' || substr(h, 1, 14), 'idempotency_key', h),
        'data', jsonb_build_object('object', jsonb_build_object(
            'id', 'pi_big_' || j, 'object', 'payment_intent', 'amount', 3000,
            'amount_received', 3000, 'currency', 'eur', 'status', 'succeeded',
            'capture_method', 'automatic', 'confirmation_method', 'automatic',
            'client_secret', 'pi_big_' || j || '_secret_' || h,
            'customer', 'cus_' || substr(h, 3, 14),
            'latest_charge', 'ch_' || substr(h, 5, 24),
            'payment_method', 'pm_' || substr(h, 7, 24),
            'payment_method_types', jsonb_build_array('card'),
            'transfer_data', jsonb_build_object('destination', 'acct_big' || (j % 10000)),
            'application_fee_amount', 0, 'description', 'Deposit for booking ' || h,
            'metadata', jsonb_build_object('booking_id', h::uuid::text,
                'artist_id', md5('artist' || (j % 10000))::uuid::text,
                'client_id', md5('client' || (j % 200000))::uuid::text,
                'service_id', md5('service' || (j % 10000) || ':0')::uuid::text),
            'created', created, 'livemode', false,
            'statement_descriptor', null, 'receipt_email', null,
            'shipping', null, 'next_action', null, 'last_payment_error', null))),
    status, CASE WHEN status = 'FAILED' THEN 10 ELSE 1 END,
    CASE WHEN status = 'FAILED' THEN 'booking not found' END, created, received,
    CASE WHEN status IN ('PROCESSED', 'IGNORED') THEN received + interval '1 second' END
FROM (
    SELECT j, 'evt_big_' || lpad(j::text, 9, '0') AS id, md5(j::text) AS h,
        CASE WHEN j % 1000 < 19 THEN 'customer.updated' ELSE 'payment_intent.succeeded' END
            AS type,
        CASE WHEN j % 1000 < 19 THEN 'IGNORED' WHEN j % 1000 = 500 THEN 'FAILED'
            ELSE 'PROCESSED' END AS status,
        now() - ({events} - j) * (({days} * interval '1 day') / {events}) AS received,
        extract(epoch FROM now() - ({events} - j) * (({days} * interval '1 day') / {events}))
            ::bigint AS created
    FROM generate_series({first}, {last}) AS j
) AS e
ON CONFLICT (id) DO NOTHING;
"""

LEAVES_SQL = """
INSERT INTO leaves (id, artist_id, start_time, end_time, reason, created_at)
SELECT md5('leave' || n || ':' || l)::uuid, md5('artist' || n)::uuid, d, d + interval '1 day',
    'day off', d - interval '30 days'
FROM generate_series(0, {artists} - 1) AS n, generate_series(0, {leaves_per} - 1) AS l,
    LATERAL (SELECT date_trunc('day', now()) - {past} * interval '1 day'
        + (l * 35 + n % 5 + 2) * interval '1 day' AS d) AS days;
"""

KEYS_SQL = """
INSERT INTO idempotency_keys (key, request_hash, booking_id, response_status, response_body,
    created_at, expires_at)
SELECT md5('client' || (i % ({artists} * {clients})))::uuid || ':' || md5('key' || i),
    md5('body' || i) || md5('body2' || i),
    md5('booking' || (i % ({artists} * {bookings_per})))::uuid, 201,
    jsonb_build_object('id', md5('booking' || i)::uuid::text, 'status', 'PENDING_PAYMENT'),
    t, t + interval '24 hours'
FROM generate_series(0, {artists} * {keys_per} - 1) AS i,
    LATERAL (SELECT now() - (i % 1000) * interval '43 minutes' AS t) AS times;
"""


CONSTANTS = {
    "clients": CLIENTS_PER_ARTIST,
    "bookings_per": BOOKINGS_PER_ARTIST,
    "leaves_per": LEAVES_PER_ARTIST,
    "keys_per": KEYS_PER_ARTIST,
    "past": PAST_DAYS,
    "every": BOOKING_EVERY_DAYS,
    "days": HISTORY_DAYS,
}


def render(statement: str, **numbers: int) -> sql.Composed:
    """`statement` with its {placeholders} bound to integer literals (no parameters: a
    server-side `INSERT ... SELECT` needs none, and `%` stays the modulo operator)."""
    values = {**CONSTANTS, **numbers}
    names = set(re.findall(r"{(\w+)}", statement))
    return sql.SQL(statement).format(**{k: sql.Literal(int(values[k])) for k in names})


def server_url() -> str:
    return libpq_url(os.environ.get("BENCH_DATABASE_URL", DEFAULT_SERVER_URL))


def database_url(server: str, name: str) -> str:
    return make_url(server).set(database=name).render_as_string(hide_password=False)


def exists(server: str, name: str) -> dict[str, object] | None:
    """The scale recorded in a complete database's COMMENT, or None."""
    with psycopg.connect(server, autocommit=True) as conn:
        row = conn.execute(
            "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = %s",
            (name,),
        ).fetchone()
    if row is None or not row[0]:
        return None
    try:
        meta: dict[str, object] = json.loads(row[0])
    except ValueError:
        return None
    return meta if meta.get("complete") else None


def drop(server: str, name: str) -> None:
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


def migrate(url: str) -> None:
    from alembic import command
    from alembic.config import Config

    config = Config(str(ROOT / "alembic.ini"))
    config.set_main_option("script_location", str(ROOT / "migrations"))
    config.attributes["configure_logger"] = False
    previous = os.environ.get("DATABASE_URL")
    os.environ["DATABASE_URL"] = url
    try:
        command.upgrade(config, "head")
    finally:
        if previous is None:
            os.environ.pop("DATABASE_URL", None)
        else:
            os.environ["DATABASE_URL"] = previous


def _secondary(conn: psycopg.Connection, table: str) -> tuple[list[str], list[str]]:
    """(drop statements, re-create statements) of `table`'s indexes and unique/exclusion
    constraints, its primary key aside, as the catalogue defines them."""
    drops, creates = [], []
    for name, definition in conn.execute(
        "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint"
        " WHERE conrelid = %s::regclass AND contype IN ('u', 'x')",
        (table,),
    ):
        drops.append(f'ALTER TABLE {table} DROP CONSTRAINT "{name}"')
        creates.append(f'ALTER TABLE {table} ADD CONSTRAINT "{name}" {definition}')
    for name, definition in conn.execute(
        "SELECT i.relname, pg_get_indexdef(x.indexrelid) FROM pg_index x"
        " JOIN pg_class i ON i.oid = x.indexrelid"
        " WHERE x.indrelid = %s::regclass AND NOT x.indisprimary"
        " AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = x.indexrelid)",
        (table,),
    ):
        drops.append(f'DROP INDEX "{name}"')
        creates.append(definition)
    return drops, creates


def fill(
    conn: psycopg.Connection[Any],
    scale: Scale,
    say: Callable[[str], None] = lambda _: None,
    *,
    keys_per_artist: int = KEYS_PER_ARTIST,
) -> dict[str, float]:
    """Insert the world of `scale` artists into an empty migrated database; returns the
    seconds each table took."""
    timings: dict[str, float] = {}

    def step(label: str, statement: str, **params: int) -> None:
        t0 = time.perf_counter()
        for part in statement.split(";\n"):
            if part.strip():
                conn.execute(render(part, artists=scale.artists, **params))
        timings[label] = round(time.perf_counter() - t0, 1)
        say(f"  {label}: {timings[label]:.1f} s")

    step("artists, services, hours, clients", ARTISTS_SQL)
    step(f"bookings ({scale.bookings:,})", BOOKINGS_SQL)
    step(f"notifications ({2 * scale.bookings:,})", NOTIFICATIONS_SQL)
    chunk = 1_000_000
    for first in range(0, scale.events, chunk):
        last = min(first + chunk, scale.events) - 1
        label = f"stripe_events {first:,}–{last:,}"
        step(label, EVENTS_SQL, events=scale.events, first=first, last=last)
    step("leaves", LEAVES_SQL)
    step("idempotency keys", KEYS_SQL, keys_per=keys_per_artist)
    return timings


def build(
    server: str, name: str, scale: Scale, say: Callable[[str], None], *, vacuum: bool = True
) -> dict[str, object]:
    """Create, migrate and fill database `name`; returns what it holds and took."""
    began = time.perf_counter()
    drop(server, name)
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = database_url(server, name)
    migrate(url)
    timings: dict[str, float] = {}
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SET session_replication_role = replica")  # no triggers, no FK checks
        conn.execute("SET synchronous_commit = off")
        conn.execute("SET maintenance_work_mem = '512MB'")
        conn.execute("SET max_parallel_maintenance_workers = 1")
        rebuild: list[str] = []
        for table in LOADED:
            drops, creates = _secondary(conn, table)
            for statement in drops:
                conn.execute(statement)
            rebuild += creates
        timings.update(fill(conn, scale, say))
        t0 = time.perf_counter()
        for statement in rebuild:
            conn.execute(statement)
        timings["indexes and constraints"] = round(time.perf_counter() - t0, 1)
        say(f"  indexes and constraints ({len(rebuild)}): {timings['indexes and constraints']} s")
        conn.execute("RESET session_replication_role")
        t0 = time.perf_counter()
        conn.execute("VACUUM (ANALYZE)" if vacuum else "ANALYZE")
        timings["vacuum analyze"] = round(time.perf_counter() - t0, 1)
        say(f"  {'VACUUM (ANALYZE)' if vacuum else 'ANALYZE'}: {timings['vacuum analyze']} s")
        size = conn.execute("SELECT pg_database_size(current_database())").fetchone()
    meta: dict[str, object] = {
        "complete": True,
        **scale.describe(),
        "bytes": size[0] if size else None,
        "seconds": round(time.perf_counter() - began, 1),
        "timings": timings,
        "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(
            sql.SQL("COMMENT ON DATABASE {} IS {}").format(
                sql.Identifier(name), sql.Literal(json.dumps(meta))
            )
        )
    return meta


def refill_events(url: str, scale: Scale, count: int) -> None:
    """Put back the `count` oldest events (a purge run deletes the oldest first), so the
    big database stays the same from one bench run to the next."""
    if count <= 0:
        return
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            render(EVENTS_SQL, artists=scale.artists, events=scale.events, first=0, last=count - 1)
        )


def refill_notifications(url: str) -> None:
    """Put back the sent e-mails a purge run deleted: the oldest, up to the oldest one
    left (inclusive: many e-mails share a sending instant, and a batch may stop among
    them); the rows still there are skipped."""
    only_deleted = sql.SQL(
        " WHERE b.created_at + interval '2 seconds'"
        " <= (SELECT min(sent_at) FROM notifications WHERE status = 'SENT')"
        " ON CONFLICT DO NOTHING"
    )
    statement = sql.SQL(NOTIFICATIONS_SQL.strip().rstrip(";")) + only_deleted
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(statement)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make bench-data", description=__doc__.split("\n")[0])
    parser.add_argument("--artists", type=int, default=BIG_ARTISTS)
    parser.add_argument("--database", default=BIG_DATABASE)
    parser.add_argument("--rebuild", action="store_true", help="drop and build it again")
    parser.add_argument("--drop", action="store_true", help="only drop it")
    args = parser.parse_args(argv)
    server = server_url()

    def say(text: str) -> None:
        print(text, flush=True)

    if args.drop:
        drop(server, args.database)
        say(f"dropped {args.database}")
        return 0
    meta = None if args.rebuild else exists(server, args.database)
    if meta is not None and meta.get("artists") == args.artists:
        migrate(database_url(server, args.database))
        say(f"{args.database} exists (built {meta.get('built_at')}): reused, migrated to head")
    else:
        scale = Scale(args.artists)
        say(
            f"building {args.database}: "
            + ", ".join(f"{v:,} {k}" for k, v in scale.describe().items())
        )
        meta = build(server, args.database, scale, say)
    size = int(meta.get("bytes") or 0)  # type: ignore[call-overload]
    say(
        f"{args.database}: {size / 1e9:.2f} GB on disk, built in {meta.get('seconds')} s"
        f" ({json.dumps(meta.get('timings'))})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Scale-out stage: two API instances and two Celery workers against one PostgreSQL and
one Redis (`make bench`, registered in tests/bench/run.py).

Two more gunicorns are started beside the bench's own, each deliberately small
(SCALEOUT_INSTANCE: 2 processes × 8 threads = 16 requests at once), so that with Stripe
answering after 300 ms an instance is bound by its threads × Stripe's latency, not by the
two cores: what a second instance adds is then visible (on CPU-bound work two instances
on the same two cores cannot add anything). A second worker consumes the bench's queue
beside the first.

- throughput: booking creation, 32 clients, against one instance, then spread over both;
  target: two instances ≥ 1.8 × one.
- one winner per slot: a burst of requests for one slot and for overlapping starts
  (11:00, 11:30, 12:00 of a 60 min service) of a second artist, alternating between
  the instances; then a SQL self-join over every live booking of the database finds no
  two of one artist that overlap.
- each event applied once: payment_intent.succeeded for bookings made above, each event
  posted to both instances (so both store it and may both enqueue it) and consumed by
  two workers: every event PROCESSED after one attempt, one payment row and one
  confirmation e-mail per booking.
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from tests.bench import data, report
from tests.bench.latency import STRIPE_LATENCY_MS, create_spec, stripe_latency
from tests.bench.stack import HarnessError
from tests.support import wait_until

if TYPE_CHECKING:
    from tests.bench.run import Bench

JSON = dict[str, Any]
SCALEOUT_INSTANCE = {"WEB_CONCURRENCY": "2", "GUNICORN_THREADS": "8"}
CLIENTS = 32
BURST_SAME_SLOT = 300
BURST_OVERLAPPING = 300
EVENTS = 100
TARGETS = {"scaleout_ratio": 1.8}

OVERLAPS_SQL = """
SELECT count(*) FROM bookings a JOIN bookings b
  ON a.artist_id = b.artist_id AND a.id < b.id
 AND a.start_time < b.end_time AND b.start_time < a.end_time
WHERE a.status IN ('PENDING_PAYMENT', 'CONFIRMED')
  AND b.status IN ('PENDING_PAYMENT', 'CONFIRMED')
"""


def stage_scaleout(bench: Bench) -> None:
    s = bench.settings
    with bench.stage(
        "scaleout",
        "two API instances and two workers, one PostgreSQL and Redis",
    ):
        assert bench.engine is not None
        fixture = data.seed_booking_artists(bench.engine, bench.stack.run_id + "s")
        bench.stack.artist_ids += fixture.artist_ids
        ports = [bench.stack.start_api(name, SCALEOUT_INSTANCE) for name in ("api-a", "api-b")]
        bench.stack.start_worker("w2", *worker_options(bench))
        try:
            out = _measure(bench, fixture, ports)
        finally:
            for name in ("w2", "api-a", "api-b"):
                bench.stack.stop_child(name)
        out["instance"] = f"{SCALEOUT_INSTANCE['WEB_CONCURRENCY']} × "
        out["instance"] += SCALEOUT_INSTANCE["GUNICORN_THREADS"]
        out["clients"] = CLIENTS
        out["warmup_s"], out["duration_s"] = s.warmup, s.duration
        bench.results["scaleout"] = out


def worker_options(bench: Bench) -> list[str]:
    s = bench.settings
    return [f"--pool={s.worker_pool}", f"--concurrency={s.worker_concurrency}"]


def _measure(bench: Bench, fixture: data.BookingFixture, ports: list[int]) -> JSON:
    s = bench.settings
    seconds = s.warmup + s.duration
    per_run = int(2 * 16 / (STRIPE_LATENCY_MS / 1000) * seconds * 1.3) + 300
    bodies = data.booking_bodies(fixture, 2 * per_run)
    runs: dict[str, JSON] = {}
    with stripe_latency(bench, STRIPE_LATENCY_MS):
        for n, pool in ((1, bodies[:per_run]), (2, bodies[per_run:])):
            name = f"scaleout_{n}"
            spec = create_spec(
                bench, name, pool, connections=CLIENTS, ports=ports[:n], port=ports[0]
            )
            result = bench.loadgen(name, spec)
            bench._check_ok(name, result, expect="201")
            runs[str(n)] = result
            bench.say(
                f"  {n} instance(s): {result['rps']:.0f} bookings/s, p95 "
                f"{result['latency_ms']['p95']} ms"
            )
    return {
        "runs": runs,
        "contention": _contention(bench, fixture, ports),
        "events": _events_once(bench, fixture, ports),
    }


def _contention(bench: Bench, fixture: data.BookingFixture, ports: list[int]) -> JSON:
    same_artist, same_service = fixture.contention_artist
    other_artist, other_service = fixture.artists[0]
    day = datetime.now(data.TZ).date() + timedelta(days=FAR_DAY)
    same_start = data.local(day, 12)
    starts = [data.local(day, 11), data.local(day, 11, 30), data.local(day, 12)]
    bodies: list[JSON] = []
    for i in range(BURST_SAME_SLOT + BURST_OVERLAPPING):
        client = fixture.clients[i % len(fixture.clients)]
        if i % 2 == 0:
            artist, service, start = same_artist, same_service, same_start
        else:
            artist, service, start = other_artist, other_service, starts[(i // 2) % 3]
        body = {
            "clientId": client,
            "artistId": artist,
            "serviceId": service,
            "startTime": data.iso(start),
        }
        bodies.append({"body": json.dumps(body)})
    spec = {
        "mode": "burst",
        "method": "POST",
        "path": "/api/bookings/create",
        "headers": {"Content-Type": "application/json"},
        "bodies_file": bench.bodies_file("scaleout-contention", bodies),
        "expect": 201,
        "port": ports[0],
        "ports": ports,
    }
    result = bench.loadgen("scaleout_contention", spec)
    # Which requests won is read from the database (the records' bodies are truncated).
    answers: Counter[str] = Counter(str(r.get("status")) for r in result["records"])
    same_live = bench.sql(
        "SELECT count(*) FROM bookings WHERE artist_id = CAST(:a AS uuid)"
        " AND start_time = :s AND status IN ('PENDING_PAYMENT', 'CONFIRMED')",
        a=same_artist,
        s=same_start,
    )[0][0]
    other_live = bench.sql(
        "SELECT to_char(start_time AT TIME ZONE :tz, 'HH24:MI') FROM bookings"
        " WHERE artist_id = CAST(:a AS uuid) AND start_time >= :s AND start_time < :e"
        " AND status IN ('PENDING_PAYMENT', 'CONFIRMED') ORDER BY start_time",
        tz=data.TZ_NAME,
        a=other_artist,
        s=starts[0],
        e=starts[0] + timedelta(hours=2),
    )
    overlaps = bench.sql(OVERLAPS_SQL)[0][0]
    out = {
        "sent": len(bodies),
        "answers": dict(answers),
        "all_answered_ms": result["all_answered_ms"],
        "same_slot_live": int(same_live),
        "overlapping_starts_live": [r[0] for r in other_live],
        "overlaps_in_db": int(overlaps),
    }
    bench.say(
        f"  contention over 2 instances: {dict(answers)}; one slot → {same_live} live; "
        f"11:00/11:30/12:00 → {out['overlapping_starts_live']}; overlaps in the database: "
        f"{overlaps}"
    )
    return out


FAR_DAY = 340  # clear of the slots the throughput runs took (they fill days in order)


def _events_once(bench: Bench, fixture: data.BookingFixture, ports: list[int]) -> JSON:
    rows = bench.sql(
        "SELECT id, payment_intent_id FROM bookings WHERE artist_id = ANY(CAST(:ids AS uuid[]))"
        " AND status = 'PENDING_PAYMENT' AND payment_intent_id IS NOT NULL"
        " ORDER BY start_time LIMIT :n",
        ids=[a for a, _ in fixture.artists],
        n=EVENTS,
    )
    if len(rows) < EVENTS:
        raise HarnessError(f"only {len(rows)} bookings with an intent for the event check")
    emulator = bench.stack.stripe_url
    bodies: list[JSON] = []
    event_ids: list[str] = []
    for _, intent in rows:
        bench.post(f"{emulator}/_emulator/payment_intents/{intent}/succeed", {})
        event = bench.post(
            f"{emulator}/_emulator/events",
            {"type": "payment_intent.succeeded", "payment_intent": intent},
        )
        event_ids.append(event["id"])
        signed = data.signed(event, bench.stack.webhook_secret)
        bodies += [signed, signed]  # the same delivery to each instance, back to back
    spec = {
        "mode": "paced",
        "method": "POST",
        "path": "/api/webhooks/stripe",
        "headers": {"Content-Type": "application/json"},
        "bodies_file": bench.bodies_file("scaleout-events", bodies),
        "rate": 200,
        "port": ports[0],
        "ports": ports,
    }
    result = bench.loadgen("scaleout_events", spec)
    bench._check_ok("scaleout_events", result)
    booking_ids = [str(b) for b, _ in rows]

    def settled() -> bool:
        left = bench.sql(
            "SELECT count(*) FROM stripe_events WHERE id = ANY(:ids)"
            " AND status NOT IN ('PROCESSED', 'IGNORED')",
            ids=event_ids,
        )[0][0]
        return int(left) == 0

    wait_until(settled, 30, 0.05)
    events = dict(
        bench.sql(
            "SELECT status || ' after ' || attempts, count(*) FROM stripe_events"
            " WHERE id = ANY(:ids) GROUP BY 1",
            ids=event_ids,
        )
    )
    confirmed = bench.sql(
        "SELECT count(*) FROM bookings WHERE id = ANY(CAST(:ids AS uuid[]))"
        " AND status = 'CONFIRMED'",
        ids=booking_ids,
    )[0][0]
    payments = dict(
        bench.sql(
            "SELECT n, count(*) FROM (SELECT b.id, count(t.id) AS n FROM bookings b"
            " LEFT JOIN stripe_transactions t ON t.booking_id = b.id AND t.kind = 'PAYMENT'"
            " WHERE b.id = ANY(CAST(:ids AS uuid[])) GROUP BY b.id) x GROUP BY n",
            ids=booking_ids,
        )
    )
    mails = dict(
        bench.sql(
            "SELECT n, count(*) FROM (SELECT b.id, count(m.id) AS n FROM bookings b"
            " LEFT JOIN notifications m ON m.booking_id = b.id"
            " AND m.kind = 'BOOKING_CONFIRMED'"
            " WHERE b.id = ANY(CAST(:ids AS uuid[])) GROUP BY b.id) x GROUP BY n",
            ids=booking_ids,
        )
    )
    once = (
        events == {"PROCESSED after 1": EVENTS}
        and int(confirmed) == EVENTS
        and payments == {1: EVENTS}
    )
    out = {
        "events": EVENTS,
        "posts": len(bodies),
        "statuses": result["statuses"],
        "event_rows": events,
        "confirmed": int(confirmed),
        "payment_rows_per_booking": {str(k): v for k, v in payments.items()},
        "client_confirmation_mails_per_booking": {str(k): v for k, v in mails.items()},
        "applied_once": once,
    }
    bench.say(
        f"  {EVENTS} events × 2 instances: {events}; {confirmed} confirmed; payment rows per "
        f"booking {payments}; confirmation mails per booking {mails}"
    )
    return out


# --- the table ----------------------------------------------------------------------


def sections(results: JSON) -> list[tuple[str, list[report.Row]]]:
    so = results.get("scaleout")
    if not so:
        return []
    Row = report.Row
    one, two = so["runs"]["1"], so["runs"]["2"]
    rows = [
        Row(f"1 instance: booking create, Stripe {STRIPE_LATENCY_MS:g} ms", one["rps"], "req/s"),
        Row(f"2 instances: booking create, Stripe {STRIPE_LATENCY_MS:g} ms", two["rps"], "req/s"),
        Row("2 instances: p95", two["latency_ms"]["p95"], "ms"),
    ]
    ratio = two["rps"] / one["rps"] if one["rps"] else None
    target = TARGETS["scaleout_ratio"]
    rows.append(
        Row(
            "2 instances ÷ 1",
            ratio,
            "×",
            None,
            f"≥ {target:g}",
            ratio is not None and ratio >= target,
        )
    )
    ct = so["contention"]
    rows.append(
        Row(
            f"one slot, {BURST_SAME_SLOT} requests over 2 instances: live bookings",
            ct["same_slot_live"],
            "",
            None,
            "= 1",
            ct["same_slot_live"] == 1,
        )
    )
    rows.append(
        Row(
            "overlapping live bookings (SQL self-join, whole database)",
            ct["overlaps_in_db"],
            "pairs",
            None,
            "0",
            ct["overlaps_in_db"] == 0,
        )
    )
    ev = so["events"]
    rows.append(
        Row(
            f"{ev['events']} events posted to both instances: applied once",
            sum(v for k, v in ev["payment_rows_per_booking"].items() if k == "1"),
            f"of {ev['events']}",
            None,
            "all, 1 attempt each",
            bool(ev["applied_once"]),
        )
    )
    title = (
        f"scale-out: instances of {so['instance']} threads, {so['clients']} clients, "
        "2 workers, one PostgreSQL and Redis"
    )
    return [(title, rows)]

"""The scale stage: the same requests against a small and a big database, in one run.

When the big database built by `make bench-data` (`inkflow_bench_big`, 10,000 artists)
exists (BENCH_BIG=auto, the default; BENCH_BIG=1 requires it, 0 skips the stage), the
bench builds a small one with the very same per-artist history (50 artists,
`tests/bench/bigdata.py`) and starts one more gunicorn on each (same configuration, same
Stripe emulator and Redis as the rest of the bench). Then, small and big in turn, three
times (BENCH_SCALE_ROUNDS), BENCH_SCALE_CONNECTIONS (4) connections each:

- availability: distinct windows (artists 0–49, 69 start days, 4 durations: never a
  cache hit) — the bookings-in-window and leaves queries run on every request;
- booking create: distinct free slots of artists 0–49 (the same slots in both worlds);
- webhook receive: distinct signed events.

Each world's p50 is the median of its rounds; the table shows big ÷ small (target ≤
1.25×). Then, on each database: `EXPLAIN (ANALYZE, BUFFERS)` of every hot statement
(`tests/bench/plans.py`: index used, rows thrown away, buffers, time; a Seq Scan on a big
table or a missing index is a failure), availability's former query for the
before/after, the exclusion constraint's GiST index size and the cost of one booking
INSERT (which maintains it). Last, on the big database only: a retention purge of
applied events for BENCH_PURGE_SECONDS while webhooks arrive at full speed (rows deleted
per second, and the webhooks' p95 against their p95 without a purge); the rows deleted
are put back afterwards, so the big database is the same for the next run.
"""

from __future__ import annotations

import hashlib
import json
import os
import statistics
import threading
import time
import uuid
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any

import psycopg
from sqlalchemy import create_engine

from devtools import commands
from devtools.processes import ChildError, http_answers, port_is_open, stop_all
from shared.adapters.db import make_session_factory
from shared.config import Settings
from shared.usecases import retention
from tests.bench import bigdata, data, plans, report
from tests.bench.stack import HarnessError
from tests.support import free_port

if TYPE_CHECKING:
    from tests.bench.run import Bench

JSON = dict[str, Any]
SMALL_ARTISTS = 50
TARGET_RATIO = 1.25
WORLDS = ("small", "big")
LOADS = ("availability", "booking_create", "webhook_receive")


def wanted() -> str:
    return os.environ.get("BENCH_BIG", "auto").strip().lower() or "auto"


def _uuid(seed: str) -> str:
    """PostgreSQL's `md5(seed)::uuid`, as the generator derives its ids."""
    return str(uuid.UUID(hashlib.md5(seed.encode()).hexdigest()))  # noqa: S324 - an id, not a secret


def availability_bodies() -> list[JSON]:
    today = datetime.now(data.TZ).date()
    bodies = []
    for duration in (60, 30, 90, 120):
        for day in range(1, 70):
            start = data.local(today + timedelta(days=day), 0)
            for n in range(SMALL_ARTISTS):
                body = {
                    "artistId": _uuid(f"artist{n}"),
                    "startDate": data.iso(start),
                    "endDate": data.iso(start + timedelta(days=31)),
                    "serviceDurationMin": duration,
                    "slotIntervalMin": 30,
                }
                bodies.append({"body": json.dumps(body)})
    return bodies


def free_slots() -> list[tuple[int, date, int]]:
    """(artist, day, hour) never booked nor on leave in the generated history: booking k
    of artist n is on day ≡ n (mod 5) of the generator's calendar, leaves on n + 2."""
    today = datetime.now(data.TZ).date()
    slots = []
    for offset in range(2, 360):
        for hour in data.BOOKING_HOURS:
            for n in range(SMALL_ARTISTS):
                if offset % 5 == (n % 5 + 1) % 5:
                    slots.append((n, today + timedelta(days=offset), hour))
    return slots


def booking_bodies(slots: list[tuple[int, date, int]]) -> list[JSON]:
    return [
        {
            "body": json.dumps(
                {
                    "clientId": _uuid(f"client{n * bigdata.CLIENTS_PER_ARTIST + i % 20}"),
                    "artistId": _uuid(f"artist{n}"),
                    "serviceId": _uuid(f"service{n}:0"),
                    "startTime": data.iso(data.local(day, hour)),
                }
            )
        }
        for i, (n, day, hour) in enumerate(slots)
    ]


class ScaleStage:
    def __init__(self, bench: Bench) -> None:
        self.bench = bench
        self.stack = bench.stack
        self.say = bench.say
        self.server = self.stack.server_url
        self.small_name = f"{self.stack.database_name}_small"
        self.urls: dict[str, str] = {}
        self.ports: dict[str, int] = {}
        self.rounds = int(os.environ.get("BENCH_SCALE_ROUNDS", "3"))
        # Few connections: p50 then measures the work of a request more than the queue
        # in front of two cores (the stage compares the two databases, not throughput).
        self.connections = int(os.environ.get("BENCH_SCALE_CONNECTIONS", "4"))
        self.purge_seconds = float(os.environ.get("BENCH_PURGE_SECONDS", "10"))
        self.result: JSON = {}
        self.big_scale = bigdata.Scale(bigdata.BIG_ARTISTS)

    def available(self) -> JSON | None:
        mode = wanted()
        if mode in ("0", "no", "off"):
            return None
        meta = bigdata.exists(self.server, bigdata.BIG_DATABASE)
        if meta is None:
            if mode == "auto":
                self.say(
                    f"  (no {bigdata.BIG_DATABASE}: `make bench-data` builds it; scale stage"
                    " skipped)"
                )
                return None
            raise HarnessError(f"BENCH_BIG=1 but {bigdata.BIG_DATABASE} does not exist")
        return meta

    def run(self) -> JSON | None:
        meta = self.available()
        if meta is None:
            return None
        with self.bench.stage("scale", "small vs big database, same requests, same run"):
            try:
                self._run(meta)
            finally:
                self._stop()
        return self.result

    # -- setup

    def _run(self, meta: JSON) -> None:
        big_url = bigdata.database_url(self.server, bigdata.BIG_DATABASE)
        self.big_scale = bigdata.Scale(int(meta["artists"]))
        bigdata.migrate(big_url)
        with psycopg.connect(big_url, autocommit=True) as conn:
            # The generated holds have run out, and so will a previous run's (the same
            # slots are booked in each run): all expired, as the sweep marks them, so that
            # a run minutes after another finds the same free slots.
            conn.execute(
                "UPDATE bookings SET status = 'EXPIRED', expired_at = now(), updated_at = now(),"
                " expires_at = LEAST(expires_at, now()) WHERE status = 'PENDING_PAYMENT'"
            )
        self.say(f"  building the small world ({SMALL_ARTISTS} artists, same history)…")
        small_meta = bigdata.build(
            self.server, self.small_name, bigdata.Scale(SMALL_ARTISTS), lambda _: None
        )
        self.urls = {"small": bigdata.database_url(self.server, self.small_name), "big": big_url}
        self.result["databases"] = {"small": small_meta, "big": meta}
        self.say(
            f"  small: {small_meta['bytes'] / 1e6:,.0f} MB; big: "  # type: ignore[operator]
            f"{int(meta.get('bytes') or 0) / 1e9:.2f} GB ({meta.get('bookings'):,} bookings, "
            f"{meta.get('stripe_events'):,} events, {meta.get('notifications'):,} e-mails)"
        )
        for world in WORLDS:
            self._start_api(world)
        self.stack.artist_ids += [_uuid(f"artist{n}") for n in range(SMALL_ARTISTS)]
        self._loads()
        for world in WORLDS:
            self.result.setdefault("plans", {})[world] = self._plans(world)
            self.result.setdefault("gist", {})[world] = self._gist(world)
        self.result["purge"] = self._purge()

    def _start_api(self, world: str) -> None:
        port = free_port()
        env = self.stack.app_env()
        env.update({"DATABASE_URL": self.urls[world], "PORT": str(port)})
        child = self.stack._spawn(f"api-{world}", commands.api(), env)
        self.ports[world] = port
        try:
            child.wait_ready(lambda: port_is_open(port), 30, "listen")
            child.wait_ready(
                lambda: http_answers(f"http://127.0.0.1:{port}/healthz", status=200),
                30,
                "answer 200 on /healthz",
            )
        except ChildError as exc:
            raise HarnessError(str(exc)) from exc

    def _api(self, world: str) -> dict[str, list[int]]:
        """The world's gunicorn (master and workers) counted as the API's CPU."""
        return {"api": [p.pid for p in self.stack.children[f"api-{world}"].family()]}

    def _stop(self) -> None:
        children = [self.stack.children.pop(f"api-{w}", None) for w in WORLDS]
        stop_all([c for c in children if c is not None])
        try:
            bigdata.drop(self.server, self.small_name)
        except psycopg.Error as exc:
            self.say(f"  could not drop {self.small_name}: {exc}")

    # -- the three loads, small and big in turn

    def _loads(self) -> None:
        s = self.bench.settings
        slots = free_slots()
        avail = availability_bodies()
        per_round = len(slots) // self.rounds
        runs: dict[str, dict[str, list[JSON]]] = {w: {k: [] for k in LOADS} for w in WORLDS}
        for r in range(self.rounds):
            bookings = booking_bodies(slots[r * per_round : (r + 1) * per_round])
            for world in WORLDS:
                common: JSON = {
                    "mode": "duration",
                    "connections": self.connections,
                    "warmup": 1.0,
                    "duration": s.duration,
                    "port": self.ports[world],
                    "method": "POST",
                    "headers": {"Content-Type": "application/json"},
                    "unique": True,
                }
                events = data.ignorable_events(
                    f"{self.stack.run_id}{world}{r}", self.stack.webhook_secret, 6000
                )
                specs: dict[str, JSON] = {
                    "availability": {
                        "path": "/api/availability",
                        "bodies_file": self.bench.bodies_file(f"scale-av-{world}{r}", avail),
                    },
                    "booking_create": {
                        "path": "/api/bookings/create",
                        "bodies_file": self.bench.bodies_file(f"scale-bk-{world}{r}", bookings),
                        "expect": 201,
                    },
                    "webhook_receive": {
                        "path": "/api/webhooks/stripe",
                        "bodies_file": self.bench.bodies_file(f"scale-wh-{world}{r}", events),
                    },
                }
                for load, spec in specs.items():
                    out = self.bench.loadgen(
                        f"scale_{load}_{world}_{r}",
                        {**common, **spec},
                        extra_roles=self._api(world),
                    )
                    expect = "201" if load == "booking_create" else "200"
                    self.bench._check_ok(f"scale {load} {world}", out, expect)
                    runs[world][load].append(out)
        summary: JSON = {}
        for load in LOADS:
            summary[load] = {}
            for world in WORLDS:
                p50s = [float(o["latency_ms"]["p50"]) for o in runs[world][load]]
                p95s = [float(o["latency_ms"]["p95"]) for o in runs[world][load]]
                summary[load][world] = {
                    "p50_ms": statistics.median(p50s),
                    "p95_ms": statistics.median(p95s),
                    "p50_rounds": p50s,
                    "rps": statistics.median(float(o["rps"]) for o in runs[world][load]),
                    "not_ok": sum(
                        v
                        for o in runs[world][load]
                        for k, v in o["statuses"].items()
                        if k != ("201" if load == "booking_create" else "200")
                    ),
                }
            small, big = summary[load]["small"]["p50_ms"], summary[load]["big"]["p50_ms"]
            summary[load]["ratio"] = round(big / small, 3) if small else None
            self.say(
                f"  {load}: p50 small {small:.2f} ms, big {big:.2f} ms → "
                f"{summary[load]['ratio']:.2f}× (target ≤ {TARGET_RATIO}×)"
            )
        self.result["loads"] = summary
        self.result["webhook_p95_big_ms"] = summary["webhook_receive"]["big"]["p95_ms"]

    # -- plans, GiST, purge

    def _engine(self, world: str) -> Any:
        return create_engine(self.urls[world].replace("postgresql://", "postgresql+psycopg://", 1))

    def _target(self) -> plans.Target:
        now = datetime.now(UTC)
        tomorrow = now.replace(hour=8, minute=0, second=0, microsecond=0) + timedelta(days=1)
        return plans.Target(
            uuid.UUID(_uuid("artist7")),
            uuid.UUID(_uuid("client140")),
            uuid.UUID(_uuid("service7:0")),
            start=tomorrow,
            now=now,
        )

    def _plans(self, world: str) -> list[JSON]:
        engine = self._engine(world)
        target = self._target()
        out = []
        try:
            with engine.connect() as conn:
                for hot in [*plans.former_statements(target), *plans.hot_statements(target)]:
                    plans.explain(conn, hot, analyze=True)  # warm, as a hot path is
                    out.append(plans.as_json(hot, plans.explain(conn, hot, analyze=True)))
            conn.close()
        finally:
            engine.dispose()
        bad = [f"{p['name']}: {', '.join(p['problems'])}" for p in out if p["problems"]]
        self.say(
            f"  EXPLAIN on {world}: "
            + ("every hot statement on its index" if not bad else "; ".join(bad))
        )
        return out

    def _gist(self, world: str) -> JSON:
        """The exclusion constraint's index, and one booking INSERT (which maintains it)
        timed 200 times, each rolled back."""
        target = self._target()
        with psycopg.connect(self.urls[world], autocommit=True) as conn:
            row = conn.execute(
                "SELECT pg_relation_size('ex_bookings_no_overlap'),"
                " (SELECT count(*) FROM bookings WHERE status IN ('PENDING_PAYMENT', 'CONFIRMED'))"
            ).fetchone()
            assert row is not None
            size, live = row
            times = []
            for i in range(200):
                n = i % SMALL_ARTISTS
                start = data.local(
                    datetime.now(data.TZ).date() + timedelta(days=400 + i), 12
                )  # beyond the history: always free
                with conn.transaction(force_rollback=True):
                    t0 = time.perf_counter()
                    conn.execute(
                        "INSERT INTO bookings (id, client_id, artist_id, service_id, start_time,"
                        " end_time, status, deposit_amount, currency, deposit_status, expires_at)"
                        " VALUES (%s, %s, %s, %s, %s, %s, 'PENDING_PAYMENT', 30, 'eur',"
                        " 'UNPAID', %s)",
                        (
                            uuid.uuid4(),
                            target.client_id,
                            _uuid(f"artist{n}"),
                            _uuid(f"service{n}:0"),
                            start,
                            start + timedelta(hours=1),
                            target.now + timedelta(minutes=15),
                        ),
                    )
                    times.append(time.perf_counter() - t0)
        ordered = sorted(times)
        out = {
            "index_bytes": int(size),
            "live_bookings": int(live),
            "insert_p50_ms": round(statistics.median(ordered) * 1000, 3),
            "insert_p95_ms": round(ordered[int(len(ordered) * 0.95) - 1] * 1000, 3),
        }
        self.say(
            f"  GiST ex_bookings_no_overlap on {world}: {size / 1e6:.1f} MB for {live:,} live "
            f"bookings; INSERT p50 {out['insert_p50_ms']:.2f} ms, p95 {out['insert_p95_ms']:.2f} ms"
        )
        return out

    def _purge(self) -> JSON:
        """Applied events past 30 days, batches of 1,000, for BENCH_PURGE_SECONDS, while
        webhooks arrive on the big API; then the same rows put back."""
        url = self.urls["big"]
        settings = replace(
            Settings.from_env(
                {
                    "DATABASE_URL": url,
                    "REDIS_URL": self.stack.redis_url,
                    "STRIPE_SECRET_KEY": "sk_test_x",
                    "STRIPE_WEBHOOK_SECRET": "whsec_x",
                    "ADMIN_API_TOKEN": "x",
                }
            ),
            retention_budget_seconds=self.purge_seconds,
        )
        engine = create_engine(settings.database_url, pool_size=2)
        sessions = make_session_factory(engine)
        outcome: dict[str, Any] = {}

        def purge() -> None:
            time.sleep(1.0)  # the writers' warm-up
            outcome["events"] = retention.purge_stripe_events(
                sessions, settings, now=datetime.now(UTC)
            )

        events = data.ignorable_events(f"{self.stack.run_id}purge", self.stack.webhook_secret, 8000)
        spec = {
            "mode": "duration",
            "connections": self.connections,
            "warmup": 1.0,
            "duration": self.purge_seconds,
            "port": self.ports["big"],
            "method": "POST",
            "path": "/api/webhooks/stripe",
            "headers": {"Content-Type": "application/json"},
            "bodies_file": self.bench.bodies_file("scale-purge", events),
            "unique": True,
        }
        thread = threading.Thread(target=purge, daemon=True)
        try:
            thread.start()
            writers = self.bench.loadgen("scale_purge_writers", spec, extra_roles=self._api("big"))
            thread.join()
            # Sent mails: the purge alone, for its rate.
            t0 = time.perf_counter()
            mails = retention.purge_notifications(
                sessions, replace(settings, retention_budget_seconds=3.0), now=datetime.now(UTC)
            )
            mails_seconds = time.perf_counter() - t0
        finally:
            engine.dispose()
        purged: retention.Purged = outcome["events"]
        self.say(
            f"  putting back the {purged.deleted:,} events and {mails.deleted:,} e-mails deleted…"
        )
        t0 = time.perf_counter()
        bigdata.refill_events(url, self.big_scale, purged.deleted * 1002 // 1000 + 1000)
        bigdata.refill_notifications(url)
        refill_s = time.perf_counter() - t0
        p95 = writers["latency_ms"]["p95"]
        base = self.result["webhook_p95_big_ms"]
        out = {
            "events_deleted": purged.deleted,
            "events_seconds": purged.seconds,
            "events_rows_per_s": round(purged.deleted / purged.seconds) if purged.seconds else None,
            "batches": purged.batches,
            "mails_deleted": mails.deleted,
            "mails_rows_per_s": round(mails.deleted / mails_seconds) if mails_seconds else None,
            "writers_p95_ms": p95,
            "writers_p95_without_purge_ms": base,
            "writers_p95_ratio": round(p95 / base, 3) if base else None,
            "writers_rps": writers["rps"],
            "writers_not_200": sum(v for k, v in writers["statuses"].items() if k != "200"),
            "refill_s": round(refill_s, 1),
        }
        self.say(
            f"  purge: {out['events_deleted']:,} applied events in {purged.seconds:.1f} s "
            f"({out['events_rows_per_s']:,} rows/s, {purged.batches} batches); webhooks meanwhile "
            f"p95 {p95:.1f} ms vs {base:.1f} ms without ({writers['rps']:.0f} req/s); sent mails "
            f"{out['mails_rows_per_s']:,} rows/s"
        )
        return out


# --- the table and the notes -----------------------------------------------------------


def add_rows(results: JSON, rows: list[report.Row], section: Any) -> None:
    sc = results.get("scale")
    if not sc:
        return
    dbs = sc["databases"]
    section(
        f"scale: {dbs['big'].get('artists'):,} artists / {dbs['small'].get('artists'):,}, same "
        f"per-artist history ({int(dbs['big'].get('bytes') or 0) / 1e9:.1f} GB vs "
        f"{int(dbs['small'].get('bytes') or 0) / 1e6:.0f} MB), p50 big ÷ small"
    )
    Row = report.Row
    for load in LOADS:
        entry = sc["loads"][load]
        ratio = entry["ratio"]
        rows.append(Row(f"{load.replace('_', ' ')} p50, small", entry["small"]["p50_ms"], "ms"))
        rows.append(
            Row(
                f"{load.replace('_', ' ')} p50, big",
                entry["big"]["p50_ms"],
                "ms",
                ratio,
                f"≤ {TARGET_RATIO}× small",
                ratio is not None and ratio <= TARGET_RATIO,
            )
        )
    problems = [p for w in WORLDS for p in sc["plans"][w] if p["problems"]]
    rows.append(
        Row(
            "hot statements off their index (both DBs)",
            len(problems),
            "",
            None,
            "0",
            not problems,
        )
    )
    g = sc["gist"]
    rows.append(Row("GiST ex_bookings_no_overlap, small", g["small"]["index_bytes"] / 1e6, "MB"))
    rows.append(Row("GiST ex_bookings_no_overlap, big", g["big"]["index_bytes"] / 1e6, "MB"))
    ratio = (
        g["big"]["insert_p50_ms"] / g["small"]["insert_p50_ms"]
        if g["small"]["insert_p50_ms"]
        else None
    )
    rows.append(Row("booking INSERT p50, small", g["small"]["insert_p50_ms"], "ms"))
    rows.append(Row("booking INSERT p50, big", g["big"]["insert_p50_ms"], "ms", ratio))
    pu = sc["purge"]
    rows.append(Row("purge applied events (big)", pu["events_rows_per_s"], "rows/s"))
    rows.append(Row("purge sent e-mails (big)", pu["mails_rows_per_s"], "rows/s"))
    rows.append(
        Row(
            "webhook p95 during the purge",
            pu["writers_p95_ms"],
            "ms",
            pu["writers_p95_ratio"],
        )
    )
    # The purge takes row locks it can get (SKIP LOCKED) and no other: a writer is never
    # refused or timed out because of it. (It does take CPU: on a 2-core machine shared
    # with the API and its load, the p95 above shows that cost, not a wait.)
    rows.append(
        Row(
            "webhooks refused during the purge",
            pu["writers_not_200"],
            "req",
            None,
            "0",
            pu["writers_not_200"] == 0,
        )
    )


def note_lines(results: JSON) -> list[str]:
    """EXPLAIN (ANALYZE, BUFFERS) summaries, one line per hot statement and database."""
    sc = results.get("scale")
    if not sc:
        return []
    lines = [
        "",
        "EXPLAIN (ANALYZE, BUFFERS) of the hot statements"
        " (scans; rows thrown away; buffers; time):",
    ]
    pairs = (
        ("availability: bookings in window (before)", "availability: bookings in window"),
        ("availability: leaves in window (before)", "availability: leaves in window"),
        ("outbox sweeper (before)", "outbox sweeper"),
        ("inbox sweeper (before)", "inbox sweeper"),
    )
    lines.append("  before → after this work (rows thrown away, buffers, ms):")
    for world in WORLDS:
        found = {p["name"]: p for p in sc["plans"][world]}
        for before, after in pairs:
            b, a = found[before], found[after]
            lines.append(
                f"    [{world}] {after}: {b['rows_removed']:,} rows, "
                f"{b['buffers_hit'] + b['buffers_read']:,} buffers, {b['ms']} ms → "
                f"{a['rows_removed']:,} rows, {a['buffers_hit'] + a['buffers_read']:,} buffers,"
                f" {a['ms']} ms"
            )
    for world in WORLDS:
        lines.append(f"  [{world}]")
        for p in sc["plans"][world]:
            summary = plans.Summary(
                p["scans"], p["rows_removed"], p["buffers_hit"], p["buffers_read"], p["ms"]
            )
            flag = "  ✗ " + ", ".join(p["problems"]) if p["problems"] else ""
            lines.append(f"    {p['name']}: {summary.line()}{flag}")
    return lines

"""What one request or one event costs, counted rather than timed: CPU milliseconds of
the process that serves it, PostgreSQL round trips (statements, BEGIN, COMMIT/ROLLBACK)
and Redis round trips (a command or a pipeline). These do not change when other work
shares the machine, unlike throughput and latency, so the capacity of two cores can be
derived from them on a loaded machine.

    python -m tests.bench.costs [--n 200] [--profile DIR]   # a table, JSON; cProfile per kind

It runs the API in-process (the Flask app with its real PostgreSQL, Redis, Celery
producer and the Stripe emulator as a separate process: its CPU is not ours), so the
API figures leave out gunicorn's HTTP parsing and threads; `make bench` measures those
per component ("CPU milliseconds per request"). The worker path is the Celery task
bodies as the worker runs them (apply the event, then each mail), plus, measured on a
real `celery worker` process, Celery's own overhead per task.

Also a stage of `make bench` (tests/bench/run.py: `costs`), on the bench's database.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import io
import json
import os
import pstats
import random
import re
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import redis
from redis import connection as redis_connection
from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import Engine

from devtools import commands
from devtools.processes import Child, port_is_open, wait_until
from shared.config import Settings
from tests.bench import data, report

if TYPE_CHECKING:
    from tests.bench.run import Bench

JSON = dict[str, Any]
# Long enough for the production start check (shared.config.check_safe_to_run).
ADMIN_TOKEN = f"costs-admin-{uuid.uuid4().hex}"


@dataclass
class Tally:
    statements: int = 0
    begins: int = 0
    ends: int = 0  # COMMIT or ROLLBACK
    redis: int = 0
    by_statement: Counter[str] = field(default_factory=Counter)

    @property
    def pg_round_trips(self) -> int:
        return self.statements + self.begins + self.ends


def _autocommit(conn: Any) -> bool:
    # Not get_isolation_level(): that asks the server (a round trip of its own).
    return bool(conn.get_execution_options().get("isolation_level") == "AUTOCOMMIT")


class Meter:
    """Counts SQL statements and transactions on `engine` and every Redis command or
    pipeline sent by redis-py in this process (kombu's producer included)."""

    def __init__(self, engine: Engine, profile_dir: Path | None = None) -> None:
        self.tally = Tally()
        self.engine = engine
        self.profile_dir = profile_dir
        self.width = int(os.environ.get("COSTS_SQL_WIDTH", "90"))
        self._sent = redis_connection.AbstractConnection.send_packed_command

        def before(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
            self.tally.statements += 1
            self.tally.by_statement[" ".join(statement.split())[: self.width]] += 1

        def begin(conn: Any) -> None:
            # psycopg sends BEGIN before the first statement of a transaction; an
            # autocommit connection sends none (SQLAlchemy still fires the event).
            if not _autocommit(conn):
                self.tally.begins += 1

        def end(conn: Any) -> None:
            if not _autocommit(conn):
                self.tally.ends += 1

        self._listeners: list[tuple[str, Callable[..., None]]] = [
            ("before_cursor_execute", before),
            ("begin", begin),
            ("commit", end),
            ("rollback", end),
        ]
        for name, fn in self._listeners:
            event.listen(engine, name, fn)
        meter = self

        def send(conn: Any, *args: Any, **kwargs: Any) -> Any:
            meter.tally.redis += 1
            return meter._sent(conn, *args, **kwargs)

        redis_connection.AbstractConnection.send_packed_command = send  # type: ignore[method-assign,assignment]

    def close(self) -> None:
        for name, fn in self._listeners:
            event.remove(self.engine, name, fn)
        redis_connection.AbstractConnection.send_packed_command = self._sent  # type: ignore[method-assign]

    @contextlib.contextmanager
    def measure(self, n: int, out: dict[str, JSON], name: str) -> Iterator[None]:
        self.tally = Tally()
        # CPU time, not wall time: waits on PostgreSQL, Redis and the emulator do not count.
        profiler = cProfile.Profile(time.process_time) if self.profile_dir else None
        cpu, wall = time.process_time(), time.perf_counter()
        if profiler is not None:
            profiler.enable()
        yield
        if profiler is not None:
            profiler.disable()
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        if profiler is not None and self.profile_dir is not None:
            write_profile(profiler, self.profile_dir, name, n)
        t = self.tally
        out[name] = {
            "n": n,
            "cpu_ms": round(cpu * 1000 / n, 3),
            "wall_ms": round(wall * 1000 / n, 3),
            "pg_round_trips": round(t.pg_round_trips / n, 2),
            "pg_statements": round(t.statements / n, 2),
            "pg_transactions": round(t.begins / n, 2),
            "redis_round_trips": round(t.redis / n, 2),
            "statements": {k: round(v / n, 2) for k, v in t.by_statement.most_common(12)},
        }


# Where a function's own CPU time is counted: the first layer whose path fragment its
# file contains (the in-process harness first, so that it is left out of the shares).
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("harness (test client)", ("werkzeug/test.py", "flask/testing.py", "tests/bench/")),
    ("inkflow (shared/, services/)", ("/shared/", "/services/")),
    ("SQLAlchemy", ("/sqlalchemy/",)),
    ("psycopg", ("/psycopg/", "/psycopg_pool/")),
    ("Flask, Werkzeug, Jinja", ("/flask/", "/werkzeug/", "/jinja2/", "/markupsafe/")),
    ("Stripe SDK", ("/stripe/",)),
    ("requests, urllib3, http.client", ("/requests/", "/urllib3/", "http/client.py")),
    ("Celery, kombu", ("/celery/", "/kombu/", "/billiard/", "/vine/")),
    ("redis-py", ("/redis/",)),
    ("pydantic", ("/pydantic/", "/pydantic_core/")),
    ("e-mail: email package, icalendar", ("/email/", "/icalendar/")),
    ("prometheus_client", ("/prometheus_client/",)),
    ("json", ("/json/",)),
)
OTHER_LAYER = "standard library, C built-ins (socket I/O, isinstance…)"


def layer_shares(stats: pstats.Stats) -> dict[str, float]:
    """Per layer, its share of the profiled CPU time (own time of its functions, and of
    the C built-ins they call: a socket's recv is the library's that calls it; the
    harness left out), largest first."""

    def layer_of(filename: str) -> str:
        found = (name for name, parts in LAYERS if any(p in filename for p in parts))
        return next(found, OTHER_LAYER)

    totals: Counter[str] = Counter()
    for (filename, _, _), row in stats.stats.items():  # type: ignore[attr-defined]
        own, callers = row[2], row[4]
        if filename == "~" and callers:  # a built-in: split by who called it
            for (caller_file, _, _), edge in callers.items():
                totals[layer_of(caller_file)] += edge[2]
        else:
            totals[layer_of(filename)] += own
    del totals["harness (test client)"]
    whole = sum(totals.values()) or 1.0
    return {name: round(t / whole, 3) for name, t in totals.most_common()}


def write_profile(profiler: cProfile.Profile, directory: Path, name: str, n: int) -> None:
    """`<name>.prof` (pstats: snakeviz, `python -m pstats`), `<name>.txt` (the functions
    with the most cumulative and own time) and `<name>.layers.json` (the CPU shares by
    library, `layer_shares`). A profiled request runs ~2× slower than the table's: read
    the profiles as shares, not as costs."""
    directory.mkdir(parents=True, exist_ok=True)
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    profiler.dump_stats(directory / f"{slug}.prof")
    text_out = io.StringIO()
    stats = pstats.Stats(profiler, stream=text_out)
    text_out.write(f"{name}: {n} requests; times below are totals over all of them\n")
    stats.sort_stats("cumulative").print_stats(60)
    stats.sort_stats("tottime").print_stats(30)
    (directory / f"{slug}.txt").write_text(text_out.getvalue())
    shares = layer_shares(stats)
    (directory / f"{slug}.layers.json").write_text(json.dumps(shares, indent=1) + "\n")


def _app_env(database_url: str, redis_url: str, stripe_url: str, queue: str) -> dict[str, str]:
    """The settings of the measured app and worker, as their environment."""
    return {
        "DATABASE_URL": database_url.replace("postgresql://", "postgresql+psycopg://", 1),
        "REDIS_URL": redis_url,
        "STRIPE_SECRET_KEY": "sk_test_inkflow_costs",
        "STRIPE_WEBHOOK_SECRET": "whsec_costs",
        "STRIPE_API_BASE": stripe_url,
        "ADMIN_API_TOKEN": ADMIN_TOKEN,
        "WEB_SECRET_KEY": f"costs-web-secret-{ADMIN_TOKEN}",
        "CELERY_QUEUE": queue,
        "LOG_LEVEL": "WARNING",
    }


def _app_settings(database_url: str, redis_url: str, stripe_url: str, queue: str) -> Settings:
    return Settings.from_env(_app_env(database_url, redis_url, stripe_url, queue))


def measure_api_and_tasks(
    database_url: str,
    redis_url: str,
    stripe_url: str,
    n: int,
    say: Callable[[str], None],
    profile_dir: Path | None = None,
) -> JSON:
    """Per-request and per-event costs on a migrated database (its own artists)."""
    from services.api.app import create_app
    from services.api.state import EXTENSION_KEY, ApiState
    from services.worker.tasks import Runtime
    from shared.adapters.locks import slot_lock_key
    from shared.usecases import notifications, stripe_events

    run_id = uuid.uuid4().hex[:8]
    queue = f"inkflow-costs-{run_id}"
    settings = _app_settings(database_url, redis_url, stripe_url, queue)
    app = create_app(settings)
    state: ApiState = app.extensions[EXTENSION_KEY]
    client = app.test_client()
    engine = state.resources.engine
    plain = create_engine(settings.database_url)
    fixture = data.seed_booking_artists(plain, run_id)
    calendar = data.seed_availability(plain, run_id, random.Random(20261124))
    rt = Runtime(settings, resources=state.resources)
    meter = Meter(engine, profile_dir)
    out: dict[str, JSON] = {}
    rdb = redis.Redis.from_url(redis_url)
    lock_keys: list[str] = []
    try:
        bodies = [json.loads(b["body"]) for b in data.booking_bodies(fixture, 3 * n + 20)]
        warm, winners, later = bodies[:20], bodies[20 : 20 + n], bodies[20 + n : 20 + 2 * n]

        def post(path: str, body: Any, status: int, headers: dict[str, str] | None = None) -> Any:
            kwargs: dict[str, Any] = {"headers": headers or {}}
            if isinstance(body, str):
                kwargs["data"] = body
                kwargs["content_type"] = "application/json"
            else:
                kwargs["json"] = body
            response = client.post(path, **kwargs)
            if response.status_code != status:
                raise RuntimeError(f"{path}: {response.status_code} {response.get_data()[:300]!r}")
            return response

        for body in warm:
            post("/api/bookings/create", body, 201)
        for _ in range(20):
            client.get("/healthz")
        with meter.measure(n, out, "GET /healthz"):
            for _ in range(n):
                client.get("/healthz")
        # The bench's availability request (31 days × 30 min); after the first, a hit of
        # the per-process cache as under load.
        post("/api/availability", calendar.body(), 200)
        with meter.measure(n, out, "availability, 31 days (cached)"):
            for _ in range(n):
                post("/api/availability", calendar.body(), 200)
        created: list[str] = []
        with meter.measure(n, out, "booking create: winner (201)"):
            for body in winners:
                created.append(post("/api/bookings/create", body, 201).get_json()["booking"]["id"])
        with meter.measure(n, out, "booking create: loser, lock held (SLOT_TAKEN)"):
            for body in later:
                key = slot_lock_key(
                    uuid.UUID(body["artistId"]), datetime.fromisoformat(body["startTime"])
                )
                rdb.set(key, b"someone", px=60_000)
                lock_keys.append(key)
                post("/api/bookings/create", body, 409)
        rdb.delete(*lock_keys)
        with meter.measure(n, out, "booking create: loser after the winner committed"):
            for body in winners:
                post("/api/bookings/create", body, 409)
        # Payments: the emulator succeeds each intent and makes its event.
        with state.resources.engine.connect() as conn:
            rows = conn.execute(
                text(
                    "SELECT id::text, payment_intent_id FROM bookings"
                    " WHERE id = ANY(CAST(:ids AS uuid[])) ORDER BY start_time"
                ),
                {"ids": created},
            ).all()
        intents = [r[1] for r in rows]
        import urllib.request

        def emulator(path: str, body: JSON) -> Any:
            request = urllib.request.Request(  # noqa: S310 - the local emulator
                f"{stripe_url}{path}", json.dumps(body).encode(),
                {"Content-Type": "application/json"}, "POST",
            )  # fmt: skip
            with urllib.request.urlopen(request, timeout=30) as resp:  # noqa: S310
                return json.loads(resp.read())

        events = []
        for intent in intents:
            emulator(f"/_emulator/payment_intents/{intent}/succeed", {})
            ev = emulator(
                "/_emulator/events", {"type": "payment_intent.succeeded", "payment_intent": intent}
            )
            events.append(data.signed(ev, settings.stripe_webhook_secret))
        with meter.measure(n, out, "webhook receive (payment_intent.succeeded)"):
            for ev in events:
                post("/api/webhooks/stripe", ev["body"], 200, ev["headers"])
        event_ids = [json.loads(ev["body"])["id"] for ev in events]
        mails: list[uuid.UUID] = []
        with meter.measure(n, out, "worker: apply_event (→ CONFIRMED), then its effects"):
            for event_id in event_ids:
                outcome = stripe_events.apply_event(
                    rt.resources, event_id, now=rt.clock(), stripe=rt.gateway
                )
                mails += outcome.effects.mails
                rt.effects.run(replace(outcome.effects, mails=()))
        per_event = len(mails) / n
        with meter.measure(len(mails), out, "worker: send_notification (console mail)"):
            for mail in mails:
                notifications.send_notification(rt.resources, mail)
        out["worker: send_notification (console mail)"]["per_event"] = per_event
        say(f"  {per_event:g} mails per confirmed booking")
    finally:
        meter.close()
        rdb.delete(queue, f"_kombu.binding.{queue}")
        if lock_keys:
            rdb.delete(*lock_keys)
        rdb.close()
        state.close()
        plain.dispose()
    return out


def celery_overhead(
    database_url: str, redis_url: str, stripe_url: str, tasks: int, pool: str, concurrency: int
) -> JSON:
    """CPU of a real `celery worker` process tree per task for a task that does nothing
    (an unknown refund id: one SELECT), so that what remains is Celery's own cost."""
    from shared.adapters.queue import CeleryQueue
    from shared.tasks import PROCESS_REFUND

    run_id = uuid.uuid4().hex[:8]
    queue = f"inkflow-costs-{run_id}"
    settings = _app_settings(database_url, redis_url, stripe_url, queue)
    env = {**os.environ, **_app_env(database_url, redis_url, stripe_url, queue)}
    worker = Child(
        "costs-worker",
        commands.celery(
            "worker", "-Q", queue, "-n", f"costs-{run_id}@%h", f"--pool={pool}",
            f"--concurrency={concurrency}", "--without-mingle", "--without-gossip",
            "--without-heartbeat", "--loglevel=WARNING",
        ),
        env=env,
        new_session=True,
    )  # fmt: skip
    producer = CeleryQueue(settings)
    rdb = redis.Redis.from_url(redis_url)
    try:
        for _ in range(20):
            producer.enqueue(PROCESS_REFUND, str(uuid.uuid4()))
        if not wait_until(lambda: rdb.llen(queue) == 0, 60, 0.05):
            raise RuntimeError("the worker did not start")
        time.sleep(1.0)
        family = worker.family()

        def cpu() -> float:
            return sum(sum(p.cpu_times()[:2]) for p in family)

        before = cpu()
        began = time.perf_counter()
        for _ in range(tasks):
            producer.enqueue(PROCESS_REFUND, str(uuid.uuid4()))
        wait_until(lambda: rdb.llen(queue) == 0, 120, 0.01)
        time.sleep(0.5)  # the last tasks finish (acks late)
        used = cpu() - before
        return {
            "pool": f"{pool} × {concurrency}",
            "tasks": tasks,
            "cpu_ms_per_task": round(used * 1000 / tasks, 3),
            "seconds": round(time.perf_counter() - began, 2),
        }
    finally:
        producer.close()
        worker.stop()
        rdb.delete(queue, f"_kombu.binding.{queue}")
        rdb.close()


CORES = 2
WORKER_POOL = ("prefork", 8)
WINNER = "booking create: winner (201)"
LOSER_LOCKED = "booking create: loser, lock held (SLOT_TAKEN)"
LOSER_LATE = "booking create: loser after the winner committed"
RECEIVE = "webhook receive (payment_intent.succeeded)"
APPLY = "worker: apply_event (→ CONFIRMED), then its effects"
MAIL = "worker: send_notification (console mail)"


def derive(
    costs: JSON,
    celery_ms: float,
    http_ms: float,
    loadgen_ms: float,
    *,
    contention_ms: float | None = None,
) -> JSON:
    """What two cores allow by CPU alone (PostgreSQL's and Redis's own CPU not counted:
    `make bench` shows them per stage). `http_ms`: gunicorn's share of a request beyond
    the app (the baseline's API CPU per request minus the in-process GET /healthz),
    `loadgen_ms`: the generator's CPU per request on a new connection; `contention_ms`:
    all components' CPU per request as the bench's contention stage measured it (each on
    a new connection, which the in-process figures leave out), preferred when given."""
    budget = CORES * 1000.0

    def cpu(name: str) -> float:
        return float(costs[name]["cpu_ms"])

    mails = float(costs[MAIL].get("per_event", 2))
    confirm = cpu(RECEIVE) + http_ms + celery_ms + cpu(APPLY)
    with_mails = confirm + mails * (celery_ms + cpu(MAIL))
    loser = min(cpu(LOSER_LOCKED), cpu(LOSER_LATE)) + http_ms + loadgen_ms
    if contention_ms:
        loser = contention_ms
    return {
        "http_ms": round(http_ms, 3),
        "celery_ms_per_task": round(celery_ms, 3),
        "loadgen_ms": round(loadgen_ms, 3),
        "confirm_cpu_ms_per_event": round(confirm, 2),
        "confirm_events_per_s": round(budget / confirm, 1),
        "with_mails_cpu_ms_per_event": round(with_mails, 2),
        "with_mails_events_per_s": round(budget / with_mails, 1),
        "winner_cpu_ms": round(cpu(WINNER) + http_ms, 2),
        "bookings_per_s": round(budget / (cpu(WINNER) + http_ms + loadgen_ms), 1),
        "loser_cpu_ms": round(loser, 3),
        "contention_2000_min_s": round(2000 * loser / budget, 2),
    }


def stage_costs(bench: Bench) -> None:
    """`make bench` stage: the costs on the bench's own database, Redis and emulator."""
    from tests.bench.stack import HarnessError

    s = bench.stack
    with bench.stage("costs", "CPU ms and round trips per request and per event"):
        try:
            costs = measure_api_and_tasks(s.database_url, s.redis_url, s.stripe_url, 150, bench.say)
            celery = celery_overhead(s.database_url, s.redis_url, s.stripe_url, 300, *WORKER_POOL)
        except RuntimeError as exc:
            raise HarnessError(f"cost stage: {exc}") from exc
        for line in render(costs).splitlines():
            bench.say(f"  {line}")
        base = bench.results.get("baseline", {}).get("cpu_ms_per_request", {}).get("api")
        http_ms = max(float(base) - costs["GET /healthz"]["cpu_ms"], 0.0) if base else 0.0
        ceiling = bench.results.get("loadgen_ceiling", {}).get("close", {})
        loadgen_ms = float(ceiling.get("loadgen_cpu_us_per_request", 0.0)) / 1000
        measured = bench.results.get("contention", {}).get("cpu_ms_per_request") or {}
        contention_ms = sum(float(v) for v in measured.values()) or None
        derived = derive(
            costs, celery["cpu_ms_per_task"], http_ms, loadgen_ms, contention_ms=contention_ms
        )
        bench.say(
            f"  Celery {celery['pool']}: {celery['cpu_ms_per_task']} CPU ms per task; "
            f"gunicorn beyond the app {http_ms:.2f} ms; derived: {derived}"
        )
        bench.results["costs"] = {
            "per_request": costs,
            "celery": celery,
            "derived": derived,
            "loadavg": os.getloadavg(),
        }


def sections(results: JSON) -> list[tuple[str, list[report.Row]]]:
    c = results.get("costs")
    if not c:
        return []
    Row = report.Row
    rows: list[report.Row] = []
    for name, r in c["per_request"].items():
        rows.append(Row(f"{name}: CPU", r["cpu_ms"], "ms"))
        rows.append(
            Row(
                f"{name}: round trips",
                r["pg_round_trips"] + r["redis_round_trips"],
                f"PG {r['pg_round_trips']:g} + Redis {r['redis_round_trips']:g}",
            )
        )
    d = c["derived"]
    rows += [
        Row("Celery's own CPU per task", c["celery"]["cpu_ms_per_task"], "ms"),
        Row("gunicorn's CPU per request beyond the app", d["http_ms"], "ms"),
        Row(
            "webhook → CONFIRMED: CPU per event (receive, task, apply)",
            d["confirm_cpu_ms_per_event"],
            "ms",
        ),
        Row(
            f"  → events/s {CORES} cores allow (CPU only)",
            d["confirm_events_per_s"],
            "events/s",
            target="200/s asked",
        ),
        Row("  the same with its 2 e-mails", d["with_mails_events_per_s"], "events/s"),
        Row("booking create: CPU per booking (app, gunicorn, generator)", d["winner_cpu_ms"], "ms"),
        Row(f"  → bookings/s {CORES} cores allow (CPU only)", d["bookings_per_s"], "req/s"),
        Row("contention: CPU per answer, all components", d["loser_cpu_ms"], "ms"),
        Row(
            f"  → 2,000 answers need at least ({CORES} cores)",
            d["contention_2000_min_s"] * 1000,
            "ms",
            target="≤ 1,000 ms asked",
        ),
    ]
    la = c["loadavg"][0]
    return [(f"costs per request and per event (load average {la:.1f} while measured)", rows)]


def render(costs: JSON) -> str:
    lines = [f"{'':58} {'CPU ms':>7} {'PG rt':>6} {'stmts':>6} {'tx':>4} {'Redis':>6}"]
    for name, c in costs.items():
        if "cpu_ms" not in c:
            continue
        lines.append(
            f"{name:58} {c['cpu_ms']:7.2f} {c['pg_round_trips']:6.1f} "
            f"{c['pg_statements']:6.1f} {c['pg_transactions']:4.1f} {c['redis_round_trips']:6.1f}"
        )
    return "\n".join(lines)


def render_layers(directory: Path) -> str:
    """The CPU shares by library of each profiled request kind, as a table."""
    lines = [f"CPU shares by library (cProfile, {directory}):"]
    for path in sorted(directory.glob("*.layers.json")):
        shares = json.loads(path.read_text())
        top = ", ".join(f"{name} {share:.0%}" for name, share in list(shares.items())[:6])
        lines.append(f"  {path.name.removesuffix('.layers.json')}: {top}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from tests import support
    from tests.bench.stack import DEFAULT_REDIS_URL

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--tasks", type=int, default=400)
    parser.add_argument("--out", default="")
    parser.add_argument("--statements", action="store_true")
    parser.add_argument(
        "--profile",
        default="",
        metavar="DIR",
        help="cProfile each measured request kind into DIR (.prof and a .txt summary)",
    )
    args = parser.parse_args(argv)
    say = print
    say(f"load average {os.getloadavg()}")
    database_url = support.libpq_url(support.create_database())
    redis_url = os.environ.get("BENCH_REDIS_URL", DEFAULT_REDIS_URL)
    port = support.free_port()
    stripe = Child("stripe", commands.stripe_emulator(port), env=dict(os.environ), new_session=True)
    try:
        stripe.wait_ready(lambda: port_is_open(port), 30, "listen")
        stripe_url = f"http://127.0.0.1:{port}"
        profile_dir = Path(args.profile) if args.profile else None
        costs = measure_api_and_tasks(database_url, redis_url, stripe_url, args.n, say, profile_dir)
        say(render(costs))
        if profile_dir is not None:
            say(render_layers(profile_dir))
        if args.statements:
            for name, c in costs.items():
                say(f"\n{name}:")
                for statement, k in c["statements"].items():
                    say(f"  {k:5.2f}  {statement}")
        celery = [
            celery_overhead(database_url, redis_url, stripe_url, args.tasks, "prefork", 8),
            celery_overhead(database_url, redis_url, stripe_url, args.tasks, "threads", 8),
        ]
        for c in celery:
            say(f"celery {c['pool']}: {c['cpu_ms_per_task']} CPU ms per (empty) task")
        derived = derive(costs, celery[0]["cpu_ms_per_task"], 0.0, 0.0)
        say(f"derived (gunicorn and the generator not counted): {derived}")
        say(f"load average {os.getloadavg()}")
        if args.out:
            with open(args.out, "w") as fh:
                json.dump({"costs": costs, "celery": celery, "derived": derived}, fh, indent=1)
    finally:
        stripe.stop()
        support.drop_database(database_url)
    return 0


if __name__ == "__main__":
    sys.exit(main())

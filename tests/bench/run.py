"""The bench: stages, targets, table and JSON. Entry point of `python -m tests.bench`.

Stages, on one stack, in this order (each load stage: warm-up, then a fixed duration,
`connections` concurrent clients from the separate load-generator process):

 1. loadgen ceiling   the generator against a trivial server (what it can drive at most)
 2. baseline          GET /healthz on the same gunicorn (no database, Redis or Stripe)
 3. availability      31 days × 30 min slots, 300 bookings, 20 leaves; then 1 connection
                      (unloaded latency) and the naive per-slot reference (speed-up,
                      and the same answer for every slot)
 4. booking create    distinct free slots, Stripe emulator included
 5. contention        2,000 requests for one slot, released together
 6. webhook→CONFIRMED payment_intent.succeeded events at a steady pace (open loop), the
                      worker the README recommends
 7. webhook receive   distinct signed events (verify, store, enqueue)
 8. costs            CPU ms and PostgreSQL/Redis round trips per request and per event
                      (tests/bench/costs.py), and the capacity of two cores they imply
 9. raw ceilings      PostgreSQL single-row insert transactions, Redis SET NX PX
10. scale             when `make bench-data` built inkflow_bench_big: the same requests on
                      a small and the big database, EXPLAIN of the hot statements, GiST
                      figures, a retention purge under webhook load (tests/bench/scale.py)

Settings (environment): WEB_CONCURRENCY (4), GUNICORN_THREADS (32), BENCH_CONNECTIONS
(workers × GUNICORN_WORKER_CONNECTIONS), BENCH_WARMUP (2 s), BENCH_DURATION (8 s),
BENCH_WEBHOOK_EVENTS (1,000), BENCH_WEBHOOK_RATE (200/s), BENCH_CONTENTION (2,000),
BENCH_WORKER_POOL (prefork), BENCH_WORKER_CONCURRENCY (8), BENCH_DATABASE_URL,
BENCH_REDIS_URL, BENCH_OUT (var/bench), BENCH_PROFILE (1: py-spy profiles), BENCH_BIG
(auto | 1 | 0: the scale stage), BENCH_SCALE_ROUNDS (3), BENCH_SCALE_CONNECTIONS (4),
BENCH_PURGE_SECONDS (10).

Exit status: 0 when the bench ran (missed targets are reported, not fatal), 2 when the
harness itself failed, 130 when interrupted. Everything started is stopped and the
database and Redis keys are removed in every case.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import random
import shutil
import statistics
import sys
import threading
import time
import traceback
import urllib.request
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import psycopg
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine

from devtools.processes import Child, ChildError, port_is_open
from tests.bench import costs, data, latency, naive, report, scale, scaleout
from tests.bench.ceilings import postgres_inserts, redis_set_nx_px
from tests.bench.cpu import CpuMeter
from tests.bench.profiling import FOCUS, Profile, py_spy
from tests.bench.stack import (
    LOADGEN_CMD,
    BenchSettings,
    HarnessError,
    Interrupted,
    Stack,
    install_signal_handlers,
    spawn,
)
from tests.support import free_port, wait_until

JSON = dict[str, Any]
TARGETS = {
    "availability_vs_baseline": 0.40,
    "availability_speedup": 20.0,
    "booking_vs_baseline": 0.15,
    "webhook_vs_baseline": 0.40,
    "webhook_confirmed_p95_ms": 25.0,
    "contention_winners": 1,
    "contention_all_answered_ms": 1000.0,
}
NAIVE_REPEAT = 5
CONFIRM_POLL_SECONDS = 0.002
# Bookings the poller asks about at once: the oldest not yet seen CONFIRMED (events are
# sent in order, so at 200/s these cover the last ~300 ms; asking about all of them
# every 2 ms would load PostgreSQL more than the worker does).
CONFIRM_POLL_WINDOW = 64


def _healthz_touches_nothing() -> bool:
    """GET /healthz answers {"status": "ok"} from an app whose database and Redis do
    not exist: the baseline endpoint does no I/O of its own."""
    from services.api.app import create_app
    from shared.config import Settings as AppSettings

    app = create_app(
        AppSettings(
            database_url="postgresql+psycopg://nobody@127.0.0.1:9/none",
            redis_url="redis://127.0.0.1:9/0",
            celery_broker_url="redis://127.0.0.1:9/0",
            stripe_secret_key="sk_test_x",
            stripe_webhook_secret="whsec_x",
            admin_api_token="x" * 32,
            web_secret_key="w" * 32,
            log_level="WARNING",
        )
    )
    response = app.test_client().get("/healthz")
    return response.status_code == 200 and response.get_json() == {"status": "ok"}


class Bench:
    def __init__(self, settings: BenchSettings) -> None:
        self.settings = settings
        self.began = time.perf_counter()
        self.started_at = datetime.now(UTC)
        self.stack = Stack(settings, self.say)
        self.results: JSON = {}
        self.cpu_by_stage: dict[str, dict[str, float]] = {}
        self.cpu_ms_by_stage: dict[str, dict[str, float]] = {}
        self.meter = CpuMeter(self.stack.pids)
        self.engine: Engine | None = None
        self.profiles: dict[str, str] = {}
        self.profile_dir = settings.out_dir.absolute() / "profiles" / self.stack.run_id
        self.py_spy = py_spy() if settings.profile else None

    # -- output

    def say(self, text: str) -> None:
        elapsed = time.perf_counter() - self.began
        # Never raise (stdout may be a closed pipe, e.g. `| head`): clean-up must go on.
        with contextlib.suppress(OSError, ValueError):
            for line in text.splitlines() or [""]:
                print(f"[{elapsed:6.1f}s] {line}", flush=True)

    @contextmanager
    def stage(self, name: str, title: str) -> Iterator[None]:
        began = time.perf_counter()
        self.say(f"▶ {name}: {title}")
        yield
        self.stack.check_alive()
        self.say(f"  {name} done in {time.perf_counter() - began:.1f} s")

    # -- the load generator

    def loadgen(
        self,
        name: str,
        spec: JSON,
        *,
        profile: str | None = None,
        extra_roles: dict[str, list[int]] | None = None,
    ) -> JSON:
        """Run the load generator on `spec` (a separate process); relay its progress;
        returns its result with the CPU cores each component used meanwhile."""
        spec = {"host": "127.0.0.1", "port": self.stack.api_port, "label": name, **spec}
        spec_path = self.stack.log_dir / f"loadgen-{name}.json"
        spec_path.write_text(json.dumps(spec))
        out_path = spec_path.with_suffix(".result.json")
        out_path.unlink(missing_ok=True)
        before = self.meter.snapshot(extra_roles)
        # Its progress lines (stderr) are relayed as they come; the result goes to out_path.
        generator = Child(
            f"loadgen-{name}",
            [*LOADGEN_CMD, str(spec_path), "--out", str(out_path)],
            env=os.environ,
            on_line=lambda line: self.say(f"  {line}"),
            new_session=True,
        )
        profiler = self._start_profile(name, profile, spec)
        try:
            status = generator.wait()
        except BaseException:
            generator.stop(hurry=True)
            if profiler is not None:
                profiler.proc.kill()
            raise
        generator.close()
        after = self.meter.snapshot(extra_roles)
        if status != 0:
            raise HarnessError(f"load generator failed on {name} (status {status})")
        result: JSON = json.loads(out_path.read_text())
        used, wall = CpuMeter.seconds(before, after)
        # The generator exited before `after`: its own figure replaces what "other" got.
        own = float(result.get("cpu_seconds", 0.0))
        used["other"] = max(used["other"] - own, 0.0)
        used["loadgen"] = own
        cores = {role: round(sec / wall, 2) for role, sec in sorted(used.items())}
        done = max(int(result.get("completed_total", 0)), 1)
        per_request = {
            role: round(sec * 1000 / done, 3)
            for role, sec in sorted(used.items())
            if role not in ("other", "steal", "machine", "bench")
        }
        result["cpu_cores"] = cores
        result["cpu_ms_per_request"] = per_request
        self.cpu_by_stage[name] = cores
        self.cpu_ms_by_stage[name] = per_request
        if profiler is not None:
            problem = profiler.finish()
            self.profiles[name] = problem or str(profiler.out.with_suffix(".summary.txt"))
        return result

    def _start_profile(self, name: str, target: str | None, spec: JSON) -> Profile | None:
        if target is None or not self.settings.profile:
            return None
        if self.py_spy is None:
            if not self.profiles:
                self.say("  BENCH_PROFILE: py-spy not found (pip install py-spy): no profiles")
            self.profiles.setdefault("_", "py-spy not installed")
            return None
        self.profile_dir.mkdir(parents=True, exist_ok=True)
        seconds = float(spec.get("warmup", 0)) + float(spec.get("duration", 0))
        if spec.get("mode") == "paced":
            seconds = len(self._bodies(spec)) / float(spec.get("rate", 20)) + 2
        if spec.get("mode") == "burst":
            seconds = 5
        pid = self.stack.children[target].pid
        out = self.profile_dir / f"{name}.txt"
        return Profile(self.py_spy, pid, seconds, out, focus=FOCUS.get(target))

    @staticmethod
    def _bodies(spec: JSON) -> list[Any]:
        with open(spec["bodies_file"]) as fh:
            bodies: list[Any] = json.load(fh)
        return bodies

    def bodies_file(self, name: str, bodies: list[JSON]) -> str:
        path = self.stack.log_dir / f"bodies-{name}.json"
        path.write_text(json.dumps(bodies))
        return str(path)

    def load_spec(self, **extra: Any) -> JSON:
        s = self.settings
        return {
            "mode": "duration",
            "connections": s.connections,
            "warmup": s.warmup,
            "duration": s.duration,
            **extra,
        }

    # -- helpers

    def post(self, url: str, body: JSON | str, headers: dict[str, str] | None = None) -> Any:
        raw = body if isinstance(body, str) else json.dumps(body)
        request = urllib.request.Request(  # noqa: S310 - our own http:// servers
            url, raw.encode(), {"Content-Type": "application/json", **(headers or {})}, "POST"
        )
        with urllib.request.urlopen(request, timeout=30) as resp:  # noqa: S310
            return json.loads(resp.read() or b"null")

    def sql(self, query: str, **params: Any) -> list[Any]:
        assert self.engine is not None
        with self.engine.begin() as conn:
            return list(conn.execute(text(query), params))

    # -- the run

    def run(self) -> JSON:
        s = self.settings
        self.say(
            f"inkflow bench: gunicorn {s.web_concurrency} workers × {s.threads} thread(s) "
            f"(services/api/gunicorn_conf.py, as the README recommends), "
            f"{s.connections} connections, "
            f"{s.warmup:g} s warm-up + {s.duration:g} s per load stage"
        )
        with self.stage("check", "GET /healthz needs no database, Redis or broker"):
            ok = _healthz_touches_nothing()
            self.results["healthz_touches_nothing"] = ok
            if not ok:
                raise HarnessError("GET /healthz is not a trivial endpoint: no baseline")
        with self.stage("setup", "database, Stripe emulator, gunicorn, Celery worker"):
            self.stack.start()
            self.meter.database = self.stack.database_name
            self.engine = create_engine(
                self.stack.database_url.replace("postgresql://", "postgresql+psycopg://", 1)
            )
            self.say(
                f"  PostgreSQL: {self.stack.postgres_mode} ({self.stack.database_name}), "
                f"Redis: {self.stack.redis_mode}, API {self.stack.api_url}, "
                f"Stripe emulator {self.stack.stripe_url}, queue {self.stack.queue}"
            )
            rng = random.Random(20261124)
            self.availability = data.seed_availability(self.engine, self.stack.run_id, rng)
            self.bookings = data.seed_booking_artists(self.engine, self.stack.run_id)
            self.stack.artist_ids = [self.availability.artist_id, *self.bookings.artist_ids]
            self._wait_worker()
        self.stage_ceiling()
        self.stage_baseline()
        self.stage_availability()
        self.stage_booking_create()
        latency.stage_stripe_latency(self)
        self.stage_contention()
        self.stage_webhook_confirmed()
        self.stage_webhook_receive()
        latency.stage_worker_stripe(self)
        scaleout.stage_scaleout(self)
        costs.stage_costs(self)
        self.stage_raw_ceilings()
        scaled = scale.ScaleStage(self).run()
        if scaled is not None:
            self.results["scale"] = scaled
        return self.results

    def _wait_worker(self) -> None:
        """The worker consumes our queue: one ignorable event goes all the way."""
        event = data.ignorable_events(self.stack.run_id + "probe", self.stack.webhook_secret, 1)
        self.post(
            f"{self.stack.api_url}/api/webhooks/stripe", event[0]["body"], event[0]["headers"]
        )
        event_id = json.loads(event[0]["body"])["id"]

        def applied() -> bool:
            rows = self.sql("SELECT status FROM stripe_events WHERE id = :id", id=event_id)
            return bool(rows) and rows[0][0] == "IGNORED"

        if not wait_until(applied, 60, 0.1):
            self.stack.check_alive()
            raise HarnessError(
                "the Celery worker did not apply a probe event within 60 s:\n"
                + self.stack.children["worker"].output(3000)
            )

    def stage_ceiling(self) -> None:
        with self.stage("loadgen_ceiling", "the generator against a trivial asyncio server"):
            out: JSON = {}
            for mode, flag in (("close", ["--close"]), ("keepalive", [])):
                port = free_port()
                server = spawn(
                    f"trivial-{mode}",
                    [*LOADGEN_CMD, "--serve", str(port), *flag],
                    dict(os.environ),
                    self.stack.log_dir,
                )
                try:
                    try:
                        server.wait_ready(functools.partial(port_is_open, port), 10, "listen")
                    except ChildError as exc:
                        raise HarnessError(str(exc)) from exc
                    spec = self.load_spec(path="/healthz", warmup=1.0, duration=3.0, port=port)
                    result = self.loadgen(
                        f"ceiling_{mode}", spec, extra_roles={"api": [server.pid]}
                    )
                finally:
                    server.stop()
                per_request = result["cpu_seconds"] / max(result["completed_total"], 1)
                result["loadgen_cpu_us_per_request"] = round(per_request * 1e6, 1)
                out[mode] = result
            self.results["loadgen_ceiling"] = out

    def stage_baseline(self) -> None:
        with self.stage("baseline", "GET /healthz, same gunicorn configuration"):
            result = self.loadgen("baseline", self.load_spec(path="/healthz"), profile="api")
            self._check_ok("baseline", result)
            self.results["baseline"] = result

    def stage_availability(self) -> None:
        fx = self.availability
        url = f"{self.stack.api_url}/api/availability"
        with self.stage(
            "availability",
            f"{data.AVAILABILITY_DAYS} days × {fx.step_min} min slots, {fx.bookings} bookings, "
            f"{fx.leaves} leaves",
        ):
            api = self.post(url, fx.body())
            api_slots = [(s["startTime"], s["available"]) for s in api["slots"]]
            naive_answer, naive_times = naive.time_naive(
                self.stack.database_url,
                fx.artist_id,
                fx.start,
                fx.end,
                fx.duration_min,
                fx.step_min,
                NAIVE_REPEAT,
            )
            expected = [
                (moment.strftime("%Y-%m-%dT%H:%M:%S.000Z"), free) for moment, free in naive_answer
            ]
            mismatches = _mismatches(api_slots, expected)
            self.say(
                f"  API answer: {len(api_slots)} slots, {sum(f for _, f in api_slots)} free; "
                f"naive: {len(expected)} slots, {len(mismatches)} mismatches; naive "
                f"{statistics.median(naive_times) * 1000:.1f} ms per answer"
            )
            spec = self.load_spec(
                method="POST",
                path="/api/availability",
                headers={"Content-Type": "application/json"},
                body=fx.body(),
            )
            loaded = self.loadgen("availability", spec, profile="api")
            self._check_ok("availability", loaded)
            single = self.loadgen(
                "availability_1conn", {**spec, "connections": 1, "warmup": 0.5, "duration": 3.0}
            )
            self.results["availability"] = {
                "load": loaded,
                "one_connection": single,
                "slots": len(api_slots),
                "free_slots": sum(f for _, f in api_slots),
                "naive_seconds": [round(t, 5) for t in naive_times],
                "naive_median_s": round(statistics.median(naive_times), 5),
                "naive_queries_per_answer": len(expected) + 2,
                "mismatches": len(mismatches),
                "mismatch_examples": mismatches[:5],
            }

    def stage_booking_create(self) -> None:
        with self.stage("booking_create", "distinct free slots, Stripe emulator included"):
            count = self._pool_size(0.6)
            bodies = data.booking_bodies(self.bookings, count)
            spec = self.load_spec(
                method="POST",
                path="/api/bookings/create",
                headers={"Content-Type": "application/json"},
                bodies_file=self.bodies_file("booking", bodies),
                unique=True,
                expect=201,
            )
            self.say(f"  {len(bodies):,} distinct slots over {len(self.bookings.artists)} artists")
            result = self.loadgen("booking_create", spec, profile="api")
            self._check_ok("booking_create", result, expect="201")
            artists = [a for a, _ in self.bookings.artists]
            rows = self.sql(
                "SELECT count(*), count(payment_intent_id) FROM bookings"
                " WHERE artist_id = ANY(CAST(:ids AS uuid[])) AND status = 'PENDING_PAYMENT'",
                ids=artists,
            )
            result["created_in_db"], result["with_intent_in_db"] = rows[0]
            result["pool"] = len(bodies)
            self.results["booking_create"] = result

    def stage_contention(self) -> None:
        n = self.settings.contention
        with self.stage("contention", f"{n} simultaneous requests for one slot"):
            bodies, start = data.contention_bodies(self.bookings, n)
            spec = {
                "mode": "burst",
                "method": "POST",
                "path": "/api/bookings/create",
                "headers": {"Content-Type": "application/json"},
                "bodies_file": self.bodies_file("contention", bodies),
                "expect": 201,
            }
            result = self.loadgen("contention", spec, profile="api")
            codes: Counter[str] = Counter()
            for record in result["records"]:
                if record.get("status") is None:
                    codes["no answer"] += 1
                    continue
                try:
                    codes[json.loads(record["body"]).get("error") or str(record["status"])] += 1
                except (ValueError, AttributeError):
                    codes[str(record["status"])] += 1
            live = self.sql(
                "SELECT count(*) FROM bookings WHERE artist_id = CAST(:a AS uuid)"
                " AND start_time = :s AND status IN ('PENDING_PAYMENT', 'CONFIRMED')",
                a=self.bookings.contention_artist[0],
                s=start,
            )[0][0]
            result["sent"] = n
            result["winners"] = result["statuses"].get("201", 0)
            result["answers"] = dict(codes)
            result["live_bookings_in_db"] = live
            del result["records"]
            self.say(
                f"  {result['winners']} winner(s), all answered in "
                f"{result['all_answered_ms']:.0f} ms: {dict(codes)}"
            )
            self.results["contention"] = result

    def stage_webhook_confirmed(self) -> None:
        s = self.settings
        with self.stage(
            "webhook_confirmed",
            f"{s.webhook_events} payment_intent.succeeded at {s.webhook_rate:g}/s, worker "
            f"{s.worker_pool} × {s.worker_concurrency}",
        ):
            rows = self.sql(
                "SELECT id, payment_intent_id FROM bookings"
                " WHERE status = 'PENDING_PAYMENT'"
                " AND payment_intent_id IS NOT NULL ORDER BY start_time DESC LIMIT :n",
                n=s.webhook_events,
            )
            if len(rows) < min(s.webhook_events, 200):
                raise HarnessError(f"only {len(rows)} bookings with an intent to pay")
            if len(rows) < s.webhook_events:  # a slow machine made fewer bookings
                self.say(f"  ! only {len(rows)} bookings with an intent: {len(rows)} events")
            emulator = self.stack.stripe_url
            bodies = []
            for _, intent in rows:
                self.post(f"{emulator}/_emulator/payment_intents/{intent}/succeed", {})
                event = self.post(
                    f"{emulator}/_emulator/events",
                    {"type": "payment_intent.succeeded", "payment_intent": intent},
                )
                bodies.append(data.signed(event, self.stack.webhook_secret))
            booking_ids = [str(b) for b, _ in rows]
            spec = {
                "mode": "paced",
                "method": "POST",
                "path": "/api/webhooks/stripe",
                "headers": {"Content-Type": "application/json"},
                "bodies_file": self.bodies_file("confirm", bodies),
                "rate": s.webhook_rate,
            }
            poller = ConfirmationPoller(self.stack.database_url, booking_ids)
            poller.start()
            try:
                result = self.loadgen("webhook_confirmed", spec, profile="worker")
                wait_until(lambda: poller.done, 30, 0.05)
            finally:
                poller.stop()
            if poller.error is not None:
                raise HarnessError(f"polling for confirmations failed: {poller.error}")
            confirmed_at = {
                str(b): c.timestamp()
                for b, c in self.sql(
                    "SELECT id, confirmed_at FROM bookings WHERE id = ANY(CAST(:ids AS uuid[]))"
                    " AND status = 'CONFIRMED'",
                    ids=booking_ids,
                )
            }
            visible, from_post, server_side = [], [], []
            for record in result["records"]:
                booking = booking_ids[record["i"]]
                if booking in poller.seen and record.get("latency_ms") is not None:
                    # From the moment the 200 reached the sender (Stripe's view: delivered)
                    # to the moment the poller saw CONFIRMED; 0 if the worker was first.
                    answered = record["sent_at"] + record["latency_ms"] / 1000
                    visible.append(max(0.0, poller.seen[booking] - answered))
                    from_post.append(poller.seen[booking] - record["sent_at"])
                if booking in confirmed_at:
                    server_side.append(confirmed_at[booking] - record["sent_at"])
            from tests.bench.loadgen import percentiles

            del result["records"]
            result["confirmed"] = len(confirmed_at)
            result["events"] = len(booking_ids)
            result["visible_ms"] = percentiles(visible)
            result["visible_from_post_ms"] = percentiles(from_post)
            result["confirmed_at_ms"] = percentiles(server_side)
            result["poll_interval_ms"] = CONFIRM_POLL_SECONDS * 1000
            result["rate"] = s.webhook_rate
            result["worker"] = f"{s.worker_pool} × {s.worker_concurrency}"
            self.say(
                f"  {len(confirmed_at)}/{len(booking_ids)} confirmed; 200 → CONFIRMED visible "
                f"p50 {result['visible_ms']['p50']} ms, p95 {result['visible_ms']['p95']} ms"
            )
            self.results["webhook_confirmed"] = result

    def stage_webhook_receive(self) -> None:
        with self.stage("webhook_receive", "distinct signed events: verify, store, enqueue"):
            count = self._pool_size(0.9)
            bodies = data.ignorable_events(self.stack.run_id, self.stack.webhook_secret, count)
            spec = self.load_spec(
                method="POST",
                path="/api/webhooks/stripe",
                headers={"Content-Type": "application/json"},
                bodies_file=self.bodies_file("webhooks", bodies),
                unique=True,
            )
            result = self.loadgen("webhook_receive", spec, profile="api")
            self._check_ok("webhook_receive", result)
            stored = self.sql("SELECT count(*) FROM stripe_events WHERE type = 'customer.updated'")
            result["stored_in_db"] = stored[0][0] - 1  # minus the worker probe
            result["pool"] = len(bodies)
            self.results["webhook_receive"] = result

    def stage_raw_ceilings(self) -> None:
        with self.stage("raw_ceilings", "PostgreSQL insert transactions, Redis SET NX PX"):
            # One connection per thread, within what the server has left (128 clients of
            # the default API exceed PostgreSQL's default max_connections of 100).
            free = self.sql(
                "SELECT current_setting('max_connections')::int - count(*) FROM pg_stat_activity"
            )[0][0]
            threads = max(1, min(self.settings.connections, 32, int(free) - 10))
            pg = postgres_inserts(self.stack.database_url, threads, 4.0)
            self.say(
                f"  PostgreSQL: {pg['python_tps']:,.0f} tps (psycopg, {threads} threads)"
                + (f", pgbench {pg['pgbench_tps']:,.0f} tps" if pg["pgbench_tps"] else "")
            )
            rd = redis_set_nx_px(self.stack.redis_url, self.stack.key_prefix, 4, 3.0)
            self.say(
                f"  Redis: {rd['python_ops']:,.0f} ops/s (redis-py, 4 threads)"
                + (
                    f", redis-benchmark {rd['redis_benchmark_ops']:,.0f} ops/s"
                    if rd["redis_benchmark_ops"]
                    else ""
                )
            )
            self.results["raw_ceilings"] = {"postgres": pg, "redis": rd}

    # -- checks and sizes

    def _pool_size(self, fraction: float) -> int:
        """Distinct bodies for one load stage: `fraction` of the baseline rate over
        warm-up + duration, with room to spare."""
        s = self.settings
        rps = float(self.results["baseline"]["rps"])
        return int(rps * (s.warmup + s.duration) * fraction) + 1000

    def _check_ok(self, name: str, result: JSON, expect: str = "200") -> None:
        bad = {k: v for k, v in result["statuses"].items() if k != expect}
        if bad or result["errors"]:
            self.say(f"  ! {name}: unexpected answers {bad} errors {result['errors']}")
            for sample in result["samples"][:3]:
                self.say(f"    {sample['status']}: {sample['body'][:200]}")
        if result.get("exhausted"):
            self.say(f"  ! {name}: the request pool ran out before the end (figures cover less)")


class ConfirmationPoller(threading.Thread):
    """Notes when each booking is first seen CONFIRMED (polling every 2 ms)."""

    def __init__(self, url: str, booking_ids: list[str]) -> None:
        super().__init__(name="confirmation-poller", daemon=True)
        self.url = url
        self.pending = list(booking_ids)  # in the order their events are sent
        self.seen: dict[str, float] = {}
        self._stop_event = threading.Event()
        self.error: BaseException | None = None

    @property
    def done(self) -> bool:
        return not self.pending

    def run(self) -> None:
        try:
            with psycopg.connect(self.url, autocommit=True) as conn:
                while self.pending and not self._stop_event.is_set():
                    rows = conn.execute(
                        "SELECT id::text FROM bookings WHERE id = ANY(%s::uuid[])"
                        " AND status = 'CONFIRMED'",
                        (self.pending[:CONFIRM_POLL_WINDOW],),
                    ).fetchall()
                    now = time.time()
                    for (booking,) in rows:
                        self.seen[booking] = now
                    if rows:
                        self.pending = [b for b in self.pending if b not in self.seen]
                    self._stop_event.wait(CONFIRM_POLL_SECONDS)
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread
            self.error = exc

    def stop(self) -> None:
        self._stop_event.set()
        self.join(5)


def _mismatches(api: list[tuple[str, bool]], expected: list[tuple[str, bool]]) -> list[str]:
    found = dict(api)
    wanted = dict(expected)
    problems = []
    for start in sorted(set(found) | set(wanted)):
        if start not in found:
            problems.append(f"{start}: missing from the API's answer")
        elif start not in wanted:
            problems.append(f"{start}: not a candidate slot for the naive reference")
        elif found[start] != wanted[start]:
            problems.append(f"{start}: API available={found[start]}, naive={wanted[start]}")
    return problems


# --- the table ----------------------------------------------------------------------


def build_rows(results: JSON) -> tuple[list[report.Row], dict[int, str]]:
    Row = report.Row
    rows: list[report.Row] = []
    sections: dict[int, str] = {}

    def section(title: str) -> None:
        sections[len(rows)] = title

    def lat(r: JSON, key: str) -> float | None:
        value = r["latency_ms"][key]
        return None if value is None else float(value)

    base = results["baseline"]
    base_rps = float(base["rps"]) or float("nan")

    def vs(value: float | None, ref: float | None) -> float | None:
        return None if value is None or not ref else value / ref

    def latency_rows(name: str, r: JSON, keys: tuple[str, ...] = ("p50", "p95", "p99")) -> None:
        for key in keys:
            rows.append(Row(f"{name} {key}", lat(r, key), "ms", vs(lat(r, key), lat(base, key))))

    ceiling = results["loadgen_ceiling"]
    section("load generator (its own ceiling, against a trivial server)")
    rows.append(Row("new connection per request", ceiling["close"]["rps"], "req/s"))
    rows.append(Row("keep-alive", ceiling["keepalive"]["rps"], "req/s"))
    rows.append(
        Row(
            "its CPU per request (new connection)",
            ceiling["close"]["loadgen_cpu_us_per_request"],
            "µs",
        )
    )

    section("baseline: GET /healthz")
    rows.append(Row("baseline", base["rps"], "req/s", 1.0))
    latency_rows("baseline", base)

    av = results["availability"]
    section(f"availability: 31 days × 30 min ({av['slots']} slots, {av['free_slots']} free)")
    ratio = vs(av["load"]["rps"], base_rps)
    target = TARGETS["availability_vs_baseline"]
    rows.append(
        Row(
            "availability",
            av["load"]["rps"],
            "req/s",
            ratio,
            f"≥ {target:.0%} of baseline",
            ratio is not None and ratio >= target,
        )
    )
    latency_rows("availability", av["load"])
    single_p50 = lat(av["one_connection"], "p50")
    rows.append(Row("availability p50, 1 connection", single_p50, "ms"))
    rows.append(Row("naive reference, 1 query per slot", av["naive_median_s"] * 1000, "ms/answer"))
    speedup = None if not single_p50 else av["naive_median_s"] * 1000 / single_p50
    target = TARGETS["availability_speedup"]
    rows.append(
        Row(
            "speed-up: naive ÷ API p50 (1 conn.)",
            speedup,
            "×",
            None,
            f"≥ {target:g}×",
            speedup is not None and speedup >= target,
        )
    )
    rows.append(Row("speed-up: API req/s × naive s", av["load"]["rps"] * av["naive_median_s"], "×"))
    rows.append(
        Row(
            "slots differing from naive",
            av["mismatches"],
            "slots",
            None,
            "0",
            av["mismatches"] == 0,
        )
    )

    bc = results["booking_create"]
    section("booking create: distinct free slots, Stripe emulator")
    ratio = vs(bc["rps"], base_rps)
    target = TARGETS["booking_vs_baseline"]
    rows.append(
        Row(
            "booking create (201)",
            bc["rps"],
            "req/s",
            ratio,
            f"≥ {target:.0%} of baseline",
            ratio is not None and ratio >= target,
        )
    )
    latency_rows("booking create", bc)
    non201 = sum(v for k, v in bc["statuses"].items() if k != "201") + sum(bc["errors"].values())
    rows.append(Row("booking create: not 201", non201, "req"))

    ct = results["contention"]
    section(f"contention: {ct['sent']} simultaneous requests for one slot")
    rows.append(
        Row(
            "winners (201)",
            ct["winners"],
            "",
            None,
            "= 1",
            ct["winners"] == 1 and ct["live_bookings_in_db"] == 1,
        )
    )
    limit = TARGETS["contention_all_answered_ms"]
    rows.append(
        Row(
            "all answered after",
            ct["all_answered_ms"],
            "ms",
            None,
            f"≤ {limit:,.0f} ms",
            ct["all_answered_ms"] <= limit
            and ct["sent"] == sum(ct["answers"].values())
            and "no answer" not in ct["answers"],
        )
    )

    wr = results["webhook_receive"]
    section("webhook receive: verify, store, enqueue")
    ratio = vs(wr["rps"], base_rps)
    target = TARGETS["webhook_vs_baseline"]
    rows.append(
        Row(
            "webhook receive",
            wr["rps"],
            "req/s",
            ratio,
            f"≥ {target:.0%} of baseline",
            ratio is not None and ratio >= target,
        )
    )
    latency_rows("webhook receive", wr)

    wc = results["webhook_confirmed"]
    section(
        f"webhook → CONFIRMED: {wc['events']} events at {wc['rate']:g}/s (open loop), worker "
        f"{wc['worker']}"
    )
    limit = TARGETS["webhook_confirmed_p95_ms"]
    rows.append(Row("webhook 200 → CONFIRMED visible p50", wc["visible_ms"]["p50"], "ms"))
    p95 = wc["visible_ms"]["p95"]
    rows.append(
        Row(
            "webhook 200 → CONFIRMED visible p95",
            p95,
            "ms",
            None,
            f"≤ {limit:g} ms",
            p95 is not None and p95 <= limit and wc["confirmed"] == wc["events"],
        )
    )
    rows.append(Row("POST sent → CONFIRMED visible p95", wc["visible_from_post_ms"]["p95"], "ms"))
    rows.append(
        Row("POST sent → confirmed_at (server clock) p95", wc["confirmed_at_ms"]["p95"], "ms")
    )
    rows.append(Row("webhook answer p95", wc["latency_ms"]["p95"], "ms"))
    rows.append(Row("confirmed", wc["confirmed"], f"of {wc['events']}"))

    for title, extra in [
        *latency.sections(results),
        *scaleout.sections(results),
        *costs.sections(results),
    ]:
        section(title)
        rows.extend(extra)

    raw = results["raw_ceilings"]
    section("raw ceilings (context)")
    pg, rd = raw["postgres"], raw["redis"]
    rows.append(Row(f"PostgreSQL insert tx, psycopg × {pg['threads']}", pg["python_tps"], "tx/s"))
    if pg["pgbench_tps"]:
        rows.append(
            Row(f"PostgreSQL insert tx, pgbench -c {pg['threads']}", pg["pgbench_tps"], "tx/s")
        )
    rows.append(Row(f"Redis SET NX PX, redis-py × {rd['threads']}", rd["python_ops"], "ops/s"))
    if rd["redis_benchmark_ops"]:
        rows.append(Row("Redis SET NX PX, redis-benchmark", rd["redis_benchmark_ops"], "ops/s"))
    scale.add_rows(results, rows, section)
    return rows, sections


def main() -> int:
    install_signal_handlers()
    settings = BenchSettings()
    bench = Bench(settings)
    status = 0
    results: JSON | None = None
    try:
        results = bench.run()
    except (KeyboardInterrupt, Interrupted) as exc:
        bench.say(f"Interrupted ({type(exc).__name__} {exc}): cleaning up")
        status = 130
    except HarnessError as exc:
        bench.say(f"HARNESS FAILURE: {exc}")
        status = 2
    except Exception:  # noqa: BLE001 - the table is printed with the failure
        bench.say("HARNESS FAILURE:\n" + traceback.format_exc())
        status = 2
    finally:
        bench.say("Stopping the stack, dropping the database, deleting our Redis keys…")
        if bench.engine is not None:
            bench.engine.dispose()
        try:
            bench.stack.close()
        except (KeyboardInterrupt, Interrupted):
            status = 130
    if status == 0:
        shutil.rmtree(bench.stack.log_dir, ignore_errors=True)  # request bodies, logs
    elif bench.stack.log_dir.exists():
        for bodies in bench.stack.log_dir.glob("bodies-*.json"):
            bodies.unlink()
        bench.say(f"Logs of the stack's processes: {bench.stack.log_dir}")
    if results is None:
        return status
    return finish(bench, results)


def finish(bench: Bench, results: JSON) -> int:
    """Write the JSON, then print the table (a closed stdout must not lose the JSON)."""
    s = bench.settings
    rows, sections = build_rows(results)
    runtime = time.perf_counter() - bench.began
    failed = [r.metric for r in rows if r.passed is False]
    kind = "sync workers" if s.threads == 1 else f"gthread workers × {s.threads} threads"
    lines = [
        "",
        f"inkflow bench {bench.started_at:%Y-%m-%d %H:%M} UTC — gunicorn {s.web_concurrency} "
        f"{kind} (WEB_CONCURRENCY={s.web_concurrency}, GUNICORN_THREADS={s.threads}; the "
        f"README's default is 4 × 32), {s.connections} connections, {s.warmup:g}+"
        f"{s.duration:g} s per stage, Celery worker {s.worker_pool} × {s.worker_concurrency}, "
        f"PostgreSQL {bench.stack.postgres_mode}, "
        f"Redis {bench.stack.redis_mode}, {os.cpu_count()} CPUs",
        report.table(rows, sections),
        "",
        "CPU cores used per component during each load stage (machine = all busy cores):",
        report.cpu_table(bench.cpu_by_stage),
        "",
        "CPU milliseconds per request, per component (robust to other work on the machine):",
        report.cpu_table(bench.cpu_ms_by_stage, per_request=True),
        *scale.note_lines(results),
        "",
        f"targets: {'all met' if not failed else 'MISSED: ' + '; '.join(failed)}",
    ]
    if bench.profiles:
        lines.append("profiles: " + ", ".join(f"{k}: {v}" for k, v in bench.profiles.items()))
    document = {
        "run_id": bench.stack.run_id,
        "started_at": bench.started_at.isoformat(),
        "runtime_s": round(runtime, 1),
        "machine": {
            "cpus": os.cpu_count(),
            "loadavg_end": os.getloadavg(),
            "python": sys.version.split()[0],
        },
        "config": {
            "web_concurrency": s.web_concurrency,
            "gunicorn_threads": s.threads,
            "worker_class": "gthread" if s.threads > 1 else "sync",
            "connections": s.connections,
            "warmup_s": s.warmup,
            "duration_s": s.duration,
            "webhook_events": s.webhook_events,
            "webhook_rate": s.webhook_rate,
            "contention": s.contention,
            "postgres": bench.stack.postgres_mode,
            "redis": bench.stack.redis_mode,
            "celery_worker": f"{s.worker_pool}, concurrency {s.worker_concurrency}",
            "profiled": bool(bench.profiles),
            "stripe_emulator": "devtools.stripe_emulator, a separate process",
            "speedup_definition": "naive median seconds per answer ÷ API p50 over 1 connection",
        },
        "targets": TARGETS,
        "all_targets_met": not failed,
        "rows": report.rows_json(rows),
        "cpu_cores": bench.cpu_by_stage,
        "cpu_ms_per_request": bench.cpu_ms_by_stage,
        "profiles": bench.profiles,
        "table": "\n".join(lines),
        "results": results,
    }
    path = report.write_json(s.out_dir.absolute(), bench.started_at, document)
    lines.append(f"JSON: {path} (and {path.parent / 'latest.json'}); runtime {runtime:.0f} s")
    with contextlib.suppress(OSError, ValueError):
        print("\n".join(lines), flush=True)
    return 0

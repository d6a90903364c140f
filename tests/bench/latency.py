"""Stages on Stripe's latency: what a slow payment provider does to booking creation and
to the worker tasks that call it (`make bench`, registered in tests/bench/run.py).

- stripe_latency: booking creation with 64 clients, the emulator answering at once, then
  after 300 ms per API call (its `POST /_emulator/latency`); distinct free slots of
  artists of its own. Target: the 300 ms throughput ≥ 0.8 × the 0 ms one, p95 ≤ 450 ms.
  Also the peak of PostgreSQL connections of the bench database and of those idle in a
  transaction (sampled every 100 ms): a connection held across the Stripe call would show
  up there (64 of them, idle in transaction for 300 ms).
- worker_stripe: refunds owed (the `process_refund` task, one Stripe call each) at
  300 ms, for each Celery pool configuration compared, each worker on a queue of its own.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import psycopg
from sqlalchemy import insert, text

from devtools.processes import Child
from shared.adapters.models import Refund
from shared.adapters.queue import CeleryQueue
from shared.config import Settings
from shared.tasks import PROCESS_REFUND
from tests.bench import data, report
from tests.bench.stack import HarnessError, delete_own_keys
from tests.support import wait_until

if TYPE_CHECKING:
    from tests.bench.run import Bench

JSON = dict[str, Any]
STRIPE_LATENCY_MS = 300.0
CLIENTS = 64
TARGETS = {
    "stripe_latency_ratio": 0.8,
    "stripe_latency_p95_ms": 450.0,
}
# Worker pools compared on Stripe-bound tasks: (label, celery worker options): `make
# run`'s, the README's recommendation (prefork keeps task_time_limit), a thread pool.
WORKER_POOLS: list[tuple[str, list[str]]] = [
    ("prefork ×2", ["--pool=prefork", "--concurrency=2"]),
    ("prefork ×8", ["--pool=prefork", "--concurrency=8"]),
    ("threads ×16", ["--pool=threads", "--concurrency=16"]),
]
REFUNDS_PER_SLOT = 6  # refunds per concurrency slot of the pool measured


def set_stripe_latency(bench: Bench, ms: float) -> None:
    bench.post(f"{bench.stack.stripe_url}/_emulator/latency", {"ms": ms})


@contextmanager
def stripe_latency(bench: Bench, ms: float) -> Iterator[None]:
    set_stripe_latency(bench, ms)
    try:
        yield
    finally:
        set_stripe_latency(bench, 0)


class ConnectionSampler(threading.Thread):
    """The peak number of server connections to the bench database, and of those idle
    in a transaction, sampled every 100 ms from pg_stat_activity (a connection held across a
    300 ms Stripe call cannot slip between two samples; sampling every 20 ms, with the
    spread sampler below every 0.25 s, cost ~0.3 of the 2 cores the stage measures)."""

    def __init__(self, server_url: str, database: str) -> None:
        super().__init__(name="pg-connections", daemon=True)
        self.server_url = server_url
        self.database = database
        self.peak = 0
        self.peak_idle_in_transaction = 0
        self._stop_event = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            with psycopg.connect(self.server_url, autocommit=True) as conn:
                while not self._stop_event.is_set():
                    total, idle_tx = conn.execute(
                        "SELECT count(*),"
                        " count(*) FILTER (WHERE state LIKE 'idle in transaction%%')"
                        " FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
                        (self.database,),
                    ).fetchone() or (0, 0)
                    self.peak = max(self.peak, int(total))
                    self.peak_idle_in_transaction = max(self.peak_idle_in_transaction, int(idle_tx))
                    self._stop_event.wait(0.1)
        except BaseException as exc:  # noqa: BLE001 - reported by the stage
            self.error = exc

    def __enter__(self) -> ConnectionSampler:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop_event.set()
        self.join(5)


class SpreadSampler(threading.Thread):
    """How the clients' connections spread over gunicorn's worker processes (each has
    GUNICORN_THREADS threads): the peak number one process held, sampled every second
    (psutil reads the whole socket table of the machine for each process).
    A process holding more connections than threads queues the extra requests behind
    Stripe's latency while another process has threads idle."""

    def __init__(self, master_pid: int, port: int) -> None:
        super().__init__(name="connection-spread", daemon=True)
        self.master_pid = master_pid
        self.port = port
        self.peak_per_process = 0
        self.samples: list[list[int]] = []
        self._stop_event = threading.Event()

    def run(self) -> None:
        import psutil

        while not self._stop_event.is_set():
            counts = []
            try:
                for proc in psutil.Process(self.master_pid).children():
                    counts.append(
                        sum(
                            1
                            for c in proc.net_connections(kind="tcp")
                            if c.laddr and c.laddr.port == self.port and c.status == "ESTABLISHED"
                        )
                    )
            except psutil.Error:
                counts = []
            if counts and sum(counts):
                self.samples.append(sorted(counts, reverse=True))
                self.peak_per_process = max(self.peak_per_process, max(counts))
            self._stop_event.wait(1.0)

    def __enter__(self) -> SpreadSampler:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop_event.set()
        self.join(5)


def create_spec(bench: Bench, name: str, bodies: list[JSON], **extra: Any) -> JSON:
    return bench.load_spec(
        **{
            "method": "POST",
            "path": "/api/bookings/create",
            "headers": {"Content-Type": "application/json"},
            "bodies_file": bench.bodies_file(name, bodies),
            "unique": True,
            "expect": 201,
            "connections": CLIENTS,
            **extra,
        }
    )


def stage_stripe_latency(bench: Bench) -> None:
    s = bench.settings
    with bench.stage(
        "stripe_latency",
        f"booking create, {CLIENTS} clients, Stripe answering at once then after "
        f"{STRIPE_LATENCY_MS:g} ms",
    ):
        assert bench.engine is not None
        fixture = data.seed_booking_artists(bench.engine, bench.stack.run_id + "l")
        bench.stack.artist_ids += fixture.artist_ids
        seconds = s.warmup + s.duration
        # Enough distinct slots for ~600 bookings/s at 0 ms and 64 ÷ 0.3 s at 300 ms.
        counts = [int(600 * seconds) + 1000, int(CLIENTS / 0.3 * seconds * 1.2) + 500]
        bodies = data.booking_bodies(fixture, sum(counts))
        runs: dict[str, JSON] = {}
        for ms, pool in ((0.0, bodies[: counts[0]]), (STRIPE_LATENCY_MS, bodies[counts[0] :])):
            name = f"create_stripe_{ms:g}ms"
            spec = create_spec(bench, name, pool)
            api_pid = bench.stack.children["api"].pid
            with (
                stripe_latency(bench, ms),
                sampler_for(bench) as sampler,
                SpreadSampler(api_pid, bench.stack.api_port) as spread,
            ):
                result = bench.loadgen(name, spec, profile="api")
            bench._check_ok(name, result, expect="201")
            if sampler.error is not None:
                raise HarnessError(f"sampling pg_stat_activity failed: {sampler.error}")
            result["pg_connections_peak"] = sampler.peak
            result["pg_idle_in_transaction_peak"] = sampler.peak_idle_in_transaction
            result["connections_per_process_peak"] = spread.peak_per_process
            result["connections_per_process_last"] = spread.samples[-1] if spread.samples else []
            runs[f"{ms:g}"] = result
            bench.say(
                f"  Stripe {ms:g} ms: {result['rps']:.0f} bookings/s, p50 "
                f"{result['latency_ms']['p50']} ms, p95 {result['latency_ms']['p95']} ms; "
                f"PostgreSQL connections ≤ {sampler.peak}, idle in transaction ≤ "
                f"{sampler.peak_idle_in_transaction}; client connections per gunicorn process "
                f"{result['connections_per_process_last']} (peak {spread.peak_per_process}, "
                f"{s.threads} threads each)"
            )
        bench.results["stripe_latency"] = {
            "clients": CLIENTS,
            "latency_ms": STRIPE_LATENCY_MS,
            "runs": runs,
            "gunicorn": f"{s.web_concurrency} × {s.threads}",
        }


@contextmanager
def sampler_for(bench: Bench) -> Iterator[ConnectionSampler]:
    with ConnectionSampler(bench.stack.server_url, bench.stack.database_name) as sampler:
        yield sampler


def _paid_bookings(bench: Bench, n: int) -> list[tuple[uuid.UUID, str]]:
    """`n` bookings with a deposit intent, their intents paid on the emulator."""
    rows = bench.sql(
        "SELECT id, payment_intent_id FROM bookings WHERE status = 'PENDING_PAYMENT'"
        " AND payment_intent_id IS NOT NULL ORDER BY start_time LIMIT :n",
        n=n,
    )
    if len(rows) < n:
        raise HarnessError(f"only {len(rows)} bookings with an intent for the refund stage")
    for _, intent in rows:
        bench.post(f"{bench.stack.stripe_url}/_emulator/payment_intents/{intent}/succeed", {})
    return [(b, i) for b, i in rows]


def stage_worker_stripe(bench: Bench) -> None:
    with bench.stage(
        "worker_stripe",
        f"refund tasks (one Stripe call each) at {STRIPE_LATENCY_MS:g} ms, per Celery pool",
    ):
        settings = Settings.from_env(bench.stack.app_env())
        out: dict[str, JSON] = {}
        for i, (label, options) in enumerate(WORKER_POOLS):
            concurrency = int(next(o for o in options if "--concurrency" in o).split("=")[1])
            n = REFUNDS_PER_SLOT * concurrency
            queue = f"{bench.stack.key_prefix}:refunds{i}"
            paid = _paid_bookings(bench, n)
            # Marked so that the next pool's query does not take them again.
            assert bench.engine is not None
            with bench.engine.begin() as conn:
                conn.execute(
                    text(
                        "UPDATE bookings SET status = 'CONFIRMED', deposit_status = 'PAID'"
                        " WHERE id = ANY(CAST(:ids AS uuid[]))"
                    ),
                    {"ids": [str(b) for b, _ in paid]},
                )
            refunds = [
                {
                    "id": uuid.uuid4(),
                    "booking_id": b,
                    "payment_intent_id": intent,
                    "amount_minor": 3000,
                    "currency": "eur",
                    "reason": "ARTIST_CANCEL",
                    "idempotency_key": f"bench-refund-{bench.stack.run_id}-{b}",
                    "status": "PENDING",
                }
                for b, intent in paid
            ]
            with bench.engine.begin() as conn:
                conn.execute(insert(Refund), refunds)
            name = f"w-refunds{i}"
            worker = bench.stack.start_worker(name, *options, queue=queue)
            producer = CeleryQueue(replace(settings, celery_queue=queue))
            ids = [str(r["id"]) for r in refunds]
            try:
                _wait_consuming(bench, producer, queue, worker)
                with stripe_latency(bench, STRIPE_LATENCY_MS):
                    began = time.perf_counter()
                    for refund_id in ids:
                        producer.enqueue(PROCESS_REFUND, refund_id)

                    def done(ids: list[str] = ids) -> bool:
                        left = bench.sql(
                            "SELECT count(*) FROM refunds WHERE id = ANY(CAST(:ids AS uuid[]))"
                            " AND status = 'PENDING'",
                            ids=ids,
                        )[0][0]
                        return int(left) == 0

                    finished = wait_until(done, 120, 0.02)
                    elapsed = time.perf_counter() - began
                if not worker.alive():
                    raise HarnessError(f"{name} exited:\n{worker.output(3000)}")
            finally:
                producer.close()
                bench.stack.stop_child(name)
                _drop_queue(bench, queue)
            statuses = dict(
                bench.sql(
                    "SELECT status, count(*) FROM refunds WHERE id = ANY(CAST(:ids AS uuid[]))"
                    " GROUP BY status",
                    ids=ids,
                )
            )
            rate = n / elapsed if finished else None
            out[label] = {
                "refunds": n,
                "seconds": round(elapsed, 3),
                "per_second": None if rate is None else round(rate, 2),
                "ceiling_per_second": round(concurrency / (STRIPE_LATENCY_MS / 1000), 2),
                "statuses": statuses,
                "all_done": finished,
            }
            bench.say(
                f"  {label}: {n} refunds in {elapsed:.2f} s"
                + (f" = {rate:.1f}/s" if rate else " (not all done)")
                + f", {statuses}"
            )
        bench.results["worker_stripe"] = out


def _wait_consuming(bench: Bench, producer: CeleryQueue, queue: str, worker: Child) -> None:
    """The worker takes tasks from `queue`: a refund that does not exist (a no-op task)
    leaves the queue. Its start-up is then not counted in the figure."""
    import redis

    client = redis.Redis.from_url(bench.stack.redis_url)
    try:
        producer.enqueue(PROCESS_REFUND, str(uuid.uuid4()))
        if not wait_until(lambda: client.llen(queue) == 0, 60, 0.02):
            raise HarnessError(f"{worker.name} did not consume {queue}:\n{worker.output(3000)}")
    finally:
        client.close()


def _drop_queue(bench: Bench, queue: str) -> None:
    import redis

    client = redis.Redis.from_url(bench.stack.redis_url)
    try:
        delete_own_keys(client, queue, bench.stack.worker_name, queue, [])
    finally:
        client.close()


# --- the table ----------------------------------------------------------------------


def sections(results: JSON) -> list[tuple[str, list[report.Row]]]:
    Row = report.Row
    out: list[tuple[str, list[report.Row]]] = []
    sl = results.get("stripe_latency")
    if sl:
        fast, slow = sl["runs"]["0"], sl["runs"][f"{STRIPE_LATENCY_MS:g}"]
        rows: list[report.Row] = []
        for key, r in (("0 ms", fast), (f"{STRIPE_LATENCY_MS:g} ms", slow)):
            rows.append(Row(f"Stripe {key}: booking create (201)", r["rps"], "req/s"))
            rows.append(Row(f"Stripe {key}: p50", r["latency_ms"]["p50"], "ms"))
            p95 = r["latency_ms"]["p95"]
            if key == "0 ms":
                rows.append(Row(f"Stripe {key}: p95", p95, "ms"))
            else:
                limit = TARGETS["stripe_latency_p95_ms"]
                rows.append(
                    Row(
                        f"Stripe {key}: p95",
                        p95,
                        "ms",
                        None,
                        f"≤ {limit:g} ms",
                        p95 is not None and p95 <= limit,
                    )
                )
        ratio = slow["rps"] / fast["rps"] if fast["rps"] else None
        target = TARGETS["stripe_latency_ratio"]
        rows.append(
            Row(
                f"throughput at {STRIPE_LATENCY_MS:g} ms ÷ at 0 ms",
                ratio,
                "×",
                None,
                f"≥ {target:g}",
                ratio is not None and ratio >= target,
            )
        )
        peak = max(fast["pg_connections_peak"], slow["pg_connections_peak"])
        rows.append(Row("PostgreSQL connections, peak", peak, "conn."))
        idle = slow["pg_idle_in_transaction_peak"]
        # Context, not a verdict: a starved CPU leaves threads mid-transaction waiting for
        # the GIL (seen idle in transaction); tests/integration/test_stripe_wait.py proves
        # that none waits on Stripe with a transaction open.
        rows.append(Row(f"idle in transaction at {STRIPE_LATENCY_MS:g} ms, peak", idle, "conn."))
        # Context for the ratio: more connections on one process than it has threads
        # queue behind Stripe while other processes idle.
        rows.append(
            Row(
                "client connections on one gunicorn process, peak",
                slow.get("connections_per_process_peak"),
                "conn.",
            )
        )
        title = (
            f"Stripe latency: booking create, {sl['clients']} clients, gunicorn {sl['gunicorn']}"
        )
        out.append((title, rows))
    ws = results.get("worker_stripe")
    if ws:
        rows = []
        for label, r in ws.items():
            rows.append(Row(f"refunds/s, {label}", r["per_second"], "tasks/s"))
        out.append((f"worker tasks calling Stripe at {STRIPE_LATENCY_MS:g} ms (refunds)", rows))
    return out

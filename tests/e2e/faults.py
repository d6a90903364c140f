"""Helpers of the fault tests (test_faults.py): the system as `make run` runs it
(devtools.stack: gunicorn, a supervised Celery worker and beat, embedded servers on ports
of their own), client traffic that books and pays while a fault is injected, and the
figures each test prints."""

from __future__ import annotations

import itertools
import json
import random
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import requests
from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError

from devtools.stack import Console, Stack
from devtools.stripe_emulator import ApiError, StripeEmulator
from devtools.stripe_emulator.delivery import RetryPolicy
from tests import support
from tests.contract import register_api_server
from tests.factories import World

HTTP_TIMEOUT = 30.0
# Stripe's retries, faster: an event refused during an outage comes back within seconds.
WEBHOOK_RETRY = RetryPolicy(first_delay=0.5, factor=2.0, max_delay=4.0, max_attempts=30)


# --- the stack -------------------------------------------------------------------------------


def stack_env(**settings: str) -> dict[str, str]:
    """Settings for a fault test's stack: the test's Stripe emulator, fast sweeps, short
    holds; empty values are unset for the stack (it then starts its own server)."""
    return {
        **support.base_env("", PORT=str(support.free_port()), WEB_CONCURRENCY="2"),
        "STRIPE_SECRET_KEY": "sk_test_inkflow",
        "STRIPE_MAX_RETRIES": "0",
        "STRIPE_TIMEOUT_SECONDS": "5",
        "BOOKING_HOLD_SECONDS": "6",
        "HOLD_SWEEP_SECONDS": "1",
        # Each sweep enqueues every stale event again: with a backlog the worker cannot
        # drain in INBOX_REDELIVERY_SECONDS, the queue fills with duplicates (the load
        # is paced for that reason).
        "INBOX_SWEEP_SECONDS": "1",
        "INBOX_REDELIVERY_SECONDS": "4",
        "CELERY_VISIBILITY_TIMEOUT": "5",
        "LOG_LEVEL": "WARNING",
        "CELERY_BROKER_URL": "",
        **settings,
    }


@contextmanager
def running_stack(
    tmp_path: Path,
    env: dict[str, str],
    emulator: StripeEmulator,
    *,
    valkey_port: int,
    postgres_port: int = 0,
) -> Iterator[Stack]:
    """The stack started (its infrastructure, migrations, API, worker and beat), watched
    from a thread (the supervisor), the emulator's webhooks pointed at it."""
    log = (tmp_path / "stack.log").open("w")
    stack = Stack(
        var_dir=tmp_path / "var",
        environ={**env, "STRIPE_API_BASE": emulator.url},
        console=Console(log),
        valkey_port=valkey_port,
        postgres_port=postgres_port,
    )
    stop_watching = threading.Event()
    gone: list[Any] = []
    watcher = threading.Thread(
        target=lambda: gone.append(stack.watch(poll=0.1, until=stop_watching)), daemon=True
    )
    try:
        stack.start_infrastructure()
        stack.migrate()
        stack.start_app()
        assert stack.wait_until_serving(60), _tail(tmp_path)
        register_api_server(stack.api_url)
        emulator.configure_webhook(
            stack.webhook_url, stack.env["STRIPE_WEBHOOK_SECRET"], retry=WEBHOOK_RETRY
        )
        watcher.start()
        yield stack
        assert stack.wait_until_serving(1), _tail(tmp_path)
    finally:
        emulator.configure_webhook(None)
        stop_watching.set()
        if watcher.is_alive():
            watcher.join(5)
        stack.stop()
        log.close()
    # The supervisor never saw a process it could not start again.
    assert gone in ([], [None]), (gone, _tail(tmp_path))


def _tail(tmp_path: Path) -> str:
    return (tmp_path / "stack.log").read_text(errors="replace")[-6000:]


# --- traffic ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Call:
    kind: str  # "book" (POST /api/bookings/create) or "webhook" (an emulator delivery)
    began: float  # time.time()
    status: int  # -1: no answer


@dataclass
class Traffic:
    """Client threads that book free slots of 24/7 artists (one in five on a slot already
    asked for, to race) and pay most holds on the emulator, which posts the webhooks. Each
    client waits `pace` seconds between bookings: the load one worker (two processes, on
    the two cores the tests share) keeps up with, so that what is measured is the fault."""

    api: str
    worlds: Sequence[World]
    emulator: StripeEmulator
    threads: int = 3
    pay_share: float = 0.6
    pace: float = 0.2
    calls: list[Call] = field(default_factory=list)
    paid: dict[str, str] = field(default_factory=dict)  # intent id -> booking id
    unpaid: dict[str, str | None] = field(default_factory=dict)  # booking id -> intent id
    _stop: threading.Event = field(default_factory=threading.Event)
    _go: threading.Event = field(default_factory=threading.Event)  # cleared: paused
    _busy: int = 0  # bookings in flight
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _slots: Iterator[int] = field(default_factory=itertools.count)
    _workers: list[threading.Thread] = field(default_factory=list)

    def start(self) -> Traffic:
        first = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) + timedelta(days=1)
        self._first = first
        self.began = time.time()
        self._go.set()
        for n in range(self.threads):
            thread = threading.Thread(target=self._client, args=(n,), name=f"client-{n}")
            thread.start()
            self._workers.append(thread)
        return self

    @contextmanager
    def paused(self) -> Iterator[None]:
        """No booking in flight inside the block (a test's own request goes alone)."""
        self._go.clear()
        try:
            assert support.wait_until(lambda: self._busy == 0, HTTP_TIMEOUT)
            yield
        finally:
            self._go.set()

    def stop(self) -> None:
        self._stop.set()
        self._go.set()
        for thread in self._workers:
            thread.join(HTTP_TIMEOUT * 2)
        assert not any(t.is_alive() for t in self._workers)

    def _client(self, n: int) -> None:
        chance = random.Random(n)
        taken: list[tuple[World, datetime]] = []
        with requests.Session() as http:
            while not self._stop.is_set():
                with self._lock:
                    if not self._go.is_set():
                        go = False
                    else:
                        go, self._busy = True, self._busy + 1
                if not go:
                    self._go.wait()
                    continue
                try:
                    self._one(http, chance, taken)
                finally:
                    with self._lock:
                        self._busy -= 1
                self._stop.wait(self.pace)

    def _one(
        self, http: requests.Session, chance: random.Random, taken: list[tuple[World, datetime]]
    ) -> None:
        if taken and chance.random() < 0.2:
            world, start = chance.choice(taken)
        else:
            with self._lock:
                slot = next(self._slots)
            world = self.worlds[slot % len(self.worlds)]
            start = self._first + timedelta(minutes=30 * (slot // len(self.worlds)))
            taken.append((world, start))
        self._book(http, world, start, pay=chance.random() < self.pay_share)

    def book_alone(self, world: World, start: datetime) -> Future[requests.Response]:
        """A booking of the test's own, sent from a thread while the traffic is paused."""
        body = world.booking(start)
        pool = ThreadPoolExecutor(max_workers=1)
        url = f"{self.api}/api/bookings/create"
        answer = pool.submit(requests.post, url, json=body, timeout=HTTP_TIMEOUT)
        pool.shutdown(wait=False)
        return answer

    def _book(self, http: requests.Session, world: World, start: datetime, *, pay: bool) -> None:
        body = world.booking(start)
        began = time.time()
        try:
            response = http.post(f"{self.api}/api/bookings/create", json=body, timeout=HTTP_TIMEOUT)
        except requests.RequestException:
            self._record(Call("book", began, -1))
            time.sleep(0.1)
            return
        self._record(Call("book", began, response.status_code))
        if response.status_code != 201:
            if response.status_code >= 500:
                # Others keep paying the holds they have: webhooks go on during an outage.
                self._pay_an_earlier_hold()
                time.sleep(0.1)  # as a client honouring Retry-After would, a little
            return
        booking = response.json()["booking"]
        intent = booking["paymentIntentId"]
        if pay and intent:
            try:
                self.emulator.succeed_payment_intent(intent)
            except (ApiError, ValueError):
                pass  # cancelled meanwhile (its hold ran out): not paid
            else:
                with self._lock:
                    self.paid[intent] = booking["id"]
                return
        with self._lock:
            self.unpaid[booking["id"]] = intent

    def _pay_an_earlier_hold(self) -> None:
        with self._lock:
            waiting = [(b, i) for b, i in self.unpaid.items() if i]
            if not waiting:
                return
            booking, intent = waiting[-1]
            del self.unpaid[booking]
        try:
            self.emulator.succeed_payment_intent(intent)
        except (ApiError, ValueError):
            with self._lock:
                self.unpaid[booking] = intent  # its hold ran out: cancelled, not paid
        else:
            with self._lock:
                self.paid[intent] = booking

    def _record(self, call: Call) -> None:
        with self._lock:
            self.calls.append(call)

    def webhook_calls(self) -> list[Call]:
        """The emulator's deliveries to the API since the traffic began, as calls."""
        return [
            Call("webhook", a.at, a.status if a.status is not None else -1)
            for a in self.emulator.deliveries()
            if a.at >= self.began
        ]


def by_status(calls: Sequence[Call], since: float, until: float) -> dict[str, dict[int, int]]:
    """{kind: {status: count}} of the calls that began in [since, until)."""
    counts: dict[str, Counter[int]] = {}
    for call in calls:
        if since <= call.began < until:
            counts.setdefault(call.kind, Counter())[call.status] += 1
    return {kind: dict(sorted(c.items())) for kind, c in sorted(counts.items())}


# --- what the database says ------------------------------------------------------------------


def rows(engine: Engine, sql: str, **params: Any) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(text(sql), params).mappings()]


def backlog(engine: Engine, received_before: float | None = None) -> int:
    """Handled webhook events stored (before that Unix time) but not (yet) applied."""
    [row] = rows(
        engine,
        "SELECT count(*) AS n FROM stripe_events WHERE status IN ('RECEIVED', 'FAILED') "
        "AND received_at < to_timestamp(:before)",
        before=received_before if received_before is not None else time.time() + 3600,
    )
    return int(row["n"])


def answers(predicate: Callable[[], bool]) -> Callable[[], bool]:
    """`predicate`, false while the database does not answer (during an outage)."""

    def checked() -> bool:
        try:
            return predicate()
        except DBAPIError:
            return False

    return checked


def payments_applied_once(engine: Engine, paid: dict[str, str]) -> dict[str, Any]:
    """For each intent paid: one PAYMENT SUCCEEDED in the ledger and one applied
    payment_intent.succeeded in the inbox; its booking CONFIRMED with one confirmation
    e-mail to each of client and artist, or (the payment was applied after the hold ran
    out and another client had the slot meanwhile: the contract's late payment) EXPIRED
    with one refund made. Returns what differs (empty: all good)."""
    ids, bookings = list(paid), list(paid.values())
    ledger = Counter(
        r["payment_intent_id"]
        for r in rows(
            engine,
            "SELECT payment_intent_id FROM stripe_transactions "
            "WHERE kind = 'PAYMENT' AND status = 'SUCCEEDED' AND payment_intent_id = ANY(:ids)",
            ids=ids,
        )
    )
    applied = Counter(
        r["intent"]
        for r in rows(
            engine,
            "SELECT payload->'data'->'object'->>'id' AS intent FROM stripe_events "
            "WHERE type = 'payment_intent.succeeded' AND status = 'PROCESSED' "
            "AND payload->'data'->'object'->>'id' = ANY(:ids)",
            ids=ids,
        )
    )
    statuses = {
        r["id"]: r["status"]
        for r in rows(
            engine,
            "SELECT id::text AS id, status FROM bookings WHERE id::text = ANY(:ids)",
            ids=bookings,
        )
    }
    mails = Counter(
        r["booking_id"]
        for r in rows(
            engine,
            "SELECT booking_id::text AS booking_id FROM notifications "
            "WHERE kind = 'BOOKING_CONFIRMED' AND booking_id::text = ANY(:ids)",
            ids=bookings,
        )
    )
    refunds = Counter(
        r["booking_id"]
        for r in rows(
            engine,
            "SELECT booking_id::text AS booking_id FROM refunds "
            "WHERE status = 'SUCCEEDED' AND booking_id::text = ANY(:ids)",
            ids=bookings,
        )
    )
    wrong: dict[str, Any] = {}
    for intent, booking in paid.items():
        found = (ledger[intent], applied[intent], statuses.get(booking), mails[booking])
        settled = found in ((1, 1, "CONFIRMED", 2), (1, 1, "EXPIRED", 0))
        if found[2] == "EXPIRED" and refunds[booking] != 1:
            settled = False
        if not settled:
            keys = ("ledger", "events", "status", "mails")
            wrong[intent] = {**dict(zip(keys, found, strict=True)), "refunds": refunds[booking]}
    return wrong


def late_payments_refunded(engine: Engine, paid: dict[str, str]) -> int:
    [row] = rows(
        engine,
        "SELECT count(*) AS n FROM refunds WHERE booking_id::text = ANY(:ids)",
        ids=list(paid.values()),
    )
    return int(row["n"])


def stale_holds(engine: Engine, artist_ids: Sequence[str]) -> list[dict[str, Any]]:
    """Unpaid holds past their expiry that the sweeper has not expired."""
    return rows(
        engine,
        "SELECT id::text AS id, expires_at FROM bookings WHERE status = 'PENDING_PAYMENT' "
        "AND expires_at < now() - interval '2 seconds' AND artist_id::text = ANY(:artists)",
        artists=list(artist_ids),
    )


def report(title: str, figures: dict[str, Any]) -> str:
    def compact(value: Any) -> Any:
        # {"book": {201: 80, 409: 12}} -> {"book": "201×80 409×12"}
        if isinstance(value, dict) and all(isinstance(v, dict) for v in value.values()):
            return {
                kind: " ".join(f"{status}×{n}" for status, n in counts.items())
                for kind, counts in value.items()
            }
        return value

    shown = {name: compact(value) for name, value in figures.items()}
    return f"\n{title}:\n{json.dumps(shown, indent=2, default=str, ensure_ascii=False)}"


def new_queue_name() -> str:
    return f"inkflow-fault-{uuid.uuid4().hex[:8]}"

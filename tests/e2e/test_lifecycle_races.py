"""The booking lifecycle under concurrency, every part a real process or socket: gunicorn
(4 sync workers) serving the API, a Celery worker with beat (its own broker queue) applying
signed Stripe webhooks, making refunds and expiring holds, PostgreSQL, Redis, the Stripe
emulator over HTTP, an SMTP sink. Verdicts come from the database, not from the answers.

- 50 simultaneous reschedules of different bookings onto one free slot: one wins, every
  loser is still at its old time.
- A reschedule racing new bookings for the same slot: one winner.
- A client's cancel racing the `payment_intent.succeeded` webhook of the same booking,
  30 rounds: cancelled, and refunded unless the policy kept a deposit that was already in.
- A leave cancelling its conflicts racing a reschedule out of it and a booking into it.
- A randomised soak (create, pay, duplicate webhooks, cancel, operator cancel, reschedule,
  holds expiring), then SQL invariants over everything it left.

`pytest -s` prints the figures.
"""

from __future__ import annotations

import json
import random
import re
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import redis
import requests
import stripe
from sqlalchemy import text
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.orm import Session, sessionmaker

from devtools import commands
from devtools.processes import Child
from devtools.stripe_emulator import StripeEmulator
from shared.adapters.db import transaction
from shared.adapters.models import Booking, BookingStatus
from shared.usecases import catalog
from tests import support
from tests.e2e.conftest import LiveServer
from tests.e2e.load import overlapping_pairs, warm_up
from tests.factories import World, make_world
from tests.fakes.smtp_sink import SmtpSink

PARIS = ZoneInfo("Europe/Paris")
JSON = dict[str, Any]
HTTP_TIMEOUT = 30.0
WORKERS = 4
RESCHEDULERS = 50
RACE_ROUNDS = 10
CANCEL_ROUNDS = 30
SOAK_SECONDS = 30.0
SOAK_THREADS = 6
SOAK_DAYS = 8
RECENT = 30  # what the soak's actions mostly pick from: the latest bookings
HOLD_SECONDS = 6  # short holds: the soak sees them expire (the beat sweeps every second)
ALL_DAY = [(d, 0, 1440) for d in range(7)]
MESSAGE_ID = re.compile(r"<notification-([0-9a-f-]+)@")


# --------------------------------------------------------------------------- processes


@pytest.fixture(scope="module")
def own_queue() -> Iterator[str]:
    """This module's broker queue: only its own worker takes these tasks."""
    name = f"inkflow-test-lifecycle-{uuid.uuid4().hex[:8]}"
    yield name
    client = redis.Redis.from_url(support.TEST_REDIS_URL)
    client.delete(name, *client.keys(f"*{name}*"))
    client.close()


@pytest.fixture(scope="module")
def module_env(e2e_env: dict[str, str], own_queue: str) -> dict[str, str]:
    return {
        **e2e_env,
        "CELERY_QUEUE": own_queue,
        "BOOKING_HOLD_SECONDS": str(HOLD_SECONDS),
        "HOLD_SWEEP_SECONDS": "1",
        "INBOX_SWEEP_SECONDS": "2",
        "INBOX_REDELIVERY_SECONDS": "5",
    }


@pytest.fixture(scope="module")
def server(
    start_server: Callable[..., LiveServer], module_env: dict[str, str], database_url: str
) -> LiveServer:
    live = start_server(workers=WORKERS, **module_env)
    warm_up(
        live.url,
        live.process.pid,
        workers=WORKERS,
        db_port=make_url(database_url).port or 5432,
    )
    return live


@pytest.fixture(scope="module")
def worker(
    module_env: dict[str, str],
    own_queue: str,
    log_dir: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Child]:
    schedule = tmp_path_factory.mktemp("beat") / "schedule"
    args = ["worker", "-Q", own_queue, "--concurrency=2", "--pool=prefork"]
    args += ["--without-mingle", "--without-gossip", "--loglevel=INFO"]
    args += ["--beat", "--schedule", str(schedule)]
    child = support.start_child("celery-worker", commands.celery(*args), module_env, log_dir)
    try:
        child.wait_ready(lambda: child.printed("ready."), timeout=30)
        yield child
    finally:
        child.stop(timeout=15)


@pytest.fixture(autouse=True)
def _stripe_behaves(stripe_emulator: StripeEmulator) -> None:
    stripe_emulator.reset_failures()


# --------------------------------------------------------------------------- helpers


def local_day(days_ahead: int) -> date:
    return datetime.now(PARIS).date() + timedelta(days=days_ahead)


def at(day: date, hour: int, minute: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=PARIS)


def make_clients(sessions: sessionmaker[Session], count: int) -> list[str]:
    tag = uuid.uuid4().hex[:8]
    with transaction(sessions) as session:
        clients = [
            catalog.create_client(session, email=f"race-{tag}-{i}@example.com", name=f"Race {i}")
            for i in range(count)
        ]
        return [str(c.id) for c in clients]


def insert_confirmed(
    sessions: sessionmaker[Session], world: World, starts: Sequence[datetime], clients: list[str]
) -> list[str]:
    """Confirmed bookings without a deposit, written directly (what is raced is moving
    them, not making them)."""
    now = datetime.now(UTC)
    with transaction(sessions) as session:
        rows = [
            Booking(
                id=uuid.uuid4(),
                client_id=uuid.UUID(client),
                artist_id=uuid.UUID(world.artist_id),
                service_id=uuid.UUID(world.service_id),
                start_time=start,
                end_time=start + timedelta(minutes=30),
                status=BookingStatus.CONFIRMED,
                deposit_status="NOT_REQUIRED",
                deposit_amount=0,
                currency="eur",
                confirmed_at=now,
                created_at=now,
                updated_at=now,
            )
            for start, client in zip(starts, clients, strict=True)
        ]
        session.add_all(rows)
        return [str(r.id) for r in rows]


@dataclass(frozen=True)
class Shot:
    """One request to fire: method, path, JSON body, headers."""

    path: str
    body: JSON | None = None
    method: str = "POST"
    headers: dict[str, str] = field(default_factory=dict)
    data: str | None = None  # a raw body (a signed webhook) instead of `body`
    delay: float = 0.0  # seconds to wait after the barrier


@dataclass(frozen=True)
class Answer:
    shot: Shot
    status: int
    payload: Any

    @property
    def label(self) -> str:
        """`200`, `201`, or `409 CODE[ REASON]`, or the status and error."""
        if self.status in (200, 201):
            return str(self.status)
        payload = self.payload if isinstance(self.payload, dict) else {}
        reason = (payload.get("details") or {}).get("reason")
        return " ".join(str(p) for p in (self.status, payload.get("error"), reason) if p)


def send(http: requests.Session, url: str, shot: Shot) -> Answer:
    try:
        response = http.request(
            shot.method,
            url + shot.path,
            json=shot.body if shot.data is None else None,
            data=shot.data,
            headers=shot.headers,
            timeout=HTTP_TIMEOUT,
        )
    except requests.RequestException as exc:
        return Answer(shot, -1, {"error": type(exc).__name__})
    try:
        payload = response.json()
    except ValueError:
        payload = {"error": "NOT_JSON", "message": response.text[:200]}
    return Answer(shot, response.status_code, payload)


def fire(url: str, shots: Sequence[Shot]) -> list[Answer]:
    """One thread and connection per shot, all released by one barrier."""
    barrier = threading.Barrier(len(shots))
    answers: list[Answer | None] = [None] * len(shots)

    def shoot(index: int) -> None:
        with requests.Session() as http:
            barrier.wait(timeout=HTTP_TIMEOUT)
            if shots[index].delay:
                time.sleep(shots[index].delay)
            answers[index] = send(http, url, shots[index])

    threads = [threading.Thread(target=shoot, args=(i,)) for i in range(len(shots))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(HTTP_TIMEOUT * 2)
    assert not any(t.is_alive() for t in threads), "client threads still running"
    return [a for a in answers if a is not None]


def signed_webhook(payload: JSON) -> Shot:
    body = json.dumps(payload)
    header = stripe.WebhookSignature.generate_signature_header(body, support.WEBHOOK_SECRET)
    return Shot(
        "/api/webhooks/stripe",
        data=body,
        headers={"Stripe-Signature": header, "Content-Type": "application/json"},
    )


def rows(engine: Engine, sql: str, **params: Any) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(text(sql), params).mappings()]


def booking_rows(engine: Engine, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    found = rows(
        engine,
        "SELECT id::text AS id, status, deposit_status, start_time, reschedule_count, "
        "cancelled_by FROM bookings WHERE id::text = ANY(:ids)",
        ids=list(ids),
    )
    return {r["id"]: r for r in found}


def wait_for(condition: Callable[[], bool], what: str, worker: Child, timeout: float = 30) -> None:
    assert support.wait_until(condition, timeout=timeout), f"{what}\n{worker.output()[-3000:]}"


def settled(engine: Engine, artist_ids: Sequence[str]) -> bool:
    """Every webhook applied and every refund owed answered by Stripe."""
    [pending] = rows(
        engine,
        "SELECT (SELECT count(*) FROM stripe_events WHERE status IN ('RECEIVED', 'FAILED')) "
        "+ (SELECT count(*) FROM refunds r JOIN bookings b ON b.id = r.booking_id "
        "   WHERE r.status = 'PENDING' AND b.artist_id::text = ANY(:artists)) AS n",
        artists=list(artist_ids),
    )
    return bool(pending["n"] == 0)


# --------------------------------------------------------------------------- races


def test_fifty_reschedules_onto_one_free_slot_move_exactly_one_booking(
    server: LiveServer, sessions: sessionmaker[Session], engine: Engine
) -> None:
    world = make_world(sessions, hours=ALL_DAY, duration_min=30)
    clients = make_clients(sessions, RESCHEDULERS)
    first = at(local_day(4), 0)
    starts = [first + timedelta(minutes=30 * i) for i in range(RESCHEDULERS)]
    ids = insert_confirmed(sessions, world, starts, clients)
    target = at(local_day(7), 11)

    answers = fire(
        server.url,
        [
            Shot(f"/api/bookings/{b}/reschedule", {"clientId": c, "startTime": target.isoformat()})
            for b, c in zip(ids, clients, strict=True)
        ],
    )

    counts = Counter(a.label for a in answers)
    print(f"\n[50 reschedules onto one slot] {dict(sorted(counts.items()))}")
    assert len(answers) == RESCHEDULERS
    assert set(counts) <= {"200", "409 SLOT_TAKEN", "409 SLOT_UNAVAILABLE ALREADY_BOOKED"}, counts
    [winner] = [a for a in answers if a.status == 200]
    winner_id = winner.payload["booking"]["id"]
    after = booking_rows(engine, ids)
    for booking_id, start in zip(ids, starts, strict=True):
        row = after[booking_id]
        assert row["status"] == "CONFIRMED"
        if booking_id == winner_id:
            assert (row["start_time"], row["reschedule_count"]) == (target, 1)
        else:
            assert (row["start_time"], row["reschedule_count"]) == (start, 0), booking_id
    assert overlapping_pairs(engine, [world.artist_id], with_buffer=True) == []
    told = rows(
        engine,
        "SELECT booking_id::text AS b FROM notifications WHERE kind = 'BOOKING_RESCHEDULED' "
        "AND booking_id::text = ANY(:ids)",
        ids=ids,
    )
    assert sorted(r["b"] for r in told) == [winner_id, winner_id]


def test_a_reschedule_racing_new_bookings_for_the_same_slot_has_one_winner(
    server: LiveServer, sessions: sessionmaker[Session], engine: Engine
) -> None:
    world = make_world(sessions, hours=ALL_DAY, duration_min=30)
    movers = make_clients(sessions, RACE_ROUNDS)
    bookers = make_clients(sessions, 4)
    starts = [at(local_day(4), 8) + timedelta(hours=i) for i in range(RACE_ROUNDS)]
    ids = insert_confirmed(sessions, world, starts, movers)
    winners: Counter[str] = Counter()
    rng = random.Random()
    for round_no, (booking_id, client, start) in enumerate(zip(ids, movers, starts, strict=True)):
        target = at(local_day(8), 8) + timedelta(hours=round_no)
        create = {
            "artistId": world.artist_id,
            "serviceId": world.service_id,
            "startTime": target.isoformat(),
        }
        shots = [
            Shot(
                f"/api/bookings/{booking_id}/reschedule",
                {"clientId": client, "startTime": target.isoformat()},
            ),
            # A reschedule does more before it takes the slot's lock (a first look at
            # the booking): the new bookings start up to 40 ms later so that either wins.
            *(
                Shot("/api/bookings/create", {**create, "clientId": c}, delay=rng.uniform(0, 0.04))
                for c in bookers
            ),
        ]
        rng.shuffle(shots)

        answers = fire(server.url, shots)

        won = [a for a in answers if a.status in (200, 201)]
        labels = Counter(a.label for a in answers)
        assert len(won) == 1, labels
        assert set(labels) <= {
            "200",
            "201",
            "409 SLOT_TAKEN",
            "409 SLOT_UNAVAILABLE ALREADY_BOOKED",
        }, labels
        winners["reschedule" if won[0].status == 200 else "create"] += 1
        live_at_target = rows(
            engine,
            "SELECT id::text AS id FROM bookings WHERE artist_id::text = :artist "
            "AND start_time = :target AND status IN ('PENDING_PAYMENT', 'CONFIRMED')",
            artist=world.artist_id,
            target=target,
        )
        assert [r["id"] for r in live_at_target] == [won[0].payload["booking"]["id"]]
        mover = booking_rows(engine, [booking_id])[booking_id]
        expected = (target, 1) if won[0].status == 200 else (start, 0)
        assert (mover["start_time"], mover["reschedule_count"]) == expected
    assert overlapping_pairs(engine, [world.artist_id], with_buffer=True) == []
    print(f"\n[reschedule vs 4 new bookings, {RACE_ROUNDS} rounds] winners: {dict(winners)}")


def test_a_cancel_racing_the_payment_webhook_ends_consistent(
    server: LiveServer,
    worker: Child,
    sessions: sessionmaker[Session],
    engine: Engine,
    stripe_emulator: StripeEmulator,
) -> None:
    """Cancel first: the payment arrives for a cancelled booking and goes back in full
    (LATE_PAYMENT). Payment first: the booking was confirmed, then cancelled by the policy
    (refunded inside the refund window, kept outside it). Never a kept payment the policy
    did not keep, never two refunds."""
    refunding = make_world(sessions, refund_window_hours=24)
    keeping = make_world(sessions)  # the default policy keeps a cancelled deposit
    endings: Counter[str] = Counter()
    for round_no in range(CANCEL_ROUNDS):
        world = refunding if round_no % 2 else keeping
        start = at(local_day(3 + round_no // 8), 10 + round_no % 8)
        created = requests.post(
            server.url + "/api/bookings/create",
            json=world.booking(start),
            timeout=HTTP_TIMEOUT,
        )
        assert created.status_code == 201, created.text
        booking = created.json()["booking"]
        paid = stripe_emulator.succeed_payment_intent(booking["paymentIntentId"])
        event = stripe_emulator.event("payment_intent.succeeded", paid)
        cancel = Shot(
            f"/api/bookings/{booking['id']}/cancel",
            {"clientId": world.client_id},
            delay=(round_no % 6) * 0.03,  # 0 to 150 ms: both orders happen
        )

        webhook_answer, cancel_answer = fire(server.url, [signed_webhook(event), cancel])

        assert webhook_answer.status == 200, webhook_answer.payload
        assert cancel_answer.status == 200, cancel_answer.payload
        wait_for(partial(settled, engine, [world.artist_id]), "webhook and refund", worker)
        answered = cancel_answer.payload
        row = booking_rows(engine, [booking["id"]])[booking["id"]]
        assert (row["status"], row["cancelled_by"]) == ("CANCELLED", "CLIENT")
        payments = rows(
            engine,
            "SELECT amount_minor FROM stripe_transactions WHERE booking_id::text = :b "
            "AND kind = 'PAYMENT' AND status = 'SUCCEEDED'",
            b=booking["id"],
        )
        assert [p["amount_minor"] for p in payments] == [5000]
        owed = rows(
            engine,
            "SELECT reason, status, amount_minor FROM refunds WHERE booking_id::text = :b",
            b=booking["id"],
        )
        made = [
            r["amount"]
            for r in stripe_emulator.refunds_of(paid["id"])
            if r["status"] == "succeeded"
        ]
        reasons = [(o["reason"], o["status"]) for o in owed]
        context = (round_no, answered, reasons, row)
        if reasons == [("LATE_PAYMENT", "SUCCEEDED")]:
            # The cancel came first; the payment for the cancelled booking went back.
            ending = "cancelled first: the late payment refunded"
            assert answered["refund"] is None, context
        elif reasons == [("CLIENT_CANCEL", "SUCCEEDED")]:
            ending = "paid first: cancelled inside the window, refunded"
            assert world is refunding, context
            assert answered["refund"] == {
                "amount": "50.00",
                "currency": "eur",
                "status": "SUCCEEDED",
            }, context
        else:
            ending = "paid first: cancelled outside the window, deposit kept"
            assert (world, reasons) == (keeping, []), context
            assert answered["refund"] is None, context
            assert answered["booking"]["depositStatus"] == "FORFEITED", context
        endings[ending] += 1
        if owed:
            assert made == [5000], context
            assert row["deposit_status"] in ("REFUND_PENDING", "REFUNDED"), context
        else:
            assert made == [], context
            assert row["deposit_status"] == "FORFEITED", context
    print(f"\n[cancel vs payment webhook, {CANCEL_ROUNDS} rounds] {dict(endings)}")


def test_a_leave_cancelling_its_conflicts_races_a_reschedule_and_a_new_booking(
    server: LiveServer, sessions: sessionmaker[Session], engine: Engine
) -> None:
    """A leave with cancelConflicting, a reschedule out of its time and a new booking
    into it, all at once: nothing live is left under the leave, whatever wins; the moved
    booking is either moved or cancelled; the new one is either refused or listed and
    cancelled. No 5xx (a lock-order deadlock would answer 503)."""
    world = make_world(sessions, hours=ALL_DAY, duration_min=30)
    movers = make_clients(sessions, RACE_ROUNDS)
    newcomer = make_clients(sessions, 1)[0]
    admin = {"Authorization": f"Bearer {support.ADMIN_TOKEN}"}
    outcomes: Counter[str] = Counter()
    for round_no, client in enumerate(movers):
        day = local_day(4 + round_no)
        [booking_id] = insert_confirmed(sessions, world, [at(day, 11)], [client])
        leave = {
            "startTime": at(day, 10).isoformat(),
            "endTime": at(day, 13).isoformat(),
            "cancelConflicting": True,
        }
        answers = fire(
            server.url,
            [
                Shot(f"/api/admin/artists/{world.artist_id}/leaves", leave, headers=admin),
                Shot(
                    f"/api/bookings/{booking_id}/reschedule",
                    {"clientId": client, "startTime": at(day, 15).isoformat()},
                ),
                Shot(
                    "/api/bookings/create",
                    {
                        "clientId": newcomer,
                        "artistId": world.artist_id,
                        "serviceId": world.service_id,
                        "startTime": at(day, 12).isoformat(),
                    },
                ),
            ],
        )
        added, moved, created = answers
        assert added.status == 201, added.payload
        assert moved.label in {"200", "409 INVALID_STATE"}, moved.payload
        assert created.label in {
            "201",
            "409 SLOT_TAKEN",
            "409 SLOT_UNAVAILABLE ON_LEAVE",
        }, created.payload
        under_leave = rows(
            engine,
            "SELECT id FROM bookings WHERE artist_id::text = :artist "
            "AND status IN ('PENDING_PAYMENT', 'CONFIRMED') "
            "AND start_time < :end AND end_time > :start",
            artist=world.artist_id,
            start=at(day, 10),
            end=at(day, 13),
        )
        assert under_leave == [], (round_no, answers)
        mover = booking_rows(engine, [booking_id])[booking_id]
        if moved.status == 200:
            assert (mover["status"], mover["start_time"]) == ("CONFIRMED", at(day, 15))
            assert booking_id not in added.payload["cancelled"]
        else:
            assert (mover["status"], mover["cancelled_by"]) == ("CANCELLED", "ARTIST")
            assert booking_id in added.payload["cancelled"]
        if created.status == 201:
            assert created.payload["booking"]["id"] in added.payload["cancelled"]
        outcomes[f"reschedule {moved.label}, new booking {created.label}"] += 1
    print(f"\n[leave vs reschedule vs new booking, {RACE_ROUNDS} rounds] {dict(outcomes)}")


# --------------------------------------------------------------------------- soak


@dataclass
class Tracked:
    id: str
    client_id: str
    artist_id: str
    intent_id: str | None
    payment: JSON | None = None  # the succeeded event, once paid (re-sent as a duplicate)


@dataclass
class Soak:
    url: str
    worlds: list[World]
    services: dict[str, list[str]]  # artist -> services (a deposit, and one without)
    clients: list[str]
    days: list[date]
    emulator: StripeEmulator
    bookings: list[Tracked] = field(default_factory=list)
    attempts: Counter[str] = field(default_factory=Counter)
    answers: dict[str, Counter[str]] = field(default_factory=dict)
    unexpected: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def note(self, action: str, answer: Answer, allowed: set[str]) -> None:
        with self.lock:
            self.attempts[action] += 1
            self.answers.setdefault(action, Counter())[answer.label] += 1
            if answer.label not in allowed:
                self.unexpected.append(f"{action}: {answer.label} {answer.payload}")

    def pick(self, rng: random.Random) -> Tracked | None:
        """Mostly a recent booking (more likely still live), sometimes any."""
        with self.lock:
            if not self.bookings:
                return None
            recent = self.bookings[-RECENT:] if rng.random() < 0.8 else self.bookings
            return rng.choice(recent)

    def pick_unpaid(self, rng: random.Random) -> Tracked | None:
        """A recent booking whose deposit nobody paid yet (its hold may have ended)."""
        with self.lock:
            unpaid = [t for t in self.bookings[-RECENT:] if t.intent_id and t.payment is None]
            return rng.choice(unpaid) if unpaid else None

    def start(self, rng: random.Random) -> datetime:
        return at(rng.choice(self.days), rng.randrange(10, 17), rng.choice((0, 30)))


CREATE_OK = {"201", "409 SLOT_TAKEN", "409 SLOT_UNAVAILABLE ALREADY_BOOKED"}
CANCEL_OK = {"200", "409 INVALID_STATE"}
RESCHEDULE_OK = {
    "200",
    "400 VALIDATION_ERROR",  # the random new start was the booking's own start
    "409 INVALID_STATE",
    "409 POLICY_VIOLATION RESCHEDULE_LIMIT",
    "409 SLOT_TAKEN",
    "409 SLOT_UNAVAILABLE ALREADY_BOOKED",
}


def soak_create(soak: Soak, http: requests.Session, rng: random.Random) -> None:
    world = rng.choice(soak.worlds)
    client = rng.choice(soak.clients)
    body = {
        "clientId": client,
        "artistId": world.artist_id,
        # Two services in three take a deposit.
        "serviceId": rng.choice(soak.services[world.artist_id]),
        "startTime": soak.start(rng).isoformat(),
    }
    answer = send(http, soak.url, Shot("/api/bookings/create", body))
    soak.note("create", answer, CREATE_OK)
    if answer.status == 201:
        booking = answer.payload["booking"]
        with soak.lock:
            soak.bookings.append(
                Tracked(booking["id"], client, world.artist_id, booking["paymentIntentId"])
            )


def soak_pay(soak: Soak, http: requests.Session, rng: random.Random) -> None:
    """The client pays (Stripe marks the intent succeeded, sends the signed event), or
    Stripe delivers an event it already sent again."""
    tracked = soak.pick_unpaid(rng) if rng.random() < 0.6 else soak.pick(rng)
    if tracked is None or tracked.intent_id is None:
        return
    if tracked.payment is None:
        try:
            paid = soak.emulator.succeed_payment_intent(tracked.intent_id)
        except ValueError:  # cancelled (or paid by another thread): nothing to pay
            return
        tracked.payment = soak.emulator.event("payment_intent.succeeded", paid)
        action = "pay"
    else:
        action = "webhook duplicate"
    for _ in range(2 if rng.random() < 0.2 else 1):
        soak.note(action, send(http, soak.url, signed_webhook(tracked.payment)), {"200"})


def soak_cancel(soak: Soak, http: requests.Session, rng: random.Random) -> None:
    tracked = soak.pick(rng)
    if tracked is None:
        return
    shot = Shot(f"/api/bookings/{tracked.id}/cancel", {"clientId": tracked.client_id})
    soak.note("cancel", send(http, soak.url, shot), CANCEL_OK)


def soak_staff_cancel(soak: Soak, http: requests.Session, rng: random.Random) -> None:
    tracked = soak.pick(rng)
    if tracked is None:
        return
    shot = Shot(
        f"/api/admin/bookings/{tracked.id}/cancel",
        {"refund": rng.choice(("FULL", "NONE"))},
        headers={"Authorization": f"Bearer {support.ADMIN_TOKEN}"},
    )
    soak.note("operator cancel", send(http, soak.url, shot), CANCEL_OK)


def soak_reschedule(soak: Soak, http: requests.Session, rng: random.Random) -> None:
    tracked = soak.pick(rng)
    if tracked is None:
        return
    shot = Shot(
        f"/api/bookings/{tracked.id}/reschedule",
        {"clientId": tracked.client_id, "startTime": soak.start(rng).isoformat()},
    )
    soak.note("reschedule", send(http, soak.url, shot), RESCHEDULE_OK)


ACTIONS: list[tuple[Callable[[Soak, requests.Session, random.Random], None], int]] = [
    (soak_create, 35),
    (soak_pay, 30),
    (soak_cancel, 12),
    (soak_staff_cancel, 5),
    (soak_reschedule, 18),
]

# Invariants over everything the soak left, each a query listing its violations.
INVARIANTS: dict[str, str] = {
    "live bookings overlap (buffer included)": """
        SELECT a.id FROM bookings a JOIN bookings b
          ON b.artist_id = a.artist_id AND a.id < b.id
        JOIN artists ar ON ar.id = a.artist_id
        WHERE a.artist_id::text = ANY(:artists)
          AND a.status IN ('PENDING_PAYMENT', 'CONFIRMED')
          AND b.status IN ('PENDING_PAYMENT', 'CONFIRMED')
          AND a.start_time < b.end_time + make_interval(mins => ar.buffer_min)
          AND b.start_time < a.end_time + make_interval(mins => ar.buffer_min)""",
    # The money that arrived: exactly one succeeded PAYMENT row for a deposit that came in
    # (paid, kept, going back), none for one that never did.
    "deposit received <> exactly one PAYMENT row": """
        SELECT b.id FROM bookings b
        LEFT JOIN stripe_transactions t ON t.booking_id = b.id
          AND t.kind = 'PAYMENT' AND t.status = 'SUCCEEDED'
        WHERE b.artist_id::text = ANY(:artists)
        GROUP BY b.id, b.deposit_status
        HAVING count(t.id) > 1 OR (count(t.id) = 1) <> (b.deposit_status IN
          ('PAID', 'REFUND_PENDING', 'REFUNDED', 'PARTIALLY_REFUNDED', 'FORFEITED',
           'REFUND_FAILED'))""",
    # A refund owed exactly when the deposit is going back, made once, in full.
    "refund owed <> deposit going back": """
        SELECT b.id FROM bookings b
        LEFT JOIN refunds r ON r.booking_id = b.id
        WHERE b.artist_id::text = ANY(:artists)
        GROUP BY b.id, b.deposit_status
        HAVING count(r.id) > 1
            OR (count(r.id) = 1) <> (b.deposit_status IN ('REFUND_PENDING', 'REFUNDED'))""",
    # ... and once made, the ledger holds one REFUND row giving back all that was paid.
    "deposit going back without one REFUND row of all that was paid": """
        SELECT b.id FROM bookings b
        LEFT JOIN stripe_transactions t ON t.booking_id = b.id
          AND t.kind = 'REFUND' AND t.status = 'SUCCEEDED'
        WHERE b.artist_id::text = ANY(:artists)
        GROUP BY b.id, b.deposit_status
        HAVING count(t.id) > 1
            OR (count(t.id) = 1) <> (b.deposit_status IN ('REFUND_PENDING', 'REFUNDED'))
            OR coalesce(sum(t.amount_minor), 0) <> CASE WHEN count(t.id) = 0 THEN 0 ELSE (
                 SELECT coalesce(sum(p.amount_minor), 0) FROM stripe_transactions p
                 WHERE p.booking_id = b.id AND p.kind = 'PAYMENT' AND p.status = 'SUCCEEDED')
               END""",
    "status and deposit disagree": """
        SELECT id FROM bookings WHERE artist_id::text = ANY(:artists) AND NOT (
            (status = 'PENDING_PAYMENT' AND deposit_status = 'UNPAID')
         OR (status = 'CONFIRMED' AND deposit_status IN ('PAID', 'NOT_REQUIRED'))
         OR (status = 'EXPIRED' AND deposit_status IN ('UNPAID', 'REFUND_PENDING', 'REFUNDED'))
         OR (status = 'CANCELLED' AND cancelled_by IS NOT NULL AND deposit_status IN
              ('UNPAID', 'NOT_REQUIRED', 'REFUND_PENDING', 'REFUNDED', 'FORFEITED')))""",
    "an email twice for one occasion": """
        SELECT n.booking_id FROM notifications n JOIN bookings b ON b.id = n.booking_id
        WHERE b.artist_id::text = ANY(:artists)
        GROUP BY n.booking_id, n.kind, n.recipient, n.occasion HAVING count(*) > 1""",
    "a reschedule without its emails": """
        SELECT b.id FROM bookings b
        WHERE b.artist_id::text = ANY(:artists) AND b.reschedule_count > 0
          AND (SELECT count(*) FROM notifications n WHERE n.booking_id = b.id
               AND n.kind = 'BOOKING_RESCHEDULED') <> 2 * b.reschedule_count""",
}


def test_randomised_lifecycle_soak_keeps_every_invariant(
    server: LiveServer,
    worker: Child,
    sessions: sessionmaker[Session],
    engine: Engine,
    stripe_emulator: StripeEmulator,
    smtp_sink: SmtpSink,
) -> None:
    seed = random.SystemRandom().randrange(1 << 30)
    worlds = [
        make_world(sessions, refund_window_hours=48, buffer_min=15),
        make_world(sessions, max_reschedules=3),
        make_world(sessions, refund_window_hours=0),  # refunded whenever before the start
    ]
    services: dict[str, list[str]] = {}
    with transaction(sessions) as session:
        for world in worlds:
            longer = catalog.create_service(
                session,
                world.artist_id,
                name="Long session",
                duration_min=90,
                price="150.00",
                deposit_amount="50.00",
                currency="eur",
            )
            free = catalog.create_service(
                session,
                world.artist_id,
                name="No deposit",
                duration_min=30,
                price="40.00",
                deposit_amount="0",
                currency="eur",
            )
            services[world.artist_id] = [world.service_id, str(longer.id), str(free.id)]
    soak = Soak(
        url=server.url,
        worlds=worlds,
        services=services,
        clients=make_clients(sessions, 12),
        days=[local_day(3 + i) for i in range(SOAK_DAYS)],
        emulator=stripe_emulator,
    )
    actions, weights = zip(*ACTIONS, strict=True)
    deadline = time.monotonic() + SOAK_SECONDS

    def run(thread_no: int) -> None:
        rng = random.Random(seed + thread_no)
        with requests.Session() as http:
            while time.monotonic() < deadline:
                rng.choices(actions, weights)[0](soak, http, rng)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(SOAK_THREADS)]
    began = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(SOAK_SECONDS + HTTP_TIMEOUT * 2)
    assert not any(t.is_alive() for t in threads)
    elapsed = time.monotonic() - began
    artist_ids = [w.artist_id for w in worlds]
    # Holds run out and are swept; every webhook applied and refund made.
    wait_for(
        lambda: (
            settled(engine, artist_ids)
            and not rows(
                engine,
                "SELECT id FROM bookings WHERE artist_id::text = ANY(:artists) "
                "AND status = 'PENDING_PAYMENT'",
                artists=artist_ids,
            )
        ),
        "the soak's webhooks, refunds and holds to settle",
        worker,
        timeout=60,
    )

    states = rows(
        engine,
        "SELECT status, deposit_status, count(*) AS n FROM bookings "
        "WHERE artist_id::text = ANY(:artists) GROUP BY 1, 2 ORDER BY 1, 2",
        artists=artist_ids,
    )
    violations = {
        name: [str(r[next(iter(r))]) for r in rows(engine, sql, artists=artist_ids)]
        for name, sql in INVARIANTS.items()
    }
    # Stripe's side: one refund at most per intent, in full.
    stripe_refunds: Counter[int] = Counter()
    for tracked in soak.bookings:
        if tracked.payment is not None:
            pi_id = tracked.payment["data"]["object"]["id"]
            paid_minor = stripe_emulator.charge_object(pi_id)["amount"]
            amounts = [
                r["amount"]
                for r in stripe_emulator.refunds_of(pi_id)
                if r["status"] in ("succeeded", "pending")
            ]
            stripe_refunds[len(amounts)] += 1
            if len(amounts) > 1 or any(a != paid_minor for a in amounts):
                violations.setdefault("Stripe refunded twice or in part", []).append(tracked.id)
    # Mail: each outbox row sent at most once (its Message-ID is derived from the row).
    ids = [t.id for t in soak.bookings]
    note_ids = {
        str(r["id"])
        for r in rows(
            engine, "SELECT id FROM notifications WHERE booking_id::text = ANY(:ids)", ids=ids
        )
    }
    sent = Counter(
        m.message_id
        for m in smtp_sink.messages
        if (found := MESSAGE_ID.search(m.message_id)) and found[1] in note_ids
    )
    violations["an email sent twice"] = [m for m, n in sent.items() if n > 1]
    figures = {
        "seed": seed,
        "seconds": round(elapsed, 1),
        "threads": SOAK_THREADS,
        "attempts": dict(soak.attempts),
        "answers": {k: dict(v) for k, v in soak.answers.items()},
        "finalStates": {f"{r['status']}/{r['deposit_status']}": r["n"] for r in states},
        "stripeRefundsPerPaidIntent": dict(stripe_refunds),
        "emailsSent": sum(sent.values()),
        "invariants": {
            k: ("ok" if not v else f"{len(v)} violations") for k, v in violations.items()
        },
    }
    print(f"\n[lifecycle soak] {json.dumps(figures, indent=2)}")
    assert not soak.unexpected, soak.unexpected[:10]
    for action in ("create", "pay", "cancel", "reschedule"):
        assert soak.answers[action]["200" if action != "create" else "201"], action
    assert {k: v for k, v in violations.items() if v} == {}

"""Never double-booked: concurrent POST /api/bookings/create over real HTTP against gunicorn
with 4 sync worker processes, real PostgreSQL and Redis, the Stripe emulator called by the
real SDK. The verdict comes from the database (a self-join over bookings), not from the
application's own answers.

`pytest -s` prints the figures; they are also written to
`<pytest basetemp>/booking-concurrency-figures.json`.
"""

from __future__ import annotations

import json
import os
import random
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import redis
import requests
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.orm import Session, sessionmaker

from devtools.embedded import EmbeddedValkey
from devtools.processes import port_is_open
from devtools.stripe_emulator import StripeEmulator
from shared.adapters.db import transaction
from shared.adapters.models import Booking, BookingStatus
from shared.usecases import catalog
from tests.e2e.conftest import LiveServer
from tests.e2e.load import (
    Outcome,
    fire_together,
    latency,
    live_bookings,
    overlapping_pairs,
    soak,
    tally,
    warm_up,
)
from tests.factories import World, make_world

PARIS = ZoneInfo("Europe/Paris")
LOSER_CODES = {"SLOT_TAKEN", "SLOT_UNAVAILABLE"}
OPEN_MIN, CLOSE_MIN = 10 * 60, 18 * 60  # make_world's default hours, every day

WORKERS = 4  # gunicorn sync worker processes (live_server's, and the Valkey test's)
COLLISION_REQUESTS = 50
OVERLAP_STARTS = ((11, 0), (11, 30), (12, 0))
OVERLAP_PER_START = 10
OVERLAP_ROUNDS = 4
SOAK_ATTEMPTS = 2000
SOAK_THREADS = 16
SOAK_DAYS = 4
SOAK_DURATIONS = (30, 60, 90, 120)
SOAK_BUFFERS = (0, 15, 0)  # one artist each
SEED_ENV = "INKFLOW_SOAK_SEED"  # replay a soak's request sequence (its seed is printed)


# --------------------------------------------------------------------------- helpers


def local_day(days_ahead: int) -> date:
    return datetime.now(PARIS).date() + timedelta(days=days_ahead)


def at(day: date, hour: int, minute: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=PARIS)


def body(client_id: str, artist_id: str, service_id: str, start: datetime) -> dict[str, str]:
    return {
        "clientId": client_id,
        "artistId": artist_id,
        "serviceId": service_id,
        "startTime": start.isoformat(),
    }


def make_clients(sessions: sessionmaker[Session], count: int) -> list[str]:
    tag = uuid.uuid4().hex[:8]
    with transaction(sessions) as session:
        clients = [
            catalog.create_client(session, email=f"load-{tag}-{i}@example.com", name=f"Load {i}")
            for i in range(count)
        ]
        return [str(c.id) for c in clients]


def add_services(
    sessions: sessionmaker[Session], artist_id: str, durations: list[int]
) -> dict[int, str]:
    with transaction(sessions) as session:
        services = {
            d: catalog.create_service(
                session,
                artist_id,
                name=f"Session {d} min",
                duration_min=d,
                price="150.00",
                deposit_amount="50.00",
                currency="eur",
            )
            for d in durations
        }
        return {d: str(s.id) for d, s in services.items()}


def soak_seed() -> int:
    raw = os.environ.get(SEED_ENV)
    return int(raw) if raw else random.SystemRandom().randrange(1 << 30)


def utc(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def assert_only_clean_answers(outcomes: list[Outcome]) -> None:
    """Every answer is a 201 or a 409 SLOT_TAKEN / SLOT_UNAVAILABLE (ALREADY_BOOKED):
    no 5xx, no dropped connection, no other error."""
    bad = [o for o in outcomes if o.status != 201 and o.label not in LOSER_CODES]
    assert not bad, (
        f"{len(bad)} unexpected answers, e.g. {[(o.status, o.payload) for o in bad[:5]]}"
    )
    reasons = {o.reason for o in outcomes if o.label == "SLOT_UNAVAILABLE"}
    assert reasons <= {"ALREADY_BOOKED"}, reasons


def assert_winners_match_database(
    engine: Engine, artist_ids: list[str], winners: list[Outcome]
) -> list[dict[str, Any]]:
    """Every 201's booking exists, live, as answered; nothing live exists besides them."""
    live = {row["id"]: row for row in live_bookings(engine, artist_ids)}
    ids = [w.booking["id"] for w in winners]
    assert len(set(ids)) == len(ids), "one booking id answered twice"
    assert len(live) == len(winners), f"{len(live)} live bookings for {len(winners)} 201s"
    for winner in winners:
        booking, intent = winner.booking, winner.payload["paymentIntent"]  # type: ignore[index]
        row = live.get(booking["id"])
        assert row is not None, f"201 booking {booking['id']} is not live in the database"
        assert row["status"] == "PENDING_PAYMENT"
        assert row["artist_id"] == winner.body["artistId"] == booking["artistId"]
        assert row["service_id"] == winner.body["serviceId"]
        assert row["client_id"] == winner.body["clientId"]
        assert row["start_time"] == datetime.fromisoformat(winner.body["startTime"])
        assert row["start_time"] == utc(booking["startTime"])
        assert row["payment_intent_id"] == intent["id"] == booking["paymentIntentId"]
    return list(live.values())


def assert_no_overlap(engine: Engine, artist_ids: list[str]) -> None:
    overlaps = overlapping_pairs(engine, artist_ids, with_buffer=False)
    assert overlaps == [], f"DOUBLE-BOOKED: {overlaps[:5]}"
    too_close = overlapping_pairs(engine, artist_ids, with_buffer=True)
    assert too_close == [], f"bookings closer than the artist's buffer: {too_close[:5]}"


def free_low_port() -> int:
    """A free TCP port below the ephemeral range (see FIELD-NOTES: an ephemeral port once
    connected to itself and could not be bound)."""
    rng = random.Random()
    for _ in range(200):
        port = rng.randrange(20000, 32000)
        if port_is_open(port):
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port
    raise RuntimeError("no free port below 32768")


@dataclass(frozen=True)
class SoakWorld:
    artist_ids: list[str]
    buffers: dict[str, int]
    services: dict[str, dict[int, str]]  # artist -> duration -> service id
    client_ids: list[str]
    days: list[date]


def make_soak_world(sessions: sessionmaker[Session], first_day: int) -> SoakWorld:
    artist_ids: list[str] = []
    buffers: dict[str, int] = {}
    services: dict[str, dict[int, str]] = {}
    for buffer in SOAK_BUFFERS:
        world = make_world(sessions, duration_min=SOAK_DURATIONS[0], buffer_min=buffer)
        artist_ids.append(world.artist_id)
        buffers[world.artist_id] = buffer
        services[world.artist_id] = {
            SOAK_DURATIONS[0]: world.service_id,
            **add_services(sessions, world.artist_id, list(SOAK_DURATIONS[1:])),
        }
    return SoakWorld(
        artist_ids=artist_ids,
        buffers=buffers,
        services=services,
        client_ids=make_clients(sessions, SOAK_THREADS),
        days=[local_day(first_day + i) for i in range(SOAK_DAYS)],
    )


def soak_bodies(world: SoakWorld, attempts: int, seed: int) -> list[dict[str, str]]:
    """Random (artist, service, client, start on a 15-minute grid inside working hours)."""
    rng = random.Random(seed)
    bodies = []
    for _ in range(attempts):
        artist = rng.choice(world.artist_ids)
        duration = rng.choice(SOAK_DURATIONS)
        minute = OPEN_MIN + 15 * rng.randrange((CLOSE_MIN - OPEN_MIN - duration) // 15 + 1)
        start = at(rng.choice(world.days), minute // 60, minute % 60)
        client = rng.choice(world.client_ids)
        bodies.append(body(client, artist, world.services[artist][duration], start))
    return bodies


def run_soak(
    url: str, engine: Engine, world: SoakWorld, *, seed: int, label: str
) -> dict[str, Any]:
    bodies = soak_bodies(world, SOAK_ATTEMPTS, seed)
    outcomes, duration = soak(url, bodies, threads=SOAK_THREADS)
    assert len(outcomes) == SOAK_ATTEMPTS
    counts = tally(outcomes)
    winners = [o for o in outcomes if o.status == 201]
    figures = {
        "attempts": len(outcomes),
        "threads": SOAK_THREADS,
        "winners": len(winners),
        "answers": counts,
        "durationSeconds": round(duration, 2),
        "requestsPerSecond": round(len(outcomes) / duration, 1),
        "latencyMs": latency(outcomes),
        "seed": seed,
    }
    print(f"\n[{label}] {json.dumps(figures)}")
    assert_only_clean_answers(outcomes)
    assert winners, "no booking succeeded"
    live = assert_winners_match_database(engine, world.artist_ids, winners)
    assert_no_overlap(engine, world.artist_ids)
    figures["liveBookings"] = len(live)
    figures["liveByBuffer"] = {
        str(b): sum(1 for r in live if world.buffers[r["artist_id"]] == b)
        for b in sorted(set(SOAK_BUFFERS))
    }
    return figures


# -------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def figures(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    collected: dict[str, Any] = {}
    yield collected
    path = tmp_path_factory.getbasetemp() / "booking-concurrency-figures.json"
    path.write_text(json.dumps(collected, indent=2, default=str))
    print(f"\nbooking concurrency figures ({path}):\n{json.dumps(collected, indent=2)}")


def warm(server: LiveServer, database_url: str) -> LiveServer:
    warm_up(
        server.url,
        server.process.pid,
        workers=WORKERS,
        db_port=make_url(database_url).port or 5432,
    )
    return server


@pytest.fixture
def server(
    live_server: LiveServer, stripe_emulator: StripeEmulator, database_url: str
) -> LiveServer:
    """gunicorn, 4 sync workers, on the test database, Redis and the Stripe emulator."""
    stripe_emulator.reset_failures()
    return warm(live_server, database_url)


# ----------------------------------------------------------------------------- tests


def test_fifty_simultaneous_requests_for_one_slot_make_one_booking(
    server: LiveServer,
    sessions: sessionmaker[Session],
    engine: Engine,
    stripe_emulator: StripeEmulator,
    figures: dict[str, Any],
) -> None:
    world = make_world(sessions)
    clients = make_clients(sessions, COLLISION_REQUESTS)
    start = at(local_day(3), 11)
    bodies = [body(c, world.artist_id, world.service_id, start) for c in clients]

    began = time.monotonic()
    outcomes = fire_together(server.url, bodies)
    elapsed = time.monotonic() - began

    counts = tally(outcomes)
    figures["collision"] = {
        "requests": len(outcomes),
        "answers": counts,
        "durationSeconds": round(elapsed, 2),
        "latencyMs": latency(outcomes),
    }
    print(f"\n[collision] {json.dumps(figures['collision'])}")
    assert len(outcomes) == COLLISION_REQUESTS
    assert_only_clean_answers(outcomes)
    winners = [o for o in outcomes if o.status == 201]
    assert len(winners) == 1, counts
    [winner] = winners
    [row] = assert_winners_match_database(engine, [world.artist_id], winners)
    assert row["id"] == winner.booking["id"]
    assert row["client_id"] == winner.body["clientId"]
    # Stripe saw exactly one deposit intent for this artist: losers never reached it.
    sent = [
        r
        for r in stripe_emulator.requests_to("/v1/payment_intents", "POST")
        if r.params.get("metadata", {}).get("artistId") == world.artist_id
    ]
    assert len(sent) == 1
    assert sent[0].params["metadata"]["bookingId"] == winner.booking["id"]


def test_overlapping_starts_of_a_long_service_have_one_winner(
    server: LiveServer,
    sessions: sessionmaker[Session],
    engine: Engine,
    figures: dict[str, Any],
) -> None:
    """11:00, 11:30 and 12:00 for a 120-minute service all overlap each other: whatever
    the Redis lock (keyed by start) lets through, only one of them may be booked."""
    rounds = []
    for round_no in range(OVERLAP_ROUNDS):
        buffer = 15 if round_no % 2 else 0
        world = make_world(sessions, duration_min=120, buffer_min=buffer)
        clients = make_clients(sessions, len(OVERLAP_STARTS) * OVERLAP_PER_START)
        day = local_day(3 + round_no)
        starts = [at(day, h, m) for h, m in OVERLAP_STARTS for _ in range(OVERLAP_PER_START)]
        bodies = [
            body(c, world.artist_id, world.service_id, s)
            for c, s in zip(clients, starts, strict=True)
        ]
        random.Random(round_no).shuffle(bodies)

        outcomes = fire_together(server.url, bodies)

        counts = tally(outcomes)
        winners = [o for o in outcomes if o.status == 201]
        won = [utc(w.booking["startTime"]).astimezone(PARIS).strftime("%H:%M") for w in winners]
        rounds.append({"buffer": buffer, "answers": counts, "winningStart": won})
        print(f"\n[overlap round {round_no}] buffer={buffer} {counts} winner={won}")
        assert len(outcomes) == len(bodies)
        assert_only_clean_answers(outcomes)
        assert len(winners) == 1, counts
        assert_winners_match_database(engine, [world.artist_id], winners)
        assert_no_overlap(engine, [world.artist_id])
    figures["overlappingStarts"] = rounds


def test_randomised_soak_never_double_books(
    server: LiveServer,
    sessions: sessionmaker[Session],
    engine: Engine,
    figures: dict[str, Any],
) -> None:
    world = make_soak_world(sessions, first_day=3)
    figures["soakWithRedis"] = run_soak(
        server.url, engine, world, seed=soak_seed(), label="soak redis"
    )


def test_soak_with_redis_stopped_falls_back_to_the_database(
    start_server: Callable[..., LiveServer],
    sessions: sessionmaker[Session],
    engine: Engine,
    stripe_emulator: StripeEmulator,
    database_url: str,
    tmp_path: Path,
    figures: dict[str, Any],
) -> None:
    stripe_emulator.reset_failures()
    valkey = EmbeddedValkey(tmp_path / "valkey", port=free_low_port())
    server: LiveServer | None = None
    try:
        redis_url = valkey.start()
        server = warm(start_server(workers=WORKERS, REDIS_URL=redis_url), database_url)
        world = make_soak_world(sessions, first_day=3)

        # With Valkey up, a booking goes through (taking its lock there). Another artist:
        # the soak's accounting (live bookings == 201s) stays exact.
        probe_world = make_world(sessions)

        def probe(hour: int) -> requests.Response:
            start = at(world.days[0], hour)
            data = body(probe_world.client_id, probe_world.artist_id, probe_world.service_id, start)
            with requests.Session() as http:
                return http.post(server.url + "/api/bookings/create", json=data, timeout=30)

        first = probe(10)
        assert first.status_code == 201, first.text

        # A Valkey that answers errors (OOM under maxmemory; MISCONF and READONLY alike)
        # is as unusable as a stopped one: booking falls back instead of answering 500.
        kv = redis.Redis.from_url(redis_url)
        try:
            kv.config_set("maxmemory-policy", "noeviction")
            kv.config_set("maxmemory", "1")
            refused = probe(12)
            kv.config_set("maxmemory", "0")
        finally:
            kv.close()
        assert refused.status_code == 201, refused.text
        probes = live_bookings(engine, [probe_world.artist_id])
        assert {r["id"] for r in probes} == {
            first.json()["booking"]["id"],
            refused.json()["booking"]["id"],
        }

        valkey.stop()
        assert not port_is_open(valkey.port)

        figures["soakRedisStopped"] = run_soak(
            server.url, engine, world, seed=soak_seed(), label="soak redis stopped"
        )
    finally:
        if server is not None:
            server.stop()
        valkey.stop()
    assert server is not None
    assert server.process.log_path is not None
    log = server.process.log_path.read_text(errors="replace")
    assert "Redis unreachable or refusing commands (OutOfMemoryError" in log
    assert "Redis unreachable or refusing commands (ConnectionError" in log
    assert "Traceback" not in log, log[-4000:]


def test_self_join_detects_bookings_inside_the_buffer(
    sessions: sessionmaker[Session], engine: Engine
) -> None:
    """Control for the checks above: back-to-back live bookings pass the exclusion
    constraint (raw times), but the buffer-aware self-join flags them for a 15-min artist."""
    world: World = make_world(sessions, buffer_min=15)
    day = local_day(3)
    now = datetime.now(UTC)
    with transaction(sessions) as session:
        for hour in (11, 12):
            session.add(
                Booking(
                    id=uuid.uuid4(),
                    client_id=uuid.UUID(world.client_id),
                    artist_id=uuid.UUID(world.artist_id),
                    service_id=uuid.UUID(world.service_id),
                    start_time=at(day, hour),
                    end_time=at(day, hour + 1),
                    status=BookingStatus.CONFIRMED,
                    deposit_amount=0,
                    deposit_status="NOT_REQUIRED",
                    currency="eur",
                    confirmed_at=now,
                    created_at=now,
                    updated_at=now,
                )
            )
    assert overlapping_pairs(engine, [world.artist_id], with_buffer=False) == []
    assert len(overlapping_pairs(engine, [world.artist_id], with_buffer=True)) == 1

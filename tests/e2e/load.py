"""Load helpers for the concurrency tests: many client threads against a live server, each
with its own `requests.Session` (its own TCP connection), and SQL checks over bookings."""

from __future__ import annotations

import itertools
import threading
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import psutil
import requests
from sqlalchemy import text
from sqlalchemy.engine import Engine

CREATE_PATH = "/api/bookings/create"
LIVE = ("PENDING_PAYMENT", "CONFIRMED")
HTTP_TIMEOUT = 30.0


@dataclass(frozen=True, slots=True)
class Outcome:
    """One answer of POST /api/bookings/create (status -1: no answer at all)."""

    body: dict[str, str]
    status: int
    payload: dict[str, Any] | None
    elapsed: float

    @property
    def error(self) -> str | None:
        if self.payload is None:
            return None
        error = self.payload.get("error")
        return error if isinstance(error, str) else None

    @property
    def reason(self) -> str | None:
        details = (self.payload or {}).get("details") or {}
        reason = details.get("reason") if isinstance(details, dict) else None
        return reason if isinstance(reason, str) else None

    @property
    def booking(self) -> dict[str, Any]:
        assert self.payload is not None
        booking: dict[str, Any] = self.payload["booking"]
        return booking

    @property
    def label(self) -> str:
        """`201`, the error code of a 409, or `<status> <code>` for anything else."""
        if self.status == 201:
            return "201"
        if self.status == 409 and self.error:
            return self.error
        return f"{self.status} {self.error or ''}".strip()


def _post(http: requests.Session, url: str, body: dict[str, str]) -> Outcome:
    began = time.monotonic()
    try:
        response = http.post(url + CREATE_PATH, json=body, timeout=HTTP_TIMEOUT)
    except requests.RequestException as exc:
        return Outcome(body, -1, {"error": type(exc).__name__}, time.monotonic() - began)
    try:
        payload = response.json()
    except ValueError:
        payload = {"error": "NOT_JSON", "message": response.text[:200]}
    return Outcome(body, response.status_code, payload, time.monotonic() - began)


def _run_threads(threads: list[threading.Thread]) -> None:
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(HTTP_TIMEOUT * 4)
    alive = [t.name for t in threads if t.is_alive()]
    assert not alive, f"client threads still running: {alive}"


def _ready_workers(master: psutil.Process, db_port: int) -> tuple[int, int]:
    """(workers forked, workers holding a database connection, i.e. booted and served)."""
    children = master.children()
    ready = 0
    for child in children:
        try:
            conns = child.net_connections(kind="tcp")
        except psutil.Error:
            continue
        if any(c.raddr and c.raddr.port == db_port for c in conns):
            ready += 1
    return len(children), ready


def warm_up(url: str, master_pid: int, *, workers: int, db_port: int, timeout: float = 30) -> None:
    """Send rounds of concurrent GET /readyz until every gunicorn worker has booted (the
    app loads after fork, so a fresh server queues requests for seconds) and holds a pooled
    database connection: races then run against warm workers, not against boot time."""
    master = psutil.Process(master_pid)
    deadline = time.monotonic() + timeout

    def probe() -> None:
        with requests.Session() as http:
            http.get(url + "/readyz", timeout=HTTP_TIMEOUT)

    while True:
        forked, ready = _ready_workers(master, db_port)
        if forked >= workers and ready >= workers:
            return
        assert time.monotonic() < deadline, f"{ready}/{workers} gunicorn workers ready"
        _run_threads([threading.Thread(target=probe) for _ in range(2 * workers)])


def fire_together(url: str, bodies: Sequence[dict[str, str]]) -> list[Outcome]:
    """One thread per body, each with its own session; all released by one Barrier."""
    barrier = threading.Barrier(len(bodies))
    outcomes: list[Outcome | None] = [None] * len(bodies)

    def shoot(index: int) -> None:
        with requests.Session() as http:
            barrier.wait(timeout=HTTP_TIMEOUT)
            outcomes[index] = _post(http, url, bodies[index])

    _run_threads(
        [threading.Thread(target=shoot, args=(i,), name=f"shot-{i}") for i in range(len(bodies))]
    )
    return [o for o in outcomes if o is not None]


def soak(
    url: str, bodies: Sequence[dict[str, str]], *, threads: int
) -> tuple[list[Outcome], float]:
    """Send every body once from `threads` threads (started together, each taking the next
    body until none is left); returns the outcomes and the wall time in seconds."""
    barrier = threading.Barrier(threads + 1)
    counter = itertools.count()
    outcomes: list[Outcome | None] = [None] * len(bodies)

    def work() -> None:
        with requests.Session() as http:
            barrier.wait(timeout=HTTP_TIMEOUT)
            while (index := next(counter)) < len(bodies):
                outcomes[index] = _post(http, url, bodies[index])

    workers = [threading.Thread(target=work, name=f"soak-{i}") for i in range(threads)]
    for worker in workers:
        worker.start()
    barrier.wait(timeout=HTTP_TIMEOUT)
    began = time.monotonic()
    for worker in workers:
        worker.join(HTTP_TIMEOUT * 20)
    duration = time.monotonic() - began
    assert not any(w.is_alive() for w in workers), "soak threads still running"
    return [o for o in outcomes if o is not None], duration


def tally(outcomes: Iterable[Outcome]) -> dict[str, int]:
    counts = Counter(o.label for o in outcomes)
    return dict(sorted(counts.items(), key=lambda kv: (kv[0] != "201", kv[0])))


def latency(outcomes: Iterable[Outcome]) -> dict[str, dict[str, float]]:
    """Milliseconds per answer label: median, 95th percentile, maximum."""
    by_label: dict[str, list[float]] = {}
    for outcome in outcomes:
        by_label.setdefault(outcome.label, []).append(outcome.elapsed * 1000)
    stats = {}
    for label, values in sorted(by_label.items()):
        values.sort()
        stats[label] = {
            "p50": round(values[len(values) // 2], 1),
            "p95": round(values[min(len(values) - 1, int(len(values) * 0.95))], 1),
            "max": round(values[-1], 1),
        }
    return stats


# ------------------------------------------------------------------------------ SQL


def live_bookings(engine: Engine, artist_ids: Sequence[str]) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT id::text AS id, artist_id::text AS artist_id, "
                "service_id::text AS service_id, client_id::text AS client_id, "
                "start_time, end_time, status, payment_intent_id "
                "FROM bookings WHERE artist_id::text = ANY(:artists) AND status = ANY(:live)"
            ),
            {"artists": list(artist_ids), "live": list(LIVE)},
        ).mappings()
        return [dict(row) for row in rows]


def overlapping_pairs(
    engine: Engine, artist_ids: Sequence[str], *, with_buffer: bool
) -> list[dict[str, Any]]:
    """Pairs of live bookings of one artist that overlap, or (with_buffer) lie closer
    together than the artist's buffer. A self-join over the table, independent of the
    application's own checks and of the exclusion constraint."""
    query = text(
        "SELECT a.id::text AS a, b.id::text AS b, a.artist_id::text AS artist, "
        "ar.buffer_min, a.start_time AS a_start, a.end_time AS a_end, "
        "b.start_time AS b_start, b.end_time AS b_end "
        "FROM bookings a "
        "JOIN bookings b ON b.artist_id = a.artist_id AND a.id < b.id "
        "JOIN artists ar ON ar.id = a.artist_id "
        "WHERE a.artist_id::text = ANY(:artists) "
        "AND a.status = ANY(:live) AND b.status = ANY(:live) "
        "AND a.start_time < b.end_time + make_interval(mins => :gap * ar.buffer_min) "
        "AND b.start_time < a.end_time + make_interval(mins => :gap * ar.buffer_min) "
        "ORDER BY a.start_time"
    )
    with engine.connect() as conn:
        params = {"artists": list(artist_ids), "live": list(LIVE), "gap": int(with_buffer)}
        rows = conn.execute(query, params).mappings()
        return [dict(row) for row in rows]

"""Faults under load, as tests: the system as `make run` runs it (devtools.stack: a real
gunicorn, a Celery worker and beat under the stack's supervisor, embedded Valkey and
PostgreSQL on ports of their own: the machine's Redis and PostgreSQL are never touched),
clients booking and paying while a server dies. Each test prints its figures: requests by
status before, during and after the outage, and how long recovery took.

- Redis (lock store and broker) SIGKILLed and started again: the worker survives (or is
  started again by its supervisor), every payment is applied exactly once, holds still
  expire, no slot is sold twice.
- PostgreSQL stopped and started (a restart): never a 500 (503 while it is down), every
  payment applied once, and no PaymentIntent left open that no booking names: the
  reconciler attaches or cancels the one a booking could not store.

The worker SIGKILLed mid-refund is tests/e2e/test_webhooks_e2e.py.
"""

from __future__ import annotations

import re
import shutil
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import Engine

from devtools.processes import port_is_open
from devtools.stack import Stack
from devtools.stripe_emulator import StripeEmulator
from shared.adapters.db import make_engine, make_session_factory
from shared.config import normalise_db_url
from tests import support
from tests.e2e import faults
from tests.e2e.faults import Traffic, by_status
from tests.e2e.load import overlapping_pairs
from tests.factories import World, make_world
from tests.fakes.smtp_sink import SmtpSink

VALKEY_PORTS = range(26421, 26429)
POSTGRES_PORTS = range(25441, 25449)
OUTAGE_SECONDS = 2.0
LOAD_AROUND_SECONDS = 2.0  # of traffic before the fault, and after the server is back
STRIPE_LATE_SECONDS = 1.5  # longer than PostgreSQL takes to stop
CREATE = "/v1/payment_intents"
# The reconciler's log lines (shared/usecases/intents.py), relayed by the stack.
RECONCILED = re.compile(r"inkflow\.intents: .*deposit intent (pi_\w+) (attached|cancelled)")


def free(ports: range) -> int:
    port = next((p for p in ports if not port_is_open(p)), None)
    if port is None:
        pytest.fail(f"no free port in {ports}")
    return port


def artists(engine: Engine, n: int = 3) -> list[World]:
    """Artists working around the clock in UTC, 30-minute services with a deposit."""
    sessions = make_session_factory(engine)
    hours = [(d, 0, 1440) for d in range(7)]
    return [make_world(sessions, timezone="UTC", hours=hours, duration_min=30) for _ in range(n)]


def converge(engine: Engine, traffic: Traffic, timeout: float = 60) -> float:
    """Seconds until every webhook is delivered and applied and every hold has run out and
    been swept (assertion error with what is left otherwise)."""
    began = time.monotonic()
    done = faults.answers(
        lambda: (
            traffic.emulator.wait_for_deliveries(0)
            and faults.backlog(engine) == 0
            and not faults.payments_applied_once(engine, traffic.paid)
            and not faults.stale_holds(engine, [w.artist_id for w in traffic.worlds])
        )
    )
    if not support.wait_until(done, timeout, interval=0.2):
        left = {
            "deliveries pending": not traffic.emulator.wait_for_deliveries(0),
            "backlog": faults.rows(
                engine,
                "SELECT id, type, status, attempts, last_error, received_at FROM stripe_events "
                "WHERE status IN ('RECEIVED', 'FAILED') ORDER BY received_at LIMIT 10",
            ),
            "payments": faults.payments_applied_once(engine, traffic.paid),
            "stale holds": faults.stale_holds(engine, [w.artist_id for w in traffic.worlds]),
        }
        pytest.fail(faults.report(f"not settled within {timeout:.0f} s", left))
    return round(time.monotonic() - began, 2)


def check_no_double_booking(engine: Engine, traffic: Traffic) -> None:
    ids = [w.artist_id for w in traffic.worlds]
    assert overlapping_pairs(engine, ids, with_buffer=False) == []


def no_server_errors(calls: list[faults.Call]) -> list[faults.Call]:
    """Anything but an answer below 500 or a 503: a 500, a 502, no answer at all."""
    return [c for c in calls if c.status == -1 or (c.status >= 500 and c.status != 503)]


# --- Redis -----------------------------------------------------------------------------------


def test_redis_killed_under_load(
    database_url: str,
    engine: Engine,
    stripe_emulator: StripeEmulator,
    smtp_sink: SmtpSink,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    env = faults.stack_env(
        DATABASE_URL=database_url,
        REDIS_URL="",
        CELERY_QUEUE=faults.new_queue_name(),
        SMTP_URL=smtp_sink.url,
    )
    port = free(VALKEY_PORTS)
    with faults.running_stack(tmp_path, env, stripe_emulator, valkey_port=port) as stack:
        valkey = stack.valkey
        assert valkey is not None  # the stack's own: lock store and broker
        worlds = artists(engine)
        traffic = Traffic(stack.api_url, worlds, stripe_emulator).start()
        try:
            time.sleep(LOAD_AROUND_SECONDS)
            killed = time.time()
            valkey.kill()
            time.sleep(OUTAGE_SECONDS)
            valkey.start()
            back = time.time()
            # Recovery: every event the API stored until the restart is applied.
            drained = faults.answers(lambda: faults.backlog(engine, received_before=back) == 0)
            recovered = support.wait_until(drained, 60, interval=0.1)
            recovery = round(time.time() - back, 2)
            time.sleep(max(0.0, back + LOAD_AROUND_SECONDS - time.time()))
        finally:
            traffic.stop()
        stopped = time.time()
        settled = converge(engine, traffic)
        worker = stack.supervised["worker"]
        figures = {
            "outage seconds": round(back - killed, 2),
            "before": by_status(traffic.calls + traffic.webhook_calls(), traffic.began, killed),
            "during": by_status(traffic.calls + traffic.webhook_calls(), killed, back),
            "after": by_status(traffic.calls + traffic.webhook_calls(), back, stopped + 60),
            "events stored until the restart all applied, after (s)": recovery,
            "everything settled after the load stopped (s)": settled,
            "payments applied (each once)": len(traffic.paid),
            "of which applied after the hold ran out and the slot was taken: refunded": (
                faults.late_payments_refunded(engine, traffic.paid)
            ),
            "holds left unpaid (all expired)": len(traffic.unpaid),
            "worker exits / restarts by the supervisor": (worker.exits, worker.restarts),
            "beat exits": stack.supervised["beat"].exits,
        }
        with capsys.disabled():
            print(faults.report("Redis SIGKILLed under load", figures))
        assert recovered, faults.backlog(engine)
        assert worker.child.alive()
        check_no_double_booking(engine, traffic)
        assert no_server_errors(traffic.calls + traffic.webhook_calls()) == []
        assert "Unrecoverable error" not in (tmp_path / "stack.log").read_text()
        assert len(traffic.paid) > 10
        assert len(traffic.unpaid) > 5


# --- PostgreSQL ------------------------------------------------------------------------------


@pytest.fixture
def var_root() -> Iterator[Path]:
    """A directory outside pytest's tmp root: the embedded PostgreSQL runs as `nobody`
    under root, and another pytest session on the machine may take the search bit back
    from /tmp/pytest-of-root while initdb runs."""
    path = Path(tempfile.mkdtemp(prefix="inkflow-fault-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_postgres_restarted_under_load(
    stripe_emulator: StripeEmulator,
    smtp_sink: SmtpSink,
    var_root: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    tmp_path = var_root
    env = faults.stack_env(
        DATABASE_URL="",
        REDIS_URL="",
        SMTP_URL=smtp_sink.url,
        CELERY_QUEUE=faults.new_queue_name(),
        INTENT_RECONCILE_SECONDS="1",
        INTENT_RECONCILE_GRACE_SECONDS="4",
    )
    ports = {"postgres_port": free(POSTGRES_PORTS), "valkey_port": free(VALKEY_PORTS)}
    with faults.running_stack(tmp_path, env, stripe_emulator, **ports) as stack:
        postgres = stack.postgres
        assert postgres is not None
        engine = make_engine(normalise_db_url(stack.env["DATABASE_URL"]), pool_size=2)
        try:
            figures = _postgres_restart(stack, engine, stripe_emulator, tmp_path / "stack.log")
        finally:
            engine.dispose()
    with capsys.disabled():
        print(faults.report("PostgreSQL restarted under load", figures))


def _postgres_restart(
    stack: Stack, engine: Engine, emulator: StripeEmulator, log: Path
) -> dict[str, Any]:
    postgres = stack.postgres
    assert postgres is not None
    worlds = artists(engine)
    traffic = Traffic(stack.api_url, worlds, emulator).start()
    try:
        time.sleep(LOAD_AROUND_SECONDS)
        # The worst moment for one booking: committed, its intent made, and the database
        # gone before the id is stored (Stripe answers late; the traffic holds back so
        # that the slow answer is this booking's).
        with traffic.paused():
            asked = len(emulator.requests_to(CREATE, "POST"))
            emulator.delay_next(STRIPE_LATE_SECONDS, path_prefix=CREATE, method="POST",
                                phase="after")  # fmt: skip
            cut = traffic.book_alone(worlds[0], datetime.now(UTC) + timedelta(days=300))
            made = lambda: len(emulator.requests_to(CREATE, "POST")) > asked  # noqa: E731
            assert support.wait_until(made, 10)
        stopped_at = time.time()
        postgres.stop()
        assert cut.result(faults.HTTP_TIMEOUT).status_code == 503
        time.sleep(max(0.0, stopped_at + OUTAGE_SECONDS - time.time()))
        postgres.start()
        back = time.time()
        engine.dispose()  # the test's own connections died with the server
        time.sleep(LOAD_AROUND_SECONDS)
    finally:
        traffic.stop()
    load_ended = time.time()
    first_201 = min(
        (c.began for c in traffic.calls if c.status == 201 and c.began >= back), default=None
    )
    settled = converge(engine, traffic)
    orphans, reconciled = _intents_accounted_for(engine, emulator, worlds, log)
    calls = traffic.calls + traffic.webhook_calls()
    figures = {
        "outage seconds": round(back - stopped_at, 2),
        "before": by_status(calls, traffic.began, stopped_at),
        "during": by_status(calls, stopped_at, back),
        "after": by_status(calls, back, load_ended + 60),
        "first 201 after the restart (s)": first_201 and round(first_201 - back, 2),
        "everything settled after the load stopped (s)": settled,
        "payments applied (each once)": len(traffic.paid),
        "of which applied after the hold ran out and the slot was taken: refunded": (
            faults.late_payments_refunded(engine, traffic.paid)
        ),
        "holds left unpaid (all expired)": len(traffic.unpaid),
        "intents no booking named, then found by the reconciler": reconciled,
        "worker exits / restarts by the supervisor": (
            stack.supervised["worker"].exits,
            stack.supervised["worker"].restarts,
        ),
    }
    assert orphans == [], figures
    assert reconciled, figures  # the booking cut between Stripe and the store
    assert no_server_errors(calls) == [], figures
    assert by_status(calls, stopped_at, back).get("book", {}).get(503), figures
    check_no_double_booking(engine, traffic)
    assert first_201 is not None, figures
    assert len(traffic.paid) > 10
    return figures


def _intents_accounted_for(
    engine: Engine, emulator: StripeEmulator, worlds: list[World], log: Path
) -> tuple[list[dict[str, Any]], list[str]]:
    """Wait for the reconciler; then every intent made for these artists is named by its
    booking, and open only while that booking waits for (or got) its payment. Returns the
    intents still unaccounted for and those the reconciler found."""
    artist_ids = {w.artist_id for w in worlds}

    def ours() -> list[dict[str, Any]]:
        made = emulator.payment_intents()
        return [pi for pi in made if pi["metadata"].get("artistId") in artist_ids]

    def unaccounted() -> list[dict[str, Any]]:
        named = {
            r["payment_intent_id"]: r["status"]
            for r in faults.rows(
                engine,
                "SELECT payment_intent_id, status FROM bookings "
                "WHERE artist_id::text = ANY(:ids) AND payment_intent_id IS NOT NULL",
                ids=list(artist_ids),
            )
        }
        left = []
        for pi in ours():
            status = named.get(pi["id"])
            settled = pi["status"] in ("canceled", "succeeded")
            if status is None or (status not in ("PENDING_PAYMENT", "CONFIRMED") and not settled):
                left.append({"intent": pi["id"], "status": pi["status"], "booking": status})
        return left

    support.wait_until(faults.answers(lambda: not unaccounted()), 40, interval=0.5)
    found = RECONCILED.findall(log.read_text(errors="replace"))
    return unaccounted(), [f"{intent} {what}" for intent, what in found]

"""The embedded PostgreSQL and Valkey servers behind `make run`.

Ports differ from `make run`'s (25432 / 26379) so a running stack does not interfere.
Under root the PostgreSQL server runs as `nobody`: pytest's 0700 tmp root is handled
by EmbeddedPostgres itself.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
import redis
from psycopg import errors

from devtools.embedded import EmbeddedPostgres, EmbeddedValkey
from devtools.processes import port_is_open

PG_PORT = 25433
VALKEY_PORT = 26380
REPO_ROOT = Path(__file__).resolve().parents[2]

EXCLUSION_TABLE = """
CREATE TABLE booking (
    id serial PRIMARY KEY,
    artist_id int NOT NULL,
    start_time timestamptz NOT NULL,
    end_time timestamptz NOT NULL,
    status text NOT NULL,
    CONSTRAINT booking_no_overlap EXCLUDE USING gist (
        artist_id WITH =, tstzrange(start_time, end_time, '[)') WITH &&
    ) WHERE (status IN ('PENDING_PAYMENT', 'CONFIRMED'))
)
"""


def _insert(conn: psycopg.Connection, start_hour: int, end_hour: int, status: str) -> None:
    day = datetime(2026, 3, 3, tzinfo=UTC)
    conn.execute(
        "INSERT INTO booking (artist_id, start_time, end_time, status) VALUES (1, %s, %s, %s)",
        (day + timedelta(hours=start_hour), day + timedelta(hours=end_hour), status),
    )


def test_postgres_18_with_btree_gist_exclusion(tmp_path_factory: pytest.TempPathFactory) -> None:
    data_dir = tmp_path_factory.mktemp("embedded") / "postgres"
    pg = EmbeddedPostgres(data_dir, port=PG_PORT)
    second = EmbeddedPostgres(data_dir, port=PG_PORT)
    try:
        url = pg.start()
        assert url == f"postgresql://postgres@127.0.0.1:{PG_PORT}/inkflow"
        with psycopg.connect(url, autocommit=True) as conn:
            row = conn.execute("SELECT version()").fetchone()
            assert row is not None
            assert row[0].startswith("PostgreSQL 18.")
            conn.execute("CREATE EXTENSION IF NOT EXISTS btree_gist")
            conn.execute(EXCLUSION_TABLE)
            _insert(conn, 10, 11, "CONFIRMED")
            _insert(conn, 11, 12, "PENDING_PAYMENT")  # back to back is fine
            _insert(conn, 10, 12, "CANCELLED")  # ignored by the constraint
            with pytest.raises(errors.ExclusionViolation) as caught:
                _insert(conn, 10, 12, "PENDING_PAYMENT")
            assert caught.value.sqlstate == "23P01"
            assert caught.value.diag.constraint_name == "booking_no_overlap"

        # Another handle on the same data dir adopts the running server.
        assert second.start() == url
        assert second.adopted
    finally:
        pg.stop()
        second.stop()
    assert not port_is_open(PG_PORT)
    assert not (data_dir / "postmaster.pid").exists()

    # A crash left a postmaster.pid whose pid now belongs to another process (us).
    (data_dir / "postmaster.pid").write_text(
        f"{os.getpid()}\n{data_dir}\n0\n{PG_PORT}\n\n127.0.0.1\n0 0\nready\n"
    )
    with EmbeddedPostgres(data_dir, port=PG_PORT) as restarted:
        assert not restarted.adopted
        with psycopg.connect(restarted.url) as conn:
            row = conn.execute("SELECT count(*) FROM booking").fetchone()
            assert row == (3,)
    assert not port_is_open(PG_PORT)


def test_valkey_lock_semantics_and_persistence(tmp_path_factory: pytest.TempPathFactory) -> None:
    data_dir = tmp_path_factory.mktemp("embedded") / "valkey"
    kv = EmbeddedValkey(data_dir, port=VALKEY_PORT)
    try:
        url = kv.start()
        assert url == f"redis://127.0.0.1:{VALKEY_PORT}/0"
        with redis.Redis.from_url(url, decode_responses=True) as client:
            assert client.set("lock:artist:1", "token-a", nx=True, px=5000)
            assert client.set("lock:artist:1", "token-b", nx=True, px=5000) is None
            assert 0 < client.pttl("lock:artist:1") <= 5000
            assert client.config_get("appendonly") == {"appendonly": "yes"}
            client.set("kept", "across restarts")
    finally:
        kv.stop()
    assert not port_is_open(VALKEY_PORT)

    # A run killed with SIGKILL leaves valkey-server behind; the next start replaces it
    # and the data written through the AOF is still there.
    script = (
        "import sys, time\n"
        "from pathlib import Path\n"
        "from devtools.embedded import EmbeddedValkey\n"
        f"EmbeddedValkey(Path(sys.argv[1]), port={VALKEY_PORT}).start()\n"
        "print('up', flush=True)\n"
        "time.sleep(60)\n"
    )
    with subprocess.Popen(
        [sys.executable, "-c", script, str(data_dir)],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        text=True,
    ) as crashing:
        assert crashing.stdout is not None
        assert crashing.stdout.readline().strip() == "up"
        crashing.send_signal(signal.SIGKILL)
        crashing.wait(10)
    assert port_is_open(VALKEY_PORT)  # orphaned server still listening

    with (
        EmbeddedValkey(data_dir, port=VALKEY_PORT) as again,
        redis.Redis.from_url(again.url, decode_responses=True) as client,
    ):
        assert client.get("kept") == "across restarts"
        assert client.config_get("appendonly") == {"appendonly": "yes"}
    assert not port_is_open(VALKEY_PORT)

"""Raw ceilings for context: what PostgreSQL and Redis themselves do on this machine.

- PostgreSQL: single-row INSERT transactions per second into a plain (logged, so every
  commit waits for the WAL flush) table of the bench database, from `threads` psycopg
  connections in autocommit mode; plus pgbench with the same statement when installed.
- Redis: `SET key value NX PX 10000` per second from `threads` redis-py clients without
  pipelining; plus redis-benchmark with the same command when installed. Keys live under
  the run's prefix and are deleted afterwards.
The Python figures include the client's own cost (one Python process, the GIL), which
is also what the application's processes pay; the native tools show the servers' side.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from typing import Any

import psycopg
import redis
from sqlalchemy.engine import make_url

TABLE = "bench_ceiling_inserts"
INSERT = (
    f"INSERT INTO {TABLE} (artist_id, start_time, end_time) "  # noqa: S608 - constant
    "VALUES (gen_random_uuid(), now(), now() + interval '1 hour')"
)


def _threaded(worker: Callable[[threading.Event], int], threads: int, seconds: float) -> float:
    """Run `worker` in `threads` threads for `seconds`; operations per second."""
    stop = threading.Event()
    counts: list[int] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def body() -> None:
        try:
            n = worker(stop)
        except BaseException as exc:  # noqa: BLE001 - re-raised by the harness thread
            with lock:
                errors.append(exc)
            return
        with lock:
            counts.append(n)

    pool = [threading.Thread(target=body, daemon=True) for _ in range(threads)]
    began = time.perf_counter()
    for thread in pool:
        thread.start()
    time.sleep(seconds)
    stop.set()
    for thread in pool:
        thread.join(30)
    elapsed = time.perf_counter() - began
    if errors:
        raise errors[0]
    return sum(counts) / elapsed


def postgres_inserts(url: str, threads: int, seconds: float) -> dict[str, Any]:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            f"CREATE TABLE IF NOT EXISTS {TABLE} (id bigserial PRIMARY KEY, artist_id uuid "
            "NOT NULL, start_time timestamptz NOT NULL, end_time timestamptz NOT NULL)"
        )

    def worker(stop: threading.Event) -> int:
        n = 0
        with psycopg.connect(url, autocommit=True) as conn:
            while not stop.is_set():
                conn.execute(INSERT)
                n += 1
        return n

    result: dict[str, Any] = {"python_tps": round(_threaded(worker, threads, seconds), 1)}
    result["threads"] = threads
    result["pgbench_tps"] = _pgbench(url, threads, seconds)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"DROP TABLE IF EXISTS {TABLE}")
    return result


def _pgbench(url: str, clients: int, seconds: float) -> float | None:
    binary = shutil.which("pgbench")
    if binary is None:
        return None
    parsed = make_url(url)
    args = [binary, "-n", "-c", str(clients), "-j", "2", "-T", str(max(1, round(seconds)))]
    args += ["-h", parsed.host or "127.0.0.1", "-p", str(parsed.port or 5432)]
    args += ["-U", parsed.username or "postgres"]
    env = {"PATH": "/usr/bin:/bin"}
    if parsed.password:
        env["PGPASSWORD"] = str(parsed.password)
    with tempfile.NamedTemporaryFile("w", suffix=".sql") as script:
        script.write(INSERT + ";\n")
        script.flush()
        try:
            done = subprocess.run(
                [*args, "-f", script.name, parsed.database or "postgres"],
                capture_output=True,
                text=True,
                timeout=seconds + 30,
                env=env,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired):
            return None
    found = re.search(r"tps = ([\d.]+)", done.stdout)
    return round(float(found.group(1)), 1) if found else None


def redis_set_nx_px(url: str, prefix: str, threads: int, seconds: float) -> dict[str, Any]:
    def worker(stop: threading.Event) -> int:
        client = redis.Redis.from_url(url)
        tag = threading.get_ident()
        n = 0
        try:
            while not stop.is_set():
                client.set(f"{prefix}:py:{tag}:{n}", b"1", nx=True, px=10_000)
                n += 1
        finally:
            client.close()
        return n

    result: dict[str, Any] = {
        "python_ops": round(_threaded(worker, threads, seconds), 1),
        "threads": threads,
        "redis_benchmark_ops": _redis_benchmark(url, prefix, threads),
    }
    client = redis.Redis.from_url(url)
    try:
        batch: list[bytes] = []
        for key in client.scan_iter(match=f"{prefix}:*", count=5000):
            batch.append(key)
            if len(batch) >= 5000:
                client.delete(*batch)
                batch.clear()
        if batch:
            client.delete(*batch)
    finally:
        client.close()
    return result


def _redis_benchmark(url: str, prefix: str, clients: int) -> float | None:
    binary = shutil.which("redis-benchmark") or shutil.which("valkey-benchmark")
    if binary is None:
        return None
    parsed = make_url(url.replace("redis://", "redis+x://", 1))
    args = [binary, "-h", parsed.host or "127.0.0.1", "-p", str(parsed.port or 6379)]
    args += ["-c", str(clients), "-n", "100000", "-r", "1000000", "--csv"]
    if parsed.database:
        args += ["--dbnum", str(parsed.database)]
    if parsed.password:
        args += ["-a", str(parsed.password)]
    args += ["SET", f"{prefix}:rb:__rand_int__", "1", "NX", "PX", "10000"]
    try:
        done = subprocess.run(args, capture_output=True, text=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    for line in done.stdout.splitlines():
        fields = [f.strip('"') for f in line.split(",")]
        if len(fields) > 1 and fields[0].startswith("SET"):
            try:
                return round(float(fields[1]), 1)
            except ValueError:
                return None
    return None

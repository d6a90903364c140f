"""The stack under test, started as production runs it, and everything to clean it up.

- PostgreSQL: the machine's server (BENCH_DATABASE_URL) when reachable, else the embedded
  one from `devtools.embedded`; in both cases a fresh database `inkflow_bench_<id>`,
  migrated with Alembic and dropped at the end.
- Redis: BENCH_REDIS_URL when reachable, else embedded Valkey. The bench only touches
  keys of its own: its Celery queue `inkflow-bench-<id>` (+ kombu's binding key), the
  slot-lock keys of its own artists, the pidbox binding of its own worker and the
  ceiling keys `inkflow-bench-<id>:*`. Nothing is flushed.
- The Stripe emulator (`python -m devtools.stripe_emulator --port N`), gunicorn with
  `services/api/gunicorn_conf.py` (WEB_CONCURRENCY, default 4 as the README says) and
  one Celery worker process (`--concurrency=1 --without-mingle --without-gossip`), each
  in its own session so that Ctrl-C reaches the bench only and the bench stops them in
  order. Logs go to var/bench/logs/<id>/.

A run killed with SIGKILL leaves var/bench/running.json behind: the next run stops the
processes it names and drops its database before starting.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

import psycopg
import redis
from sqlalchemy.engine import make_url

from devtools import commands
from devtools.processes import (
    Child,
    ChildError,
    http_answers,
    identity,
    port_is_open,
    same_process,
    stop_all,
    terminate,
    with_descendants,
)
from services.api import gunicorn_conf
from tests.support import free_port, libpq_url

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
LOADGEN_CMD = [commands.PY, "-m", "tests.bench.loadgen"]
# The worker the README recommends (docker-compose.yml runs it; `make run` runs 2).
WORKER_POOL = "prefork"
WORKER_CONCURRENCY = 8

# Optional settings that a developer's .env could set (e.g. AUTH_JWT_SECRET would turn
# every client request into a 401): set empty here, so that python-dotenv leaves them.
SHIELDED = (
    "AUTH_JWT_SECRET", "SMTP_URL", "CORS_ORIGINS", "CELERY_BROKER_URL", "PLATFORM_FEE_BPS",
    "MAX_OPEN_HOLDS_PER_CLIENT", "BOOKING_HOLD_SECONDS", "HOLD_SWEEP_SECONDS",
    "STRIPE_TIMEOUT_SECONDS", "STRIPE_MAX_RETRIES", "BOOKING_LOCK_TTL_SECONDS",
    "INBOX_SWEEP_SECONDS", "INBOX_REDELIVERY_SECONDS", "CELERY_VISIBILITY_TIMEOUT",
)  # fmt: skip


class HarnessError(Exception):
    """The bench itself cannot go on (a server did not start, a process died...)."""


class Interrupted(BaseException):
    """SIGTERM/SIGHUP arrived (SIGINT raises KeyboardInterrupt): unwind and clean up."""


@dataclass
class BenchSettings:
    """What the bench runs with; every value can be set from the environment."""

    database_url: str = field(
        default_factory=lambda: os.environ.get("BENCH_DATABASE_URL", DEFAULT_DATABASE_URL)
    )
    redis_url: str = field(
        default_factory=lambda: os.environ.get("BENCH_REDIS_URL", DEFAULT_REDIS_URL)
    )
    # The production configuration: services/api/gunicorn_conf.py's values (env-driven).
    web_concurrency: int = field(default_factory=lambda: gunicorn_conf.workers)
    threads: int = field(default_factory=lambda: gunicorn_conf.threads)
    connections: int = 0  # 0: workers × worker_connections
    warmup: float = field(default_factory=lambda: float(os.environ.get("BENCH_WARMUP", "2")))
    duration: float = field(default_factory=lambda: float(os.environ.get("BENCH_DURATION", "8")))
    webhook_events: int = field(
        default_factory=lambda: int(os.environ.get("BENCH_WEBHOOK_EVENTS", "1000"))
    )
    webhook_rate: float = field(
        default_factory=lambda: float(os.environ.get("BENCH_WEBHOOK_RATE", "200"))
    )
    contention: int = field(default_factory=lambda: int(os.environ.get("BENCH_CONTENTION", "2000")))
    # The Celery worker as the README recommends it (BENCH_WORKER_POOL/_CONCURRENCY).
    worker_pool: str = field(
        default_factory=lambda: os.environ.get("BENCH_WORKER_POOL", WORKER_POOL)
    )
    worker_concurrency: int = field(
        default_factory=lambda: int(
            os.environ.get("BENCH_WORKER_CONCURRENCY", str(WORKER_CONCURRENCY))
        )
    )
    profile: bool = field(
        default_factory=lambda: os.environ.get("BENCH_PROFILE", "") not in ("", "0")
    )
    out_dir: Path = field(
        default_factory=lambda: Path(os.environ.get("BENCH_OUT", str(ROOT / "var" / "bench")))
    )

    def __post_init__(self) -> None:
        if self.connections <= 0:
            raw = os.environ.get("BENCH_CONNECTIONS", "")
            # As many clients as the API holds connections (processes × worker_connections).
            held = self.web_concurrency * gunicorn_conf.worker_connections
            self.connections = int(raw) if raw else held


class Stack:
    """Servers, database and processes of one bench run; `close()` undoes everything."""

    def __init__(self, settings: BenchSettings, say: Callable[[str], None]) -> None:
        self.settings = settings
        self.say = say
        self.run_id = uuid.uuid4().hex[:8]
        self.out_dir = settings.out_dir.absolute()
        self.log_dir = self.out_dir / "logs" / self.run_id
        self.database_name = f"inkflow_bench_{self.run_id}"
        self.queue = f"inkflow-bench-{self.run_id}"
        self.worker_name = f"bench-{self.run_id}@{socket.gethostname()}"
        self.key_prefix = f"inkflow-bench-{self.run_id}"
        self.webhook_secret = f"whsec_bench_{uuid.uuid4().hex}"
        self.admin_token = f"bench-admin-{uuid.uuid4().hex}"
        self.server_url = ""  # PostgreSQL maintenance database URL
        self.database_url = ""  # ours
        self.redis_url = ""
        self.postgres_mode = ""
        self.redis_mode = ""
        self.children: dict[str, Child] = {}
        self.api_port = 0
        self.stripe_port = 0
        self.artist_ids: list[str] = []  # for the slot-lock keys
        self._embedded: list[tuple[str, Callable[[], None]]] = []
        self._database_created = False
        self.hurry = False
        self.closed = False

    # -- paths and environment

    @property
    def state_file(self) -> Path:
        return self.out_dir / "running.json"

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def stripe_url(self) -> str:
        return f"http://127.0.0.1:{self.stripe_port}"

    def app_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k != "GUNICORN_ACCESS_LOG"}
        env.update({name: "" for name in SHIELDED})
        env.update(
            {
                "DATABASE_URL": self.database_url,
                "REDIS_URL": self.redis_url,
                "STRIPE_SECRET_KEY": "sk_test_inkflow_bench",
                "STRIPE_WEBHOOK_SECRET": self.webhook_secret,
                "STRIPE_API_BASE": self.stripe_url,
                "ADMIN_API_TOKEN": self.admin_token,
                # Required outside development (the web pages' key); any value will do here.
                "WEB_SECRET_KEY": f"bench-web-{self.admin_token}",
                "CELERY_QUEUE": self.queue,
                "LOG_LEVEL": "WARNING",
                "HOST": "127.0.0.1",
                "PORT": str(self.api_port),
                "WEB_CONCURRENCY": str(self.settings.web_concurrency),
                "GUNICORN_THREADS": str(self.settings.threads),
                "PYTHONPATH": str(ROOT),
                "PYTHONUNBUFFERED": "1",
            }
        )
        return env

    # -- start

    def start(self) -> None:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self._clear_leftovers()
        self._save_state()
        self._start_postgres()
        self._start_redis()
        self._create_database()
        self.stripe_port, self.api_port = free_port(), free_port()
        while self.api_port == self.stripe_port:
            self.api_port = free_port()
        env = self.app_env()
        stripe = self._spawn("stripe", commands.stripe_emulator(self.stripe_port), env)
        api = self._spawn("api", commands.api(), env)
        self._spawn(
            "worker",
            commands.celery(
                "worker", "-Q", self.queue, "-n", self.worker_name,
                f"--concurrency={self.settings.worker_concurrency}",
                f"--pool={self.settings.worker_pool}", "--without-mingle", "--without-gossip",
                "--without-heartbeat",
                "--loglevel=WARNING",
            ),
            env,
        )  # fmt: skip
        try:
            stripe.wait_ready(lambda: port_is_open(self.stripe_port), 30, "listen")
            api.wait_ready(lambda: port_is_open(self.api_port), 30, "listen")
            healthz = f"{self.api_url}/healthz"
            api.wait_ready(lambda: http_answers(healthz, status=200), 30, "answer 200 on /healthz")
        except ChildError as exc:
            raise HarnessError(str(exc)) from exc
        self.check_alive()

    def _start_postgres(self) -> None:
        url = libpq_url(self.settings.database_url)
        try:
            with psycopg.connect(url, connect_timeout=3, autocommit=True) as conn:
                conn.execute("SELECT 1")
            self.server_url, self.postgres_mode = url, "machine"
            return
        except psycopg.Error as exc:
            self.say(f"PostgreSQL at {make_url(url).render_as_string()} unreachable ({exc}).")
        from devtools.embedded import EmbeddedPostgres

        pg = EmbeddedPostgres(self.out_dir / "postgres", port=free_port(), database="postgres")
        self._embedded.append(("PostgreSQL", pg.stop))
        self.say("Starting embedded PostgreSQL (devtools.embedded)…")
        self.server_url, self.postgres_mode = pg.start(), "embedded"

    def _start_redis(self) -> None:
        url = self.settings.redis_url
        client = redis.Redis.from_url(url, socket_connect_timeout=2)
        try:
            client.ping()
            self.redis_url, self.redis_mode = url, "machine"
            return
        except redis.RedisError as exc:
            self.say(f"Redis at {url} unreachable ({exc}).")
        finally:
            client.close()
        from devtools.embedded import EmbeddedValkey

        kv = EmbeddedValkey(self.out_dir / "valkey", port=free_port())
        self._embedded.append(("Valkey", kv.stop))
        self.say("Starting embedded Valkey (devtools.embedded)…")
        self.redis_url, self.redis_mode = kv.start(), "embedded"

    def _create_database(self) -> None:
        from alembic import command
        from alembic.config import Config

        with psycopg.connect(self.server_url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{self.database_name}"')
        self._database_created = True
        self._save_state()
        self.database_url = (
            make_url(self.server_url)
            .set(database=self.database_name)
            .render_as_string(hide_password=False)
        )
        config = Config(str(ROOT / "alembic.ini"))
        config.set_main_option("script_location", str(ROOT / "migrations"))
        config.attributes["configure_logger"] = False
        previous = os.environ.get("DATABASE_URL")
        os.environ["DATABASE_URL"] = self.database_url
        try:
            command.upgrade(config, "head")
        finally:
            if previous is None:
                del os.environ["DATABASE_URL"]
            else:
                os.environ["DATABASE_URL"] = previous

    def _spawn(self, name: str, args: list[str], env: dict[str, str]) -> Child:
        child = spawn(name, args, env, self.log_dir)
        self.children[name] = child
        self._save_state()
        return child

    # -- more instances (tests/bench/latency.py): same database, Redis and emulator

    def start_api(self, name: str, env: dict[str, str] | None = None) -> int:
        """Another gunicorn (`env` overrides, e.g. WEB_CONCURRENCY); returns its port."""
        port = free_port()
        child = self._spawn(
            name, commands.api(), {**self.app_env(), **(env or {}), "PORT": str(port)}
        )
        try:
            child.wait_ready(lambda: port_is_open(port), 30, "listen")
            healthz = f"http://127.0.0.1:{port}/healthz"
            child.wait_ready(lambda: http_answers(healthz, status=200), 30, "answer 200")
        except ChildError as exc:
            raise HarnessError(str(exc)) from exc
        return port

    def start_worker(
        self, name: str, *options: str, queue: str | None = None, ready: bool = True
    ) -> Child:
        """Another Celery worker on `queue` (default: the bench's). Its node name contains
        the bench worker's, so the pidbox clean-up finds it."""
        queue = queue or self.queue
        env = {**self.app_env(), "CELERY_QUEUE": queue}
        return self._spawn(
            name,
            commands.celery(
                "worker", "-Q", queue, "-n", f"{name}.{self.worker_name}", *options,
                "--without-mingle", "--without-gossip", "--without-heartbeat",
                "--loglevel=WARNING",
            ),
            env,
        )  # fmt: skip

    def stop_child(self, name: str) -> None:
        child = self.children.pop(name, None)
        if child is not None:
            stop_all([child], hurry=lambda: self.hurry)
            self._save_state()

    def check_alive(self) -> None:
        for child in self.children.values():
            if not child.alive():
                raise HarnessError(
                    f"{child.name} exited (status {child.returncode}):\n{child.output(3000)}"
                )

    # -- processes by role (CPU accounting, profiling)

    def pids(self) -> dict[str, list[int]]:
        return {name: [p.pid for p in c.family()] for name, c in self.children.items()}

    # -- clean-up

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        signals = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
        previous = {signum: signal.getsignal(signum) for signum in signals}

        def hurry(signum: int, frame: FrameType | None) -> None:
            # A second Ctrl-C must not abandon the clean-up: it only stops the waiting.
            self.hurry = True
            self.say("Hurrying: killing the remaining processes")

        for signum in signals:
            signal.signal(signum, hurry)
        try:
            # Consumers first (workers, then API instances), then what they use.
            names = sorted(self.children, key=lambda n: (n == "stripe", not n.startswith("w")))
            for name in names:
                stop_all([self.children[name]], hurry=lambda: self.hurry)
            self._clean_redis()
            self._drop_database()
            for name, stop in reversed(self._embedded):
                try:
                    stop()
                except Exception as exc:  # noqa: BLE001 - stop the others anyway
                    self.say(f"could not stop embedded {name}: {exc}")
            self.state_file.unlink(missing_ok=True)
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)

    def _clean_redis(self) -> None:
        if not self.redis_url:
            return
        client = redis.Redis.from_url(self.redis_url, socket_connect_timeout=2)
        try:
            delete_own_keys(client, self.queue, self.worker_name, self.key_prefix, self.artist_ids)
        except redis.RedisError as exc:
            self.say(f"could not clean Redis: {exc}")
        finally:
            client.close()

    def _drop_database(self) -> None:
        if not self._database_created:
            return
        try:
            drop_database(self.server_url, self.database_name)
            self._database_created = False
        except psycopg.Error as exc:
            self.say(f"could not drop database {self.database_name}: {exc}")

    # -- leftovers of a killed run

    def _save_state(self) -> None:
        state = {
            **identity(os.getpid()),
            "server_url": self.server_url,
            "database": self.database_name if self._database_created else None,
            "redis_url": self.redis_url or self.settings.redis_url,
            "queue": self.queue,
            "worker_name": self.worker_name,
            "key_prefix": self.key_prefix,
            "log_dir": str(self.log_dir),
            "children": [c.identity() for c in self.children.values()],
        }
        self.state_file.write_text(json.dumps(state))

    def _clear_leftovers(self) -> None:
        try:
            state = json.loads(self.state_file.read_text())
        except (OSError, ValueError):
            return
        if same_process(state) is not None:
            raise HarnessError(
                f"another bench (pid {state.get('pid')}) is running: stop it first "
                "(two benches on one machine measure each other)"
            )
        self.say("Cleaning up after a bench run that was killed…")
        for entry in state.get("children", []):
            proc = same_process(entry)
            if proc is not None:
                terminate(with_descendants(proc), first=signal.SIGKILL)
        if state.get("database") and state.get("server_url"):
            with contextlib.suppress(psycopg.Error):
                drop_database(state["server_url"], state["database"])
        with contextlib.suppress(redis.RedisError, KeyError):
            client = redis.Redis.from_url(state["redis_url"], socket_connect_timeout=2)
            with contextlib.closing(client):
                delete_own_keys(
                    client, state["queue"], state["worker_name"], state["key_prefix"], []
                )
        for bodies in Path(state.get("log_dir") or "/nonexistent").glob("bodies-*.json"):
            bodies.unlink(missing_ok=True)
        self.state_file.unlink(missing_ok=True)


def spawn(name: str, args: list[str], env: dict[str, str], log_dir: Path) -> Child:
    """A process of the bench in its own session (a Ctrl-C reaches the bench only, which
    stops them in order), output in `log_dir/<name>.log`."""
    return Child(name, args, env=env, log_path=log_dir / f"{name}.log", new_session=True)


def drop_database(server_url: str, name: str) -> None:
    with psycopg.connect(server_url, autocommit=True, connect_timeout=5) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def scan(client: redis.Redis, pattern: str) -> Iterator[bytes]:
    yield from client.scan_iter(match=pattern, count=1000)


def delete_own_keys(
    client: redis.Redis, queue: str, worker_name: str, prefix: str, artist_ids: list[str]
) -> int:
    """Our queue, kombu's binding of it, our worker's pidbox binding, our ceiling keys
    and the slot locks of our artists. Returns how many keys were deleted."""
    keys: list[bytes | str] = [
        queue,
        f"_kombu.binding.{queue}",
        f"_kombu.binding_permanent.{queue}",
    ]
    keys += [f"{queue}\x06\x16{priority}" for priority in range(10)]  # kombu priority lists
    keys += list(scan(client, f"{prefix}:*"))
    if artist_ids:
        own = {a.encode() for a in artist_ids}
        for key in scan(client, "inkflow:lock:slot:*"):
            if key.split(b":")[3] in own:
                keys.append(key)
    deleted = int(client.delete(*keys))
    for binding in scan(client, "_kombu.binding*pidbox"):
        for member in client.smembers(binding):
            if worker_name.encode() in member:
                client.srem(binding, member)
    return deleted


def install_signal_handlers() -> None:
    """SIGTERM/SIGHUP unwind like Ctrl-C, so that the clean-up in `finally` runs."""

    def stop(signum: int, frame: FrameType | None) -> None:
        raise Interrupted(signal.Signals(signum).name)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGHUP, stop)

"""`make run`: the whole inkflow system on this machine, with nothing configured.

    .venv/bin/python -m devtools.stack

Reads `.env` (never overriding the real environment), then starts what is missing:
PostgreSQL 18 and Valkey from pip wheels (data under `var/`) when DATABASE_URL /
REDIS_URL are unset, the Stripe emulator when STRIPE_SECRET_KEY is unset (delivering
its webhook events to the API, state in `var/stripe/`), and development defaults for the
other required settings. `make run` is a development tool: it opts in to
INKFLOW_ENV=development when that is unset (and says so), which is what lets the API and
the worker accept its published secrets. With INKFLOW_ENV=production set, it fills in no
secret: ADMIN_API_TOKEN, STRIPE_WEBHOOK_SECRET and STRIPE_SECRET_KEY must be given.
It writes the settings it chose to `var/run.env` (mode 0600,
read by the `inkflow` CLI; removed on exit), migrates, seeds the demo
data, runs the API (gunicorn), a Celery worker and Celery beat with their output
prefixed by name, and on Ctrl-C / SIGTERM stops everything it started: the
processes first (SIGTERM, SIGKILL after 10 s), then Valkey, then PostgreSQL.

A worker or beat that exits on its own (a crash, SIGKILL, the OOM killer) is started again
after 1 s, 2 s, 4 s … (at most 30 s; `devtools.processes.Backoff`), as `restart:` does in
docker-compose.yml and `Restart=` under systemd; after 5 exits in a row, each within 30 s
of its start, it is given up. The API and the Stripe emulator are not restarted: gunicorn
already restarts its own workers, so its master exits only when it cannot run at all (a
setting, the port, the app failing to import), which a restart would only repeat. When
one of those exits, or a worker or beat is given up, everything is stopped and the exit
status is 1.

A harness can reuse the pieces:

    with Stack(var_dir=tmp) as stack:
        env = stack.start_infrastructure()
        stack.migrate()
        stack.start_app(beat=False)
        ...

Its processes are `devtools.processes.Child`ren whose output is relayed to the console.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import logging
import os
import secrets
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any, Self, TextIO

from devtools import commands
from devtools.embedded import (
    DEFAULT_POSTGRES_PORT,
    DEFAULT_VALKEY_PORT,
    EmbeddedPostgres,
    EmbeddedValkey,
)
from devtools.processes import (
    REPO_ROOT,
    STOP_TIMEOUT_SECONDS,
    Backoff,
    Child,
    ChildError,
    Supervised,
    Supervision,
    http_answers,
    identity,
    port_is_open,
    same_process,
    stop_all,
    terminate,
    with_descendants,
)
from shared.config import DEVELOPMENT

STRIPE_EMULATOR_PORT = 12111

# Filled in when unset, and printed so that a newcomer can use them.
DEV_DEFAULTS: dict[str, str] = {
    "PORT": "8000",
    "LOG_LEVEL": "INFO",
}
# The same, in development only (INKFLOW_ENV=development): published in this repository,
# so the API and the worker refuse them in production (`shared.config.check_safe_to_run`).
DEV_SECRETS: dict[str, str] = {
    "ADMIN_API_TOKEN": "dev-admin-token",
    "STRIPE_WEBHOOK_SECRET": "whsec_dev_inkflow",
}
DEV_STRIPE_SECRET_KEY = "sk_test_dev_inkflow"  # noqa: S105 - only valid for the local emulator
# Settings whose values are secrets: printed only when this stack chose them.
SECRET_SETTINGS = ("ADMIN_API_TOKEN", "STRIPE_WEBHOOK_SECRET", "STRIPE_SECRET_KEY")
DEV_STRIPE_PUBLISHABLE_KEY = "pk_test_dev_inkflow"

# No mingle/gossip: one local worker has no neighbours to wait a second for.
WORKER_ARGS = (
    "worker",
    "--loglevel=INFO",
    "--concurrency=2",
    "--without-mingle",
    "--without-gossip",
)

# What `var/run.env` carries for the CLI (those set), plus INKFLOW_API_URL and, when the
# emulator runs, STRIPE_EMULATOR_URL.
RUN_ENV_SETTINGS = (
    "DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL", "CELERY_QUEUE", "STRIPE_SECRET_KEY",
    "STRIPE_PUBLISHABLE_KEY", "STRIPE_WEBHOOK_SECRET", "STRIPE_API_BASE", "ADMIN_API_TOKEN",
    "AUTH_JWT_SECRET", "INKFLOW_ENV",
)  # fmt: skip


class StackError(Exception):
    """Start-up cannot go on; the message says what failed (with the program's output)."""


class StopRequested(BaseException):
    """SIGINT/SIGTERM/SIGHUP arrived: unwind whatever is running and stop everything.

    A BaseException, like KeyboardInterrupt, so that no `except Exception` swallows it.
    """

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class Console:
    """Serialises lines from several threads: `name | text`, coloured on a terminal."""

    COLOURS = {"api": 32, "worker": 34, "beat": 35, "stripe": 33, "stack": 1}

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream if stream is not None else sys.stdout
        self._lock = threading.RLock()
        self._colour = self.stream.isatty() and not os.environ.get("NO_COLOR")

    def line(self, name: str, text: str) -> None:
        prefix = f"{name:<7}|"
        if self._colour:
            prefix = f"\033[{self.COLOURS.get(name, 36)}m{prefix}\033[0m"
        # suppress: the stream may be closed (e.g. piped to `head`).
        with self._lock, contextlib.suppress(ValueError, OSError):
            self.stream.write(f"{prefix} {text}\n")
            self.stream.flush()

    def say(self, text: str = "") -> None:
        for part in text.splitlines() or [""]:
            self.line("stack", part)


class _ConsoleHandler(logging.Handler):
    def __init__(self, console: Console) -> None:
        super().__init__()
        self.console = console

    def emit(self, record: logging.LogRecord) -> None:
        self.console.say(self.format(record))


class Stack:
    """The processes and servers of one `make run`; see the module docstring."""

    def __init__(
        self,
        *,
        root: Path = REPO_ROOT,
        var_dir: Path | None = None,
        environ: Mapping[str, str] | None = None,
        console: Console | None = None,
        stop_timeout: float = STOP_TIMEOUT_SECONDS,
        postgres_port: int = DEFAULT_POSTGRES_PORT,
        valkey_port: int = DEFAULT_VALKEY_PORT,
        stripe_port: int = STRIPE_EMULATOR_PORT,
        restart: Backoff | None = None,
    ) -> None:
        self.root = root
        self.var_dir = (var_dir or root / "var").absolute()
        self.env: dict[str, str] = dict(os.environ if environ is None else environ)
        self.console = console or Console()
        self.stop_timeout = stop_timeout
        self.postgres_port = postgres_port
        self.valkey_port = valkey_port
        self.stripe_port = stripe_port
        self.children: list[Child] = []  # the app's processes, stopped first
        self.helpers: list[Child] = []  # what they use (the Stripe emulator)
        self.restart = restart or Backoff()
        self.supervised: dict[str, Supervised] = {}  # started again when they exit
        # What start_infrastructure filled in: name -> (value, note).
        self.defaults: dict[str, tuple[str, str]] = {}
        self.postgres: EmbeddedPostgres | None = None
        self.valkey: EmbeddedValkey | None = None
        self.stopping = False  # set once stop() began (a signal then only hurries it)
        self.hurry = False  # a second signal: kill instead of waiting
        self._servers: list[tuple[str, Callable[[], None]]] = []
        self.emulator_url: str | None = None  # set when the Stripe emulator is started

    # -- settings and servers

    def _unset(self, name: str) -> bool:
        return not self.env.get(name, "").strip()

    def _default(self, name: str, value: str, note: str = "") -> None:
        self.env[name] = value
        self.defaults[name] = (value, note)

    @property
    def web_key_file(self) -> Path:
        return self.var_dir / "web_secret_key"

    def _web_secret_key(self) -> str:
        """The web pages' key (WEB_SECRET_KEY) for development: generated once and kept
        in var/, so that a restart keeps browser sessions and e-mailed booking links."""
        try:
            return self.web_key_file.read_text().strip()
        except FileNotFoundError:
            key = secrets.token_urlsafe(48)
            fd = os.open(self.web_key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as out:
                out.write(key + "\n")
            return key

    @property
    def api_url(self) -> str:
        host = self.env.get("HOST", "").strip() or "127.0.0.1"
        if host == "0.0.0.0":  # noqa: S104 - reading gunicorn's bind, not binding
            host = "127.0.0.1"
        return f"http://{host}:{self.env.get('PORT', DEV_DEFAULTS['PORT'])}"

    def start_infrastructure(self) -> dict[str, str]:
        """Fill in defaults and start PostgreSQL, Valkey and the Stripe emulator where
        the environment names none. Returns the environment for the app processes."""
        self.var_dir.mkdir(parents=True, exist_ok=True)
        self.clear_leftovers()
        if self._unset("INKFLOW_ENV"):
            self._default(
                "INKFLOW_ENV", DEVELOPMENT, "make run opts in: development secrets are accepted"
            )
        development = self.env["INKFLOW_ENV"].strip().lower() == DEVELOPMENT
        if not development:
            missing = [name for name in SECRET_SETTINGS if self._unset(name)]
            if missing:
                raise StackError(
                    f"INKFLOW_ENV={self.env['INKFLOW_ENV']}: make run fills in no development "
                    f"secret; set {', '.join(missing)} (or INKFLOW_ENV=development)"
                )
        for name, value in {**DEV_DEFAULTS, **(DEV_SECRETS if development else {})}.items():
            if self._unset(name):
                self._default(name, value)
        if self._unset("WEB_SECRET_KEY"):
            self.env["WEB_SECRET_KEY"] = self._web_secret_key()
            self.defaults["WEB_SECRET_KEY"] = ("(generated)", f"kept in {self.web_key_file}")
        stripe_emulated = self._unset("STRIPE_SECRET_KEY") and self._unset("STRIPE_API_BASE")
        if self._unset("STRIPE_SECRET_KEY"):
            self._default("STRIPE_SECRET_KEY", DEV_STRIPE_SECRET_KEY)
        if stripe_emulated and port_is_open(self.stripe_port):
            raise StackError(
                f"port {self.stripe_port} (Stripe emulator) is already in use: is another "
                "`make run` running? Stop it, or set STRIPE_API_BASE to your own emulator."
            )

        if self._unset("DATABASE_URL"):
            pg = EmbeddedPostgres(self.var_dir / "postgres", port=self.postgres_port)
            self.postgres = pg
            self._servers.append(("PostgreSQL", pg.stop))  # before start: it may half-start
            url = pg.start()
            where = "reused the running" if pg.adopted else "embedded"
            self._default("DATABASE_URL", url, f"{where} PostgreSQL 18, data in {pg.data_dir}")
        if self._unset("REDIS_URL"):
            kv = EmbeddedValkey(self.var_dir / "valkey", port=self.valkey_port)
            self.valkey = kv
            self._servers.append(("Valkey", kv.stop))
            url = kv.start()
            self._default("REDIS_URL", url, f"embedded Valkey, data in {kv.data_dir}")
        if stripe_emulated:
            base = f"http://127.0.0.1:{self.stripe_port}"
            self._default("STRIPE_API_BASE", base, "the project's Stripe emulator")
            if self._unset("STRIPE_PUBLISHABLE_KEY"):
                self._default("STRIPE_PUBLISHABLE_KEY", DEV_STRIPE_PUBLISHABLE_KEY)
            self.emulator_url = base
            self._start_stripe_emulator()
        self.write_run_env()
        return self.env

    @property
    def webhook_url(self) -> str:
        return f"{self.api_url}/api/webhooks/stripe"

    def _start_stripe_emulator(self) -> None:
        options = (
            "--webhook-url", self.webhook_url,
            "--webhook-secret", self.env["STRIPE_WEBHOOK_SECRET"],
            "--state", str(self.var_dir / "stripe" / "state.json"),
        )  # fmt: skip
        command = commands.stripe_emulator(self.stripe_port, *options)
        child = self.spawn("stripe", command, helper=True)
        try:
            child.wait_ready(lambda: port_is_open(self.stripe_port), 30, "start listening")
        except ChildError as exc:
            raise StackError(f"the Stripe emulator failed: {exc}") from exc

    # -- what the CLI reads

    @property
    def run_env_file(self) -> Path:
        return self.var_dir / "run.env"

    def write_run_env(self) -> None:
        """The settings chosen, for `inkflow` in another terminal (the environment it
        runs in still wins). Mode 0600: it holds secrets. Written atomically."""
        lines = ["# Written by `make run` for the inkflow CLI; removed when it stops."]
        for name in RUN_ENV_SETTINGS:
            if not self._unset(name):
                lines.append(f"{name}={shlex.quote(self.env[name])}")
        lines.append(f"INKFLOW_API_URL={shlex.quote(self.api_url)}")
        if self.emulator_url:
            lines.append(f"STRIPE_EMULATOR_URL={shlex.quote(self.emulator_url)}")
        tmp = self.run_env_file.with_name(".run.env.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write("\n".join(lines) + "\n")
        os.replace(tmp, self.run_env_file)

    # -- what an earlier, killed run left behind

    @property
    def state_file(self) -> Path:
        return self.var_dir / "stack.json"

    def _save_state(self) -> None:
        """Record our pid and our processes', so that a run after a SIGKILL can clean up."""

        children = [c.identity() for c in [*self.children, *self.helpers]]
        self.state_file.write_text(json.dumps({**identity(os.getpid()), "children": children}))

    def clear_leftovers(self) -> None:
        """Refuse to run beside a live stack on the same var dir; stop the processes of a
        stack that died without stopping them (PostgreSQL and Valkey handle their own)."""
        self.var_dir.mkdir(parents=True, exist_ok=True)
        try:
            state = json.loads(self.state_file.read_text())
        except (OSError, ValueError):
            state = {}
        if isinstance(state, dict) and state.get("pid") != os.getpid():
            owner = same_process(state)
            if owner is not None:
                raise StackError(
                    f"another stack (pid {owner.pid}) is running on {self.var_dir}: stop it first"
                )
            for entry in state.get("children", []):
                proc = same_process(entry)
                if proc is None:
                    continue
                self.console.say(
                    f"Stopping {entry.get('name')} (pid {proc.pid}) left by a killed run"
                )
                terminate(with_descendants(proc), self.stop_timeout)
        self._save_state()

    # -- one-shot steps

    def _child_env(self) -> dict[str, str]:
        return {**self.env, "PYTHONUNBUFFERED": "1"}

    def run_step(self, title: str, cmd: Sequence[str], timeout: float = 300) -> str:
        """Run a one-shot command; its output on success, StackError with it on failure."""
        try:
            result = subprocess.run(
                list(cmd),
                cwd=self.root,
                env=self._child_env(),
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise StackError(f"{title} did not finish within {timeout:.0f} s") from exc
        output = "\n".join(part.strip() for part in (result.stdout, result.stderr) if part.strip())
        if result.returncode != 0:
            raise StackError(
                f"{title} failed (exit status {result.returncode}): {' '.join(cmd)}\n{output}"
            )
        return result.stdout

    def migrate(self) -> None:
        self.console.say("Migrating the database (alembic upgrade head)…")
        self.run_step("migrations", commands.migrate())

    def seed(self) -> dict[str, Any]:
        """Create (or find) the demo data; print it and return the ids."""
        output = self.run_step("seeding the demo data", commands.seed()).strip()
        self.console.say("Demo data:")
        self.console.say(output)
        try:
            ids = json.loads(output)
        except ValueError:
            return {}
        return ids if isinstance(ids, dict) else {}

    # -- long-running processes

    def _child(self, name: str, cmd: Sequence[str]) -> Child:
        return Child(
            name,
            cmd,
            env=self._child_env(),
            cwd=self.root,
            on_line=functools.partial(self.console.line, name),
        )

    def spawn(
        self, name: str, cmd: Sequence[str], *, helper: bool = False, supervised: bool = False
    ) -> Child:
        """Start a process (in our process group) whose output is relayed as `name | …`;
        `supervised`: started again when it exits (see the module docstring)."""
        if supervised:
            keeper = Supervised(
                name,
                functools.partial(self._child, name, cmd),
                self.restart,
                say=self.console.say,
                on_start=self._started_again,
            )
            self.supervised[name] = keeper
            child = keeper.child
        else:
            child = self._child(name, cmd)
        (self.helpers if helper else self.children).append(child)
        self._save_state()
        return child

    def _started_again(self, old: Child, new: Child) -> None:
        self.children[self.children.index(old)] = new
        self._save_state()
        self.console.say(f"{new.name} started again (pid {new.pid})")

    def start_app(self, *, api: bool = True, worker: bool = True, beat: bool = True) -> None:
        if api:
            self.spawn("api", commands.api())
        if worker:
            self.spawn("worker", commands.celery(*WORKER_ARGS), supervised=True)
        if beat:
            schedule = str(self.var_dir / "celerybeat-schedule")
            beat_args = ("beat", "--loglevel=INFO", "--schedule", schedule)
            self.spawn("beat", commands.celery(*beat_args), supervised=True)

    def supervise(self) -> None:
        """Start again the supervised processes that exited, once their delay is over."""
        if not self.stopping:
            for keeper in self.supervised.values():
                keeper.poll()

    def exited_child(self) -> Child | None:
        """A process that exited and will not be started again, if any."""
        for keeper in self.supervised.values():
            if keeper.state == Supervision.GAVE_UP:
                return keeper.child
        restarted = {id(k.child) for k in self.supervised.values()}
        return next(
            (
                c
                for c in [*self.children, *self.helpers]
                if id(c) not in restarted and not c.alive()
            ),
            None,
        )

    def wait_until_serving(self, timeout: float = 60.0) -> bool:
        """Wait until the API answers HTTP on /healthz (False: a process died, or timeout)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.exited_child() is not None:
                return False
            if http_answers(f"{self.api_url}/healthz"):
                return True
            time.sleep(0.2)
        return False

    def watch(self, poll: float = 0.2, until: threading.Event | None = None) -> Child | None:
        """Supervise until a process exits that is not started again; return it (None once
        `until` is set: a harness watching from a thread of its own, stopped before stop())."""
        while until is None or not until.is_set():
            self.supervise()
            child = self.exited_child()
            if child is not None:
                return child
            time.sleep(poll)
        return None

    # -- stopping

    def stop(self) -> None:
        """Stop the app processes, then the emulator, then Valkey and PostgreSQL."""
        self.stopping = True
        for group in (self.children, self.helpers):
            if group:
                self.console.say(f"Stopping {', '.join(c.name for c in group)}…")
                stop_all(group, self.stop_timeout, hurry=lambda: self.hurry, say=self.console.say)
                group.clear()
        self.state_file.unlink(missing_ok=True)
        self.run_env_file.unlink(missing_ok=True)
        while self._servers:
            name, stop = self._servers.pop()
            self.console.say(f"Stopping {name}…")
            try:
                stop()
            except Exception as exc:  # noqa: BLE001 - one that will not stop must not keep the others running
                self.console.say(f"could not stop {name}: {exc}")

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- what a newcomer reads

    def describe_settings(self) -> str:
        lines = ["Development defaults (set your own in .env or the environment):"]
        for name, (value, note) in self.defaults.items():
            lines.append(f"  {name}={value}" + (f"    # {note}" if note else ""))
        # Names only: a value that came from the environment is never printed.
        given = [
            n
            for n in (
                "INKFLOW_ENV", "DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL", *SECRET_SETTINGS
            )
            if n not in self.defaults and not self._unset(n)
        ]  # fmt: skip
        if given:
            lines.append(f"From your environment: {', '.join(given)}")
        return "\n".join(lines)

    def banner(self, ids: Mapping[str, Any]) -> str:
        api = self.api_url
        # The token only when this stack chose it (a development default): one that came
        # from the environment is a secret the console and its scrollback must not show.
        chosen = "ADMIN_API_TOKEN" in self.defaults
        token = self.env.get("ADMIN_API_TOKEN", "") if chosen else "$ADMIN_API_TOKEN"
        shown = (
            f"{token}   (header: Authorization: Bearer {token})"
            if chosen
            else "from your environment (not shown)"
        )
        mode = self.env.get("INKFLOW_ENV", "").strip() or "production"
        today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        query: dict[str, Any] = {
            "artistId": ids.get("artistId", "<artistId>"),
            "startDate": (today + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "endDate": (today + timedelta(days=8)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
        if "serviceId" in ids:
            query["serviceId"] = ids["serviceId"]
        else:
            query["serviceDurationMin"] = 60
        rule = "=" * 72
        cli = ".venv/bin/inkflow"
        # With roles on, the client endpoints want the client's own token.
        roles = bool(self.env.get("AUTH_JWT_SECRET", "").strip())
        client_id = ids.get("clientId", "<clientId>")
        as_client = f'      -H "Authorization: Bearer $({cli} token --client {client_id})" \\'
        lines = [
            rule,
            "inkflow is running. Ctrl-C stops everything.",
            f"  API:            {api}   (health: {api}/readyz)",
            f"  API reference:  {api}/docs   (OpenAPI: {api}/openapi.json)",
            f"  Mode:           INKFLOW_ENV={mode}"
            + (
                " (make run opted in: development secrets accepted; never deploy them)"
                if "INKFLOW_ENV" in self.defaults
                else ""
            ),
            f"  Booking page:   {api}/book/{ids.get('artistId', '<artistId>')}"
            + ("   (pays offline: test card 4242 4242 4242 4242)" if self.emulator_url else ""),
            f"  Admin token:    {shown}",
            "  Free slots of the demo artist for the next week:",
            f"    curl -s -X POST {api}/api/availability \\",
            *([as_client] if roles else []),
            "      -H 'Content-Type: application/json' \\",
            f"      -d '{json.dumps(query)}'",
            "  In another terminal (settings from var/run.env, nothing to export):",
            *(
                f"    {cli} {command:<35} {what}"
                for command, what in (
                    ("demo", "book, pay with 4242, CONFIRMED + emails"),
                    ("pay BOOKING_ID [--card declined]", "pay a booking with a test card"),
                    ("trigger payment_intent.succeeded", "have Stripe send an event"),
                    ("events replay --all-unprocessed", "apply stored webhook events again"),
                )
            ),
        ]
        if roles:
            lines.append(
                f"  Roles are on (AUTH_JWT_SECRET): {cli} token --artist "
                f"{ids.get('artistId', '<artistId>')} gives the demo artist's token"
            )
        if self.emulator_url:
            lines.append(
                f"  Stripe emulator: {self.emulator_url} (webhooks to {self.webhook_url};"
                " docs/development.md)"
            )
        else:
            lines.append(f"  Stripe webhooks: stripe listen --forward-to {self.webhook_url}")
        return "\n".join([*lines, rule])


def _install_signal_handlers(stack: Stack) -> None:
    def handler(signum: int, _frame: FrameType | None) -> None:
        if stack.stopping:
            stack.hurry = True  # no printing here: the main thread may be mid-write
            return
        stack.stopping = True
        raise StopRequested(signum)

    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, handler)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m devtools.stack",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    parser.add_argument(
        "--var-dir", type=Path, default=REPO_ROOT / "var", help="data and state (default: var/)"
    )
    parser.add_argument(
        "--stripe-port",
        type=int,
        default=STRIPE_EMULATOR_PORT,
        help=f"port of the Stripe emulator, when one is started (default {STRIPE_EMULATOR_PORT})",
    )
    args = parser.parse_args(argv)

    from dotenv import load_dotenv

    load_dotenv(REPO_ROOT / ".env", override=False)
    console = Console()
    handler = _ConsoleHandler(console)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logging.basicConfig(level=logging.INFO, handlers=[handler], force=True)

    stack = Stack(console=console, var_dir=args.var_dir, stripe_port=args.stripe_port)
    _install_signal_handlers(stack)
    status = 0
    try:
        stack.clear_leftovers()
        raw_port = stack.env.get("PORT", "").strip() or DEV_DEFAULTS["PORT"]
        if not raw_port.isdigit():
            raise StackError(f"setting PORT must be a port number, got {raw_port!r}")
        port = int(raw_port)
        if port_is_open(port):
            raise StackError(
                f"port {port} is already in use: is another `make run` (or API) running? "
                "Stop it, or set PORT in .env."
            )
        stack.start_infrastructure()
        console.say(stack.describe_settings())
        stack.migrate()
        ids = stack.seed()
        stack.start_app()
        if not stack.wait_until_serving():
            console.say(f"warning: nothing answers on {stack.api_url} yet")
        if stack.exited_child() is None:
            console.say(stack.banner(ids))
        child = stack.watch()
        assert child is not None
        if child.name in stack.supervised:
            console.say(f"{child.name} keeps exiting; stopping everything.")
        else:
            console.say(
                f"{child.name} exited unexpectedly (status {child.returncode}); "
                "stopping everything."
            )
        status = 1
    except StopRequested as stop:
        stack.stopping = True
        console.say(f"{stop} received: stopping everything…")
    except StackError as exc:
        stack.stopping = True
        console.say(f"error: {exc}")
        status = 1
    finally:
        stack.stopping = True
        stack.stop()
    console.say("All stopped.")
    return status


if __name__ == "__main__":
    sys.exit(main())

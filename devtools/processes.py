"""Child processes for `make run`, the bench and the end-to-end tests.

One way to start a named child (environment, working directory, where its output goes),
wait until it is ready (a port open, a line printed, an HTTP answer), stop it (SIGTERM,
then SIGKILL after a timeout, then whatever it left behind) and show the end of its
output when something failed:

    child = Child("api", commands.api(), env=env, log_path=log_dir / "api.log")
    child.wait_ready(lambda: port_is_open(8000), timeout=30)  # ChildError with its output
    ...
    child.stop()

Output goes either to a log file (`log_path`) or, line by line, to a function
(`on_line`, e.g. `make run`'s prefixed console) with the last lines kept for messages.
Children stay in our process group unless `new_session=True` (then a Ctrl-C in the
terminal reaches only us, and we stop them in our own order).

A child that must keep running (`make run`'s Celery worker and beat) is `Supervised`: when
it exits on its own (a crash, SIGKILL, the OOM killer) it is started again after a delay
that doubles with each exit that came soon after a start (`Backoff`), and given up after
a few of those in a row (a configuration error only repeats itself):

    worker = Supervised("worker", start_worker, Backoff(), say=print)
    while ...:
        worker.poll()  # from the owner's loop: notices an exit, restarts when due
"""

from __future__ import annotations

import collections
import contextlib
import enum
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import psutil

REPO_ROOT = Path(__file__).resolve().parents[1]
LOCALHOST = "127.0.0.1"
STOP_TIMEOUT_SECONDS = 10.0
TAIL_CHARS = 4000
KEPT_LINES = 200  # of a relayed child's output, for failure messages


class ChildError(RuntimeError):
    """A child exited or did not get ready in time; the message ends with its output."""


# --------------------------------------------------------------------- waiting and ports


def wait_until(predicate: Callable[[], bool], timeout: float, interval: float = 0.05) -> bool:
    """Poll `predicate` until it is true (True) or `timeout` seconds passed (its last value)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


def port_is_open(port: int, host: str = LOCALHOST, timeout: float = 0.2) -> bool:
    """True when something accepts TCP connections on host:port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        return sock.connect_ex((host, port)) == 0


def wait_for_port_closed(port: int, host: str = LOCALHOST, timeout: float = 10.0) -> bool:
    return wait_until(lambda: not port_is_open(port, host), timeout)


_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # no http_proxy


def http_answers(url: str, status: int | None = None, timeout: float = 2.0) -> bool:
    """True when `url` answers HTTP (with `status`, when given). Stronger than an open
    port: gunicorn's master listens before its workers have imported the app."""
    try:
        with _NO_PROXY.open(url, timeout=timeout) as response:
            return status is None or bool(response.status == status)
    except urllib.error.HTTPError as exc:
        return status is None or exc.code == status
    except OSError:
        return False


# ------------------------------------------------------------- processes by pid (psutil)


def live_process(pid: int) -> psutil.Process | None:
    """The live (non-zombie) process with this pid, or None."""
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return None
    except psutil.NoSuchProcess:
        return None
    except psutil.AccessDenied:
        return psutil.Process(pid)
    return proc


def process_name(proc: psutil.Process) -> str:
    try:
        return str(proc.name())
    except psutil.NoSuchProcess:
        return ""
    except psutil.AccessDenied:
        return "?"


def process_gone(proc: psutil.Process) -> bool:
    """Exited. An orphan's zombie counts: pid 1 reaps it in its own time (slowly, in
    some containers), and waiting for its pid to vanish would wait for that."""
    try:
        return bool(proc.status() == psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return True


def wait_processes_gone(procs: Iterable[psutil.Process], timeout: float) -> bool:
    procs = list(procs)
    return wait_until(lambda: all(map(process_gone, procs)), timeout, 0.02)


def terminate(
    procs: Iterable[psutil.Process],
    timeout: float = STOP_TIMEOUT_SECONDS,
    first: signal.Signals = signal.SIGTERM,
) -> list[psutil.Process]:
    """Send `first` to each, wait up to `timeout` s for all, then SIGKILL the others and
    wait a little more. Returns the processes that needed SIGKILL."""
    procs = [p for p in procs if not process_gone(p)]
    for proc in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.send_signal(first)
    if first == signal.SIGKILL:
        wait_processes_gone(procs, 5)
        return []
    if wait_processes_gone(procs, timeout):
        return []
    stubborn = [p for p in procs if not process_gone(p)]
    for proc in stubborn:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.kill()
    wait_processes_gone(stubborn, 5)
    return stubborn


def identity(pid: int) -> dict[str, Any]:
    """What names a process across a restart of ours: its pid and start time (pids are
    reused). Saved in state files, found again with `same_process`."""
    return {"pid": pid, "started": psutil.Process(pid).create_time()}


def same_process(entry: Mapping[str, Any]) -> psutil.Process | None:
    """The live process `identity()` described, or None (exited, or its pid reused)."""
    try:
        proc = psutil.Process(int(entry["pid"]))
        same = abs(proc.create_time() - float(entry["started"])) < 0.01
        return proc if same and proc.status() != psutil.STATUS_ZOMBIE else None
    except (psutil.Error, KeyError, TypeError, ValueError):
        return None


def with_descendants(proc: psutil.Process) -> list[psutil.Process]:
    try:
        return [proc, *proc.children(recursive=True)]
    except psutil.Error:
        return [proc]


# ---------------------------------------------------------------------------- children


class Child:
    """A named child process; see the module docstring."""

    def __init__(
        self,
        name: str,
        args: Sequence[str],
        *,
        env: Mapping[str, str],
        cwd: Path = REPO_ROOT,
        log_path: Path | None = None,
        on_line: Callable[[str], None] | None = None,
        new_session: bool = False,
    ) -> None:
        if log_path is not None and on_line is not None:
            raise ValueError("a child's output goes to a log file or to on_line, not both")
        self.name = name
        self.args = list(args)
        self.log_path = log_path
        self._on_line = on_line
        self._kept: collections.deque[str] = collections.deque(maxlen=KEPT_LINES)
        self._log: IO[bytes] | None = None
        self._reader: threading.Thread | None = None
        if log_path is not None:
            log_path.parent.mkdir(parents=True, exist_ok=True)
            self._log = log_path.open("wb")
        try:
            self.process = subprocess.Popen(
                self.args,
                env=dict(env),
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=self._log if self._log is not None else subprocess.PIPE,
                stderr=subprocess.STDOUT,
                start_new_session=new_session,
            )
        except BaseException:
            if self._log is not None:
                self._log.close()
            raise
        self.started = psutil.Process(self.process.pid).create_time()
        if self._log is None:
            self._reader = threading.Thread(target=self._relay, name=f"relay-{name}", daemon=True)
            self._reader.start()

    def _relay(self) -> None:
        stream = self.process.stdout
        assert stream is not None
        with stream:
            for raw in iter(stream.readline, b""):
                text = raw.decode(errors="replace").rstrip("\r\n")
                self._kept.append(text)
                if self._on_line is not None:
                    self._on_line(text)

    # -- state

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def returncode(self) -> int | None:
        return self.process.returncode

    def alive(self) -> bool:
        return self.process.poll() is None

    def wait(self, timeout: float | None = None) -> int:
        """Its exit status (subprocess.TimeoutExpired after `timeout` s)."""
        return self.process.wait(timeout)

    def identity(self) -> dict[str, Any]:
        return {"name": self.name, "pid": self.pid, "started": self.started}

    def family(self) -> list[psutil.Process]:
        """The process and its descendants (e.g. gunicorn's workers, Celery's pool)."""
        try:
            return with_descendants(psutil.Process(self.pid))
        except psutil.Error:
            return []

    # -- output

    def full_output(self) -> str:
        if self._log is None:
            return "\n".join(self._kept)
        if not self._log.closed:
            self._log.flush()
        try:
            return self.log_path.read_text(errors="replace") if self.log_path else ""
        except OSError:
            return ""

    def output(self, chars: int = TAIL_CHARS) -> str:
        """The end of its output, for failure messages."""
        return self.full_output()[-chars:]

    def printed(self, text: str) -> bool:
        """Has it printed `text`? (A relayed child: within its last KEPT_LINES lines.)"""
        return text in self.full_output()

    # -- readiness

    def wait_ready(
        self, ready: Callable[[], bool], timeout: float = 30.0, what: str = "get ready"
    ) -> None:
        """Wait until `ready()`; if the child exits first or `timeout` passes, stop it and
        raise ChildError with the end of its output."""
        if wait_until(lambda: not self.alive() or ready(), timeout) and self.alive():
            return
        if self.alive():
            problem = f"{self.name} did not {what} within {timeout:.0f} s"
        else:
            problem = f"{self.name} exited with status {self.returncode} at start-up"
        self.stop()
        if self._on_line is not None:
            raise ChildError(f"{problem} (its output is above)")
        raise ChildError(f"{problem}:\n{self.output()}")

    # -- stopping

    def kill(self) -> None:
        """SIGKILL it now (its descendants are left to `stop()`)."""
        with contextlib.suppress(ProcessLookupError):
            self.process.kill()

    def stop(self, timeout: float = STOP_TIMEOUT_SECONDS, *, hurry: bool = False) -> None:
        stop_all([self], timeout, hurry=lambda: hurry)

    def close(self) -> None:
        """Release the log file and the relay thread (once the process has exited)."""
        if self._reader is not None:
            self._reader.join(timeout=2)
        if self._log is not None:
            self._log.close()


def stop_all(
    children: Sequence[Child],
    timeout: float = STOP_TIMEOUT_SECONDS,
    *,
    hurry: Callable[[], bool] = lambda: False,
    say: Callable[[str], None] | None = None,
) -> None:
    """Stop children together: SIGTERM to each (SIGKILL when `hurry()` already), wait up
    to `timeout` s for all (less once `hurry()` turns true), SIGKILL the rest, reap them,
    and SIGKILL what they left behind (e.g. pool processes of a killed parent)."""
    running = [c for c in children if c.alive()]
    families = {id(c): c.family()[1:] for c in running}
    for child in running:
        with contextlib.suppress(ProcessLookupError):
            child.process.send_signal(signal.SIGKILL if hurry() else signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while any(c.alive() for c in running) and not hurry() and time.monotonic() < deadline:
        time.sleep(0.05)
    for child in running:
        if child.alive():
            if say is not None:
                why = "told to hurry" if hurry() else f"not stopped in {timeout:.0f} s"
                say(f"{child.name}: {why}, sending SIGKILL")
            child.kill()
    for child in children:
        child.wait()
        left = [p for p in families.get(id(child), []) if not process_gone(p)]
        terminate(left, first=signal.SIGKILL)
        child.close()


# ------------------------------------------------------------------------- supervision


@dataclass(frozen=True, slots=True)
class Backoff:
    """When a supervised child that exited is started again: `first` seconds after an exit,
    doubling with each exit that came less than `stable` seconds after its start, at most
    `cap`; a run of `stable` seconds or more starts the count again. After `give_up_after`
    such quick exits in a row it stays down (0: never gives up)."""

    first: float = 1.0
    cap: float = 30.0
    stable: float = 30.0
    give_up_after: int = 5

    def delay(self, quick_exits: int) -> float:
        return float(min(self.cap, self.first * 2 ** max(0, quick_exits - 1)))


class Supervision(enum.Enum):
    RUNNING = "running"
    WAITING = "waiting"  # exited; started again when its delay is over
    GAVE_UP = "gave up"


class Supervised:
    """A child started again when it exits on its own; see Backoff. It has no thread: the
    owner calls `poll()` from its own loop, and stops `child` itself (a stop is not an exit
    to recover from: poll no more)."""

    def __init__(
        self,
        name: str,
        start: Callable[[], Child],
        backoff: Backoff | None = None,
        *,
        say: Callable[[str], None] = lambda _: None,
        on_start: Callable[[Child, Child], None] = lambda _old, _new: None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self.backoff = backoff or Backoff()
        self._start, self._say, self._on_start, self._clock = start, say, on_start, clock
        self.child = start()
        self.started_at = clock()
        self.exits: list[int | None] = []  # the exit status of each exit seen
        self.restarts = 0
        self.quick_exits = 0  # in a row
        self.state = Supervision.RUNNING
        self._due = 0.0
        self._family: list[psutil.Process] = []

    def poll(self) -> Supervision:
        now = self._clock()
        if self.state == Supervision.RUNNING:
            if self.child.alive():
                self._remember_descendants()
            else:
                self._exited(now)
        if self.state == Supervision.WAITING and now >= self._due:
            self._restart(now)
        return self.state

    def _remember_descendants(self) -> None:
        """What a crash would leave behind (a killed Celery worker's pool processes). Added
        to, not replaced: a dying process may already show no children."""
        known = {p.pid: p for p in self._family if not process_gone(p)}
        for proc in self.child.family()[1:]:
            known.setdefault(proc.pid, proc)
        self._family = list(known.values())

    def _exited(self, now: float) -> None:
        status = self.child.returncode
        ran = now - self.started_at
        self.exits.append(status)
        # Pool processes of a killed Celery worker, gunicorn workers…: not ours to keep.
        terminate([p for p in self._family if not process_gone(p)], first=signal.SIGKILL)
        self.child.close()
        self.quick_exits = self.quick_exits + 1 if ran < self.backoff.stable else 1
        limit = self.backoff.give_up_after
        if limit and self.quick_exits >= limit:
            self.state = Supervision.GAVE_UP
            self._say(
                f"{self.name} exited (status {status}) {self.quick_exits} times in a row "
                f"within {self.backoff.stable:.0f} s of starting: not starting it again"
            )
            return
        delay = self.backoff.delay(self.quick_exits)
        self.state, self._due = Supervision.WAITING, now + delay
        self._say(
            f"{self.name} exited (status {status}) after {ran:.1f} s; "
            f"starting it again in {delay:.0f} s (restart {len(self.exits)})"
        )

    def _restart(self, now: float) -> None:
        old, self.child = self.child, self._start()
        self.started_at, self.state, self._family = now, Supervision.RUNNING, []
        self.restarts += 1
        self._on_start(old, self.child)

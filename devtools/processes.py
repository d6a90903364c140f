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
"""

from __future__ import annotations

import collections
import contextlib
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping, Sequence
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

"""devtools.processes: children started, awaited and stopped as `make run`, the bench and
the end-to-end tests need it — real processes and signals."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import psutil
import pytest

from devtools.processes import (
    Backoff,
    Child,
    ChildError,
    Supervised,
    Supervision,
    port_is_open,
    process_gone,
    same_process,
    stop_all,
)
from tests.support import free_port

PY = sys.executable


def python(code: str) -> list[str]:
    return [PY, "-u", "-c", code]


def test_log_file_child_ready_on_a_line_and_stopped_with_sigterm(tmp_path: Path) -> None:
    child = Child(
        "sleeper",
        python("import time; print('up', flush=True); time.sleep(60)"),
        env=os.environ,
        log_path=tmp_path / "logs" / "sleeper.log",
    )
    child.wait_ready(lambda: child.printed("up"), timeout=10)
    entry = child.identity()
    assert same_process(entry) is not None

    began = time.monotonic()
    child.stop()
    assert time.monotonic() - began < 5
    assert child.returncode == -signal.SIGTERM
    assert same_process(entry) is None
    assert child.output() == "up\n" == (tmp_path / "logs" / "sleeper.log").read_text()


def test_relayed_child_sends_each_line_and_keeps_the_last() -> None:
    lines: list[str] = []
    child = Child("counter", python("for i in range(3): print(f'line {i}')"), env=os.environ,
                  on_line=lines.append)  # fmt: skip
    assert child.wait(10) == 0
    child.close()
    assert lines == ["line 0", "line 1", "line 2"]
    assert child.output() == "line 0\nline 1\nline 2"


def test_a_child_that_exits_at_start_up_is_reported_with_its_output(tmp_path: Path) -> None:
    child = Child(
        "broken",
        python("import sys; print('no database'); sys.exit(3)"),
        env=os.environ,
        log_path=tmp_path / "broken.log",
    )
    with pytest.raises(ChildError, match=r"broken exited with status 3 at start-up:\nno database"):
        child.wait_ready(lambda: port_is_open(free_port()), timeout=10)


def test_a_child_not_ready_in_time_is_stopped(tmp_path: Path) -> None:
    child = Child("slow", python("import time; time.sleep(60)"), env=os.environ,
                  log_path=tmp_path / "slow.log")  # fmt: skip
    with pytest.raises(ChildError, match="slow did not listen within 0 s"):
        child.wait_ready(lambda: False, timeout=0.3, what="listen")
    assert not child.alive()


def test_sigkill_after_the_timeout_and_nothing_left_behind(tmp_path: Path) -> None:
    """A parent that ignores SIGTERM is killed; the grandchild it started goes too."""
    code = (
        "import signal, subprocess, sys, time\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "grandchild = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
        "print(grandchild.pid, flush=True)\n"
        "time.sleep(60)\n"
    )
    stubborn = Child("stubborn", python(code), env=os.environ, log_path=tmp_path / "s.log")
    polite = Child("polite", python("import time; time.sleep(60)"), env=os.environ,
                   log_path=tmp_path / "p.log")  # fmt: skip
    stubborn.wait_ready(lambda: stubborn.output().strip().isdigit(), timeout=10)
    grandchild = psutil.Process(int(stubborn.output()))
    said: list[str] = []

    began = time.monotonic()
    stop_all([stubborn, polite], timeout=0.5, say=said.append)
    assert 0.5 <= time.monotonic() - began < 5
    assert (stubborn.returncode, polite.returncode) == (-signal.SIGKILL, -signal.SIGTERM)
    assert said == ["stubborn: not stopped in 0 s, sending SIGKILL"]
    assert process_gone(grandchild)


def test_hurry_kills_at_once(tmp_path: Path) -> None:
    code = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)"
    child = Child("stubborn", python(code), env=os.environ, log_path=tmp_path / "s.log")
    began = time.monotonic()
    child.stop(timeout=30, hurry=True)
    assert time.monotonic() - began < 5
    assert child.returncode == -signal.SIGKILL


# --- supervision ------------------------------------------------------------------------------


class Clock:
    """Seconds that pass only when the test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def poll_until(keeper: Supervised, state: Supervision, clock: Clock, step: float) -> None:
    """Poll as an owner's loop does, the clock moving `step` s per round."""
    deadline = time.monotonic() + 20
    while keeper.poll() != state:
        assert time.monotonic() < deadline, (keeper.state, keeper.exits)
        clock.now += step
        time.sleep(0.01)


def test_a_supervised_child_that_keeps_exiting_is_started_again_later_each_time_then_given_up(
    tmp_path: Path,
) -> None:
    clock, said, started = Clock(), list[str](), list[float]()

    def start() -> Child:
        started.append(clock.now)
        code = "import sys; print('no broker', flush=True); sys.exit(3)"
        return Child("worker", python(code), env=os.environ, log_path=tmp_path / "w.log")

    backoff = Backoff(first=1, cap=4, stable=30, give_up_after=5)
    keeper = Supervised("worker", start, backoff, say=said.append, clock=clock)
    gaps = []
    for _ in range(4):
        poll_until(keeper, Supervision.WAITING, clock, step=0)  # the clock waits for the exit
        exited = clock.now
        poll_until(keeper, Supervision.RUNNING, clock, step=0.25)
        gaps.append(started[-1] - exited)
    poll_until(keeper, Supervision.GAVE_UP, clock, step=0)

    assert keeper.exits == [3] * 5
    assert keeper.restarts == 4
    assert gaps == [1, 2, 4, 4]  # the delay doubles, up to the cap
    assert said[0] == "worker exited (status 3) after 0.0 s; starting it again in 1 s (restart 1)"
    assert said[-1] == (
        "worker exited (status 3) 5 times in a row within 30 s of starting: not starting it again"
    )
    assert not keeper.child.alive()


def test_a_child_that_ran_a_while_is_started_again_at_the_first_delay(tmp_path: Path) -> None:
    clock, said = Clock(), list[str]()
    marker = tmp_path / "go"

    def start() -> Child:
        # Runs until the test lets it exit.
        code = f"import os, time\nwhile not os.path.exists({str(marker)!r}): time.sleep(0.01)"
        return Child("beat", python(code), env=os.environ, log_path=tmp_path / "b.log")

    keeper = Supervised("beat", start, Backoff(first=1, stable=30), say=said.append, clock=clock)
    for ran in (1, 1, 45):  # two quick exits, then a run longer than `stable`
        marker.unlink(missing_ok=True)
        clock.now += ran
        marker.touch()
        poll_until(keeper, Supervision.WAITING, clock, step=0)
        poll_until(keeper, Supervision.RUNNING, clock, step=0.5)
    assert [s.split(";")[1] for s in said] == [
        " starting it again in 1 s (restart 1)",
        " starting it again in 2 s (restart 2)",
        " starting it again in 1 s (restart 3)",
    ]
    marker.touch()
    keeper.child.stop()


def test_what_a_killed_child_left_behind_goes_before_it_starts_again(tmp_path: Path) -> None:
    """A Celery worker SIGKILLed leaves its pool processes: they are killed, not kept."""
    code = (
        "import subprocess, sys, time\n"
        "pool = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
        "print(pool.pid, flush=True)\n"
        "time.sleep(60)\n"
    )
    children: list[Child] = []

    def start() -> Child:
        log = tmp_path / f"w{len(children)}.log"
        children.append(Child("worker", python(code), env=os.environ, log_path=log))
        return children[-1]

    clock = Clock()
    keeper = Supervised("worker", start, Backoff(first=1), clock=clock)
    first = children[0]
    first.wait_ready(lambda: first.output().strip().isdigit(), timeout=10)
    pool = psutil.Process(int(first.output()))
    keeper.poll()  # sees the pool process
    first.kill()
    poll_until(keeper, Supervision.WAITING, clock, step=0)
    poll_until(keeper, Supervision.RUNNING, clock, step=0.5)
    assert keeper.exits == [-signal.SIGKILL]
    assert process_gone(pool)
    assert keeper.child is children[1]
    assert keeper.child.alive()
    keeper.child.stop()
